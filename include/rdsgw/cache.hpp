// The link cache and single-flight. Shared by all threads; the hit path takes only one shard's lock.
//
// Guarantees: an entry's freshness lifetime is min(ttl, earliest link expiry - now - margin) and it is not
// stored when that is not positive; a lookup never returns a fresh answer whose earliest link expires within
// the margin. Entries past their TTL stay (until evicted or their links come within the margin) so they can
// be served stale when the upstream fails. Bounded by entries and bytes, least recently used evicted first.
#pragma once
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "rdsgw/answer.hpp"
#include "rdsgw/local_error.hpp"
#include "rdsgw/text.hpp"

namespace rdsgw {

struct CacheOptions {
    std::size_t max_entries = 100000;
    std::uint64_t max_bytes = 256ull << 20;
    std::chrono::seconds ttl{300};
    std::chrono::seconds expiry_margin{60};
    std::chrono::seconds negative_ttl{5};
    std::size_t shards = 16;  // power of two
};

// Events the cache reports (for metrics): called outside of any lock.
struct CacheEvents {
    std::function<void()> on_evicted;  // removed to make room
    std::function<void()> on_expired;  // removed because its links came within the margin
};

// The freshness lifetime an answer gets in either cache tier: for a 200, min(ttl, earliest link expiry -
// margin - now); for a 404, negative_ttl; otherwise zero. Not positive: not stored.
SysClock::duration fresh_lifetime(const CachedAnswer& a, SysClock::time_point now, const CacheOptions& o);

// Key: project_id + '\n' + backup_id (make_cache_key).
std::string make_cache_key(std::string_view project_id, std::string_view backup_id);
void make_cache_key(std::string& out, std::string_view project_id, std::string_view backup_id);  // reuses out

class LinkCache {
  public:
    // opts.shards is rounded up to a power of two (at least 1).
    explicit LinkCache(CacheOptions opts, CacheEvents events = {});
    ~LinkCache();
    LinkCache(const LinkCache&) = delete;
    LinkCache& operator=(const LinkCache&) = delete;

    struct Lookup {
        AnswerPtr answer;    // null when nothing usable is stored
        bool fresh = false;  // true: within TTL and links valid beyond the margin; false: stale-servable only
    };
    // Returns a fresh answer, or (fresh=false) one past its TTL whose links all remain valid beyond the
    // margin, or nothing. Entries whose links are within the margin are removed (on_expired).
    Lookup get(std::string_view key, SysClock::time_point now);

    // Stores an answer (status 200 with links; or negative: a 404 or a 502 refusal) with the TTL rule above
    // (negative entries live negative_ttl); returns false when it was not stored (TTL not positive, or larger
    // than max_bytes). Such an answer supersedes what is stored under `key`: the old entry is replaced, or
    // removed when the new answer is not stored. Any other answer (or a null one) is not stored and changes
    // nothing.
    // When the bounds are exceeded, entries are evicted (on_evicted) in global least-recently-used order
    // (never the one just stored) until entries() <= max_entries and bytes() <= max_bytes. The order is
    // exact to within entries() / 64 uses: a lookup of an entry that is already among the newest
    // entries() / 64 uses does not move it again (a hot key's hits write nothing shared).
    // max_fresh caps the freshness lifetime further (an answer taken from the shared tier keeps only what
    // it has left there).
    bool put(std::string_view key, AnswerPtr answer, SysClock::time_point now,
             SysClock::duration max_fresh = SysClock::duration::max());

    bool erase(std::string_view key);
    std::size_t clear();

    std::size_t entries() const;
    std::uint64_t bytes() const;

