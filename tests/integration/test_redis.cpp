// The shared cache tier (SharedCache) against a real redis-server. Several SharedCache instances in this one
// process stand for several gateway instances: each has its own Redis client (pool and subscriber).
#define BOOST_TEST_MODULE redis_shared_cache
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/test/unit_test.hpp>
#include <map>
#include <mutex>
#include <thread>

#include "harness.hpp"
#include "rdsgw/config.hpp"
#include "rdsgw/shared_cache.hpp"
#include "support/redis_server.hpp"

namespace rdsgw {  // for Boost.Test's messages
inline std::ostream& operator<<(std::ostream& o, L2Lookup::Kind k) {
    static const char* names[] = {"hit", "miss", "unavailable"};
    return o << names[static_cast<int>(k)];
}
inline std::ostream& operator<<(std::ostream& o, L2Acquire::Kind k) {
    static const char* names[] = {"leader", "value", "released", "timeout", "unavailable"};
    return o << names[static_cast<int>(k)];
}
}  // namespace rdsgw

using namespace rdsgw;
using namespace rdsgw::test;
namespace asio = boost::asio;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

template <class T>
T run_sync(asio::awaitable<T> a) {
    asio::io_context io;
    auto f = asio::co_spawn(io, std::move(a), asio::use_future);
    io.run();
    return f.get();
}

SealKey key(const std::string& id, unsigned char fill) {
    SealKey k;
    k.id = id;
    k.key.fill(fill);
    return k;
}

const std::string kLinkHost = "obs.cn-north-4.example.com";
const std::string kSignature = "SIGSECRET0123456789";
const std::string kFileName = "rds-backup-20240601.tar";
const std::string kCacheKey = kProject + "\n" + kBackup;

AnswerPtr sample(SysClock::time_point now, const std::string& tag = "") {
    const std::string body = R"({"list":[{"name":")" + kFileName + R"(","download_link":"https://)" +
                             kLinkHost + "/b/" + kFileName + "?AccessKeyId=AK&Signature=" + kSignature +
                             R"(","tag":")" + tag + R"("}]})";
    return CachedAnswer::make({.status = 200,
                               .body = body,
                               .upstream_request_id = "up-req-1",
                               .earliest_expiry = now + 1h,
                               .stored_at = now});
}

AnswerPtr not_found(SysClock::time_point now) {
    return CachedAnswer::make({.status = 404,
                               .body = R"({"error_code":"DBS.200019","error_msg":"backup not found"})",
                               .stored_at = now});
}

// One "gateway instance": a SharedCache over its own client, with what it reported.
struct Instance {
    std::mutex mu;
    std::map<std::string, int> events;  // l2_hit, l2_miss, l2_decrypt_error, and "op <label> <result>"
    std::vector<std::optional<std::string>> invalidations;
    std::unique_ptr<SharedCache> cache;

    Instance(const std::string& address, std::vector<SealKey> keys, SharedCacheOptions so = {},
             RedisOptions ro = {}) {
        ro.address = address;
        if (ro.op_timeout == RedisOptions{}.op_timeout) ro.op_timeout = 2000ms;  // the machine may be busy
        ro.reconnect_base = 10ms;
        ro.reconnect_max = 200ms;
        ro.subscriber_ping = 200ms;
        RedisEvents ev;
        ev.on_operation = [this](std::string_view op, std::string_view result, double) {
            count("op " + std::string(op) + " " + std::string(result));
        };
        cache = std::make_unique<SharedCache>(std::make_unique<RedisClient>(ro, ev), Sealer(std::move(keys)),
                                              so, [this](std::string_view e) { count(std::string(e)); });
        cache->on_invalidate([this](std::optional<std::string> k) {
            std::lock_guard lk(mu);
            invalidations.push_back(std::move(k));
        });
    }
    void count(const std::string& what) {
        std::lock_guard lk(mu);
        ++events[what];
    }
    int seen(const std::string& what) {
        std::lock_guard lk(mu);
        return events.count(what) ? events[what] : 0;
    }
    bool invalidated(const std::optional<std::string>& k) {
        std::lock_guard lk(mu);
        return std::find(invalidations.begin(), invalidations.end(), k) != invalidations.end();
    }
    bool ready() { return cache->client().status().up && cache->client().subscribed(); }

