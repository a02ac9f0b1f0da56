// The front door (issue 14): HTTP/1.1 framing refusals, exact header limits and one header deadline,
// exclusive listeners, the admin listener's own connection budget, file-descriptor exhaustion, every answered
// request logged, and a drain that loses nothing.
#define BOOST_TEST_MODULE front_door
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "harness.hpp"

using namespace rdsgw::test;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

std::vector<std::pair<std::string, std::string>> token_env() {
    return {{"RDS_AUTH_TOKEN", "front-door-token"}};
}

// A plain TCP connection for hand-written bytes.
class Raw {
  public:
    explicit Raw(int port) {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<std::uint16_t>(port));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
            throw std::runtime_error("connect");
    }
    ~Raw() {
        if (fd_ >= 0) ::close(fd_);
    }
    Raw(const Raw&) = delete;
    Raw& operator=(const Raw&) = delete;
    // Leaves as a vanished client does: the connection is reset (RST), not closed in order.
    void reset() {
        const linger l{1, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        ::close(fd_);
        fd_ = -1;
    }
    void shutdown_write() { ::shutdown(fd_, SHUT_WR); }
    void send(std::string_view s) {
        while (!s.empty()) {
            ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
            if (n <= 0) throw std::runtime_error("send");
            s.remove_prefix(static_cast<std::size_t>(n));
        }
    }
    // Reads until the peer closes (true) or `timeout` passes (false); everything read is in `got`.
    bool read_to_close(std::string& got, std::chrono::milliseconds timeout = 10s) {
        const auto end = steady::now() + timeout;
        char buf[8192];
        for (;;) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - steady::now()).count();
            if (left <= 0) return false;
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
            ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
            if (n <= 0) return true;  // closed (or reset)
            got.append(buf, static_cast<std::size_t>(n));
        }
    }
    // Reads until `got` holds `count` complete answers' heads (bodies are small) or the timeout.
    bool read_answers(std::string& got, std::size_t count, std::chrono::milliseconds timeout = 10s) {
        const auto end = steady::now() + timeout;
        char buf[8192];
        while (answers(got) < count) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - steady::now()).count();
            if (left <= 0) return false;
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, static_cast<int>(left)) <= 0) return false;
            ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
            if (n <= 0) return false;
            got.append(buf, static_cast<std::size_t>(n));
        }
        return true;
    }
    static std::size_t answers(const std::string& s) {
        std::size_t n = 0;
        for (auto p = s.find("HTTP/1."); p != std::string::npos; p = s.find("HTTP/1.", p + 1)) ++n;
        return n;
    }

  private:
    int fd_ = -1;
};

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

std::string request(const std::string& backup, const std::string& extra_headers,
                    const std::string& host = "Host: gw\r\n") {
    return "GET " + backup_path(backup) + " HTTP/1.1\r\n" + host + "X-Api-Key: " + kApiKey + "\r\n" +
           extra_headers + "\r\n";
}

