// Observability (issue 7): Prometheus text that parses and counts what happened, readiness with reasons
// (credentials, drain), the access log (fields, file reopened on SIGHUP), and no secret anywhere.
#define BOOST_TEST_MODULE observability
#include <signal.h>

#include <filesystem>
#include <regex>
#include <set>
#include <thread>

#include "harness.hpp"

using namespace rdsgw::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {
const std::string kPassword = "PW-recognizable-5e3c1a";
const std::string kAk = "AKRECOGNIZABLE000001";
const std::string kSk = "SK-recognizable-77aa00-0000000000000";
const std::string kCallerSk = "CALLER-SK-recognizable-1234";

// Checks the Prometheus text exposition format (0.0.4) line by line; returns the families' types.
std::map<std::string, std::string> check_prometheus_text(const std::string& text) {
    static const std::regex help(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .*$)");
    static const std::regex type(
        R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$)");
    static const std::regex sample(
        R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? (-?[0-9.eE+-]+|[+-]Inf|NaN)( -?[0-9]+)?$)");
    std::map<std::string, std::string> types;
    std::istringstream in(text);
    std::string line;
    int samples = 0;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        std::smatch m;
        if (std::regex_match(line, m, type)) {
            types[m[1]] = m[2];
            continue;
        }
        if (std::regex_match(line, m, help)) continue;
        BOOST_TEST_REQUIRE(std::regex_match(line, m, sample), "not Prometheus text: " << line);
        std::string name = m[1];
        std::string family = name;
        for (const char* suffix : {"_bucket", "_sum", "_count"}) {
            std::string s(suffix);
            if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0 &&
                types.count(name.substr(0, name.size() - s.size())))
                family = name.substr(0, name.size() - s.size());
        }
        BOOST_TEST(types.count(family) == 1u, "sample without TYPE: " << line);
        ++samples;
    }
    BOOST_TEST(samples > 10);
    // The gateway's own families, and the standard process metrics.
    for (auto& kv : types)
        BOOST_TEST((kv.first.rfind("rdsgw_", 0) == 0u || kv.first.rfind("process_", 0) == 0u), kv.first);
    return types;
}
}  // namespace

