// The link cache and single-flight end to end (issue 6), against rds-mock's request counters.
#define BOOST_TEST_MODULE cache_e2e
#include <sys/resource.h>
#include <atomic>

#include <barrier>
#include <thread>

#include "harness.hpp"
#include "rdsgw/timefmt.hpp"

using namespace rdsgw::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {
// The gateway of these tests: access log off, plus `patch`.
GatewayConfig config(const MockServer& mock, const Pki& pki, std::string_view patch = "{}") {
    return GatewayConfig(mock, pki).access_log("off").patch(patch);
}
std::string id(int i) {
    char b[40];
    std::snprintf(b, sizeof b, "ck%08d", i);
    return b;
}
// Raises the soft limit on open files: a thousand concurrent clients need more than the default 1024.
void raise_nofile() {
    rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 8192) {
        rl.rlim_cur = std::min<rlim_t>(rl.rlim_max, 8192);
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}
}  // namespace

BOOST_AUTO_TEST_CASE(thousand_concurrent_cold_requests_one_upstream_call) {
    raise_nofile();
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"latency_ms":300})");
    auto gw = config(mock, pki).start();
    const int n = 1000;
    std::vector<std::optional<HttpClient>> clients(n);
    for (auto& c : clients) c.emplace(gw.port);  // all connected before the burst
    std::vector<std::string> bodies(n);
    std::vector<unsigned> status(n);
    std::vector<std::string> cache(n);
    std::barrier start(n);  // n-1 clients and the one that hangs up
    std::vector<std::thread> ts;
    // The first caller hangs up right after sending its request.
    std::thread early([&] {
        start.arrive_and_wait();
        send_raw(gw.port,
                 "GET " + backup_path() + " HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + kApiKey + "\r\n\r\n", 1ms);
    });
    for (int i = 0; i < n - 1; ++i) {
        ts.emplace_back([&, i] {
            start.arrive_and_wait();
            auto r = clients[i]->request("GET", backup_path(), with_key());
            status[i] = r.status;
            bodies[i] = r.body;
            cache[i] = r.header("x-cache");
        });
    }
    early.join();
    for (auto& t : ts) t.join();
    BOOST_TEST(mock.stat("rds_requests") == 1);
    int miss = 0, coalesced = 0, hit = 0;
    for (int i = 0; i < n - 1; ++i) {
        BOOST_TEST(status[i] == 200u);
        BOOST_TEST(bodies[i] == bodies[0]);
        miss += cache[i] == "MISS";
        coalesced += cache[i] == "COALESCED";
        hit += cache[i] == "HIT";
    }
    BOOST_TEST_MESSAGE("miss=" << miss << " coalesced=" << coalesced << " hit=" << hit);
    // Callers whose request arrived after the fetch landed are HITs (how many depends on the machine's
    // speed); every other caller shared the one fetch.
    BOOST_TEST(miss + coalesced + hit == n - 1);
    BOOST_TEST(miss <= 1);
    BOOST_TEST(coalesced >= 1);
    // The fetch landed in the cache even if its first caller was the one that hung up.
    auto r = gw.get(backup_path(), with_key());
    BOOST_TEST(r.header("x-cache") == "HIT");
    BOOST_TEST(mock.stat("rds_requests") == 1);
}

BOOST_AUTO_TEST_CASE(leader_hangs_up_fetch_still_fills_cache) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"latency_ms":300})");
    auto gw = config(mock, pki).start();
    send_raw(gw.port, "GET " + backup_path() + " HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + kApiKey + "\r\n\r\n",
             20ms);
    // Wait for the upstream call the vanished caller started to be answered (the mock's event).
    BOOST_TEST_REQUIRE(mock.wait_for("rds_ok", 1));
    auto r = gw.get(backup_path(), with_key());
    BOOST_TEST(r.status == 200u);
    BOOST_TEST((r.header("x-cache") == "HIT" || r.header("x-cache") == "COALESCED"));
    BOOST_TEST(mock.stat("rds_requests") == 1);
}