struct Fixture {
    Fixture() : pki(make_pki()), mock(&pki, "{}", 1), gw(config(), token_env()) {}
    json::value config() {
        auto cfg = base_config(mock, &pki);
        cfg.as_object()["limits"] = {{"header_timeout_ms", 1500}};
        return cfg;
    }
    Pki pki;
    MockServer mock;
    GatewayProc gw;
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(framing, Fixture)

BOOST_AUTO_TEST_CASE(a_request_with_transfer_encoding_is_refused_and_nothing_is_smuggled) {
    const std::pair<std::string, unsigned> cases[] = {
        {"gzip", 400},        {"xchunked", 400},      {"", 400},
        {"\"chunked\"", 400}, {"chunked, gzip", 400}, {"chunked", 413},
    };
    for (const auto& [te, status] : cases) {
        BOOST_TEST_CONTEXT("Transfer-Encoding: " << te) {
            Raw c(gw.port);
            // The "body" is a complete second request: if the first were treated as bodiless, it would run.
            c.send(request("first", "Transfer-Encoding: " + te + "\r\n") + request("smuggled", ""));
            std::string got;
            BOOST_TEST(c.read_to_close(got), "the connection must be closed");
            BOOST_TEST(Raw::answers(got) == 1u, got);
            BOOST_TEST(got.rfind("HTTP/1.1 " + std::to_string(status), 0) == 0, got.substr(0, 60));
            BOOST_TEST(got.find("Connection: close") != std::string::npos);
        }
    }
    BOOST_TEST(mock.stat("rds_requests") == 0);
}

BOOST_AUTO_TEST_CASE(content_length_with_transfer_encoding_or_differing_lengths_is_refused) {
    for (const std::string& bad :
         {std::string("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n"),
          std::string("Content-Length: 0\r\nContent-Length: 5\r\n"), std::string("Content-Length: 0, 1\r\n"),
          std::string("Content-Length: -0\r\n")}) {
        BOOST_TEST_CONTEXT(bad) {
            Raw c(gw.port);
            c.send(request("cl", bad) + request("smuggled", ""));
            std::string got;
            BOOST_TEST(c.read_to_close(got));
            BOOST_TEST(Raw::answers(got) == 1u, got);
            BOOST_TEST(got.rfind("HTTP/1.1 400", 0) == 0, got.substr(0, 60));
        }
    }
    // The same length twice, or zero, is fine.
    Raw c(gw.port);
    c.send(request("cl", "Content-Length: 0\r\nContent-Length: 0\r\nConnection: close\r\n"));
    std::string got;
    BOOST_TEST(c.read_to_close(got));
    BOOST_TEST(got.rfind("HTTP/1.1 200", 0) == 0, got.substr(0, 60));
}

BOOST_AUTO_TEST_CASE(host_must_be_one_valid_uri_host) {
    const std::string bad_hosts[] = {
        "",                        // missing in HTTP/1.1
        "Host: a\r\nHost: b\r\n",  // repeated
        "Host:\r\n",               // empty
        "Host: my host\r\n",       // a space
        "Host: user@gw\r\n",       // userinfo
        "Host: gw\xC3\xA9\r\n",    // bytes >= 0x80
        "Host: gw:80x\r\n",        // a bad port
        "Host: [::1\r\n",          // an unclosed IPv6 literal
    };
    for (const auto& h : bad_hosts) {
        BOOST_TEST_CONTEXT(h) {
            Raw c(gw.port);
            c.send(request("h", "", h));
            std::string got;
            BOOST_TEST(c.read_to_close(got));
            BOOST_TEST(got.rfind("HTTP/1.1 400", 0) == 0, got.substr(0, 60));
        }
    }
    for (const std::string good :
         {"Host: gw\r\n", "Host: gw:8080\r\n", "Host: 127.0.0.1:1\r\n", "Host: [::1]:80\r\n"}) {
        BOOST_TEST_CONTEXT(good) {
            Raw c(gw.port);
            c.send(request("h", "Connection: close\r\n", good));
            std::string got;
            BOOST_TEST(c.read_to_close(got));
            BOOST_TEST(got.rfind("HTTP/1.1 200", 0) == 0, got.substr(0, 60));
        }
    }
}

BOOST_AUTO_TEST_CASE(connection_close_counts_on_any_line) {
    Raw c(gw.port);
    c.send(request("conn", "Connection: keep-alive\r\nConnection: close\r\n"));
    std::string got;
    BOOST_TEST(c.read_to_close(got, 5s), "the gateway must close after the answer");
    BOOST_TEST(got.find("Connection: close") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(the_header_limit_bounds_the_whole_block) {
    // 1,100 small headers (12,100 bytes) at the default 8,192, sent in pieces.
    std::string many;
    for (int i = 0; i < 1100; ++i) many += "X-H" + std::to_string(1000 + i) + ": v\r\n";
    Raw c(gw.port);
    const std::string req = request("big", many);
    for (std::size_t off = 0; off < req.size(); off += 1000) {
        try {
            c.send(std::string_view(req).substr(off, 1000));
        } catch (const std::exception&) {
            break;  // the gateway may close before the rest is sent
        }
        std::this_thread::sleep_for(1ms);  // pacing, so the block arrives in several reads (not a sync)
    }
    std::string got;
    c.read_to_close(got);
    BOOST_TEST(got.rfind("HTTP/1.1 431", 0) == 0, got.substr(0, 60));

    // A block of exactly the limit passes; one byte more does not.
    const std::string head = request("exact", "");  // ends with the empty line
    const std::size_t limit = 8192;
    auto with_padding = [&](std::size_t total) {
        const std::string prefix = "X-Pad: ";
        std::string pad(total - head.size() - prefix.size() - 2, 'p');
        return head.substr(0, head.size() - 2) + prefix + pad + "\r\n\r\n";
    };
    for (auto [size, status] : {std::pair<std::size_t, int>{limit, 200}, {limit + 1, 431}}) {
        Raw e(gw.port);
        std::string r = with_padding(size);
        BOOST_REQUIRE_EQUAL(r.size(), size);
        e.send(r);
        std::string answer;
        e.read_answers(answer, 1);
        BOOST_TEST(answer.rfind("HTTP/1.1 " + std::to_string(status), 0) == 0,
                   size << ": " << answer.substr(0, 40));
    }
}

BOOST_AUTO_TEST_CASE(a_slow_header_is_dropped_at_the_header_timeout_not_twice_it) {
    // header_timeout_ms is 1500: a client trickling its header gets a 408 around then (generous bound: well
    // under twice the timeout, where the old per-phase timers ended).
    Raw c(gw.port);
    const auto t0 = steady::now();
    std::string got;
    std::atomic<bool> closed{false};
    std::thread reader([&] { closed = c.read_to_close(got, 10s); });
    const std::string req = request("slow", "");
    for (std::size_t i = 0; i + 1 < req.size() && !closed; ++i) {
        try {
            c.send(std::string_view(req).substr(i, 1));
        } catch (const std::exception&) {
            break;
        }
        std::this_thread::sleep_for(100ms);  // the trickle itself, not a synchronization
    }
    reader.join();
    const auto took = to_ms(steady::now() - t0);
    BOOST_TEST(closed.load());
    BOOST_TEST(got.rfind("HTTP/1.1 408", 0) == 0, got.substr(0, 60));
    BOOST_TEST(took >= 1400);
    BOOST_TEST(took < 2800);
}

BOOST_AUTO_TEST_CASE(a_content_length_above_a_mebibyte_is_413_like_any_other_body) {
    // Beast's default body limit (1 MiB) used to turn these into 400 "malformed HTTP request", logged
    // without method or route.
    for (const std::string cl : {"1048577", "2000000", "99999999999"}) {
        BOOST_TEST_CONTEXT("Content-Length: " << cl) {
            const std::string id = "big-cl-" + cl;
            Raw c(gw.port);
            c.send(request("cl", "Content-Length: " + cl + "\r\nX-Request-Id: " + id + "\r\n"));
            std::string got;
            BOOST_TEST(c.read_to_close(got), "the connection must be closed");
            BOOST_TEST(got.rfind("HTTP/1.1 413", 0) == 0, got.substr(0, 60));
            BOOST_TEST(got.find("\"request_id\":\"" + id + "\"") != std::string::npos, got);
            const std::string line = access_log_line(gw.child, id);
            BOOST_TEST(line.find("\"method\":\"GET\"") != std::string::npos, line);
            BOOST_TEST(
                line.find("\"route\":\"/{version_id}/{project_id}/backup-files\"") != std::string::npos,
                line);
            BOOST_TEST(line.find("\"status\":413") != std::string::npos, line);
        }
    }
    BOOST_TEST(mock.stat("rds_requests") == 0);
}

BOOST_AUTO_TEST_CASE(bare_lf_or_cr_line_endings_are_refused_at_once) {
    // header_timeout_ms is 1500: waiting for a CRLF CRLF that never comes would end in 408, not 400.
    for (const std::string& bad : {
             std::string("GET /healthz HTTP/1.1\nHost: gw\n\n"),
             std::string("GET /healthz HTTP/1.1\r\nHost: gw\n\r\n"),
             std::string("\nGET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n"),
             std::string("GET /healthz HTTP/1.1\rHost: gw\r\n\r\n"),
             // A complete block with a bare LF inside a field, and a second request smuggled behind it.
             std::string("GET /healthz HTTP/1.1\r\nHost: gw\r\nX-A: 1\nX-B: 2\r\n\r\n") +
                 request("smuggled", ""),
         }) {
        BOOST_TEST_CONTEXT(bad.substr(0, 40)) {
            Raw c(gw.port);
            c.send(bad);
            std::string got;
            BOOST_TEST(c.read_to_close(got), "the connection must be closed");
            BOOST_TEST(Raw::answers(got) == 1u, got);
            BOOST_TEST(got.rfind("HTTP/1.1 400", 0) == 0, got.substr(0, 60));
            BOOST_TEST(got.find("CRLF") != std::string::npos, got);
            BOOST_TEST(got.find("Connection: close") != std::string::npos);
        }
    }
    BOOST_TEST(mock.stat("rds_requests") == 0);
}

// Pipelined requests are answered from the bytes already read, with a turn for other connections every 16
// (Session::run): all 40 are answered, in order, one upstream call for the one backup.
BOOST_AUTO_TEST_CASE(forty_pipelined_requests_are_answered_in_order) {
    std::string burst;
    for (int i = 0; i < 40; ++i)
        burst += i % 5 == 4 ? std::string("GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n")
                            : request("pipe40", "X-Request-Id: pipe40-" + std::to_string(i) + "\r\n");
    burst += "GET /healthz HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n";
    Raw c(gw.port);
    c.send(burst);
    std::string got;
    BOOST_TEST_REQUIRE(c.read_to_close(got, 20s));
    BOOST_TEST(Raw::answers(got) == 41u);
    std::size_t at = 0;
    for (int i = 0; i < 40; ++i) {
        if (i % 5 == 4) continue;
        const std::size_t id = got.find("pipe40-" + std::to_string(i) + "\r\n");
        BOOST_TEST_REQUIRE(id != std::string::npos, i);
        BOOST_TEST(id > at, i);  // after the one before it
        at = id;
    }
    BOOST_TEST(mock.stat("rds_requests") == 1);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(every_answered_request_is_logged_and_counted) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    auto cfg = base_config(mock, &pki);
    // The header deadline must outlast holding three idle connections below: a connection that sent nothing
    // is closed silently at its deadline, so a held one timing out would let the fourth in (seen under load).
    cfg.as_object()["limits"] = {{"max_connections", 3}, {"header_timeout_ms", 10000}};
    GatewayProc gw(cfg, token_env());
    auto request_id_of = [](const std::string& answer) {
        auto p = answer.find("X-Request-Id: ");
        if (p == std::string::npos) return std::string();
        return answer.substr(p + 14, answer.find("\r\n", p) - p - 14);
    };
    std::vector<std::pair<std::string, int>> seen;  // request id, status
    auto one = [&](const std::string& bytes, int status) {
        Raw c(gw.port);
        c.send(bytes);
        std::string got;
        c.read_to_close(got, 30s);
        BOOST_TEST_REQUIRE(got.rfind("HTTP/1.1 " + std::to_string(status), 0) == 0,
                           "expected " << status << ", got [" << got.substr(0, 60) << "]");
        seen.emplace_back(request_id_of(got), status);
    };
    one("GET /v3/p/../x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n", 400);  // malformed target
    one(request("b", "Content-Length: 3\r\n") + "abc", 413);                       // a body
    one(request("h", "X-Big: " + std::string(9000, 'x') + "\r\n"), 431);           // headers
    one("GET /healthz HTTP/1.1\r\nHost: gw\r\n", 408);                             // partial, then silence
    {
        // The connection limit: three idle connections held, the fourth is refused at once. The gauge counts
        // both listeners, so first wait until only the scrape's own connection is left (the connections
        // above linger for a moment), then until it has the three held ones as well.
        const auto open = [&] {
            return metric_value(gw.admin_get("/metrics").body, "rdsgw_open_connections");
        };
        BOOST_TEST_REQUIRE(eventually([&] { return open() == 1; }, 20s));
        Raw a(gw.port), b(gw.port), c(gw.port);
        a.send("G");
        b.send("G");
        c.send("G");
        BOOST_TEST(eventually([&] { return open() == 4; }, 20s));
        one("", 503);
    }
    for (const auto& [id, status] : seen) {
        BOOST_TEST_CONTEXT(status) {
            BOOST_TEST_REQUIRE(!id.empty());
            const std::string line = access_log_line(gw.child, id);
            BOOST_TEST_REQUIRE(!line.empty());
            BOOST_TEST(line.find("\"status\":" + std::to_string(status)) != std::string::npos, line);
            BOOST_TEST(line.find("\"error\":") != std::string::npos, line);
        }
    }
    const std::string metrics = gw.admin_get("/metrics").body;
    for (const char* code : {"400", "413", "431", "408", "503"})
        BOOST_TEST(metrics.find(std::string("code=\"") + code + "\"") != std::string::npos, code);
}

BOOST_AUTO_TEST_CASE(a_port_in_use_is_a_startup_error) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    auto cfg = base_config(mock, &pki);
    GatewayProc first(cfg, token_env());
    // A second gateway on the first one's main port: refused, not a silent share.
    cfg.at("listen").as_object()["port"] = first.port;
    TempDir d("rdsgw-second");
    std::ofstream(d.path() + "/g.json") << json::serialize(cfg);
    Child second;
    second.spawn({RDSGW_GATEWAY_BIN, "--config", d.path() + "/g.json"}, token_env());
    auto rc = second.wait_exit(20s);
    BOOST_TEST(rc.has_value());
    BOOST_TEST(rc.value_or(0) != 0);
    BOOST_TEST(lower(second.output()).find("address already in use") != std::string::npos, second.output());
    // Its admin port on the first one's admin port: refused too.
    cfg.at("listen").as_object()["port"] = 0;
    cfg.at("admin").as_object()["port"] = first.admin_port;
    std::ofstream(d.path() + "/g.json") << json::serialize(cfg);
    Child third;
    third.spawn({RDSGW_GATEWAY_BIN, "--config", d.path() + "/g.json"}, token_env());
    BOOST_TEST(third.wait_exit(20s).value_or(0) != 0);
    BOOST_TEST(lower(third.output()).find("address already in use") != std::string::npos, third.output());
    // The first one still answers everything.
    for (int i = 0; i < 20; ++i) BOOST_TEST(first.get("/healthz").status == 200);
}

BOOST_AUTO_TEST_CASE(a_flood_on_the_main_port_leaves_the_admin_listener_alone) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    auto cfg = base_config(mock, &pki);
    cfg.as_object()["limits"] = {{"max_connections", 5}, {"header_timeout_ms", 30000}};
    GatewayProc gw(cfg, token_env());
    std::vector<std::unique_ptr<Raw>> flood;
    for (int i = 0; i < 20; ++i) flood.push_back(std::make_unique<Raw>(gw.port));
    // The main port is full: a sixth client is refused...
    BOOST_TEST(eventually([&] { return gw.get("/healthz").status == 503; }));
    // ...while the admin listener answers.
    for (int i = 0; i < 10; ++i) {
        BOOST_TEST(gw.admin_get("/metrics").status == 200);
        BOOST_TEST(gw.admin_get("/healthz").status == 200);
    }
}

BOOST_AUTO_TEST_CASE(out_of_file_descriptors_backs_off_and_recovers) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    auto cfg = base_config(mock, &pki);
    cfg.as_object()["limits"] = {{"header_timeout_ms", 60000}, {"idle_timeout_ms", 60000}};
    TempDir d("rdsgw-fd");
    const std::string path = d.path() + "/g.json";
    std::ofstream(path) << json::serialize(cfg);
    Child gw;
    gw.spawn(
        {"/bin/sh", "-c", "ulimit -n 64 && exec " + std::string(RDSGW_GATEWAY_BIN) + " --config " + path},
        token_env());
    int admin_port = 0;
    const int port = start_and_get_port(gw, 20s, &admin_port);
    // Hold more connections than the process has descriptors for, for about two seconds.
    std::vector<std::unique_ptr<Raw>> held;
    for (int i = 0; i < 100; ++i) held.push_back(std::make_unique<Raw>(port));
    const auto mark = gw.output().size();
    std::this_thread::sleep_for(2s);  // the time window the warnings are counted in, not a synchronization
    std::size_t warnings = 0;
    const std::string out = gw.output();
    for (auto p = out.find("pausing accepts", mark); p != std::string::npos;
         p = out.find("pausing accepts", p + 1))
        ++warnings;
    BOOST_TEST(warnings >= 1u);
    BOOST_TEST(warnings <= 4u);  // about once a second, not every 50 ms
    // Descriptors free again: it serves without a restart.
    // Until the gateway has closed the released connections, an attempt may still be refused or reset.
    held.clear();
    BOOST_TEST(eventually(
        [&] {
            try {
                return get(port, "/healthz").status == 200;
            } catch (const std::exception&) {
                return false;
            }
        },
        20s));
    gw.signal(SIGTERM);
    BOOST_TEST(gw.wait_exit(20s).value_or(-1) == 0);
}