  private:
    struct Entry;
    struct Shard;
    Shard& shard_for(std::size_t hash);  // by hash_bytes of the key
    // Each shard's LRU tail stamp (see Shard), eight to a cache line of their own. Declared before shards_:
    // a shard points at its stamp, so the stamps outlive the shards.
    struct alignas(64) TailLine {
        std::atomic<std::uint64_t> stamp[8];
    };
    std::atomic<std::uint64_t>& tail(std::size_t shard) { return tails_[shard / 8].stamp[shard % 8]; }
    CacheOptions opts_;
    CacheEvents events_;
    std::unique_ptr<TailLine[]> tails_;
    std::vector<std::unique_ptr<Shard>> shards_;
    // The totals and the use clock, written by every store on every thread: on a cache line of their own
    // (alignas makes the class end there too), so that opts_ and shards_, read by every lookup, do not move
    // between cores with them. A hit reads entries_ and clock_ too, but a hit of a recently used entry
    // writes nothing here.
    alignas(64) std::atomic<std::size_t> entries_{0};
    std::atomic<std::uint64_t> bytes_{0};
    std::atomic<std::uint64_t> clock_{1};  // use stamps for global LRU eviction
};

// The outcome of one upstream fetch, shared by every caller that waited for it.
struct FetchOutcome {
    AnswerPtr answer;                 // when no error: a normalized 200 or a passed-through RDS error
    std::optional<LocalError> error;  // else the gateway's own answer (each caller gets its own request_id)
    bool upstream_failed = false;     // timeout, connection failure, 5xx, breaker open: stale may be served
    bool refusal = false;             // `error` refuses the upstream's answer: cached briefly (negative_ttl)
    bool from_shared_tier = false;    // the answer came from Redis (another instance's fetch), not upstream
    std::string upstream_request_id;  // RDS's X-Request-Id when sane, else ""
    std::string retry_after;          // the upstream's Retry-After as the gateway's own whole seconds
    unsigned attempts = 0;            // upstream attempts made
    unsigned upstream_status = 0;     // last upstream HTTP status (0: none)
    double upstream_ms = -1;          // time spent upstream
};
using FetchPtr = std::shared_ptr<const FetchOutcome>;

// Single-flight: concurrent callers of run() with the same key share one execution of `fetch`.
class SingleFlight {
    struct Flight;

  public:
    struct Options {
        std::size_t max_waiters = 10000;  // per key; past it, callers get `overflow`
        std::chrono::milliseconds wait_timeout{15000};
    };
    // The SingleFlight must outlive every run() and every fetch it started.
    explicit SingleFlight(Options opts);
    SingleFlight(const SingleFlight&) = delete;
    SingleFlight& operator=(const SingleFlight&) = delete;

    enum class Role { leader, waiter };
    struct Result {
        FetchPtr outcome;  // null on overflow or wait timeout
        Role role = Role::leader;
        bool overflow = false;   // too many waiters
        bool timed_out = false;  // waited longer than wait_timeout
        bool rechecked = false;  // `recheck` found the answer: no flight was needed
    };

    // The first caller for `key` becomes the leader and the fetch runs once for everyone: waiters are woken
    // the moment it lands (posted to their own executors; no polling). A failed fetch (any outcome) is
    // delivered once to all waiters; the next call starts anew. A fetch that throws (or is destroyed
    // unfinished) delivers a null outcome. max_waiters counts everyone waiting on the key, the leader
    // included; the leader itself is never refused. A waiter waits at most wait_timeout (then `timed_out`).
    //
    // The leader runs the fetch in one of two ways:
    // - In its own coroutine, when `fetch_within` (how long after this call `fetch` is known to have ended,
    //   by its own deadline) is set and no longer than wait_timeout: no second coroutine and no wait timer,
    //   the cheaper path of a miss. The leader's wait is bounded by that deadline. The leader's cancellation
    //   is held back from the fetch, which finishes for the waiters; then run() throws operation_aborted if
    //   the leader was cancelled meanwhile. A caller with a cancellation slot has its cancellation state
    //   left at Asio's default (terminal cancellation let through); one without (a session) is not touched.
    //   Destroying the leader's coroutine destroys the fetch with it.
    // - Otherwise detached (co_spawn on the leader's executor), so that it completes even if the leader's
    //   coroutine is destroyed; the leader then waits like everyone else, at most wait_timeout.
    // A caller whose wait is cancelled (per-operation cancellation, e.g. its session was cancelled) stops
    // waiting and run() throws boost::system::system_error(operation_aborted); the fetch goes on for the
    // others.
    //
    // `recheck` (optional) closes the gap between a caller's cache lookup and its arrival here: a flight
    // that stored its answer and left the map in between would otherwise be followed by a second fetch.
    // It is called under the map's lock by a caller about to become a leader; a non-null outcome (the
    // answer the previous flight stored) is returned at once with role waiter and `rechecked` set, and
    // `fetch` is not started. Since a flight stores before it leaves the map, concurrent callers of one key
    // make exactly one fetch whatever the timing.
    //
    // `key` must stay valid until the returned awaitable first runs (an awaitable starts suspended): co_await
    // run() at once, as every caller does. It is not read after that (the flight keeps its own copy).
    boost::asio::awaitable<Result> run(std::string_view key,
                                       std::function<boost::asio::awaitable<FetchPtr>()> fetch,
                                       std::function<FetchPtr()> recheck = {},
                                       std::optional<std::chrono::steady_clock::duration> fetch_within = {});

