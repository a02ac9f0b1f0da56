// The link cache and single-flight (see include/rdsgw/cache.hpp for the contract).
//
// Decisions worth knowing:
// - LinkCache: each shard is a mutex, an intrusive LRU list of entries (front: most recently used) and an
//   index of entry pointers searched by key (Boost's open-addressing flat set with heterogeneous lookup).
//   An entry and its key's bytes are one allocation that never moves, so a lookup by string_view allocates
//   nothing and the key is stored once. Per entry that is one block and one index slot, where a std::list
//   node, a std::unordered_map node and a separately allocated key took three blocks (about 60 bytes more
//   per entry at 100,000 entries; see README "Where the bytes go"). The answer it holds is one more block
//   (CachedAnswer: header, id and body together), so a cached answer costs two blocks and an index slot.
// - Entries keep fresh_until (stored_at + the TTL computed at put()); the links' deadline (earliest link
//   expiry - margin; time_point::max() for a 404) is derived from the answer. Instant arithmetic saturates.
// - The bounds are global (atomic totals); put() evicts in global LRU order (each entry has a use stamp;
//   the oldest shard tail is the globally least recently used entry), never the entry it just stored. No two
//   shard locks are ever held together. Events are reported after the locks are released.
// - An expired 404 entry is removed silently: on_expired is about links coming within the margin.
// - SingleFlight: a Flight per key with its own mutex guards the waiters, the outcome and every operation
//   on a waiter's timer (async_wait and cancel), so waking is race-free whatever executors the waiters use
//   (one-thread io_contexts, thread pools, strands) and cannot be lost: a waiter either sees the outcome
//   when it starts waiting or is already registered when the outcome lands, and completion cancels its
//   timer. The map lock (the key's shard of the map) is taken before a flight's lock, never the other way
//   round.
#include "rdsgw/cache.hpp"

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_state.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/intrusive/list.hpp>
#include <boost/system/system_error.hpp>
#include <boost/unordered/unordered_flat_set.hpp>
#include <cstring>
#include <limits>
#include <new>
#include <optional>
#include <tuple>
#include <utility>

