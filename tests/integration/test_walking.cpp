// The walking gateway (issue 2): serving, validation, forwarding with an injected token over verified TLS,
// limits, timeouts, pipelining, HTTP/1.0, health, readiness and graceful shutdown — against the real binary.
#define BOOST_TEST_MODULE walking
#include <signal.h>

#include <atomic>
#include <thread>

#include "harness.hpp"

using namespace rdsgw::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {
const std::string kToken = "upstream-token-SECRET-7f3a9c";
// The default test configuration, injecting kToken upstream.
GatewayConfig gateway(const MockServer& mock, const Pki& pki) {
    return GatewayConfig(mock, pki).token(kToken);
}

struct Fixture {
    Pki pki = make_pki();
    MockServer mock{&pki, R"({"auth":"static","static_token":")" + kToken + R"("})"};
};
}  // namespace

BOOST_FIXTURE_TEST_CASE(forwards_with_injected_token_and_normalizes, Fixture) {
    auto gw = gateway(mock, pki).start();
    // The caller authenticates with its API key as a bearer token and also sends an X-Auth-Token of its own.
    Headers h = {{"Authorization", "Bearer " + kApiKey},
                 {"X-Auth-Token", "caller-token-should-not-pass"},
                 {"X-Request-Id", "caller-req-1"},
                 {"X-Language", "en-us"},
                 {"Connection", "keep-alive, X-Custom-Hop"},
                 {"X-Custom-Hop", "1"},
                 {"Proxy-Authorization", "Basic Zm9vOmJhcg=="}};
    auto r = gw.get(backup_path(), h);
    BOOST_TEST_REQUIRE(r.status == 200u, r.body);
    BOOST_TEST(r.header("x-request-id") == "caller-req-1");
    BOOST_TEST(r.header("cache-control") == "no-store");
    BOOST_TEST(r.header("x-cache") == "MISS");
    BOOST_TEST(!r.has_header("x-auth-token"));
    auto body = r.json().as_object();
    BOOST_TEST(body.at("files").as_array().size() == 2u);
    auto& f0 = body.at("files").as_array()[0].as_object();
    BOOST_TEST(f0.contains("link_expired_time"));
    BOOST_TEST(!f0.contains("link_expired_link"));

    auto st = mock.stats();
    auto& seen = st.at("last_rds_headers").as_object();
    BOOST_TEST(seen.at("x-auth-token").as_string() == kToken);
    BOOST_TEST(!seen.contains("authorization"));
    BOOST_TEST(!seen.contains("x-api-key"));
    BOOST_TEST(!seen.contains("proxy-authorization"));
    BOOST_TEST(!seen.contains("x-custom-hop"));
    BOOST_TEST(seen.at("x-request-id").as_string() == "caller-req-1");
    BOOST_TEST(seen.at("x-language").as_string() == "en-us");
    BOOST_TEST(std::string(st.at("last_rds_target").as_string()) == backup_path());

    // The caller's token never reached upstream and the upstream token never reached the caller or the logs.
    BOOST_TEST(r.body.find(kToken) == std::string::npos);
    BOOST_TEST(gw.child.output().find(kToken) == std::string::npos);
    BOOST_TEST(gw.child.output().find(kApiKey) == std::string::npos);
    BOOST_TEST(gw.child.output().find("caller-token-should-not-pass") == std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(insane_request_id_replaced_and_bad_language_dropped, Fixture) {
    auto gw = gateway(mock, pki).start();
    auto r =
        gw.get(backup_path(), with_key({{"X-Request-Id", "bad id with spaces"}, {"X-Language", "xx-evil"}}));
    BOOST_TEST_REQUIRE(r.status == 200u);
    BOOST_TEST(r.header("x-request-id") != "bad id with spaces");
    BOOST_TEST(r.header("x-request-id").size() == 32u);
    auto seen = mock.stats().at("last_rds_headers").as_object();
    BOOST_TEST(!seen.contains("x-language"));
    BOOST_TEST(std::string(seen.at("x-request-id").as_string()) == r.header("x-request-id"));
}

BOOST_FIXTURE_TEST_CASE(validation_errors_are_never_forwarded, Fixture) {
    auto gw = gateway(mock, pki).start();
    struct C {
        std::string target;
        unsigned status;
        std::string field;
    };
    std::vector<C> cases = {
        {"/v4/" + kProject + "/backup-files?backup_id=" + kBackup, 400, "version_id"},
        {"/V3/" + kProject + "/backup-files?backup_id=" + kBackup, 400, "version_id"},
        {"/v3/bad-project!/backup-files?backup_id=" + kBackup, 400, "project_id"},
        {"/v3/" + kProject + "/backup-files", 400, "backup_id"},
        {"/v3/" + kProject + "/backup-files?backup_id=" + kBackup + "&backup_id=x", 400, "backup_id"},
        {"/v3/" + kProject + "%2F..%2Fx/backup-files?backup_id=" + kBackup, 400, "request-target"},
        {"/v3/../" + kProject + "/backup-files?backup_id=" + kBackup, 400, "request-target"},
        {"/nothing/here", 404, ""},
    };
    for (auto& c : cases) {
        auto r = gw.get(c.target, with_key());
        BOOST_TEST_CONTEXT(c.target) {
            BOOST_TEST(r.status == c.status);
            auto b = r.json().as_object();
            BOOST_TEST(std::string(b.at("error_code").as_string()) == "RDSGW." + std::to_string(c.status));
            BOOST_TEST(std::string(b.at("request_id").as_string()) == r.header("x-request-id"));
            if (!c.field.empty() && c.field != "request-target")
                BOOST_TEST(std::string(b.at("error_msg").as_string()).find(c.field) != std::string::npos);
        }
    }
    // Absolute-form and CR/LF smuggling, sent raw.
    std::string raw = send_raw(gw.port, "GET http://evil.example" + backup_path() +
                                            " HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + kApiKey +
                                            "\r\nConnection: close\r\n\r\n");
    BOOST_TEST(raw.rfind("HTTP/1.1 400", 0) == 0);
    BOOST_TEST(mock.stat("rds_requests") == 0);
}

BOOST_FIXTURE_TEST_CASE(methods_routes_health_readiness, Fixture) {
    auto gw = gateway(mock, pki).start();
    HttpClient c(gw.port);
    auto r = c.request("POST", backup_path(), with_key());
    BOOST_TEST(r.status == 405u);
    BOOST_TEST(r.header("allow") == "GET, HEAD");
    r = c.request("HEAD", backup_path(), with_key());
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(r.body.empty());
    BOOST_TEST(std::stoul(r.header("content-length")) > 0u);
    r = c.request("GET", "/healthz");
    BOOST_TEST(r.status == 200u);
    r = c.request("GET", "/readyz");
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(std::string(r.json().at("status").as_string()) == "ready");
    r = c.request("GET", "/metrics");  // served on the admin listener only
    BOOST_TEST(r.status == 404u);
    BOOST_TEST(gw.admin_get("/metrics").status == 200u);
    BOOST_TEST(gw.admin_get(backup_path()).status == 404u);
}

BOOST_AUTO_TEST_CASE(wrong_ca_is_a_clear_502) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    auto gw = gateway(mock, pki).set("/upstream/ca_file", json::string(pki.other_ca_cert)).start();
    auto r = gw.get(backup_path(), with_key());
    BOOST_TEST(r.status == 502u);
    BOOST_TEST(std::string(r.json().at("error_msg").as_string()).find("certificate") != std::string::npos);
    BOOST_TEST(mock.stat("rds_requests") == 0);
}

BOOST_AUTO_TEST_CASE(wrong_host_name_is_refused) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    // Serve a certificate for wrong.example: the chain is fine, the host name is not.
    Child c;
    c.spawn({RDSGW_MOCK_BIN, "--tls-cert", pki.wrong_host_cert, "--tls-key", pki.wrong_host_key});
    int port = start_and_get_port(c);
    auto gw = gateway(mock, pki)
                  .set("/upstream/base_url", json::string("https://localhost:" + std::to_string(port)))
                  .start();
    auto r = gw.get(backup_path(), with_key());
    BOOST_TEST(r.status == 502u);
}

