// The shared cache tier (L2) in Redis, under the in-process LinkCache (L1): encrypted values with a
// link-bounded TTL, cross-instance coalescing of upstream fetches (a lock plus pub/sub), purges that reach
// every instance, and an optional cross-instance rate limit. Redis failing never fails a caller: every
// operation answers `unavailable` / nullopt within its deadline and the caller carries on with L1 alone.
//
// Keys (one hash tag per cache key, so both keys of an entry share a cluster slot):
//   <prefix>{<h>}:v      the sealed value (AES-256-GCM, the cache key as associated data), PX = lifetime
//   <prefix>{<h>}:lock   the fetch lock (SET NX PX lock_ttl, a random token per holder)
//   <prefix>rate:{<c>}   a caller's GCRA state (theoretical arrival time, microseconds of Redis's clock)
//   <prefix>purge_gen    purge counter (an instance that missed purges while unsubscribed drops its L1)
// where h = the first 32 hex digits of SHA-256(cache key) and c = the same of the caller's name: neither ids
// nor names appear in Redis. Channel <prefix>events carries "L <h>" (a value landed), "R <h>" (a lock was
// released without a value), "P <gen> <cache key>" (purge one) and "A <gen>" (purge all). Pub/sub channels
// are not per database: the prefix keeps deployments that share a Redis apart.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "rdsgw/cache.hpp"
#include "rdsgw/redis.hpp"
#include "rdsgw/sealed.hpp"

namespace rdsgw {

struct Config;

struct L2Lookup {
    enum class Kind { hit, miss, unavailable };
    Kind kind = Kind::miss;
    AnswerPtr answer;                // hit
    SysClock::duration remaining{};  // hit: how long it stays fresh (fill L1 with this lifetime)
};

struct L2Acquire {
    enum class Kind {
        leader,       // this caller holds the lock: fetch upstream, then put() (or release() on failure)
        value,        // another instance's fetch landed (or the value was already there): answer/remaining
        released,     // the holder released without a value (its fetch failed): fetch locally, no lock
        timeout,      // the deadline passed while waiting
        unavailable,  // Redis could not answer (or no subscriber to wait on): fetch locally, no lock
    };
    Kind kind = Kind::unavailable;
    AnswerPtr answer;
    SysClock::duration remaining{};
    bool took_over = false;  // leader after waiting: the previous holder's lock expired
};

struct SharedCacheOptions {
    std::string key_prefix = "rdsgw:";
    std::chrono::seconds expiry_margin{60};  // as cache.expiry_margin_s: checked on every read
    std::chrono::milliseconds lock_ttl{10000};
};

class SharedCache {
  public:
    using Deadline = std::chrono::steady_clock::time_point;

    // Takes the client (it is stopped first when the SharedCache is destroyed, so that no message handler
    // outlives it). on_event gets "l2_hit", "l2_miss" and "l2_decrypt_error" (for Metrics::cache_event);
    // called on the caller's thread.
    SharedCache(std::unique_ptr<RedisClient> client, Sealer sealer, SharedCacheOptions opts,
                std::function<void(std::string_view event)> on_event = {});
    ~SharedCache();
    SharedCache(const SharedCache&) = delete;
    SharedCache& operator=(const SharedCache&) = delete;

    RedisClient& client() { return *client_; }

    // L1 miss: the shared entry, if any. A value that does not open (wrong key, tampered, another cache
    // key) is a miss ("l2_decrypt_error"); so is a 200 whose earliest link expires within the margin.
    boost::asio::awaitable<L2Lookup> get(std::string cache_key, SysClock::time_point now);

    // Stores an answer (200, or a 404 negative entry) for `ttl` (PX; the caller's link-bounded lifetime,
    // see fresh_lifetime()), releases the fetch lock if this instance holds it, and tells the waiters.
    // False when not stored (ttl not positive, other status, Redis unavailable or refusing the write): the
    // lock held for the key is then released as by release(), so that waiters fetch at once.
    boost::asio::awaitable<bool> put(std::string cache_key, AnswerPtr answer, SysClock::duration ttl);

