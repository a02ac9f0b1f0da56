// Upstream resilience (issue 4): connection pooling, transparent replacement of closed connections,
// retries with backoff and Retry-After, deadlines, the circuit breaker, the retry budget and overload.
#define BOOST_TEST_MODULE resilience
#include <atomic>
#include <barrier>
#include <future>
#include <optional>
#include <thread>

#include "harness.hpp"

using namespace rdsgw::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {
// The gateway of these tests: cache off (every request goes upstream), access log on stdout, plus `patch`.
GatewayConfig config(const MockServer& mock, const Pki& pki, std::string_view patch = "{}") {
    return GatewayConfig(mock, pki).no_cache().access_log("stdout").patch(patch);
}
// The pool's tests run over TLS and over plain TCP: a plain connection is watched by a read kept queued
// while it idles (DrainingRead), a TLS one peeked when it is taken.
GatewayConfig config(const MockServer& mock, const Pki* pki, std::string_view patch = "{}") {
    return GatewayConfig(mock, pki).no_cache().access_log("stdout").patch(patch);
}
const char* upstream_kind(const Pki* pki) {
    return pki ? "TLS upstream" : "plain upstream";
}
std::string id(int i) {
    char b[40];
    std::snprintf(b, sizeof b, "bk%08d", i);
    return b;
}
}  // namespace

BOOST_AUTO_TEST_CASE(pool_reuses_connections) {
    Pki pki = make_pki();
    for (const Pki* p : std::array<const Pki*, 2>{&pki, nullptr}) {
        BOOST_TEST_CONTEXT(upstream_kind(p)) {
            MockServer mock(p);
            auto gw = config(mock, p, R"({"listen":{"threads":1},"upstream":{"pool_size":4}})").start();
            HttpClient c(gw.port);
            const int n = p ? 10000 : 3000;
            int ok = 0;
            for (int i = 0; i < n; ++i) ok += c.request("GET", backup_path(id(i)), with_key()).status == 200;
            BOOST_TEST(ok == n);
            BOOST_TEST(mock.stat("rds_requests") == n);
            // The mock counts its control connection too (MockServer).
            BOOST_TEST(mock.stat("connections") - mock.stat("control_connections") <= 4);
            if (p) BOOST_TEST(mock.stat("tls_handshakes") <= 4);
        }
    }
}

// A burst above pool_size: the extra connections linger a moment instead of closing at once, so the next
// burst finds them; afterwards the pool shrinks back to pool_size by itself.
BOOST_AUTO_TEST_CASE(surplus_connections_linger_then_shrink_to_pool_size) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"latency_ms":100})");
    auto gw = config(mock, pki, R"({"listen":{"threads":1},"upstream":{"pool_size":2}})").start();
    const int n = 8;
    auto burst = [&](int first) {
        std::vector<std::optional<HttpClient>> clients(n);
        for (auto& c : clients) c.emplace(gw.port);
        std::barrier start(n);
        std::vector<unsigned> status(n);
        std::vector<std::thread> ts;
        for (int i = 0; i < n; ++i)
            ts.emplace_back([&, i] {
                start.arrive_and_wait();
                status[i] = clients[i]->request("GET", backup_path(id(first + i)), with_key()).status;
            });
        for (auto& t : ts) t.join();
        for (unsigned st : status) BOOST_TEST(st == 200u);
    };
    // The mock counts every connection it accepts, its own /_mock/stats requests' too: measure that.
    const long long before = mock.stat("connections");
    const long long per_stat = mock.stat("connections") - before;
    burst(0);
    const long long opened = mock.stat("connections") - before - 2 * per_stat;
    BOOST_TEST(opened >= 2);  // 100 ms answers: the 8 requests overlapped
    BOOST_TEST(opened <= n);
    burst(100);  // right after: served on the lingering connections
    BOOST_TEST(mock.stat("connections") - before - 3 * per_stat == opened);
    BOOST_TEST(mock.stat("rds_requests") == 2 * n);
    // Then, idle, the pool goes back to pool_size (surplus lingers 1 s; the sweep runs at least every
    // second).
    auto idle = [&] {
        return metric_value(gw.admin_get("/metrics").body, "rdsgw_upstream_connections_idle");
    };
    BOOST_TEST(eventually([&] { return idle() == 2; }, 5s));
}

// An interim 1xx answer before the real one is skipped; bytes after an answer are never read as the next
// request's answer (a connection holding them is not reused).
void interim_and_leftovers(const Pki* pki);

BOOST_AUTO_TEST_CASE(interim_answers_skipped_and_leftover_bytes_never_reused) {
    Pki pki = make_pki();
    for (const Pki* p : std::array<const Pki*, 2>{&pki, nullptr}) {
        BOOST_TEST_CONTEXT(upstream_kind(p)) {
            interim_and_leftovers(p);
        }
    }
}