BOOST_AUTO_TEST_CASE(unreachable_upstream_is_502_and_slow_upstream_504_in_time) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"latency_ms": 3000})");
    {
        // A port nobody listens on: connection refused, fast.
        Child tmp;
        tmp.spawn({RDSGW_MOCK_BIN});
        int dead_port = start_and_get_port(tmp);
        tmp.signal(SIGTERM);
        tmp.wait_exit();
        auto gw =
            gateway(mock, pki)
                .set("/upstream/base_url", json::string("https://localhost:" + std::to_string(dead_port)))
                .start();
        auto t0 = std::chrono::steady_clock::now();
        auto r = gw.get(backup_path(), with_key());
        auto took = std::chrono::steady_clock::now() - t0;
        BOOST_TEST(r.status == 502u);
        BOOST_TEST(std::string(r.json().at("error_msg").as_string()).find("attempts") != std::string::npos);
        BOOST_TEST(to_ms(took) < 2000);
    }
    {
        auto gw = gateway(mock, pki)
                      .patch(R"({"upstream":{"request_timeout_ms":500},"retry":{"max_attempts":1}})")
                      .start();
        HttpClient c(gw.port);
        auto t0 = std::chrono::steady_clock::now();
        auto r = c.request("GET", backup_path(), with_key());
        auto took = std::chrono::steady_clock::now() - t0;
        BOOST_TEST(r.status == 504u);
        BOOST_TEST(to_ms(took) >= 450);
        BOOST_TEST(to_ms(took) < 1500);
        // The caller's connection stays usable.
        BOOST_TEST(c.connected());
        BOOST_TEST(c.request("GET", "/healthz").status == 200u);
    }
}