    L2Lookup get(const std::string& k) { return run_sync(cache->get(k, SysClock::now())); }
    bool put(const std::string& k, AnswerPtr a, SysClock::duration ttl) {
        return run_sync(cache->put(k, a, ttl));
    }
};

struct Tally {
    int leaders = 0, values = 0, released = 0, other = 0, took_over = 0;
    std::string bodies_seen;
};

// One caller on an L1 miss: lead (fetch = `answer`, then store) or take what lands.
asio::awaitable<void> contend(SharedCache& c, std::string k, AnswerPtr answer, bool store, Tally& t) {
    L2Acquire r = co_await c.acquire_or_wait(k, steady::now() + 20s);
    switch (r.kind) {
        case L2Acquire::Kind::leader:
            ++t.leaders;
            t.took_over += r.took_over ? 1 : 0;
            if (store) co_await c.put(k, answer, 30s);
            break;
        case L2Acquire::Kind::value:
            ++t.values;
            if (r.answer->body() != answer->body()) t.bodies_seen += "wrong body;";
            break;
        case L2Acquire::Kind::released:
            ++t.released;
            break;
        default:
            ++t.other;
    }
}

// Instance `b` waiting, on a thread of its own, for the lock another instance holds on kCacheKey (20 s at
// most); join() gives what the wait came to.
struct LockWaiter {
    explicit LockWaiter(Instance& b) {
        asio::co_spawn(
            io,
            [this, &b]() -> asio::awaitable<void> {
                got = co_await b.cache->acquire_or_wait(kCacheKey, steady::now() + 20s);
            },
            asio::detached);
        thread = std::thread([this] { io.run(); });
    }
    ~LockWaiter() {
        if (!thread.joinable()) return;
        io.stop();  // a failed check left it waiting
        thread.join();
    }
    L2Acquire join() {
        thread.join();
        return got;
    }
    asio::io_context io;
    L2Acquire got;
    std::thread thread;
};

}  // namespace

BOOST_AUTO_TEST_CASE(put_get_with_link_bounded_ttl_and_negative_entries) {
    RedisServer srv;
    Instance a(srv.address(), {key("k1", 1)});
    const auto now = SysClock::now();
    BOOST_TEST(a.get(kCacheKey).kind == L2Lookup::Kind::miss);
    BOOST_TEST(a.seen("l2_miss") == 1);

    BOOST_REQUIRE(a.put(kCacheKey, sample(now), 3s));
    L2Lookup hit = a.get(kCacheKey);
    BOOST_REQUIRE(hit.kind == L2Lookup::Kind::hit);
    BOOST_TEST(hit.answer->body() == sample(now)->body());
    BOOST_TEST(hit.answer->upstream_request_id() == "up-req-1");
    BOOST_TEST(to_ms(hit.answer->stored_at().time_since_epoch()) ==
               to_ms(now.time_since_epoch()));  // ms kept
    BOOST_TEST(to_ms(hit.remaining) > 0);
    BOOST_TEST(to_ms(hit.remaining) <= 3000);
    BOOST_TEST(a.seen("l2_hit") == 1);
    const auto pttl = srv.query({"PTTL", a.cache->value_key(kCacheKey)}).integer;
    BOOST_TEST(pttl > 0);
    BOOST_TEST(pttl <= 3000);

    const std::string missing = kProject + "\nmissing";
    BOOST_REQUIRE(a.put(missing, not_found(now), 1s));
    L2Lookup neg = a.get(missing);
    BOOST_REQUIRE(neg.kind == L2Lookup::Kind::hit);
    BOOST_TEST(neg.answer->status() == 404u);

    // Links within the margin: a miss, whatever Redis's TTL says.
    const AnswerPtr base = sample(now);  // fields() views its bytes: keep it alive
    auto soon_fields = base->fields();
    soon_fields.earliest_expiry = now + 30s;  // the default margin is 60 s
    auto soon = CachedAnswer::make(soon_fields);
    const std::string soon_key = kProject + "\nsoon";
    BOOST_REQUIRE(a.put(soon_key, soon, 10s));
    BOOST_TEST(a.get(soon_key).kind == L2Lookup::Kind::miss);

    BOOST_TEST(!a.put(kCacheKey, sample(now), 0s));  // nothing to store
    // The entries expire with their PX.
    BOOST_TEST(eventually([&] { return a.get(missing).kind == L2Lookup::Kind::miss; }, 10s));
    BOOST_TEST(eventually([&] { return a.get(kCacheKey).kind == L2Lookup::Kind::miss; }, 10s));
}