void interim_and_leftovers(const Pki* pki) {
    MockServer mock(pki, R"({"raw_before":"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"})");
    auto gw = config(mock, pki, R"({"listen":{"threads":1}})").start();
    HttpClient c(gw.port);
    auto r = c.request("GET", backup_path(id(1)), with_key());
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(json::parse(r.body).at("files").as_array().size() == 2u);
    // Stray bytes after each answer: a well-formed answer with no files, which must never be served.
    mock.configure(
        R"({"raw_before":"","raw_after":"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n{\"files\":[]}"})");
    for (int i = 2; i < 6; ++i) {
        auto r2 = c.request("GET", backup_path(id(i)), with_key());
        BOOST_TEST(r2.status == 200u);
        BOOST_TEST(json::parse(r2.body).at("files").as_array().size() == 2u);
    }
    BOOST_TEST(mock.stat("rds_requests") == 5);
}

BOOST_AUTO_TEST_CASE(idle_connection_closed_by_upstream_is_replaced) {
    Pki pki = make_pki();
    for (const Pki* p : std::array<const Pki*, 2>{&pki, nullptr}) {
        BOOST_TEST_CONTEXT(upstream_kind(p)) {
            MockServer mock(p, R"({"idle_close_ms":50})");
            auto gw = config(mock, p, R"({"listen":{"threads":1}})").start();
            HttpClient c(gw.port);
            for (int i = 0; i < 5; ++i) {
                BOOST_TEST(c.request("GET", backup_path(id(i)), with_key()).status == 200u);
                // Idle longer than the upstream keeps connections: the scenario under test, not a
                // synchronization.
                std::this_thread::sleep_for(150ms);
            }
            BOOST_TEST(mock.stat("connections") >= 2);
            BOOST_TEST(mock.stat("rds_requests") == 5);
        }
    }
}

BOOST_AUTO_TEST_CASE(retries_then_success) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    auto gw = config(mock, pki).start();
    struct C {
        std::string script;
        long long min_ms;
    };
    std::vector<C> cases = {
        {R"([{"status":503}])", 0},     {R"([{"status":502},{"status":504}])", 0},
        {R"([{"status":429}])", 0},     {R"([{"status":429,"retry_after":"1"}])", 900},
        {R"([{"action":"reset"}])", 0}, {R"([{"action":"close"}])", 0},
    };
    int i = 0;
    for (auto& c : cases) {
        mock.reset();
        mock.configure(R"({"script":)" + c.script + "}");
        auto t0 = std::chrono::steady_clock::now();
        auto r = gw.get(backup_path(id(++i)), with_key());
        auto ms = to_ms(std::chrono::steady_clock::now() - t0);
        BOOST_TEST_CONTEXT(c.script) {
            BOOST_TEST(r.status == 200u, r.body);
            BOOST_TEST(ms >= c.min_ms);
            BOOST_TEST(mock.stat("rds_requests") ==
                       static_cast<std::int64_t>(json::parse(c.script).as_array().size() + 1));
        }
    }
    // Not retried: a 500 and a 400 pass through after one attempt.
    mock.reset();
    mock.configure(R"({"script":[{"status":500,"error_code":"DBS.108000"}]})");
    auto r = gw.get(backup_path(id(100)), with_key());
    BOOST_TEST(r.status == 500u);
    BOOST_TEST(mock.stat("rds_requests") == 1);
}

BOOST_AUTO_TEST_CASE(failure_after_attempts_is_explained) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"status":503,"error_body_mode":"html"})");
    auto gw = config(mock, pki, R"({"retry":{"max_attempts":3}})").start();
    auto r = gw.get(backup_path(), with_key({{"X-Request-Id", "explain-1"}}));
    BOOST_TEST(r.status == 502u);
    std::string msg(r.json().at("error_msg").as_string());
    BOOST_TEST(msg.find("3 attempts") != std::string::npos, msg);
    BOOST_TEST(msg.find("503") != std::string::npos, msg);
    BOOST_TEST(!r.header("x-upstream-request-id").empty());
    BOOST_TEST(mock.stat("rds_requests") == 3);
    // The access log line says it too.
    const std::string line = access_log_line(gw.child, "explain-1");
    BOOST_REQUIRE(!line.empty());
    BOOST_TEST(line.find("\"attempts\":3") != std::string::npos, line);
    BOOST_TEST(line.find("\"upstream_status\":503") != std::string::npos, line);
}