namespace {

// Keep-alive clients sending continuously through a SIGTERM; counts requests written without an answer.
struct DrainRun {
    int ok = 0, refused = 0, lost = 0, close_seen = 0;
};

DrainRun drain_once(unsigned drain_delay_ms) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"latency_ms": 100})", 2);
    auto cfg = base_config(mock, &pki);
    cfg.as_object()["cache"] = {{"enabled", false}};
    cfg.as_object()["limits"] = {{"drain_delay_ms", drain_delay_ms}, {"drain_timeout_ms", 10000}};
    GatewayProc gw(cfg, token_env());
    std::atomic<int> ok{0}, refused{0}, lost{0}, close_seen{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (int t = 0; t < 16; ++t) {
        threads.emplace_back([&, t] {
            int i = 0;
            while (!stop) {
                std::unique_ptr<Raw> c;
                try {
                    c = std::make_unique<Raw>(gw.port);
                } catch (const std::exception&) {
                    ++refused;  // not accepted: the listener is closed
                    return;
                }
                for (;;) {  // keep-alive until the gateway says close
                    char id[32];
                    std::snprintf(id, sizeof id, "d%dx%d", t, i++);
                    std::string got;
                    try {
                        c->send(request(id, ""));
                    } catch (const std::exception&) {
                        break;  // closed before we wrote: nothing was lost
                    }
                    if (!c->read_answers(got, 1, 20s) || got.rfind("HTTP/1.1 200", 0) != 0) {
                        ++lost;
                        break;
                    }
                    ++ok;
                    if (got.find("Connection: close") != std::string::npos) {
                        ++close_seen;
                        break;
                    }
                }
            }
        });
    }
    BOOST_TEST_REQUIRE(eventually([&] { return ok.load() >= 50; }, 20s));
    gw.child.signal(SIGTERM);
    auto rc = gw.child.wait_exit(30s);
    stop = true;
    for (auto& th : threads) th.join();
    BOOST_TEST(rc.value_or(-1) == 0);
    return {ok.load(), refused.load(), lost.load(), close_seen.load()};
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_drain_loses_no_request_on_keep_alive_connections) {
    for (unsigned delay : {0u, 500u, 0u}) {
        DrainRun r = drain_once(delay);
        BOOST_TEST_MESSAGE("drain_delay_ms=" << delay << ": ok=" << r.ok << " refused=" << r.refused
                                             << " lost=" << r.lost
                                             << " closed by the gateway=" << r.close_seen);
        BOOST_TEST(r.lost == 0);
        BOOST_TEST(r.close_seen > 0);  // answers during the drain said Connection: close
    }
}