BOOST_AUTO_TEST_CASE(raw_values_show_no_link_token_or_name) {
    RedisServerOptions so;
    so.extra_args = {"--requirepass", "admin-pw", "--user", "gw", "on", ">gw-pw", "~*", "&*", "+@all"};
    so.admin_password = "admin-pw";
    RedisServer srv(so);
    RedisOptions ro;
    ro.user = "gw";
    ro.password = "gw-pw";
    ro.db = 2;
    Instance a(srv.address(), {key("k1", 1)}, {}, ro);
    const auto now = SysClock::now();
    BOOST_REQUIRE(a.put(kCacheKey, sample(now), 30s));
    BOOST_REQUIRE(a.put(kProject + "\nother", not_found(now), 30s));
    BOOST_REQUIRE(a.get(kCacheKey).kind == L2Lookup::Kind::hit);

    const auto values = srv.raw_values(2);
    BOOST_TEST(values.size() == 2u);
    BOOST_TEST(srv.keys(0).empty());  // SELECT 2 took effect
    for (const auto& v : values) {
        for (const std::string& secret : {kLinkHost, kSignature, kFileName, std::string("download_link"),
                                          std::string("backup not found"), kProject, kBackup})
            BOOST_TEST(v.find(secret) == std::string::npos, "a raw value shows " << secret);
    }
    for (const auto& k : srv.keys(2)) {
        BOOST_TEST(k.rfind("rdsgw:{", 0) == 0, k);
        BOOST_TEST(k.find(kProject) == std::string::npos);
        BOOST_TEST(k.find(kBackup) == std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(wrong_key_is_a_counted_miss_and_keys_rotate) {
    RedisServer srv;
    Instance old_only(srv.address(), {key("k1", 1)});
    Instance new_only(srv.address(), {key("k2", 2)});
    Instance rotated(srv.address(), {key("k2", 2), key("k1", 1)});
    const auto now = SysClock::now();
    BOOST_REQUIRE(old_only.put(kCacheKey, sample(now, "by-k1"), 30s));

    BOOST_TEST(new_only.get(kCacheKey).kind == L2Lookup::Kind::miss);  // a miss, not an error
    BOOST_TEST(new_only.seen("l2_decrypt_error") == 1);
    L2Lookup r = rotated.get(kCacheKey);
    BOOST_REQUIRE(r.kind == L2Lookup::Kind::hit);  // k1 is still listed
    BOOST_TEST(r.answer->body() == sample(now, "by-k1")->body());

    BOOST_REQUIRE(rotated.put(kCacheKey, sample(now, "by-k2"), 30s));  // the first key seals
    BOOST_TEST(old_only.get(kCacheKey).kind == L2Lookup::Kind::miss);
    BOOST_TEST(old_only.seen("l2_decrypt_error") == 1);
    BOOST_TEST(new_only.get(kCacheKey).kind == L2Lookup::Kind::hit);

    // A value moved under another cache key does not open there (the cache key is the associated data).
    const std::string other = kProject + "\nother";
    const std::string raw = srv.query({"GET", rotated.cache->value_key(kCacheKey)}).str;
    BOOST_REQUIRE(srv.query({"SET", rotated.cache->value_key(other), raw, "PX", "30000"}).ok());
    BOOST_TEST(rotated.get(other).kind == L2Lookup::Kind::miss);
    BOOST_TEST(rotated.seen("l2_decrypt_error") == 1);
}

BOOST_AUTO_TEST_CASE(a_cold_key_has_exactly_one_leader_across_instances) {
    RedisServer srv;
    std::vector<std::unique_ptr<Instance>> inst;
    for (int i = 0; i < 3; ++i)
        inst.push_back(std::make_unique<Instance>(srv.address(), std::vector{key("k1", 1)}));
    for (auto& i : inst) BOOST_REQUIRE(eventually([&] { return i->ready(); }));
    const AnswerPtr answer = sample(SysClock::now());
    Tally t;
    asio::io_context io;
    for (auto& i : inst)
        for (int n = 0; n < 5; ++n)
            asio::co_spawn(io, contend(*i->cache, kCacheKey, answer, true, t), asio::detached);
    io.run();
    BOOST_TEST(t.leaders == 1);
    BOOST_TEST(t.values == 14);
    BOOST_TEST(t.other + t.released == 0);
    BOOST_TEST(t.bodies_seen.empty());
    BOOST_TEST(srv.query({"EXISTS", inst[0]->cache->lock_key(kCacheKey)}).integer == 0);  // released by put
}

BOOST_AUTO_TEST_CASE(a_dead_leaders_lock_expires_and_exactly_one_waiter_takes_over) {
    RedisServer srv;
    SharedCacheOptions so;
    so.lock_ttl = 500ms;
    std::vector<std::unique_ptr<Instance>> inst;
    for (int i = 0; i < 3; ++i)
        inst.push_back(std::make_unique<Instance>(srv.address(), std::vector{key("k1", 1)}, so));
    for (auto& i : inst) BOOST_REQUIRE(eventually([&] { return i->ready(); }));
    const AnswerPtr answer = sample(SysClock::now());

    const auto t0 = steady::now();
    L2Acquire dead = run_sync(inst[0]->cache->acquire_or_wait(kCacheKey, steady::now() + 5s));
    BOOST_REQUIRE(dead.kind == L2Acquire::Kind::leader);  // ...and it never stores nor releases
    Tally t;
    asio::io_context io;
    for (int i = 1; i < 3; ++i)
        for (int n = 0; n < 4; ++n)
            asio::co_spawn(io, contend(*inst[i]->cache, kCacheKey, answer, true, t), asio::detached);
    io.run();
    BOOST_TEST(t.leaders == 1);
    BOOST_TEST(t.took_over == 1);
    BOOST_TEST(t.values == 7);
    BOOST_TEST(t.bodies_seen.empty());
    BOOST_TEST(to_ms(steady::now() - t0) >= 400);  // nobody took over before the lock expired
    // Waiters woke on events, not by polling: a few acquire scripts each, not one per millisecond.
    const int scripts = inst[1]->seen("op l2_lock ok") + inst[2]->seen("op l2_lock ok");
    BOOST_TEST(scripts <= 8 * 5, scripts << " acquire scripts for 8 waiters");
}

BOOST_AUTO_TEST_CASE(a_released_lock_sends_waiters_to_fetch_themselves) {
    RedisServer srv;
    Instance a(srv.address(), {key("k1", 1)}), b(srv.address(), {key("k1", 1)});
    BOOST_REQUIRE(eventually([&] { return a.ready() && b.ready(); }));
    BOOST_REQUIRE(run_sync(a.cache->acquire_or_wait(kCacheKey, steady::now() + 5s)).kind ==
                  L2Acquire::Kind::leader);
    LockWaiter waiter(b);
    // Release once b waits (its acquire script ran and found the lock held).
    BOOST_REQUIRE(eventually([&] { return b.seen("op l2_lock ok") >= 1; }));
    const auto t0 = steady::now();
    run_sync(a.cache->release(kCacheKey));
    const L2Acquire got = waiter.join();
    BOOST_TEST((got.kind == L2Acquire::Kind::released));
    BOOST_TEST(to_ms(steady::now() - t0) < 5000);  // woken by the message, long before the 10 s lock TTL
    BOOST_TEST(srv.query({"EXISTS", a.cache->lock_key(kCacheKey)}).integer == 0);
}

// The leader's store fails (Redis refuses the write): its lock is released at once, so the other instances
// fetch themselves instead of waiting for the lock (60 s here) or their deadline (20 s: "timeout").
BOOST_AUTO_TEST_CASE(a_failed_store_releases_the_lock) {
    RedisServer srv;
    SharedCacheOptions so;
    so.lock_ttl = 60s;
    Instance a(srv.address(), {key("k1", 1)}, so), b(srv.address(), {key("k1", 1)}, so);
    BOOST_REQUIRE(eventually([&] { return a.ready() && b.ready(); }));
    BOOST_REQUIRE(run_sync(a.cache->acquire_or_wait(kCacheKey, steady::now() + 5s)).kind ==
                  L2Acquire::Kind::leader);
    LockWaiter waiter(b);
    BOOST_REQUIRE(eventually([&] { return b.seen("op l2_lock ok") >= 1; }));  // b waits on a's lock
    BOOST_REQUIRE(srv.query({"CONFIG", "SET", "maxmemory", "1"}).ok());       // the store will be refused
    BOOST_TEST(!a.put(kCacheKey, sample(SysClock::now()), 30s));
    const L2Acquire got = waiter.join();
    BOOST_TEST(a.seen("op l2_put error") == 1);
    BOOST_TEST(a.seen("op l2_release ok") == 1);
    BOOST_TEST((got.kind == L2Acquire::Kind::released));
    BOOST_TEST(srv.query({"EXISTS", a.cache->lock_key(kCacheKey)}).integer == 0);
}

BOOST_AUTO_TEST_CASE(purges_reach_every_instance) {
    RedisServer srv;
    std::vector<std::unique_ptr<Instance>> inst;
    for (int i = 0; i < 3; ++i)
        inst.push_back(std::make_unique<Instance>(srv.address(), std::vector{key("k1", 1)}));
    SharedCacheOptions other_prefix;
    other_prefix.key_prefix = "other:";
    Instance outsider(srv.address(), {key("k1", 1)}, other_prefix);
    for (auto& i : inst) BOOST_REQUIRE(eventually([&] { return i->ready(); }));
    const auto now = SysClock::now();
    const std::string x = kProject + "\nx", y = kProject + "\ny";
    BOOST_REQUIRE(inst[0]->put(x, sample(now), 30s));
    BOOST_REQUIRE(inst[0]->put(y, sample(now), 30s));
    BOOST_REQUIRE(outsider.put(y, sample(now), 30s));

    auto removed = run_sync(inst[1]->cache->purge(x, steady::now() + 2s));
    BOOST_TEST(removed.value_or(99) == 1u);
    for (auto& i : inst) BOOST_TEST(eventually([&] { return i->invalidated(x); }));
    BOOST_TEST(inst[2]->get(x).kind == L2Lookup::Kind::miss);
    BOOST_TEST(inst[2]->get(y).kind == L2Lookup::Kind::hit);

    removed = run_sync(inst[2]->cache->purge_all(steady::now() + 2s));
    BOOST_TEST(removed.value_or(99) == 1u);
    for (auto& i : inst) BOOST_TEST(eventually([&] { return i->invalidated(std::nullopt); }));
    BOOST_TEST(inst[0]->get(y).kind == L2Lookup::Kind::miss);
    BOOST_TEST(outsider.get(y).kind == L2Lookup::Kind::hit);  // another prefix is another deployment
    BOOST_TEST(!outsider.invalidated(std::nullopt));
}

BOOST_AUTO_TEST_CASE(purges_missed_while_unsubscribed_drop_all_of_l1) {
    RedisServer srv;
    Instance a(srv.address(), {key("k1", 1)});
    BOOST_REQUIRE(eventually([&] { return a.ready(); }));
    BOOST_REQUIRE(eventually([&] { return a.seen("op l2_purge_gen ok") >= 1; }));  // it knows the count
    // A purge whose message this instance never saw: the counter moved while its subscriber was away.
    BOOST_REQUIRE(srv.query({"INCR", "rdsgw:purge_gen"}).ok());
    BOOST_REQUIRE(srv.query({"CLIENT", "KILL", "TYPE", "pubsub"}).integer >= 1);
    BOOST_TEST(eventually([&] { return a.invalidated(std::nullopt); }, 10s));
}

BOOST_AUTO_TEST_CASE(shared_rate_limit_holds_across_three_instances) {
    RedisServer srv;
    std::vector<std::unique_ptr<Instance>> inst;
    for (int i = 0; i < 3; ++i)
        inst.push_back(std::make_unique<Instance>(srv.address(), std::vector{key("k1", 1)}));
    const double rate = 10, burst = 5;
    std::vector<int> allowed(3, 0);
    int unanswered = 0;
    const auto start = steady::now();
    const auto stop = start + 3s;
    auto worker = [&](int i) -> asio::awaitable<void> {
        asio::steady_timer pause(co_await asio::this_coro::executor);
        while (steady::now() < stop) {
            auto r = co_await inst[i]->cache->rate_acquire("caller-a", rate, burst);
            if (!r) {
                ++unanswered;
                continue;
            }
            if (*r == 0) {
                ++allowed[i];
                continue;
            }
            BOOST_TEST(*r <= 1.0 / rate + 0.01);  // the next slot is at most one interval away
            pause.expires_at(std::min(stop, steady::now() + std::chrono::microseconds(long(*r * 1e6))));
            co_await pause.async_wait(asio::use_awaitable);  // pacing a load generator, not synchronization
        }
    };
    asio::io_context io;
    for (int i = 0; i < 3; ++i) asio::co_spawn(io, worker(i), asio::detached);
    io.run();
    const double seconds = std::chrono::duration<double>(steady::now() - start).count();
    const int total = allowed[0] + allowed[1] + allowed[2];
    BOOST_TEST_MESSAGE("allowed " << total << " in " << seconds << " s (" << allowed[0] << "/" << allowed[1]
                                  << "/" << allowed[2] << ")");
    BOOST_TEST(unanswered == 0);
    BOOST_TEST(total <= burst + rate * seconds + 1);  // never more than the limit, across all instances
    BOOST_TEST(total >= rate * 3 * 0.5);              // and about the limit (generous: busy machine)
    // Every instance draws on the shared budget: asked alone, each is admitted once the bucket has refilled
    // (the bucket is not fair between concurrent instances: under load one of the three may get nothing
    // in the contended phase above, which is not what this test is about).
    for (int i = 0; i < 3; ++i) {
        bool admitted = false;
        for (int attempt = 0; attempt < 50 && !admitted; ++attempt) {
            const auto r = run_sync(inst[i]->cache->rate_acquire("caller-a", rate, burst));
            BOOST_TEST_REQUIRE(r.has_value());
            if (*r == 0) {
                admitted = true;
                break;
            }
            BOOST_TEST(*r <= 1.0 / rate + 0.01);
            std::this_thread::sleep_for(std::chrono::microseconds(long(*r * 1e6)));  // the wait it was told
        }
        BOOST_TEST(admitted, "instance " << i << " admitted alone");
    }
    // Another caller has its own budget.
    BOOST_TEST(run_sync(inst[0]->cache->rate_acquire("caller-b", rate, burst)).value_or(-1) == 0.0);
    // Unlimited callers never ask Redis.
    BOOST_TEST(run_sync(inst[0]->cache->rate_acquire("caller-c", 0, 0)).value_or(-1) == 0.0);
}

BOOST_AUTO_TEST_CASE(redis_down_answers_unavailable_fast_and_l2_resumes) {
    RedisServer srv;
    RedisOptions ro;
    ro.op_timeout = 100ms;
    ro.connect_timeout = 300ms;
    ro.breaker_failures = 3;
    ro.breaker_open = 300ms;
    Instance a(srv.address(), {key("k1", 1)}, {}, ro);
    BOOST_REQUIRE(eventually([&] { return a.ready(); }));
    const auto now = SysClock::now();
    BOOST_REQUIRE(a.put(kCacheKey, sample(now), 30s));

    srv.kill9();
    for (int i = 0; i < 10; ++i) {
        const auto t0 = steady::now();
        BOOST_TEST((a.get(kCacheKey).kind == L2Lookup::Kind::unavailable));
        BOOST_TEST(!a.put(kCacheKey, sample(now), 30s));
        BOOST_TEST((run_sync(a.cache->acquire_or_wait(kCacheKey, steady::now() + 10s)).kind ==
                    L2Acquire::Kind::unavailable));
        BOOST_TEST(!run_sync(a.cache->rate_acquire("caller-a", 10, 5)).has_value());
        BOOST_TEST(!run_sync(a.cache->purge(kCacheKey, steady::now() + 200ms)).has_value());
        BOOST_TEST(to_ms(steady::now() - t0) < 3000,
                   "five operations took " << to_ms(steady::now() - t0) << " ms");
    }
    BOOST_TEST(!a.cache->client().status().up);

    srv.restart();  // empty: no persistence
    BOOST_TEST(eventually([&] { return a.get(kCacheKey).kind == L2Lookup::Kind::miss; }, 10s));
    BOOST_TEST(a.put(kCacheKey, sample(now), 30s));
    BOOST_TEST(a.get(kCacheKey).kind == L2Lookup::Kind::hit);
    BOOST_TEST(eventually([&] { return a.ready(); }, 10s));
}

BOOST_AUTO_TEST_CASE(redis_killed_under_load_never_fails_or_stalls_a_caller) {
    RedisServer srv;
    RedisOptions ro;
    ro.op_timeout = 100ms;
    ro.connect_timeout = 300ms;
    ro.breaker_failures = 3;
    ro.breaker_open = 300ms;
    Instance a(srv.address(), {key("k1", 1)}, {}, ro);
    BOOST_REQUIRE(eventually([&] { return a.ready(); }));
    std::atomic<bool> stop{false};
    std::atomic<int> exceptions{0}, hits{0}, unavailable{0};
    std::atomic<long long> slowest_ms{0};
    auto load = [&](int n) -> asio::awaitable<void> {
        for (int i = 0; !stop; ++i) {
            const std::string k = kProject + "\nload" + std::to_string((i * 7 + n) % 50);
            const auto t0 = steady::now();
            try {
                L2Lookup r = co_await a.cache->get(k, SysClock::now());
                if (r.kind == L2Lookup::Kind::hit) ++hits;
                if (r.kind == L2Lookup::Kind::unavailable) ++unavailable;
                if (r.kind == L2Lookup::Kind::miss) co_await a.cache->put(k, sample(SysClock::now()), 30s);
            } catch (...) {
                ++exceptions;
            }
            const long long ms = to_ms(steady::now() - t0);
            if (ms > slowest_ms) slowest_ms = ms;
        }
    };
    asio::io_context io;
    for (int n = 0; n < 4; ++n) asio::co_spawn(io, load(n), asio::detached);
    std::thread runner([&] { io.run(); });
    BOOST_REQUIRE(eventually([&] { return hits > 50; }, 10s));
    srv.kill9();
    BOOST_TEST(eventually([&] { return unavailable > 20; }, 10s));
    srv.restart();
    const int hits_before = hits;
    BOOST_TEST(eventually([&] { return hits > hits_before + 50; }, 15s));  // L2 resumes
    stop = true;
    runner.join();
    BOOST_TEST(exceptions == 0);
    BOOST_TEST(slowest_ms < 3000, "slowest L2 operation: " << slowest_ms << " ms");
}

BOOST_AUTO_TEST_CASE(built_from_config_with_secrets_from_env_and_file) {
    RedisServerOptions so;
    so.extra_args = {"--requirepass", "cfg-redis-pw"};
    so.admin_password = "cfg-redis-pw";
    RedisServer srv(so);
    TempDir dir;
    const std::string pw_file = dir.write("redis-pw", "cfg-redis-pw\n");
    ::setenv("RDSGW_TEST_L2_K2", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", 1);  // base64
    const std::string k1_file = dir.write("k1", std::string(64, 'a'));                // hex
    auto config = [&](const std::string& k2_env) {
        Config cfg;
        std::vector<std::string> errors;
        const std::string text =
            R"({"callers": {"required": false}, "redis": {"enabled": true, "address": ")" + srv.address() +
            R"(", "password": {"file": ")" + pw_file + R"("}, "db": 4,
            "key_prefix": "cfg:", "op_timeout_ms": 2000, "encryption_keys": [
              {"id": "k2", "key": {"env": ")" +
            k2_env + R"("}}, {"id": "k1", "key": {"file": ")" + k1_file + R"("}}]}})";
        BOOST_REQUIRE_MESSAGE(parse_config(text, cfg, errors), (errors.empty() ? "" : errors.front()));
        return cfg;
    };
    std::string why;
    std::atomic<int> events{0}, ops{0}, ups{0};
    RedisEvents ev;
    ev.on_operation = [&](std::string_view, std::string_view, double) { ++ops; };
    ev.on_state = [&](bool up) { ups += up ? 1 : 0; };
    auto l2 = make_shared_cache(
        config("RDSGW_TEST_L2_K2"), ev, [&](std::string_view) { ++events; }, why);
    BOOST_REQUIRE_MESSAGE(l2, why);
    BOOST_REQUIRE(run_sync(l2->put(kCacheKey, sample(SysClock::now()), 30s)));
    BOOST_TEST(run_sync(l2->get(kCacheKey, SysClock::now())).kind == L2Lookup::Kind::hit);
    BOOST_TEST(srv.query({"EXISTS", l2->value_key(kCacheKey)}, 4).integer == 1);
    BOOST_TEST(l2->value_key(kCacheKey).rfind("cfg:{", 0) == 0);
    const std::string raw = srv.query({"GET", l2->value_key(kCacheKey)}, 4).str;
    BOOST_TEST(raw.substr(1, 3) == std::string("\x02k2", 3));  // sealed with the first key
    BOOST_TEST(events >= 1);
    BOOST_TEST(ops >= 2);
    BOOST_TEST(ups >= 1);

    // A secret that cannot be read, or is not a 32-byte key: refused, naming the key and not the value.
    BOOST_TEST(!make_shared_cache(config("RDSGW_TEST_L2_UNSET"), {}, {}, why));
    BOOST_TEST(why.find("redis.encryption_keys[0].key") != std::string::npos, why);
    ::setenv("RDSGW_TEST_L2_SHORT", "c2hvcnQta2V5LXZhbHVl", 1);
    BOOST_TEST(!make_shared_cache(config("RDSGW_TEST_L2_SHORT"), {}, {}, why));
    BOOST_TEST(why.find("32 bytes") != std::string::npos, why);
    BOOST_TEST(why.find("c2hvcnQta2V5LXZhbHVl") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(redis_full_refuses_writes_but_reads_go_on) {
    RedisServer srv;
    Instance a(srv.address(), {key("k1", 1)});
    BOOST_REQUIRE(eventually([&] { return a.ready(); }));
    const auto now = SysClock::now();
    BOOST_REQUIRE(a.put(kCacheKey, sample(now), 30s));
    BOOST_REQUIRE(srv.query({"CONFIG", "SET", "maxmemory", "1"}).ok());  // full, and nothing may be evicted
    for (int i = 0; i < 10; ++i)
        BOOST_TEST(!a.put(kProject + "\nfull" + std::to_string(i), sample(now), 30s));
    BOOST_TEST(a.seen("op l2_put error") == 10);
    BOOST_TEST(a.get(kCacheKey).kind == L2Lookup::Kind::hit);  // what is there still serves
    BOOST_TEST(a.cache->client().status().up);                 // an error answer is not an outage
    BOOST_TEST(!run_sync(a.cache->rate_acquire("caller-a", 10, 5)).has_value());  // -> the local bucket
}