namespace {
// Each of three attempts gets `entry` (a mock script entry that never completes an answer): the caller gets
// 504 by the 800 ms deadline, not the 5 s request timeout. Returns how many requests the mock saw.
std::int64_t expect_504_by_the_deadline(const std::string& entry) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"script":[)" + entry + "," + entry + "," + entry + "]}");
    auto gw =
        config(mock, pki, R"({"upstream":{"request_timeout_ms":5000},"retry":{"deadline_ms":800}})").start();
    auto t0 = std::chrono::steady_clock::now();
    auto r = gw.get(backup_path(), with_key());
    auto ms = to_ms(std::chrono::steady_clock::now() - t0);
    BOOST_TEST(r.status == 504u);
    BOOST_TEST(ms >= 750);
    BOOST_TEST(ms < 4000);  // generous on a busy machine
    return mock.stat("rds_requests");
}
}  // namespace

BOOST_AUTO_TEST_CASE(never_answering_upstream_gets_504_by_the_deadline) {
    expect_504_by_the_deadline(R"({"action":"hang"})");
}

BOOST_AUTO_TEST_CASE(upstream_stalling_mid_answer_gets_504_by_the_deadline) {
    // The status line, the header and part of the body arrive, then nothing: each of the exchange's reads
    // after the first must end by the deadline too.
    const std::string partial = R"({"action":"hang","raw_answer":"HTTP/1.1 200 OK\r\nContent-Type: )"
                                R"(application/json\r\nContent-Length: 400\r\n\r\n{\"files\":["})";
    BOOST_TEST(expect_504_by_the_deadline(partial) >= 1);
}

BOOST_AUTO_TEST_CASE(breaker_opens_and_probes) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"status":503})");
    auto gw = config(mock, pki, R"({"retry":{"max_attempts":1,"breaker_failures":3,"breaker_open_ms":3000}})")
                  .start();
    for (int i = 0; i < 3; ++i) BOOST_TEST(gw.get(backup_path(id(i)), with_key()).status == 503u);
    BOOST_TEST(mock.stat("rds_requests") == 3);
    // Open: fast 503s, the upstream sees nothing (20 requests take well under the 3 s open period).
    for (int i = 0; i < 20; ++i) {
        auto r = gw.get(backup_path(id(10 + i)), with_key());
        BOOST_TEST(r.status == 503u);
        BOOST_TEST(r.body.find("circuit breaker") != std::string::npos);
    }
    BOOST_TEST(mock.stat("rds_requests") == 3);
    auto rz = gw.get("/readyz").json();
    BOOST_TEST(std::string(rz.at("checks").at("upstream").at("breaker").as_string()) == "open");
    // After the open period exactly one probe goes through; the upstream recovered, so the breaker closes.
    mock.configure(R"({"status":0})");
    int n = 50;
    BOOST_TEST(eventually([&] { return gw.get(backup_path(id(n++)), with_key()).status == 200; }, 20s));
    BOOST_TEST(mock.stat("rds_requests") == 4);
    BOOST_TEST(gw.get(backup_path(id(n++)), with_key()).status == 200u);
    BOOST_TEST(mock.stat("rds_requests") == 5);
}

// Issue 14: a failed probe re-opens the breaker for a short re-probe delay (200 ms, doubling), not for the
// whole open period, so traffic flows again soon after the upstream is back.
BOOST_AUTO_TEST_CASE(breaker_recovers_soon_after_a_failed_probe) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"status":503})");
    auto gw = config(mock, pki, R"({"retry":{"max_attempts":1,"breaker_failures":2,"breaker_open_ms":6000}})")
                  .start();
    for (int i = 0; i < 2; ++i) BOOST_TEST(gw.get(backup_path(id(i)), with_key()).status == 503u);
    // Ask until the first probe has gone upstream (after the 6 s open period) and failed.
    int n = 10;
    BOOST_TEST_REQUIRE(eventually(
        [&] {
            gw.get(backup_path(id(n++)), with_key());
            return mock.stat("rds_requests") >= 3;
        },
        30s));
    const auto probe_failed = std::chrono::steady_clock::now();
    mock.configure(R"({"status":0})");
    BOOST_TEST_REQUIRE(
        eventually([&] { return gw.get(backup_path(id(n++)), with_key()).status == 200; }, 30s));
    const auto late = to_ms(std::chrono::steady_clock::now() - probe_failed);
    BOOST_TEST_MESSAGE("served again " << late << " ms after the failed probe");
    // About 200 ms; a full open period (the old behaviour) would be 6000 ms.
    BOOST_TEST(late < 3000);
}