BOOST_AUTO_TEST_CASE(never_a_link_closer_to_expiry_than_the_margin) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"link_lifetime_s":4})");
    auto gw = config(mock, pki, R"({"cache":{"ttl_s":300,"expiry_margin_s":2}})").start();
    HttpClient c(gw.port);
    auto t0 = std::chrono::steady_clock::now();
    int answers = 0, hits = 0;
    double worst = 1e9;
    while (std::chrono::steady_clock::now() - t0 < 7s) {
        auto r = c.request("GET", backup_path(), with_key());
        auto now = std::chrono::system_clock::now();
        BOOST_REQUIRE(r.status == 200u);
        ++answers;
        hits += r.header("x-cache") == "HIT";
        auto body = r.json();
        for (auto& f : body.at("files").as_array()) {
            auto t = rdsgw::parse_rds_time(f.at("link_expired_time").as_string());
            BOOST_REQUIRE(t.has_value());
            double left =
                std::chrono::duration<double>(std::chrono::system_clock::time_point(t->utc) - now).count();
            worst = std::min(worst, left);
        }
        std::this_thread::sleep_for(5ms);  // pacing of the client loop
    }
    BOOST_TEST_MESSAGE("answers=" << answers << " hits=" << hits << " upstream=" << mock.stat("rds_requests")
                                  << " closest link expiry seen=" << worst << " s");
    BOOST_TEST(worst > 1.5);                     // margin 2 s (minus transit on a busy machine)
    BOOST_TEST(mock.stat("rds_requests") >= 3);  // refetched about every 2 s
    BOOST_TEST(hits > answers / 2);
}

BOOST_AUTO_TEST_CASE(eviction_by_entries_and_bytes) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    {
        auto gw = config(mock, pki, R"({"cache":{"max_entries":3}})").start();
        for (int i = 0; i < 5; ++i)
            BOOST_TEST(gw.get(backup_path(id(i)), with_key()).header("x-cache") == "MISS");
        auto m = gw.admin_get("/metrics").body;
        BOOST_TEST(metric_value(m, "rdsgw_cache_entries") == 3.0);
        BOOST_TEST(metric_value(m, R"(rdsgw_cache_events_total{event="evicted"})") == 2.0);
        BOOST_TEST(gw.get(backup_path(id(4)), with_key()).header("x-cache") == "HIT");
        BOOST_TEST(gw.get(backup_path(id(0)), with_key()).header("x-cache") == "MISS");
    }
    {
        auto gw = config(mock, pki, R"({"cache":{"max_bytes":4096}})").start();
        for (int i = 0; i < 10; ++i) gw.get(backup_path(id(100 + i)), with_key());
        auto m = gw.admin_get("/metrics").body;
        BOOST_TEST(metric_value(m, "rdsgw_cache_bytes") <= 4096.0);
        BOOST_TEST(metric_value(m, "rdsgw_cache_entries") < 10.0);
        BOOST_TEST(metric_value(m, R"(rdsgw_cache_events_total{event="evicted"})") >= 1.0);
    }
}

BOOST_AUTO_TEST_CASE(negative_caching_of_404) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"missing_backups":["gone0000"]})");
    auto gw = config(mock, pki, R"({"cache":{"negative_ttl_s":1}})").start();
    auto r1 = gw.get(backup_path("gone0000"), with_key());
    BOOST_TEST(r1.status == 404u);
    BOOST_TEST(r1.body.find("DBS.200002") != std::string::npos);
    auto r2 = gw.get(backup_path("gone0000"), with_key());
    BOOST_TEST(r2.status == 404u);
    BOOST_TEST(r2.header("x-cache") == "HIT");
    BOOST_TEST(mock.stat("rds_requests") == 1);
    std::this_thread::sleep_for(1100ms);  // the negative TTL is the scenario under test
    BOOST_TEST(gw.get(backup_path("gone0000"), with_key()).status == 404u);
    BOOST_TEST(mock.stat("rds_requests") == 2);
    // Other errors are not cached.
    mock.configure(R"({"script":[{"status":400},{"status":400}]})");
    gw.get(backup_path(id(1)), with_key());
    gw.get(backup_path(id(1)), with_key());
    BOOST_TEST(mock.stat("rds_requests") == 4);
}