namespace {

// A gateway whose upstream holds every request until released, with room for two requests in flight.
struct HeldUpstream {
    HeldUpstream()
        : pki(make_pki()),
          mock(&pki, R"({"hold": true})", 2),
          gw(GatewayConfig(mock, pki)
                 .patch(R"({"limits": {"max_inflight": 2},
                            "cache": {"wait_timeout_ms": 60000},
                            "upstream": {"request_timeout_ms": 60000},
                            "retry": {"max_attempts": 1, "deadline_ms": 60000}})")
                 .start()) {}
    ~HeldUpstream() {
        try {
            mock.release();
        } catch (const std::exception&) {
        }
    }
    std::string in_flight_request(const std::string& backup, const std::string& id) {
        return request(backup, "X-Request-Id: " + id + "\r\n");
    }
    double admin_metric(const std::string& series) {
        return metric_value(gw.admin_get("/metrics").body, series);
    }
    Pki pki;
    MockServer mock;
    GatewayProc gw;
};

}  // namespace

BOOST_FIXTURE_TEST_SUITE(in_flight, HeldUpstream)

BOOST_AUTO_TEST_CASE(the_admin_listener_and_healthz_are_outside_the_in_flight_limit) {
    Raw a(gw.port), b(gw.port);
    a.send(in_flight_request("inflight1", "held-1"));
    b.send(in_flight_request("inflight2", "held-2"));
    BOOST_TEST_REQUIRE(mock.wait_for("held", 2, 20s));
    // The main port is full...
    const auto refused = gw.get(backup_path("inflight3"), with_key());
    BOOST_TEST(refused.status == 503u);
    BOOST_TEST(refused.body.find("too many requests in flight") != std::string::npos, refused.body);
    // ...while every admin route and /healthz on either port answer.
    for (const char* path : {"/healthz", "/readyz", "/metrics", "/admin/status", "/admin/status.json"})
        BOOST_TEST(gw.admin_get(path).status == 200u, path);
    HttpClient admin(gw.admin_port);
    const auto purge = admin.request("DELETE", "/admin/cache");
    BOOST_TEST(purge.status == 200u, purge.body);
    BOOST_TEST(gw.get("/healthz").status == 200u);
    // The held requests are answered once the upstream goes on.
    mock.release();
    for (Raw* c : {&a, &b}) {
        std::string got;
        BOOST_TEST(c->read_answers(got, 1, 20s));
        BOOST_TEST(got.rfind("HTTP/1.1 200", 0) == 0, got.substr(0, 60));
    }
}