BOOST_AUTO_TEST_CASE(metrics_parse_and_count) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    GatewayProc gw(base_config(mock, &pki), {{"RDS_AUTH_TOKEN", "t"}});
    const int misses = 3, hits = 5;
    for (int i = 0; i < misses; ++i) gw.get(backup_path("obs" + std::to_string(i)), with_key());
    for (int i = 0; i < hits; ++i) gw.get(backup_path("obs0"), with_key());
    gw.get(backup_path(), {});                                // 401
    gw.get("/v3/" + kProject + "/backup-files", with_key());  // 400
    // A request is counted when its answer has been written (with its duration and bytes), so a connection's
    // thread may count it a moment after the client has read it: wait until all ten have been counted.
    std::string text;
    BOOST_TEST(eventually(
        [&] {
            text = gw.admin_get("/metrics").body;
            return metric_value(text, R"(rdsgw_request_duration_seconds_count{route="backup_files"})") >=
                   misses + hits + 2;
        },
        10s));
    auto types = check_prometheus_text(text);
    for (const char* f :
         {"rdsgw_requests_total", "rdsgw_request_duration_seconds", "rdsgw_upstream_requests_total",
          "rdsgw_upstream_duration_seconds", "rdsgw_upstream_connections_open",
          "rdsgw_upstream_connections_idle", "rdsgw_cache_entries", "rdsgw_cache_bytes",
          "rdsgw_cache_events_total", "rdsgw_singleflight_waiters", "rdsgw_credential_refreshes_total",
          "rdsgw_credential_expiry_seconds", "rdsgw_circuit_breaker_state", "rdsgw_requests_in_flight",
          "rdsgw_rejected_requests_total", "rdsgw_build_info", "rdsgw_access_log_dropped_lines_total",
          "rdsgw_open_connections", "rdsgw_caller_auth_failures_total"}) {
        BOOST_TEST(types.count(f) == 1u, "missing family " << f);
    }
    for (auto& [name, t] : types) {
        if (t == "counter") BOOST_TEST((name.size() > 6 && name.substr(name.size() - 6) == "_total"), name);
    }
    BOOST_TEST(types["rdsgw_request_duration_seconds"] == "histogram");
    BOOST_TEST(metric_value(text, R"(rdsgw_cache_events_total{event="hit"})") == hits);
    BOOST_TEST(metric_value(text, R"(rdsgw_cache_events_total{event="miss"})") == misses);
    BOOST_TEST(
        metric_value(text,
                     R"(rdsgw_requests_total{cache="HIT",code="200",method="GET",route="backup_files"})") ==
        hits);
    BOOST_TEST(
        metric_value(text,
                     R"(rdsgw_requests_total{cache="MISS",code="200",method="GET",route="backup_files"})") ==
        misses);
    BOOST_TEST(metric_value(text, R"(rdsgw_upstream_requests_total{attempt="1",code="200"})") == misses);
    BOOST_TEST(metric_value(text, R"(rdsgw_rejected_requests_total{reason="auth"})") == 1);
    BOOST_TEST(metric_value(text, R"(rdsgw_rejected_requests_total{reason="validation"})") == 1);
    BOOST_TEST(metric_value(text, R"(rdsgw_request_duration_seconds_count{route="backup_files"})") ==
               misses + hits + 2);
    BOOST_TEST(metric_value(text, "rdsgw_cache_entries") == misses);
    // rdsgw_build_info{allocator,boost,commit,openssl,version} (test_ops checks every label).
    BOOST_TEST(text.find(R"(,version=")" + std::string(RDSGW_VERSION) + "\"} 1\n") != std::string::npos);
    // Buckets are OpenTelemetry's defaults, in seconds.
    BOOST_TEST(text.find(R"(rdsgw_request_duration_seconds_bucket{route="backup_files",le="0.005"})") !=
               std::string::npos);
    BOOST_TEST(text.find(R"(le="7.5")") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(readiness_reasons_credentials_and_drain) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"auth":"iam","token_lifetime_s":4})");
    auto cfg = base_config(mock, &pki);
    cfg.as_object()["auth"] = iam_auth(mock, 3, 1, 50, 200);
    cfg.as_object()["limits"] = {
        {"drain_delay_ms", 4000}};  // long enough for the checks below on a busy machine
    GatewayProc gw(cfg, {{"GW_IAM_PASSWORD", kPassword}});
    BOOST_REQUIRE(eventually([&] { return gw.get("/readyz").status == 200; }, 5s));
    auto ok = gw.get("/readyz").json();
    BOOST_TEST_MESSAGE("ready: " << json::serialize(ok));
    BOOST_TEST(std::string(ok.at("status").as_string()) == "ready");
    BOOST_TEST(ok.at("checks").at("credentials").at("ok").as_bool());
    BOOST_TEST(ok.at("checks").at("credentials").at("seconds_to_expiry").to_number<double>() > 0);
    BOOST_TEST(ok.at("checks").at("listeners").at("ok").as_bool());
    // Credentials go bad: IAM fails and the token runs into its safety window.
    mock.configure(R"({"iam_fail_status":500})");
    BOOST_REQUIRE(eventually([&] { return gw.get("/readyz").status == 503; }, 6s));
    auto bad = gw.get("/readyz").json();
    BOOST_TEST_MESSAGE("not ready: " << json::serialize(bad));
    BOOST_TEST(std::string(bad.at("reason").as_string()).find("credentials") != std::string::npos);
    BOOST_TEST(!bad.at("checks").at("credentials").at("ok").as_bool());
    auto m = gw.admin_get("/metrics").body;
    BOOST_TEST(metric_value(m, R"(rdsgw_credential_refreshes_total{kind="iam",result="error"})") >= 1);
    BOOST_TEST(metric_value(m, R"(rdsgw_credential_refreshes_total{kind="iam",result="ok"})") >= 1);
    mock.configure(R"({"iam_fail_status":0})");
    BOOST_REQUIRE(eventually([&] { return gw.get("/readyz").status == 200; }, 5s));
    // Drain: readiness turns 503 at once, requests are still served during the drain delay, then exit 0.
    gw.child.signal(SIGTERM);
    BOOST_REQUIRE(eventually([&] { return gw.get("/readyz").status == 503; }, 3s));
    auto dr = gw.get("/readyz").json();
    BOOST_TEST(std::string(dr.at("reason").as_string()).find("draining") != std::string::npos);
    BOOST_TEST(gw.get(backup_path(), with_key()).status == 200u);
    BOOST_TEST(gw.child.wait_exit(10s).value_or(-1) == 0);
}