namespace rdsgw {
namespace {

namespace asio = boost::asio;
using TimePoint = SysClock::time_point;

TimePoint add_sat(TimePoint t, SysClock::duration d) {
    if (d > SysClock::duration::zero() && t > TimePoint::max() - d) return TimePoint::max();
    return t + d;
}

TimePoint sub_sat(TimePoint t, SysClock::duration d) {
    if (d > SysClock::duration::zero() && t < TimePoint::min() + d) return TimePoint::min();
    return t - d;
}

// Options in seconds, clamped to [0, 100 years] so that conversions to the clock's duration cannot overflow.
SysClock::duration clamp_seconds(std::chrono::seconds s) {
    constexpr std::chrono::seconds kMax{100LL * 366 * 24 * 3600};
    return std::clamp(s, std::chrono::seconds::zero(), kMax);
}

// A hit on an entry used within the last entries() / kBumpWindowDivisor uses does not move it.
constexpr std::uint64_t kBumpWindowDivisor = 64;

void notify(const std::function<void()>& f, std::size_t times) {
    if (!f) return;
    for (std::size_t i = 0; i < times; ++i) f();
}

}  // namespace

// ---------------------------------------------------------------------------------------------- LinkCache

// One allocation per entry: the entry, with its LRU links, followed by its key's bytes. 42 bytes before the
// key: the links, the answer, fresh_until, the use stamp and a 16-bit key size (put() stores no longer key).
// What can be derived is not stored: the footprint is the answer's footprint(key size), and the links'
// deadline is the answer's earliest expiry minus the margin (links_deadline()). With the bench's
// 69-byte key the block is 111 bytes, in the allocator's 112-byte class (125 bytes, the 128-byte class, with
// both stored).
struct LinkCache::Entry
    : boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::normal_link>> {
    AnswerPtr answer;
    SysClock::time_point fresh_until;
    std::uint64_t last_use = 0;  // from LinkCache::clock_: global LRU order
    std::uint16_t key_size = 0;
    char key_head[6];  // the key's first bytes; the rest follows in the same block

    static constexpr std::size_t kKeyAt = 42;  // key_head's offset (checked in LinkCache's constructor)
    static constexpr std::size_t kMaxKey = 0xffff;
    static std::size_t block_size(std::size_t key_size) { return std::max(sizeof(Entry), kKeyAt + key_size); }
    std::string_view key() const { return {reinterpret_cast<const char*>(this) + kKeyAt, key_size}; }
    std::size_t footprint() const { return answer->footprint(key_size); }
    static Entry* make(std::string_view key) {
        void* p = ::operator new(block_size(key.size()));
        Entry* e = new (p) Entry;
        e->key_size = static_cast<std::uint16_t>(key.size());
        std::memcpy(static_cast<char*>(p) + kKeyAt, key.data(), key.size());
        return e;
    }
    static void destroy(Entry* e) noexcept {
        const std::size_t size = block_size(e->key_size);
        e->~Entry();
        ::operator delete(static_cast<void*>(e), size);
    }
};

namespace {
// The index holds entry pointers and is searched by key (heterogeneous lookup: no key is built to search).
// A lookup brings the key's hash along (HashedKey): the one that chose the shard, not computed again.
struct HashedKey {
    std::string_view key;
    std::size_t hash;  // hash_bytes(key)
};
struct EntryKeyHash {
    using is_transparent = void;
    template <class E>
    std::size_t operator()(const E* e) const noexcept {
        return hash_bytes(e->key());
    }
    std::size_t operator()(std::string_view k) const noexcept { return hash_bytes(k); }
    std::size_t operator()(const HashedKey& k) const noexcept { return k.hash; }
};
struct EntryKeyEq {
    using is_transparent = void;
    template <class E>
    static std::string_view key_of(const E* e) noexcept {
        return e->key();
    }
    static std::string_view key_of(std::string_view k) noexcept { return k; }
    static std::string_view key_of(const HashedKey& k) noexcept { return k.key; }
    template <class A, class B>
    bool operator()(const A& a, const B& b) const noexcept {
        return key_of(a) == key_of(b);
    }
};
}  // namespace

struct alignas(64) LinkCache::Shard {  // a shard shares no cache line with another
    // The list owns the entries (front: most recently used); the index points into it.
    using List = boost::intrusive::list<Entry, boost::intrusive::constant_time_size<false>>;
    std::mutex mu;
    List lru;
    // Open addressing (Boost's flat set, SIMD-probed metadata): a lookup of an absent key usually reads one
    // metadata group and no entry; a present one reads its entry once.
    boost::unordered_flat_set<Entry*, EntryKeyHash, EntryKeyEq> index;
    // The use stamp of the LRU tail (max() when empty), written under mu after every change of the tail,
    // read without it by put()'s eviction scan: finding the globally oldest entry then costs one atomic load
    // per shard instead of locking every shard and reading its cold tail node. The stamps of all shards sit
    // side by side in LinkCache::tails_, away from the shards' locks and lists: the scan reads a few cache
    // lines that change when a tail does (an eviction, mostly), not one line per shard that every lookup and
    // store writes (with several threads, each such line would have to be fetched from the core that wrote
    // it last).
    std::atomic<std::uint64_t>* tail_stamp = nullptr;
    ~Shard() { lru.clear_and_dispose(&Entry::destroy); }
    void update_tail() {  // stored only when it changed: other threads' eviction scans read this line
        const std::uint64_t v = lru.empty() ? std::numeric_limits<std::uint64_t>::max() : lru.back().last_use;
        if (tail_stamp->load(std::memory_order_relaxed) != v) tail_stamp->store(v, std::memory_order_relaxed);
    }
    Entry* find(const HashedKey& key) {
        auto it = index.find(key);
        return it == index.end() ? nullptr : *it;
    }
    void to_front(Entry& e) { lru.splice(lru.begin(), lru, lru.iterator_to(e)); }
};

void make_cache_key(std::string& key, std::string_view project_id, std::string_view backup_id) {
    key.clear();
    key.reserve(project_id.size() + 1 + backup_id.size());
    key.append(project_id).append(1, '\n').append(backup_id);
}

std::string make_cache_key(std::string_view project_id, std::string_view backup_id) {
    std::string key;
    make_cache_key(key, project_id, backup_id);
    return key;
}

LinkCache::LinkCache(CacheOptions opts, CacheEvents events) : opts_(opts), events_(std::move(events)) {
    // What CachedAnswer::kEntryOverhead stands for, from the real sizes: the entry block (LRU links and the
    // entry's fields; the key is counted apart), an index slot (a pointer and a metadata byte at the flat
    // set's maximum load of 7/8, doubled for a table just grown), the answer's header (its id and body follow
    // it in the same block), and the rounding of the two blocks to size classes: the answer's in FineSlab's
    // classes (rdsgw/slab.hpp; 16 bytes apart up to 1 KiB: 8 bytes lost on average, and about 1 % in the
    // runs' unused tails), the entry's in jemalloc's (16 bytes apart up to 128: 8 on average).
    static_assert(sizeof(Entry) == Entry::kKeyAt + sizeof(Entry::key_head), "the key follows key_size");
    constexpr std::size_t kPtr = sizeof(void*);
    constexpr std::size_t kComputed = sizeof(Entry) + 2 * (kPtr + 1) * 8 / 7 + sizeof(CachedAnswer) + 2 * 16;
    static_assert(CachedAnswer::kEntryOverhead >= kComputed, "raise kEntryOverhead");

    std::size_t n = 1;
    while (n < opts_.shards && n < (std::size_t{1} << 16)) n <<= 1;
    opts_.shards = n;
    shards_.reserve(n);
    tails_ = std::make_unique<TailLine[]>((n + 7) / 8);
    // Room for a full cache up front (capped): no rehash of a large index on the request path.
    const std::size_t per_shard = std::min<std::size_t>(opts_.max_entries, std::size_t{1} << 22) / n + 1;
    for (std::size_t i = 0; i < n; ++i) {
        shards_.push_back(std::make_unique<Shard>());
        tail(i).store(std::numeric_limits<std::uint64_t>::max(), std::memory_order_relaxed);
        shards_.back()->tail_stamp = &tail(i);
        shards_.back()->index.reserve(per_shard);
    }
}

LinkCache::~LinkCache() = default;

LinkCache::Shard& LinkCache::shard_for(std::size_t hash) {
    return *shards_[hash & (shards_.size() - 1)];  // hash_bytes' low bits are as mixed as any
}

namespace {
// Removes one entry from a locked shard, adjusts the totals and frees the entry; returns its answer (for the
// caller to release after the lock when it likes).
template <class Shard, class Entry>
AnswerPtr remove_locked(Shard& s, Entry& e, std::atomic<std::size_t>& entries,
                        std::atomic<std::uint64_t>& bytes) {
    s.index.erase(e.key());
    entries.fetch_sub(1, std::memory_order_relaxed);
    bytes.fetch_sub(e.footprint(), std::memory_order_relaxed);
    AnswerPtr answer = std::move(e.answer);
    s.lru.erase_and_dispose(s.lru.iterator_to(e), &Entry::destroy);
    s.update_tail();
    return answer;
}

// Until when an entry's links may be served: the earliest expiry minus the margin; a negative entry's
// (404, 502) only by its fresh_until.
SysClock::time_point links_deadline(const CachedAnswer& a, const CacheOptions& o) {
    return a.status() == 200 ? sub_sat(a.earliest_expiry(), clamp_seconds(o.expiry_margin))
                             : SysClock::time_point::max();
}
}  // namespace

LinkCache::Lookup LinkCache::get(std::string_view key, SysClock::time_point now) {
    const HashedKey hk{key, hash_bytes(key)};
    Shard& s = shard_for(hk.hash);
    bool expired = false;
    {
        std::lock_guard lk(s.mu);
        Entry* found = s.find(hk);
        if (!found) return {};
        Entry& e = *found;
        const bool links_valid = now < links_deadline(*e.answer, opts_);
        const bool fresh = links_valid && now < e.fresh_until;
        if (fresh || (links_valid && e.answer->status() == 200)) {
            // A use moves the entry to the front unless it is already among the newest 1/64 of the uses:
            // then a hit writes nothing shared (no list splice, no global clock), which keeps a hot key's
            // hits on several threads from fighting over cache lines.
            if (clock_.load(std::memory_order_relaxed) - e.last_use >
                entries_.load(std::memory_order_relaxed) / kBumpWindowDivisor) {
                s.to_front(e);
                e.last_use = clock_.fetch_add(1, std::memory_order_relaxed);
                s.update_tail();
            }
            return {e.answer, fresh};
        }
        expired = e.answer->status() == 200;
        remove_locked(s, e, entries_, bytes_);
    }
    if (expired) notify(events_.on_expired, 1);
    return {};
}

SysClock::duration fresh_lifetime(const CachedAnswer& a, SysClock::time_point now, const CacheOptions& o) {
    if (a.status() == 404 || a.status() == 502) return clamp_seconds(o.negative_ttl);  // negative entries
    if (a.status() != 200) return SysClock::duration::zero();
    const TimePoint valid_until = sub_sat(a.earliest_expiry(), clamp_seconds(o.expiry_margin));
    const TimePoint fresh_until = std::min(add_sat(now, clamp_seconds(o.ttl)), valid_until);
    return fresh_until > now ? fresh_until - now : SysClock::duration::zero();
}

bool LinkCache::put(std::string_view key, AnswerPtr answer, SysClock::time_point now,
                    SysClock::duration max_fresh) {
    const bool negative = answer && (answer->status() == 404 || answer->status() == 502);
    if (!answer || (answer->status() != 200 && !negative)) return false;

    const SysClock::duration life = std::min(fresh_lifetime(*answer, now, opts_), max_fresh);
    const SysClock::time_point fresh_until = add_sat(now, life);
    bool storable = life > SysClock::duration::zero();
    const std::size_t fp = answer->footprint(key.size());
    if (fp > opts_.max_bytes || key.size() > Entry::kMaxKey || opts_.max_entries == 0) storable = false;

    const auto over = [this] {
        return entries_.load(std::memory_order_relaxed) > opts_.max_entries ||
               bytes_.load(std::memory_order_relaxed) > opts_.max_bytes;
    };

    const HashedKey hk{key, hash_bytes(key)};
    Shard& own = shard_for(hk.hash);
    std::size_t evicted = 0;
    {
        std::lock_guard lk(own.mu);
        Entry* e = own.find(hk);
        if (!storable) {
            if (e) remove_locked(own, *e, entries_, bytes_);
            return false;
        }
        if (e) {
            bytes_.fetch_add(fp, std::memory_order_relaxed);
            bytes_.fetch_sub(e->footprint(), std::memory_order_relaxed);
            own.to_front(*e);
        } else {
            e = Entry::make(key);
            try {
                own.index.insert(e);
            } catch (...) {
                Entry::destroy(e);
                throw;
            }
            own.lru.push_front(*e);
            entries_.fetch_add(1, std::memory_order_relaxed);
            bytes_.fetch_add(fp, std::memory_order_relaxed);
        }
        e->answer = std::move(answer);
        e->fresh_until = fresh_until;
        e->last_use = clock_.fetch_add(1, std::memory_order_relaxed);
        own.update_tail();
    }
    // Evict in global least-recently-used order: every entry carries a use stamp from one process-wide
    // counter, and each shard's LRU tail is its oldest entry, so the oldest tail over all shards is the
    // globally least recently used entry. Never the entry just stored (it can only be the tail of its own
    // shard, which is then skipped). Only runs when over a bound; the evicted answers are released after
    // the shard lock.
    bool skip_own = false;
    while (over()) {
        Shard* victim = nullptr;
        std::uint64_t oldest = std::numeric_limits<std::uint64_t>::max();
        for (std::size_t i = 0; i < shards_.size(); ++i) {
            const std::uint64_t t = tail(i).load(std::memory_order_relaxed);
            if (t < oldest && !(skip_own && &tail(i) == own.tail_stamp)) {
                oldest = t;
                victim = shards_[i].get();
            }
        }
        if (!victim) break;
        AnswerPtr released;
        {
            std::lock_guard lk(victim->mu);
            if (victim->lru.empty()) continue;
            Entry& tail = victim->lru.back();
            if (victim == &own && tail.key() == key) {
                skip_own = true;
                continue;
            }
            released = remove_locked(*victim, tail, entries_, bytes_);
        }
        ++evicted;
    }
    notify(events_.on_evicted, evicted);
    return true;
}

bool LinkCache::erase(std::string_view key) {
    const HashedKey hk{key, hash_bytes(key)};
    Shard& s = shard_for(hk.hash);
    std::lock_guard lk(s.mu);
    Entry* e = s.find(hk);
    if (!e) return false;
    remove_locked(s, *e, entries_, bytes_);
    return true;
}

std::size_t LinkCache::clear() {
    std::size_t removed = 0;
    for (auto& sp : shards_) {
        Shard::List dead;
        {
            std::lock_guard lk(sp->mu);
            sp->index.clear();
            dead.swap(sp->lru);
            sp->update_tail();
            for (const Entry& e : dead) {
                entries_.fetch_sub(1, std::memory_order_relaxed);
                bytes_.fetch_sub(e.footprint(), std::memory_order_relaxed);
                ++removed;
            }
        }
        dead.clear_and_dispose(&Entry::destroy);  // the entries and answers are released outside the lock
    }
    return removed;
}

std::size_t LinkCache::entries() const {
    return entries_.load(std::memory_order_relaxed);
}
std::uint64_t LinkCache::bytes() const {
    return bytes_.load(std::memory_order_relaxed);
}

// ------------------------------------------------------------------------------------------- SingleFlight

struct SingleFlight::Waiter {
    explicit Waiter(const asio::any_io_executor& ex) : timer(ex) {}
    asio::steady_timer timer;  // on the waiter's own executor; async_wait/cancel under Flight::mu only
    bool woken = false;        // guarded by Flight::mu: the outcome is there for this waiter
};

struct SingleFlight::Flight {
    Flight(std::string_view k, std::size_t h) : key(k), hash(h) {}
    const std::string key;
    const std::size_t hash;  // hash_bytes(key)
    std::mutex mu;
    bool done = false;             // guarded by mu
    bool leader_fetching = false;  // guarded by mu: the leader fetches itself (counts as waiting)
    FetchPtr outcome;              // guarded by mu; set once, with done
    std::vector<std::shared_ptr<Waiter>> waiters;  // guarded by mu; those registered and not yet woken
};

// Completes a flight once: with the fetch's outcome, or with a null one when the fetch throws, or when the
// coroutine (or the function object co_spawn keeps) holding it is destroyed unfinished. Move-only, so that it
// lives in that function object itself (no allocation of its own).
struct SingleFlight::Finish {
    Finish(SingleFlight* s, std::shared_ptr<Flight> f) : self(s), flight(std::move(f)) {}
    Finish(Finish&& o) noexcept : self(o.self), flight(std::move(o.flight)) {}
    Finish& operator=(Finish&&) = delete;
    void operator()(FetchPtr outcome) {
        self->complete(flight, std::move(outcome));
        flight.reset();  // done (if complete() threw, the destructor completes with a null outcome)
    }
    ~Finish() {
        if (!flight) return;  // completed, or moved from
        try {
            self->complete(flight, nullptr);
        } catch (...) {  // only std::mutex::lock could throw; a destructor must not
        }
    }
    SingleFlight* self;
    std::shared_ptr<Flight> flight;
};

SingleFlight::SingleFlight(Options opts) : opts_(opts), maps_(std::make_unique<MapShard[]>(kMapShards)) {}

std::size_t SingleFlight::waiting() const {
    std::size_t n = 0;
    for (std::size_t i = 0; i < kMapShards; ++i) n += maps_[i].waiting.load(std::memory_order_relaxed);
    return n;
}

void SingleFlight::complete(const std::shared_ptr<Flight>& flight, FetchPtr outcome) {
    {
        MapShard& m = map_for(flight->hash);
        std::lock_guard lk(m.mu);
        auto it = m.flights.find(FlightKey{flight->key, flight->hash});
        if (it != m.flights.end() && it->second == flight) m.flights.erase(it);  // the next call starts anew
    }
    std::vector<std::shared_ptr<Waiter>> woken;
    {
        std::lock_guard lk(flight->mu);
        if (flight->done) return;
        flight->done = true;
        flight->outcome = std::move(outcome);
        for (auto& w : flight->waiters) {
            w->woken = true;
            try {
                w->timer.cancel();  // its completion is delivered on the waiter's own executor
            } catch (const boost::system::system_error&) {
                // the waiter then sees `woken` when its timer expires
            }
        }
        woken.swap(flight->waiters);
    }
}

SingleFlight::Lead SingleFlight::lead(std::string_view key, const std::function<FetchPtr()>& recheck) {
    Lead l;
    const std::size_t hash = hash_bytes(key);
    MapShard& m = map_for(hash);
    std::lock_guard lk(m.mu);
    if (m.flights.find(FlightKey{key, hash}) != m.flights.end()) return l;  // in flight: join through run()
    if (recheck) {
        if (FetchPtr landed = recheck()) {
            l.found_ = std::move(landed);
            return l;
        }
    }
    auto flight = std::make_shared<Flight>(key, hash);
    m.flights.emplace(FlightKey{flight->key, hash}, flight);
    {
        std::lock_guard fl(flight->mu);
        flight->leader_fetching = true;
    }
    m.waiting.fetch_add(1, std::memory_order_relaxed);
    l.self_ = this;
    l.flight_ = std::move(flight);
    return l;
}

void SingleFlight::Lead::finish(FetchPtr outcome) {
    if (!flight_) return;
    const std::shared_ptr<Flight> flight = std::move(flight_);
    struct Leave {  // the leader stops counting as waiting however complete() ends
        MapShard& shard;
        ~Leave() { shard.waiting.fetch_sub(1, std::memory_order_relaxed); }
    } leave{self_->map_for(flight->hash)};
    self_->complete(flight, std::move(outcome));
}

SingleFlight::Lead::~Lead() {
    if (!flight_) return;
    try {
        finish(nullptr);
    } catch (...) {  // only std::mutex::lock could throw; a destructor must not
    }
}

// `key` is read when the returned awaitable first runs, never after its first suspension (the Flight keeps
// its own copy): a caller co_awaits run() at once, with the key alive.
asio::awaitable<SingleFlight::Result> SingleFlight::run(
    std::string_view key, std::function<asio::awaitable<FetchPtr>()> fetch, std::function<FetchPtr()> recheck,
    std::optional<std::chrono::steady_clock::duration> fetch_within) {
    const asio::any_io_executor ex = co_await asio::this_coro::executor;
    std::shared_ptr<Waiter> me;  // not for a leader that fetches itself

    Result result;
    std::shared_ptr<Flight> flight;
    const std::size_t hash = hash_bytes(key);
    MapShard& m = map_for(hash);
    // A leader runs the fetch in its own coroutine when the fetch is known to end within its wait_timeout.
    const bool may_fetch_here = fetch_within && *fetch_within <= opts_.wait_timeout;
    bool fetch_here = false;  // this caller is the leader and runs the fetch in its own coroutine
    {
        std::lock_guard lk(m.mu);
        auto it = m.flights.find(FlightKey{key, hash});
        if (it == m.flights.end()) {
            if (recheck) {
                if (FetchPtr landed = recheck()) {
                    result.outcome = std::move(landed);
                    result.role = Role::waiter;
                    result.rechecked = true;
                    co_return result;
                }
            }
            flight = std::make_shared<Flight>(key, hash);
            m.flights.emplace(FlightKey{flight->key, hash}, flight);
            result.role = Role::leader;
            fetch_here = may_fetch_here;
        } else {
            flight = it->second;
            result.role = Role::waiter;
        }
        std::lock_guard fl(flight->mu);
        if (flight->done) {  // cannot happen while it is in the map; kept for safety
            result.outcome = flight->outcome;
            co_return result;
        }
        if (result.role == Role::waiter &&
            flight->waiters.size() + (flight->leader_fetching ? 1 : 0) >= opts_.max_waiters) {
            result.overflow = true;
            co_return result;
        }
        if (fetch_here) {
            flight->leader_fetching = true;
        } else {
            me = std::make_shared<Waiter>(ex);
            me->timer.expires_after(opts_.wait_timeout);
            flight->waiters.push_back(me);
        }
        m.waiting.fetch_add(1, std::memory_order_relaxed);
    }

    // Leaves the flight however this coroutine ends (returned, threw, or destroyed while suspended).
    struct Leave {
        MapShard& shard;
        std::shared_ptr<Flight> flight;
        std::shared_ptr<Waiter> me;
        ~Leave() {
            if (me) {
                std::lock_guard lk(flight->mu);
                if (!me->woken) std::erase(flight->waiters, me);
            }
            shard.waiting.fetch_sub(1, std::memory_order_relaxed);
        }
    } leave{m, flight, me};

    if (fetch_here) {
        // The fetch ends within this caller's wait_timeout (fetch_within): it runs right here, with no
        // coroutine of its own and no timer. The caller's cancellation is noted but not let through to it
        // (the fetch goes on for the others); a fetch destroyed unfinished (its io_context went away)
        // completes the flight with a null outcome, as a detached one does.
        Finish finish(this, flight);
        // Only a caller with a cancellation slot can be cancelled (sessions have none): then its
        // cancellation is noted and held back from the fetch by a filter, for the fetch's duration.
        const asio::cancellation_state entry_state = co_await asio::this_coro::cancellation_state;
        std::shared_ptr<std::atomic<bool>> cancelled;  // shared: the filter may outlive this frame
        if (entry_state.slot().is_connected()) {
            cancelled = std::make_shared<std::atomic<bool>>(false);
            // A named object, not a temporary in the co_await expression: see the GCC 12 note below.
            const auto note_cancellation = [cancelled](asio::cancellation_type t) {
                if (t != asio::cancellation_type::none) cancelled->store(true);
                return asio::cancellation_type::none;
            };
            co_await asio::this_coro::reset_cancellation_state(note_cancellation);
        }
        FetchPtr outcome;
        try {
            outcome = co_await fetch();
        } catch (...) {
            outcome = nullptr;
        }
        if (cancelled) co_await asio::this_coro::reset_cancellation_state();  // Asio's default again
        result.outcome = outcome;
        finish(std::move(outcome));
        if (cancelled && cancelled->load())  // as a cancelled waiter: the caller asked to stop
            throw boost::system::system_error(asio::error::operation_aborted, "single-flight fetch");
        co_return result;
    }

    if (result.role == Role::leader) {
        asio::co_spawn(
            ex,
            [finish = Finish(this, flight), fetch = std::move(fetch)]() mutable -> asio::awaitable<void> {
                FetchPtr outcome;
                try {
                    outcome = co_await fetch();
                } catch (...) {
                    outcome = nullptr;
                }
                finish(std::move(outcome));
            },
            asio::detached);
    }

    // Waits for the wake-up or the timeout. The initiation must be a named object: with a lambda temporary
    // inside the co_await expression GCC 12 corrupts the captured shared_ptrs' counts (use-after-free under
    // ASan; same symptom as chriskohlhoff/asio#1007).
    auto start_wait = [flight, me](auto handler) {
        std::unique_lock lk(flight->mu);
        if (!me->woken) {
            me->timer.async_wait(std::move(handler));
            return;
        }
        lk.unlock();
        auto hex = asio::get_associated_executor(handler, me->timer.get_executor());
        asio::post(hex, [h = std::move(handler)]() mutable { std::move(h)(boost::system::error_code{}); });
    };
    const auto token = asio::as_tuple(asio::use_awaitable);
    const std::tuple<boost::system::error_code> waited =
        co_await asio::async_initiate<decltype(token), void(boost::system::error_code)>(start_wait, token);
    const boost::system::error_code ec = std::get<0>(waited);

    bool woken;
    {
        std::lock_guard lk(flight->mu);
        woken = me->woken;
        if (woken) result.outcome = flight->outcome;
    }
    if (!woken) {
        if (ec == asio::error::operation_aborted)  // our caller was cancelled, not timed out
            throw boost::system::system_error(asio::error::operation_aborted, "single-flight wait");
        result.timed_out = true;
    }
    co_return result;
}

}  // namespace rdsgw
