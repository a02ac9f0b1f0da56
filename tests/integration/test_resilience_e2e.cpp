// Upstream resilience (issue 4): connection pooling, transparent replacement of closed connections,
// retries with backoff and Retry-After, deadlines, the circuit breaker, the retry budget and overload.
#define BOOST_TEST_MODULE resilience
#include <atomic>
#include <barrier>
#include <optional>
#include <thread>

#include "harness.hpp"

using namespace rdsgw::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {
const std::string kToken = "resilience-token-1";
std::vector<std::pair<std::string, std::string>> env() {
    return {{"RDS_AUTH_TOKEN", kToken}};
}

json::value config(const MockServer& mock, const Pki& pki, const std::string& patch = "{}") {
    auto cfg = base_config(mock, &pki);
    cfg.as_object()["cache"] = {{"enabled", false}};
    cfg.at("log").as_object()["access"] = "stdout";
    merge(cfg, json::parse(patch));
    return cfg;
}
std::string id(int i) {
    char b[40];
    std::snprintf(b, sizeof b, "bk%08d", i);
    return b;
}
}  // namespace

BOOST_AUTO_TEST_CASE(pool_reuses_connections) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    GatewayProc gw(config(mock, pki, R"({"listen":{"threads":1},"upstream":{"pool_size":4}})"), env());
    HttpClient c(gw.port);
    const int n = 10000;
    int ok = 0;
    for (int i = 0; i < n; ++i) ok += c.request("GET", backup_path(id(i)), with_key()).status == 200;
    BOOST_TEST(ok == n);
    BOOST_TEST(mock.stat("rds_requests") == n);
    BOOST_TEST(mock.stat("connections") <= 4);
    BOOST_TEST(mock.stat("tls_handshakes") <= 4);
}

// A burst above pool_size: the extra connections linger a moment instead of closing at once, so the next
// burst finds them; afterwards the pool shrinks back to pool_size by itself.
BOOST_AUTO_TEST_CASE(surplus_connections_linger_then_shrink_to_pool_size) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"latency_ms":100})");
    GatewayProc gw(config(mock, pki, R"({"listen":{"threads":1},"upstream":{"pool_size":2}})"), env());
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
BOOST_AUTO_TEST_CASE(interim_answers_skipped_and_leftover_bytes_never_reused) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"raw_before":"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"})");
    GatewayProc gw(config(mock, pki, R"({"listen":{"threads":1}})"), env());
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
    MockServer mock(&pki, R"({"idle_close_ms":50})");
    GatewayProc gw(config(mock, pki, R"({"listen":{"threads":1}})"), env());
    HttpClient c(gw.port);
    for (int i = 0; i < 5; ++i) {
        BOOST_TEST(c.request("GET", backup_path(id(i)), with_key()).status == 200u);
        // Idle longer than the upstream keeps connections: the scenario under test, not a synchronization.
        std::this_thread::sleep_for(150ms);
    }
    BOOST_TEST(mock.stat("connections") >= 2);
    BOOST_TEST(mock.stat("rds_requests") == 5);
}

BOOST_AUTO_TEST_CASE(retries_then_success) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    GatewayProc gw(config(mock, pki), env());
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
    GatewayProc gw(config(mock, pki, R"({"retry":{"max_attempts":3}})"), env());
    auto r = gw.get(backup_path(), with_key({{"X-Request-Id", "explain-1"}}));
    BOOST_TEST(r.status == 502u);
    std::string msg(r.json().at("error_msg").as_string());
    BOOST_TEST(msg.find("3 attempts") != std::string::npos, msg);
    BOOST_TEST(msg.find("503") != std::string::npos, msg);
    BOOST_TEST(!r.header("x-upstream-request-id").empty());
    BOOST_TEST(mock.stat("rds_requests") == 3);
    // The access log line says it too (the writer flushes every 20 ms: wait for the line).
    BOOST_REQUIRE(eventually(
        [&] { return gw.child.output().find("\"request_id\":\"explain-1\"") != std::string::npos; }));
    auto out = gw.child.output();
    auto pos = out.find("\"request_id\":\"explain-1\"");
    BOOST_REQUIRE(pos != std::string::npos);
    auto line = out.substr(pos, out.find('\n', pos) - pos);
    BOOST_TEST(line.find("\"attempts\":3") != std::string::npos, line);
    BOOST_TEST(line.find("\"upstream_status\":503") != std::string::npos, line);
}