BOOST_AUTO_TEST_CASE(stale_on_error) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    {
        auto gw = config(mock, pki, R"({"cache":{"ttl_s":1},"retry":{"max_attempts":1}})").start();
        BOOST_TEST(gw.get(backup_path(), with_key()).header("x-cache") == "MISS");
        std::this_thread::sleep_for(1100ms);  // past the TTL: the scenario under test
        mock.configure(R"({"status":503})");
        auto r = gw.get(backup_path(), with_key());
        BOOST_TEST(r.status == 200u);
        BOOST_TEST(r.header("x-cache") == "STALE");
        mock.configure(R"({"status":0})");
        BOOST_TEST(gw.get(backup_path(), with_key()).header("x-cache") == "MISS");
    }
    mock.reset();
    {
        auto gw =
            config(mock, pki, R"({"cache":{"ttl_s":1,"stale_on_error":false},"retry":{"max_attempts":1}})")
                .start();
        BOOST_TEST(gw.get(backup_path(), with_key()).status == 200u);
        std::this_thread::sleep_for(1100ms);
        mock.configure(R"({"status":503})");
        BOOST_TEST(gw.get(backup_path(), with_key()).status == 503u);
    }
}

BOOST_AUTO_TEST_CASE(no_cache_headers_and_purge) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    {
        auto gw = config(mock, pki).start();
        auto m = gw.get(backup_path(), with_key());
        BOOST_TEST(m.header("x-cache") == "MISS");
        BOOST_TEST(m.header("cache-control") == "no-store");
        auto h = gw.get(backup_path(), with_key());
        BOOST_TEST(h.header("x-cache") == "HIT");
        BOOST_TEST(h.has_header("age"));
        BOOST_TEST(h.body == m.body);
        auto b = gw.get(backup_path(), with_key({{"Cache-Control", "no-cache"}}));
        BOOST_TEST(b.header("x-cache") == "BYPASS");
        BOOST_TEST(mock.stat("rds_requests") == 2);
        // Purge one entry, then all, on the admin listener.
        HttpClient admin(gw.admin_port);
        auto p = admin.request("DELETE", "/admin/cache?project_id=" + kProject + "&backup_id=" + kBackup);
        BOOST_TEST(p.status == 200u);
        BOOST_TEST(p.body == "{\"purged\":1}");
        BOOST_TEST(gw.get(backup_path(), with_key()).header("x-cache") == "MISS");
        gw.get(backup_path(id(7)), with_key());
        p = admin.request("DELETE", "/admin/cache");
        BOOST_TEST(p.body == "{\"purged\":2}");
        BOOST_TEST(gw.get(backup_path(id(7)), with_key()).header("x-cache") == "MISS");
        // Not on the main listener.
        HttpClient main(gw.port);
        BOOST_TEST(main.request("DELETE", "/admin/cache").status == 404u);
    }
    {
        auto gw = config(mock, pki, R"({"cache":{"honor_no_cache":false}})").start();
        gw.get(backup_path(), with_key());
        BOOST_TEST(gw.get(backup_path(), with_key({{"Cache-Control", "no-cache"}})).header("x-cache") ==
                   "HIT");
    }
}

// A fetch that may outlast the waiters' wait_timeout (retry.deadline_ms above cache.wait_timeout_ms) runs
// detached: the leader waits at most wait_timeout like any waiter (503), and the fetch still fills the cache.
BOOST_AUTO_TEST_CASE(a_leader_waits_no_longer_than_wait_timeout_when_the_fetch_may_outlast_it) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"latency_ms":3000})");
    auto gw = config(mock, pki, R"({"cache": {"wait_timeout_ms": 200}, "retry": {"deadline_ms": 20000},
                         "upstream": {"request_timeout_ms": 15000}})")
                  .start();
    auto first = gw.get(backup_path(), with_key());
    BOOST_TEST(first.status == 503u);  // answered after 200 ms of waiting, not after the 3 s fetch
    BOOST_TEST(first.body.find("timed out waiting") !=
               std::string::npos);  // (a body with links is not printed)
    // Until the detached fetch has stored its answer (the mock counts the request before its 3 s delay), a
    // request would join the flight and time out again.
    BOOST_TEST_REQUIRE(mock.wait_for("rds_ok", 1, 30s));
    BOOST_TEST_REQUIRE(eventually(
        [&] { return metric_value(gw.admin_get("/metrics").body, "rdsgw_cache_entries") == 1.0; }, 30s));
    auto again = gw.get(backup_path(), with_key());
    BOOST_TEST(again.status == 200u);
    BOOST_TEST((again.header("x-cache") == "HIT" || again.header("x-cache") == "COALESCED"));
    BOOST_TEST(mock.stat("rds_requests") == 1);
}