// Clients that vanish (reset) while their requests wait: the answers cannot be written, so the access log
// and the metrics say 499, not 200; the fetches went on for the cache.
BOOST_AUTO_TEST_CASE(a_client_that_vanished_while_waiting_is_logged_499) {
    {
        Raw a(gw.port), b(gw.port);
        a.send(in_flight_request("hangup1", "hang-1"));
        b.send(in_flight_request("hangup2", "hang-2"));
        BOOST_TEST_REQUIRE(mock.wait_for("held", 2, 20s));
        a.reset();
        b.reset();
    }
    mock.release();
    for (const char* id : {"hang-1", "hang-2"}) {
        const std::string line = access_log_line(gw.child, id, 20s);
        BOOST_TEST(line.find("\"status\":499") != std::string::npos, line);
        BOOST_TEST(line.find("\"bytes_sent\":0") != std::string::npos, line);
    }
    BOOST_TEST(eventually(
        [&] {
            return admin_metric(
                       R"(rdsgw_requests_total{cache="MISS",code="499",method="GET",route="backup_files"})") ==
                   2;
        },
        20s));
    BOOST_TEST(admin_metric("rdsgw_requests_in_flight") == 1);  // the scrape itself
    for (const char* backup : {"hangup1", "hangup2"}) {
        const auto r = gw.get(backup_path(backup), with_key());
        BOOST_TEST(r.status == 200u);
    }
    BOOST_TEST(mock.stat("rds_requests") == 2);
}