    // run()'s leader without a coroutine of SingleFlight's own, for a caller that fetches in its own
    // coroutine (run() costs a frame and a trip through Asio's awaitable machinery per miss, and a
    // std::function for the fetch). lead() takes the key's lock once and returns at once:
    // - leads(): no flight had `key` and `recheck` (as in run(), optional) found nothing; the caller is the
    //   leader, counted as waiting. It fetches, then calls finish(outcome) for the waiters (posted to their
    //   executors, as run() does). A Lead destroyed unfinished (a fetch that threw, a coroutine destroyed)
    //   completes the flight with a null outcome;
    // - found(): the recheck found the answer a flight had just stored (run()'s `rechecked`);
    // - neither: a flight is in progress; the caller joins it through run().
    // Unlike run() it holds back no cancellation: for callers without a cancellation slot (a session).
    class Lead {
      public:
        Lead(Lead&& o) noexcept = default;
        Lead& operator=(Lead&&) = delete;
        ~Lead();
        bool leads() const { return flight_ != nullptr; }
        const FetchPtr& found() const { return found_; }
        void finish(FetchPtr outcome);  // once; nothing after

      private:
        friend class SingleFlight;
        Lead() = default;
        SingleFlight* self_ = nullptr;
        std::shared_ptr<Flight> flight_;
        FetchPtr found_;
    };
    Lead lead(std::string_view key, const std::function<FetchPtr()>& recheck = {});

    std::size_t waiting() const;  // callers currently waiting (all keys), for metrics

  private:
    struct Waiter;
    struct Finish;
    void complete(const std::shared_ptr<Flight>& flight, FetchPtr outcome);
    // A flight's key in the map: the bytes the Flight owns and their hash_bytes, computed once per run() and
    // kept in the Flight (the map's lookups, its insert and complete()'s erase use it; a miss used to hash
    // its key four times here).
    struct FlightKey {
        std::string_view key;
        std::size_t hash;
        bool operator==(const FlightKey& o) const { return key == o.key; }
    };
    struct FlightKeyHash {
        std::size_t operator()(const FlightKey& k) const noexcept { return k.hash; }
    };
    // The flights in flight, by key, in 16 shards (a miss takes its key's shard lock twice, so misses of
    // different keys on different threads rarely meet on one lock). Each shard counts its own waiters: one
    // process-wide counter was a cache line that every miss of every thread wrote twice.
    struct alignas(64) MapShard {
        std::mutex mu;
        std::unordered_map<FlightKey, std::shared_ptr<Flight>, FlightKeyHash> flights;
        std::atomic<std::size_t> waiting{0};
    };
    static constexpr std::size_t kMapShards = 16;
    MapShard& map_for(std::size_t hash) { return maps_[hash & (kMapShards - 1)]; }
    Options opts_;
    std::unique_ptr<MapShard[]> maps_;
};

}  // namespace rdsgw