BOOST_AUTO_TEST_CASE(refused_connections_fail_fast_and_breaker_stops_attempts) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    Child dead;
    dead.spawn({RDSGW_MOCK_BIN});
    int dead_port = start_and_get_port(dead);
    dead.signal(SIGTERM);
    dead.wait_exit();
    auto gw =
        config(mock, pki, R"({"retry":{"max_attempts":2,"breaker_failures":2,"breaker_open_ms":60000}})")
            .set("/upstream/base_url", json::string("https://localhost:" + std::to_string(dead_port)))
            .start();
    auto t0 = std::chrono::steady_clock::now();
    auto r = gw.get(backup_path(), with_key());
    BOOST_TEST((r.status == 502u || r.status == 503u));
    // Refused connections fail at once: two 1 s connect timeouts would take 2 s.
    BOOST_TEST(to_ms(std::chrono::steady_clock::now() - t0) < 1500);
    for (int i = 0; i < 10; ++i) {
        auto r2 = gw.get(backup_path(id(i)), with_key());
        BOOST_TEST(r2.status == 503u);
    }
    auto metrics = gw.admin_get("/metrics").body;
    // Two failed attempts opened the breaker; the ten later requests made no attempt at all.
    double attempts = metric_value(metrics, R"(rdsgw_upstream_requests_total{attempt="1",code="0"})") +
                      metric_value(metrics, R"(rdsgw_upstream_requests_total{attempt="2",code="0"})");
    BOOST_TEST(attempts == 2.0);
}

BOOST_AUTO_TEST_CASE(retry_budget_bounds_attempts_during_outage) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"status":503,"latency_ms":20})", 2);
    auto gw = config(mock, pki,
                     R"({"retry":{"max_attempts":3,"base_backoff_ms":1,"max_backoff_ms":5,
                              "budget_ratio":0.1,"budget_min":1,"breaker_failures":1000000}})")
                  .start();
    std::atomic<int> done{0};
    std::vector<std::thread> ts;
    const int threads = 16, per = 10;
    for (int t = 0; t < threads; ++t) {
        ts.emplace_back([&, t] {
            HttpClient c(gw.port);
            for (int i = 0; i < per; ++i) {
                auto r = c.request("GET", backup_path(id(t * 1000 + i)), with_key());
                if (r.status == 503) ++done;
            }
        });
    }
    for (auto& t : ts) t.join();
    auto attempts = mock.stat("rds_requests");
    BOOST_TEST_MESSAGE("requests=" << threads * per << " upstream attempts=" << attempts);
    BOOST_TEST(done.load() == threads * per);
    // Without a budget this would be 3 attempts per request (480); the budget keeps it near 1.
    BOOST_TEST(attempts < threads * per * 3 / 2);
}

// Two requests hold both upstream slots (the mock holds them until released), so every extra request meets
// a full limiter: one waits in the queue (max_queue 1), the others are refused with 503 + Retry-After while
// the slots are still held, i.e. at once. No timing is involved.
BOOST_AUTO_TEST_CASE(overload_is_refused_at_once) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"hold":true})", 2);
    auto gw = config(mock, pki,
                     R"({"upstream":{"max_concurrent":2,"max_queue":1,"queue_timeout_ms":60000,
                                     "request_timeout_ms":60000},"retry":{"deadline_ms":60000}})")
                  .start();
    auto send = [&](int i) {
        return std::async(std::launch::async, [&, i] {
            HttpClient c(gw.port, std::nullopt, 90s);
            return c.request("GET", backup_path(id(i)), with_key());
        });
    };
    std::vector<std::future<Response>> slots, extra;
    for (int i = 0; i < 2; ++i) slots.push_back(send(i));
    BOOST_TEST_REQUIRE(mock.wait_for("held", 2, 30s));  // both slots provably taken
    for (int i = 2; i < 6; ++i) extra.push_back(send(i));
    // Three of the four extra requests are answered while the slots are still held (the queued one waits
    // up to 60 s: were the queue bound ignored, these would not come back before the release).
    int refused = 0;
    std::vector<bool> answered(extra.size());
    for (int k = 0; k < 3; ++k) {
        BOOST_TEST_REQUIRE(eventually(
            [&] {
                for (std::size_t i = 0; i < extra.size(); ++i) {
                    if (answered[i] || extra[i].wait_for(0s) != std::future_status::ready) continue;
                    answered[i] = true;
                    auto r = extra[i].get();
                    BOOST_TEST(r.status == 503u);
                    BOOST_TEST(r.header("retry-after") == "1");
                    BOOST_TEST(r.body.find("too many concurrent upstream requests") != std::string::npos);
                    ++refused;
                    return true;
                }
                return false;
            },
            30s));
    }
    BOOST_TEST(refused == 3);
    BOOST_TEST(mock.stat("held") == 2);
    BOOST_TEST(mock.stat("rds_requests") == 2);
    // Release: the two held requests succeed, then the queued one gets a slot and succeeds too.
    mock.release();
    for (auto& f : slots) BOOST_TEST(f.get().status == 200u);
    BOOST_TEST(mock.wait_for("rds_requests", 3, 30s));  // the queued request went upstream (and is held)
    mock.release();
    for (std::size_t i = 0; i < extra.size(); ++i)
        if (!answered[i]) BOOST_TEST(extra[i].get().status == 200u);
    BOOST_TEST(mock.stat("rds_requests") == 3);
}