BOOST_FIXTURE_TEST_CASE(limits, Fixture) {
    auto gw = gateway(mock, pki)
                  .patch(R"({"limits":{"max_header_bytes":1024,"max_connections":3,"header_timeout_ms":600,
                                       "idle_timeout_ms":400}})")
                  .start();
    // 431: oversized header.
    std::string big = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(2000, 'a') + "\r\n\r\n";
    std::string raw = send_raw(gw.port, big);
    BOOST_TEST(raw.rfind("HTTP/1.1 431", 0) == 0, raw.substr(0, 40));
    BOOST_TEST(raw.find("RDSGW.431") != std::string::npos);
    // 413: a request body, refused without reading it, connection closed.
    raw = send_raw(gw.port, "GET " + backup_path() + " HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + kApiKey +
                                "\r\nContent-Length: 5\r\n\r\nhello");
    BOOST_TEST(raw.rfind("HTTP/1.1 413", 0) == 0, raw.substr(0, 40));
    BOOST_TEST(raw.find("Connection: close") != std::string::npos);
    BOOST_TEST(mock.stat("rds_requests") == 0);
    // Idle keep-alive timeout: the server closes an idle connection.
    {
        HttpClient c(gw.port);
        BOOST_TEST(c.request("GET", "/healthz").status == 200u);
        auto t0 = std::chrono::steady_clock::now();
        BOOST_TEST(c.wait_closed_by_peer(3s));
        BOOST_TEST(to_ms(std::chrono::steady_clock::now() - t0) >= 300);
    }
    // Header-read timeout: a client trickling a byte every 100 ms is dropped after ~600 ms.
    {
        boost::asio::io_context ioc;
        boost::asio::ip::tcp::socket s(ioc);
        s.connect({boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(gw.port)});
        std::string req = "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(100, 'z') + "\r\n\r\n";
        auto t0 = std::chrono::steady_clock::now();
        bool dropped = false;
        for (char ch : req) {
            boost::system::error_code ec;
            boost::asio::write(s, boost::asio::buffer(&ch, 1), ec);
            if (ec) {
                dropped = true;
                break;
            }
            // The trickle itself is the scenario under test, not a synchronization.
            std::this_thread::sleep_for(100ms);
            if (std::chrono::steady_clock::now() - t0 > 5s) break;
        }
        auto took = std::chrono::steady_clock::now() - t0;
        BOOST_TEST(dropped);
        BOOST_TEST(to_ms(took) < 3000);
    }
    // Too many connections: the 4th gets a 503 and is closed.
    {
        HttpClient a(gw.port), b(gw.port), c(gw.port);
        BOOST_TEST(a.request("GET", "/healthz").status == 200u);
        BOOST_TEST(b.request("GET", "/healthz").status == 200u);
        BOOST_TEST(c.request("GET", "/healthz").status == 200u);
        raw = send_raw(gw.port, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
        BOOST_TEST(raw.rfind("HTTP/1.1 503", 0) == 0, raw.substr(0, 40));
        BOOST_TEST(raw.find("too many open connections") != std::string::npos);
    }
}

