// Logs and traces an engineer can follow (issue 18): W3C trace context continued or started and passed
// upstream as a child span; the access log's new fields (error, upstream_request_id, user_agent, protocol,
// tls, trace_id/span_id, the real client behind trusted proxies); debug logs that say what happened without
// a secret or a link.
#define BOOST_TEST_MODULE tracing
#include "harness.hpp"

using namespace rdsgw::test;
using namespace std::chrono_literals;

namespace {

const std::string kToken = "tracing-token-SECRET-42";

std::vector<std::pair<std::string, std::string>> env() {
    return {{"RDS_AUTH_TOKEN", kToken}};
}

std::string access_line_of(GatewayProc& gw, const std::string& id) {
    std::string line = access_log_line(gw.child, id);
    BOOST_TEST_REQUIRE(!line.empty(), "no access-log line for " << id);
    return line;
}

json::object line_json(const std::string& line) {
    return json::parse(line).as_object();
}

std::string field(const json::object& o, const char* name) {
    auto* v = o.if_contains(name);
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_callers_trace_reaches_the_upstream_and_the_logs) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    auto cfg = base_config(mock, &pki);
    GatewayProc gw(cfg, env());
    const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736", parent = "00f067aa0ba902b7";
    auto r = gw.get(backup_path("traced1"), with_key({{"traceparent", "00-" + trace + "-" + parent + "-01"},
                                                      {"tracestate", "congo=t61rcWkgMzE"},
                                                      {"X-Request-Id", "trace-req-1"},
                                                      {"User-Agent", "restore-svc/1.2"}}));
    BOOST_TEST_REQUIRE(r.status == 200u, r.body);
    // Upstream: the same trace, a child span (neither the caller's nor the gateway's own), the flags, the
    // state.
    const auto headers = mock.stats().at("last_rds_headers").as_object();
    const std::string up = std::string(headers.at("traceparent").as_string());
    BOOST_TEST(up.size() == 55u);
    BOOST_TEST(up.substr(0, 36) == "00-" + trace + "-");
    BOOST_TEST(up.substr(36, 16) != parent);
    BOOST_TEST(up.substr(52) == "-01");
    BOOST_TEST(std::string(headers.at("tracestate").as_string()) == "congo=t61rcWkgMzE");
    // The access log joins the caller's trace.
    auto log = line_json(access_line_of(gw, "trace-req-1"));
    BOOST_TEST(field(log, "trace_id") == trace);
    BOOST_TEST(field(log, "parent_span_id") == parent);
    const std::string span = field(log, "span_id");
    BOOST_TEST(span.size() == 16u);
    BOOST_TEST(span != parent);
    BOOST_TEST(span != up.substr(36, 16));
    BOOST_TEST(field(log, "user_agent") == "restore-svc/1.2");
    BOOST_TEST(field(log, "protocol") == "HTTP/1.1");
    BOOST_TEST(!field(log, "upstream_request_id").empty());
    BOOST_TEST(field(log, "upstream_request_id") == r.header("x-upstream-request-id"));
}

BOOST_AUTO_TEST_CASE(an_invalid_or_missing_traceparent_starts_a_new_trace) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    GatewayProc gw(base_config(mock, &pki), env());
    int n = 0;
    for (const std::string tp : {"", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                                 "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                                 "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                                 "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "garbage"}) {
        BOOST_TEST_CONTEXT("traceparent '" << tp << "'") {
            const std::string id = "trace-new-" + std::to_string(++n);
            Headers h{{"X-Request-Id", id}};
            if (!tp.empty()) h.emplace_back("traceparent", tp);
            BOOST_TEST_REQUIRE(gw.get(backup_path("new" + std::to_string(n)), with_key(h)).status == 200u);
            auto log = line_json(access_line_of(gw, id));
            const std::string trace = field(log, "trace_id");
            BOOST_TEST(trace.size() == 32u);
            BOOST_TEST(trace != "4bf92f3577b34da6a3ce929d0e0e4736");
            BOOST_TEST(field(log, "parent_span_id").empty());
            const auto up = std::string(mock.stats().at("last_rds_headers").at("traceparent").as_string());
            BOOST_TEST(up.substr(3, 32) == trace);
        }
    }
}