// A client that half-closes after sending its request has not hung up: it still gets its answer.
BOOST_AUTO_TEST_CASE(a_client_that_half_closes_while_waiting_still_gets_its_answer) {
    Raw c(gw.port);
    c.send(in_flight_request("halfclose", "half-1"));
    BOOST_TEST_REQUIRE(mock.wait_for("held", 1, 20s));
    c.shutdown_write();
    BOOST_TEST(eventually([&] { return admin_metric("rdsgw_requests_in_flight") == 2; }, 20s));
    mock.release();
    std::string got;
    BOOST_TEST(c.read_to_close(got, 20s));
    BOOST_TEST(got.rfind("HTTP/1.1 200", 0) == 0, got.substr(0, 60));
    BOOST_TEST(access_log_line(gw.child, "half-1").find("\"status\":200") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(requests_pipelined_behind_a_waiting_one_are_kept) {
    Raw c(gw.port);
    c.send(in_flight_request("pipelined", "pipe-1") + "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n" +
           request("pipelined", "Connection: close\r\n"));
    BOOST_TEST_REQUIRE(mock.wait_for("held", 1, 20s));
    mock.release();
    std::string got;
    BOOST_TEST(c.read_to_close(got, 20s));
    BOOST_TEST(Raw::answers(got) == 3u, got);
    BOOST_TEST(got.rfind("HTTP/1.1 200", 0) == 0, got.substr(0, 60));
    BOOST_TEST(got.find("{\"status\":\"ok\"}") != std::string::npos, got);
    BOOST_TEST(access_log_line(gw.child, "pipe-1").find("\"status\":200") != std::string::npos);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(a_tls_connection_that_sends_nothing_is_not_an_auth_rejection) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    // One worker: connections are accepted in the order they were made.
    auto gw = GatewayConfig(mock, pki)
                  .threads(1)
                  .patch(json::value{
                      {"listen", {{"tls_cert_file", pki.server_cert}, {"tls_key_file", pki.server_key}}}})
                  .start();
    auto metric = [&](const std::string& series) {
        return metric_value(gw.admin_get("/metrics").body, series);
    };
    const std::string auth = "rdsgw_rejected_requests_total{reason=\"auth\"}";
    for (int i = 0; i < 5; ++i) Raw silent(gw.port);  // connects and closes (a TCP health check, a port scan)
    {
        Raw garbage(gw.port);  // a failed handshake: counted, as before
        garbage.send("GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n");
        std::string got;
        BOOST_TEST(garbage.read_to_close(got, 20s));
        BOOST_TEST(got.find("HTTP/1.1 200") == std::string::npos);
    }
    BOOST_TEST(eventually([&] { return metric(auth) >= 1; }, 20s));
    // Every connection but the scrape's own is closed: the silent ones' handshakes are over too.
    BOOST_TEST(eventually([&] { return metric("rdsgw_open_connections") == 1; }, 20s));
    BOOST_TEST(metric(auth) == 1);
    // A real client is served.
    HttpClient c(gw.port, TlsOptions::trusting(pki.ca_cert));
    BOOST_TEST(c.request("GET", "/healthz").status == 200u);
}