BOOST_FIXTURE_TEST_CASE(pipelining_and_http10, Fixture) {
    auto gw = gateway(mock, pki).start();
    std::string reqs;
    for (int i = 1; i <= 3; ++i)
        reqs += "GET " + backup_path() + " HTTP/1.1\r\nHost: x\r\nX-Api-Key: " + kApiKey +
                "\r\nX-Request-Id: pipe-" + std::to_string(i) + "\r\n\r\n";
    reqs += "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: pipe-4\r\nConnection: close\r\n\r\n";
    std::string raw = send_raw(gw.port, reqs);
    auto p1 = raw.find("X-Request-Id: pipe-1"), p2 = raw.find("X-Request-Id: pipe-2"),
         p3 = raw.find("X-Request-Id: pipe-3"), p4 = raw.find("X-Request-Id: pipe-4");
    BOOST_TEST_REQUIRE(p4 != std::string::npos, raw.substr(0, 300));
    BOOST_TEST((p1 < p2 && p2 < p3 && p3 < p4));
    std::size_t n200 = 0;
    for (auto pos = raw.find("HTTP/1.1 200"); pos != std::string::npos;
         pos = raw.find("HTTP/1.1 200", pos + 1))
        ++n200;
    BOOST_TEST(n200 == 4u);

    raw = send_raw(gw.port, "GET /healthz HTTP/1.0\r\n\r\n");
    BOOST_TEST(raw.rfind("HTTP/1.0 200", 0) == 0, raw.substr(0, 40));
    raw = send_raw(gw.port,
                   "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /healthz HTTP/1.0\r\n\r\n");
    BOOST_TEST(raw.find("Connection: keep-alive") != std::string::npos);
    BOOST_TEST(raw.find("HTTP/1.0 200", 10) != std::string::npos);
    // A malformed request line: 400 and close.
    raw = send_raw(gw.port, "GARBAGE\r\n\r\n");
    BOOST_TEST(raw.rfind("HTTP/1.1 400", 0) == 0, raw.substr(0, 40));
}

BOOST_AUTO_TEST_CASE(graceful_shutdown_loses_no_request) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"latency_ms": 50})", 2);
    auto gw = gateway(mock, pki).no_cache().start();
    std::atomic<int> ok{0}, refused{0}, lost{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; !stop && i < 1000; ++i) {
                std::optional<HttpClient> c;
                try {
                    c.emplace(gw.port);
                } catch (const std::exception&) {
                    ++refused;  // not accepted: the listener is closed
                    return;
                }
                try {
                    char id[32];
                    std::snprintf(id, sizeof id, "b%dx%d", t, i);
                    auto r = c->request("GET", backup_path(id), with_key({{"Connection", "close"}}));
                    if (r.status == 200)
                        ++ok;
                    else
                        ++lost;
                } catch (const std::exception&) {
                    ++lost;  // accepted, then reset or no answer
                }
            }
        });
    }
    // Let traffic flow until a few requests have completed, then ask for shutdown.
    BOOST_TEST_REQUIRE(eventually([&] { return ok.load() >= 20; }, 30s));
    gw.child.signal(SIGTERM);
    auto rc = gw.child.wait_exit(15s);
    stop = true;
    for (auto& th : threads) th.join();
    BOOST_TEST(rc.has_value());
    BOOST_TEST(rc.value_or(-1) == 0);
    BOOST_TEST(lost.load() == 0);
    BOOST_TEST_MESSAGE("ok=" << ok.load() << " refused=" << refused.load() << " lost=" << lost.load());
}

BOOST_AUTO_TEST_CASE(check_config_and_cli) {
    TempDir d("rdsgw-cli");
    std::string good = d.path() + "/good.json", bad = d.path() + "/bad.json";
    {
        std::ofstream(good) << R"({"callers": {"required": false}})";
        std::ofstream(bad) << R"({"callers": {"required": false}, "upstream": {"conect_timeout_ms": 5}})";
    }
    Child c;
    c.spawn({RDSGW_GATEWAY_BIN, "--check-config", good}, {{"RDS_AUTH_TOKEN", "x"}});
    BOOST_TEST(c.wait_exit().value_or(-1) == 0);
    Child b;
    b.spawn({RDSGW_GATEWAY_BIN, "--check-config", bad}, {{"RDS_AUTH_TOKEN", "x"}});
    BOOST_TEST(b.wait_exit().value_or(-1) == 2);
    BOOST_TEST(b.output().find("upstream.conect_timeout_ms") != std::string::npos);
    Child v;
    v.spawn({RDSGW_GATEWAY_BIN, "--version"});
    BOOST_TEST(v.wait_exit().value_or(-1) == 0);
    BOOST_TEST(v.output().find("rds-gateway ") != std::string::npos);
    BOOST_TEST(v.output().find("(malloc: ") != std::string::npos);
    Child h;
    h.spawn({RDSGW_GATEWAY_BIN, "--help"});
    BOOST_TEST(h.wait_exit().value_or(-1) == 0);
    BOOST_TEST(h.output().find("--check-config") != std::string::npos);
}