    // Cross-instance single flight for a cold key (call it once per instance and key: the local
    // SingleFlight coalesces inside the instance first). Waiters wake on the subscriber, never by polling;
    // when a holder dies its lock expires and exactly one waiter takes over.
    boost::asio::awaitable<L2Acquire> acquire_or_wait(std::string cache_key, Deadline deadline);
    // Gives the lock up without a value (the fetch failed); waiters then fetch locally.
    boost::asio::awaitable<void> release(std::string cache_key);

    // Removes the shared entry (one, or every value under the prefix with SCAN + UNLINK) and tells every
    // instance, this one included, to drop its L1 copy. The number of shared entries removed, or nullopt
    // when Redis could not do it by the deadline.
    boost::asio::awaitable<std::optional<std::size_t>> purge(std::string cache_key, Deadline deadline);
    boost::asio::awaitable<std::optional<std::size_t>> purge_all(Deadline deadline);
    // Called (on the Redis client's thread) with the cache key to drop from L1, or nullopt for all of it:
    // for every purge message, and for all of L1 after a re-subscription that missed purges.
    void on_invalidate(std::function<void(std::optional<std::string>)> fn);

    // Cross-instance rate limit (GCRA in a Lua script, on Redis's clock). 0 = allowed, > 0 = refused with
    // this many seconds until the next request would pass, nullopt = Redis did not answer in time (use the
    // local bucket). burst < 1 means max(1, rate), as for the local bucket; rate <= 0 means unlimited.
    boost::asio::awaitable<std::optional<double>> rate_acquire(std::string caller, double rate_per_s,
                                                               double burst);

    // Key names (for tests and operators).
    std::string value_key(std::string_view cache_key) const;
    std::string lock_key(std::string_view cache_key) const;
    const std::string& channel() const { return channel_; }

  private:
    struct Waiter;
    enum class Next { done, wait, again };
    Next settle(const std::string& cache_key, const std::string& token, const RedisReply& r, bool waited,
                bool& skip_value, L2Acquire& out);
    std::string hash_tag(std::string_view s) const;
    std::string take_token(const std::string& cache_key);  // this instance's lock token for the key, or ""
    boost::asio::awaitable<void> release_lock(const std::string& cache_key, std::string token);
    AnswerPtr open_value(std::string_view cache_key, std::string_view sealed);
    bool fresh_enough(const CachedAnswer& a, SysClock::time_point now) const;
    void on_message(std::string_view payload);
    void on_resubscribed();
    boost::asio::awaitable<void> check_purge_gen();
    void wake(const std::string& hash, char why);  // hash "" = every waiter
    void unregister_waiter(const std::string& hash, const std::shared_ptr<Waiter>& w);
    void invalidate(std::optional<std::string> key);
    void event(std::string_view e) const;
    boost::asio::awaitable<bool> publish_purge(std::string kind, std::string tail, Deadline deadline);

    Sealer sealer_;
    SharedCacheOptions opts_;
    std::function<void(std::string_view)> on_event_;
    std::string channel_, gen_key_;
    std::mutex mu_;  // guards waiters_, held_, invalidators_
    std::unordered_multimap<std::string, std::shared_ptr<Waiter>> waiters_;  // by hash tag
    std::unordered_map<std::string, std::string> held_;                      // cache key -> lock token
    std::vector<std::function<void(std::optional<std::string>)>> invalidators_;
    std::optional<long long> seen_gen_;    // client thread only
    std::unique_ptr<RedisClient> client_;  // last: destroyed (stopped) first
};

// The shared tier as configured (call when cfg.redis.enabled): loads the password and the encryption keys
// from their secrets now, and starts the client (it connects in the background; the gateway serves with L1
// alone until Redis answers). nullptr with `why` when a secret cannot be read, a key is not 32 bytes, the
// address is malformed or the TLS CA cannot be loaded; `why` names the config key, never a secret.
// `events` and `on_event` usually feed Metrics::redis_operation / set_redis_up and Metrics::cache_event.
std::unique_ptr<SharedCache> make_shared_cache(const Config& cfg, RedisEvents events,
                                               std::function<void(std::string_view event)> on_event,
                                               std::string& why);

}  // namespace rdsgw