BOOST_AUTO_TEST_CASE(access_log_fields_and_reopen) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    auto cfg = base_config(mock, &pki);
    TempDir logs("rdsgw-logs");
    std::string path = logs.path() + "/access.log";
    cfg.at("log").as_object()["access"] = path;
    GatewayProc gw(cfg, {{"RDS_AUTH_TOKEN", "t"}});
    gw.get(backup_path(), with_key({{"X-Request-Id", "log-1"}}));
    gw.get(backup_path(), with_key({{"X-Request-Id", "log-2"}}));
    auto read = [](const std::string& p) {
        std::ifstream f(p);
        std::stringstream ss;
        ss << f.rdbuf();
        return ss.str();
    };
    // Each worker thread queues its own lines and the writer drains the threads' queues in turn, so log-2's
    // line can reach the file before log-1's: wait for both (waiting for log-2 alone failed under ASan).
    BOOST_REQUIRE(eventually(
        [&] {
            const std::string all = read(path);
            return all.find("\"log-1\"") != std::string::npos && all.find("\"log-2\"") != std::string::npos;
        },
        5s));
    // Lines are in completion order, which need not be request order: find this request's line.
    std::istringstream lines(read(path));
    std::string line;
    while (std::getline(lines, line) && line.find("\"log-1\"") == std::string::npos) {
    }
    auto j = json::parse(line).as_object();
    for (const char* k :
         {"time", "request_id", "client", "caller", "method", "route", "project_id", "backup_id", "status",
          "cache", "upstream_status", "attempts", "upstream_ms", "total_ms", "bytes_sent"})
        BOOST_TEST(j.contains(k), k);
    BOOST_TEST(std::string(j.at("request_id").as_string()) == "log-1");
    BOOST_TEST(std::string(j.at("caller").as_string()) == "tester");
    BOOST_TEST(std::string(j.at("route").as_string()) == "/{version_id}/{project_id}/backup-files");
    BOOST_TEST(std::string(j.at("cache").as_string()) == "MISS");
    BOOST_TEST(j.at("upstream_status").as_int64() == 200);
    BOOST_TEST(j.at("bytes_sent").as_int64() > 100);
    // Rotation: move the file away, SIGHUP, new lines go to a new file at the configured path.
    std::filesystem::rename(path, path + ".1");
    auto mark = gw.child.output().size();
    gw.child.signal(SIGHUP);
    BOOST_REQUIRE(eventually(
        [&] { return gw.child.output().find("callers reloaded", mark) != std::string::npos; }, 5s));
    gw.get(backup_path(), with_key({{"X-Request-Id", "log-3"}}));
    BOOST_REQUIRE(eventually([&] { return read(path).find("log-3") != std::string::npos; }, 3s));
    BOOST_TEST(read(path + ".1").find("log-3") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(no_secret_anywhere) {
    Pki pki = make_pki();
    // IAM mode with a short token life (refreshes), a caller with an API key and one with an AK/SK pair.
    MockServer mock(&pki, R"({"auth":"iam","token_lifetime_s":3,"iam_password":")" + kPassword + R"(",
                             "missing_backups":["gone00"]})");
    auto cfg = base_config(mock, &pki);
    cfg.as_object()["auth"] = iam_auth(mock, 2, 1);
    cfg.at("callers").at("list").as_array().push_back(json::object{{"name", "sdk"},
                                                                   {"access_key", "CALLERAK1"},
                                                                   {"secret_key", {{"env", "CALLER_SK"}}},
                                                                   {"projects", {"*"}}});
    cfg.as_object()["cache"] = {{"ttl_s", 1}};
    cfg.as_object()["retry"] = {{"base_backoff_ms", 1}, {"max_backoff_ms", 5}};
    GatewayProc gw(cfg, {{"GW_IAM_PASSWORD", kPassword}, {"CALLER_SK", kCallerSk}});
    BOOST_REQUIRE(eventually([&] { return gw.get("/readyz").status == 200; }, 5s));

    std::string seen;  // everything a caller saw that is not a 200 body (those carry the links by design)
    auto record = [&](const Response& r) {
        for (auto& [k, v] : r.headers) seen += k + ": " + v + "\n";
        if (r.status != 200) seen += r.body + "\n";
    };
    auto t0 = std::chrono::steady_clock::now();
    int i = 0;
    while (std::chrono::steady_clock::now() - t0 < 4s) {                            // spans a token refresh
        record(gw.get(backup_path("sec" + std::to_string(i % 5)), with_key()));     // misses, then hits
        record(gw.get(backup_path("gone00"), with_key()));                          // 404 pass-through
        record(gw.get(backup_path(), {{"X-Api-Key", "wrong-" + kApiKey}}));         // 401
        record(gw.get(backup_path(), {{"Authorization", "Bearer " + kCallerSk}}));  // 401
        ++i;
        std::this_thread::sleep_for(50ms);  // pacing
    }
    mock.configure(R"({"script":[{"status":503},{"status":503},{"status":503}]})");  // retries, then 5xx
    record(gw.get(backup_path("retry1"), with_key()));
    mock.configure(R"({"body_mode":"bad_size"})");  // a normalization failure
    record(gw.get(backup_path("badsize"), with_key()));
    mock.configure(R"({"body_mode":"normal"})");
    mock.revoke();  // a forced refresh
    record(gw.get(backup_path("afterrevoke"), with_key()));
    record(gw.get("/readyz"));
    seen += gw.admin_get("/metrics").body;

    std::string logs = gw.child.output();
    BOOST_TEST(logs.find("obtained a new IAM token") != std::string::npos);
    for (const std::string& secret :
         {kPassword, kApiKey, kCallerSk, std::string("MOCKTOKEN-"), std::string("Signature=mocksig"),
          std::string("AccessKeyId=MOCKAK"), std::string("Expires=")}) {
        BOOST_TEST(logs.find(secret) == std::string::npos,
                   "a secret is in the logs: " << secret.substr(0, 3));
        BOOST_TEST(seen.find(secret) == std::string::npos,
                   "a secret reached a caller/metrics: " << secret.substr(0, 3));
    }
}