BOOST_AUTO_TEST_CASE(the_real_client_comes_from_trusted_proxies_only) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    auto cfg = base_config(mock, &pki);
    cfg.at("listen").as_object()["trusted_proxies"] = json::array{"127.0.0.0/8", "10.0.0.0/8"};
    GatewayProc trusting(cfg, env());
    auto client_of = [](GatewayProc& gw, const std::string& id, const std::string& xff) {
        gw.get("/healthz", {{"X-Request-Id", id}, {"X-Forwarded-For", xff}});
        auto log = line_json(access_line_of(gw, id));
        return std::make_pair(field(log, "client"), field(log, "peer"));
    };
    // Right-most untrusted wins; trusted hops are skipped; a forged left part does not matter.
    auto [c1, p1] = client_of(trusting, "xff-1", "6.6.6.6, 203.0.113.9, 10.1.2.3");
    BOOST_TEST(c1 == "203.0.113.9");
    BOOST_TEST(p1 == "127.0.0.1");
    auto [c2, p2] = client_of(trusting, "xff-2", "garbage, 198.51.100.4");
    BOOST_TEST(c2 == "198.51.100.4");
    auto [c3, p3] = client_of(trusting, "xff-3", "203.0.113.9, not-an-ip");
    BOOST_TEST(c3 == "127.0.0.1");  // a malformed hop stops the walk at the last trusted one
    // Without trusted proxies the header is ignored.
    GatewayProc plain(base_config(mock, &pki), env());
    auto [c4, p4] = client_of(plain, "xff-4", "203.0.113.9");
    BOOST_TEST(c4 == "127.0.0.1");
    BOOST_TEST(p4.empty());
}

BOOST_AUTO_TEST_CASE(errors_are_logged_with_their_reason_and_debug_logs_tell_the_story_without_secrets) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    auto cfg = base_config(mock, &pki);  // log.level is debug in the harness
    GatewayProc gw(cfg, env());
    auto r = gw.get(backup_path("bad!id"), with_key({{"X-Request-Id", "dbg-1"}}));
    BOOST_TEST_REQUIRE(r.status == 400u);
    auto log = line_json(access_line_of(gw, "dbg-1"));
    BOOST_TEST(field(log, "error") == std::string(r.json().at("error_msg").as_string()));
    BOOST_TEST(gw.get(backup_path("dbg2"), with_key({{"X-Request-Id", "dbg-2"}})).status == 200u);
    BOOST_TEST(gw.get(backup_path("dbg2"), with_key({{"X-Request-Id", "dbg-3"}})).status == 200u);
    access_line_of(gw, "dbg-3");
    const std::string out = gw.child.output();
    // Debug lines carry the request's ids and say what happened.
    auto debug_line = [&](const std::string& id, const std::string& words) {
        for (std::size_t at = out.find("\"request_id\":\"" + id + "\""); at != std::string::npos;
             at = out.find("\"request_id\":\"" + id + "\"", at + 1)) {
            const auto b = out.rfind('\n', at) + 1;
            const std::string line = out.substr(b, out.find('\n', at) - b);
            if (line.find("\"level\":\"debug\"") != std::string::npos &&
                line.find(words) != std::string::npos)
                return true;
        }
        return false;
    };
    BOOST_TEST(debug_line("dbg-2", "cache miss"));
    BOOST_TEST(debug_line("dbg-2", "upstream attempt 1: HTTP 200"));
    BOOST_TEST(debug_line("dbg-2", "fetched as the leader"));
    BOOST_TEST(debug_line("dbg-3", "cache hit"));
    BOOST_TEST(out.find(kToken) == std::string::npos);
    BOOST_TEST(out.find(kApiKey) == std::string::npos);
    BOOST_TEST(out.find("Signature=") == std::string::npos);  // no link query string
}