BOOST_AUTO_TEST_CASE(never_answering_upstream_gets_504_by_the_deadline) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"script":[{"action":"hang"},{"action":"hang"},{"action":"hang"}]})");
    GatewayProc gw(
        config(mock, pki, R"({"upstream":{"request_timeout_ms":5000},"retry":{"deadline_ms":800}})"), env());
    auto t0 = std::chrono::steady_clock::now();
    auto r = gw.get(backup_path(), with_key());
    auto ms = to_ms(std::chrono::steady_clock::now() - t0);
    BOOST_TEST(r.status == 504u);
    BOOST_TEST(ms >= 750);
    BOOST_TEST(ms < 1500);
}

BOOST_AUTO_TEST_CASE(breaker_opens_and_probes) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"status":503})");
    GatewayProc gw(
        config(mock, pki, R"({"retry":{"max_attempts":1,"breaker_failures":3,"breaker_open_ms":700}})"),
        env());
    for (int i = 0; i < 3; ++i) BOOST_TEST(gw.get(backup_path(id(i)), with_key()).status == 503u);
    BOOST_TEST(mock.stat("rds_requests") == 3);
    // Open: fast 503s, the upstream sees nothing.
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 20; ++i) {
        auto r = gw.get(backup_path(id(10 + i)), with_key());
        BOOST_TEST(r.status == 503u);
        BOOST_TEST(r.body.find("circuit breaker") != std::string::npos);
    }
    BOOST_TEST(to_ms(std::chrono::steady_clock::now() - t0) < 500);
    BOOST_TEST(mock.stat("rds_requests") == 3);
    auto rz = gw.get("/readyz").json();
    BOOST_TEST(std::string(rz.at("checks").at("upstream").at("breaker").as_string()) == "open");
    // After the open period one probe goes through; the upstream recovered, so the breaker closes.
    mock.configure(R"({"status":0})");
    std::this_thread::sleep_for(800ms);  // the breaker's open period is the scenario under test
    BOOST_TEST(gw.get(backup_path(id(50)), with_key()).status == 200u);
    BOOST_TEST(mock.stat("rds_requests") == 4);
    BOOST_TEST(gw.get(backup_path(id(51)), with_key()).status == 200u);
}

BOOST_AUTO_TEST_CASE(refused_connections_fail_fast_and_breaker_stops_attempts) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    Child dead;
    dead.spawn({RDSGW_MOCK_BIN});
    int dead_port = start_and_get_port(dead);
    dead.signal(SIGTERM);
    dead.wait_exit();
    auto cfg =
        config(mock, pki, R"({"retry":{"max_attempts":2,"breaker_failures":2,"breaker_open_ms":60000}})");
    cfg.at("upstream").as_object()["base_url"] = "https://localhost:" + std::to_string(dead_port);
    GatewayProc gw(cfg, env());
    auto t0 = std::chrono::steady_clock::now();
    auto r = gw.get(backup_path(), with_key());
    BOOST_TEST((r.status == 502u || r.status == 503u));
    BOOST_TEST(to_ms(std::chrono::steady_clock::now() - t0) < 1000);
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
    GatewayProc gw(config(mock, pki,
                          R"({"retry":{"max_attempts":3,"base_backoff_ms":1,"max_backoff_ms":5,
                              "budget_ratio":0.1,"budget_min":1,"breaker_failures":1000000}})"),
                   env());
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

BOOST_AUTO_TEST_CASE(overload_is_refused_at_once) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"latency_ms":400})", 2);
    GatewayProc gw(
        config(mock, pki, R"({"upstream":{"max_concurrent":2,"max_queue":1,"queue_timeout_ms":2000}})"),
        env());
    std::atomic<int> ok{0}, refused{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 6; ++t) {
        ts.emplace_back([&, t] {
            auto t0 = std::chrono::steady_clock::now();
            auto r = gw.get(backup_path(id(t)), with_key());
            if (r.status == 200)
                ++ok;
            else if (r.status == 503 && r.header("retry-after") == "1" &&
                     to_ms(std::chrono::steady_clock::now() - t0) < 300)
                ++refused;
        });
    }
    for (auto& t : ts) t.join();
    BOOST_TEST(ok.load() == 3);
    BOOST_TEST(refused.load() == 3);
}
