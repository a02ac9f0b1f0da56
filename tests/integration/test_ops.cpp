// Operations (issues 18, 14, 13): a config check that finds what start-up would trip on, the CLI, the JSON
// listening record, metrics conventions checked by promtool, systemd credentials, sd_notify READY / STOPPING
// / WATCHDOG / RELOADING, and SIGHUP naming the settings that need a restart and refusing bad secrets.
#define BOOST_TEST_MODULE ops
#include <signal.h>

#include <fstream>
#include <regex>

#include "harness.hpp"
#include "support/notify_socket.hpp"

using namespace rdsgw::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

using Env = std::vector<std::pair<std::string, std::string>>;
const std::string kToken = "ops-upstream-token-SECRET-41f7";
const std::string kCallerSk = "ops-caller-SK-SECRET-77a1";

struct Run {
    int rc = -1;
    std::string out;  // stdout and stderr
};

Run run(std::vector<std::string> args, const Env& env = {}) {
    Child c;
    args.insert(args.begin(), RDSGW_GATEWAY_BIN);
    c.spawn(args, env);
    Run r;
    r.rc = c.wait_exit(60s).value_or(-1);
    r.out = c.output();
    return r;
}

std::string write(const TempDir& d, const std::string& name, const json::value& cfg) {
    return d.write(name, json::serialize(cfg));
}

// Lines of `text` that contain `what`.
int count(const std::string& text, const std::string& what) {
    int n = 0;
    for (std::size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
    return n;
}

// A config that is fine as it is: TLS upstream verified by the test CA, an SDK caller whose SK comes from
// OPS_CALLER_SK. The upstream is never contacted by -t.
json::value checked_config(const Pki& pki) {
    return {{"listen", {{"address", "127.0.0.1"}, {"port", 0}, {"threads", 1}}},
            {"admin", {{"address", "127.0.0.1"}, {"port", 0}}},
            {"upstream", {{"base_url", "https://localhost:1"}, {"ca_file", pki.ca_cert}}},
            {"auth", {{"mode", "token"}, {"token", {{"env", "RDS_AUTH_TOKEN"}}}}},
            {"callers",
             {{"list", json::array{json::object{{"name", "sdk-caller"},
                                                {"access_key", "OPSAK0001"},
                                                {"secret_key", {{"env", "OPS_CALLER_SK"}}},
                                                {"projects", json::array{"*"}}}}}}}};
}

const std::string kMissingSk =
    "callers.list[0].secret_key (caller sdk-caller): environment variable OPS_CALLER_SK";
const std::string kMissingCa = "upstream.ca_file: cannot load CA ";
const std::string kMissingCert = "listen.tls_cert_file: cannot load ";

}  // namespace

// Issue 18's three configs that --check-config used to pass: each fails alone, all fail together with every
// problem listed, and start-up refuses the same file with the same messages and exit status 2.
BOOST_AUTO_TEST_CASE(check_config_lists_every_problem) {
    const Pki pki = make_pki();
    TempDir d("rdsgw-ops");
    const Env env{{"RDS_AUTH_TOKEN", kToken}, {"OPS_CALLER_SK", kCallerSk}};
    const Env no_sk{{"RDS_AUTH_TOKEN", kToken}};
    auto good = checked_config(pki);
    auto r = run({"-t", write(d, "good.json", good)}, env);
    BOOST_TEST(r.rc == 0, r.out);
    BOOST_TEST(r.out.find("config OK") != std::string::npos);

    r = run({"-t", write(d, "sk.json", good)}, no_sk);  // (1) a caller's secret_key env var unset
    BOOST_TEST(r.rc == 2);
    BOOST_TEST(r.out.find(kMissingSk) != std::string::npos, r.out);

    auto bad_ca = good;  // (2) a missing upstream.ca_file
    bad_ca.at("upstream").as_object()["ca_file"] = d.file("no-ca.pem");
    r = run({"-t", write(d, "ca.json", bad_ca)}, env);
    BOOST_TEST(r.rc == 2);
    BOOST_TEST(r.out.find(kMissingCa + d.file("no-ca.pem")) != std::string::npos, r.out);

    auto bad_cert = good;  // (3) a missing listen.tls_cert_file
    bad_cert.at("listen").as_object()["tls_cert_file"] = d.file("no-cert.pem");
    bad_cert.at("listen").as_object()["tls_key_file"] = pki.server_key;
    r = run({"-t", write(d, "cert.json", bad_cert)}, env);
    BOOST_TEST(r.rc == 2);
    BOOST_TEST(r.out.find(kMissingCert + d.file("no-cert.pem")) != std::string::npos, r.out);

    auto all = bad_cert;
    all.at("upstream").as_object()["ca_file"] = d.file("no-ca.pem");
    const std::string all_path = write(d, "all.json", all);
    r = run({"-t", all_path}, no_sk);
    BOOST_TEST(r.rc == 2);
    for (const auto& m : {kMissingSk, kMissingCa, kMissingCert})
        BOOST_TEST(r.out.find(m) != std::string::npos, m);
    BOOST_TEST(r.out.find("(3 problems)") != std::string::npos, r.out);

    // Start-up is the same check: exit 2 (the unit does not restart), every problem as a JSON log record.
    r = run({"-c", all_path}, no_sk);
    BOOST_TEST(r.rc == 2);
    for (const auto& m : {kMissingSk, kMissingCa, kMissingCert})
        BOOST_TEST(r.out.find("\"level\":\"error\",\"msg\":\"config error: " + m) != std::string::npos, m);
    BOOST_TEST(r.out.find("\"event\":\"listening\"") == std::string::npos);
    BOOST_TEST(r.out.find(kToken) == std::string::npos);
}

BOOST_AUTO_TEST_CASE(check_config_syntax_duplicates_and_warnings) {
    TempDir d("rdsgw-ops");
    const Env env{{"RDS_AUTH_TOKEN", kToken}};
    auto r = run({"-t", d.write("syntax.json",
                                "{\"callers\": {\"required\": false},\n  \"listen\": {\"port\": 80,,}\n}")},
                 env);
    BOOST_TEST(r.rc == 2);
    BOOST_TEST(r.out.find("line 2, column 25") != std::string::npos, r.out);
    r = run({"--check-config", d.write("dup.json", R"({"callers": {"required": false, "required": true}})")},
            env);
    BOOST_TEST(r.rc == 2);
    BOOST_TEST(r.out.find("callers.required: duplicate key") != std::string::npos, r.out);
    // Valid, but worth a warning: the admin listener on a public address with /metrics open.
    r = run(
        {"-t", d.write("open.json",
                       R"({"callers": {"required": false}, "admin": {"address": "0.0.0.0", "port": 9999}})")},
        env);
    BOOST_TEST(r.rc == 0, r.out);
    BOOST_TEST(
        r.out.find("config warning: admin.address 0.0.0.0 is not a loopback address") != std::string::npos,
        r.out);
    BOOST_TEST(r.out.find("config warning: callers.required is false") != std::string::npos);
    // Overlapping listeners are refused.
    r = run({"-t", d.write("overlap.json", R"({"callers": {"required": false}, "listen": {"port": 8080},
        "admin": {"address": "127.0.0.1", "port": 8080}})")},
            env);
    BOOST_TEST(r.rc == 2);
    BOOST_TEST(r.out.find("admin.port: the admin listener 127.0.0.1:8080 overlaps") != std::string::npos,
               r.out);
}

BOOST_AUTO_TEST_CASE(cli_forms) {
    TempDir d("rdsgw-ops");
    const Env env{{"RDS_AUTH_TOKEN", kToken}};
    const std::string ok = d.write("ok.json", R"({"callers": {"required": false}})");
    const std::string bad = d.write("bad.json", R"({"callers": {"required": false}, "lisen": {}})");
    const auto forms = [](const std::string& f) {
        return std::vector<std::vector<std::string>>{{"-t", f},
                                                     {"-t", "-c", f},
                                                     {"-c", f, "-t"},
                                                     {"--check-config", f},
                                                     {"--check-config=" + f},
                                                     {"-t", "--config=" + f}};
    };
    for (const auto& args : forms(ok)) BOOST_TEST(run(args, env).rc == 0, args.front() << " " << args.back());
    for (const auto& args : forms(bad)) {
        const auto r = run(args, env);
        BOOST_TEST(r.rc == 2, args.front() << " " << args.back());
        BOOST_TEST(r.out.find("lisen: unknown key") != std::string::npos);
    }
    // Usage errors: exit 2 with the usage.
    for (const std::vector<std::string>& args : {std::vector<std::string>{},
                                                 {"-t"},
                                                 {"-c"},
                                                 {"--bogus"},
                                                 {"-t", ok, "--print-config"},
                                                 {"-c", ok, "-c", bad}}) {
        const auto r = run(args, env);
        BOOST_TEST(r.rc == 2);
        BOOST_TEST(r.out.find("usage: rds-gateway") != std::string::npos);
    }
    auto v = run({"--version"});
    BOOST_TEST(v.rc == 0);
    static const std::regex version(
        R"(^rds-gateway [0-9]+\.[0-9]+\.[0-9]+ \(malloc: (jemalloc|glibc)\)\ncommit: ([0-9a-f]{12}(-dirty)?|unknown)\n)"
        R"(boost: 1\.81\.[0-9]+\nopenssl: 3\.[0-9.]+ \(built with 3\.[0-9.]+\)\n$)");
    BOOST_TEST(std::regex_match(v.out, version), v.out);
    auto h = run({"--help"});
    BOOST_TEST(h.rc == 0);
    for (const char* opt : {"-c FILE", "-t", "--print-config", "--version"})
        BOOST_TEST(h.out.find(opt) != std::string::npos, opt);
}

BOOST_AUTO_TEST_CASE(print_config_shows_defaults_and_references_only) {
    TempDir d("rdsgw-ops");
    const std::string token_file = d.write("token", kToken + "\n");
    const json::value cfg = {{"auth", {{"token", {{"file", token_file}}}}},
                             {"callers",
                              {{"list", json::array{json::object{{"name", "sdk"},
                                                                 {"access_key", "AK1"},
                                                                 {"secret_key", {{"env", "OPS_CALLER_SK"}}},
                                                                 {"projects", json::array{"*"}}}}}}}};
    const std::string path = write(d, "cfg.json", cfg);
    auto r = run({"--print-config", "-c", path}, {{"OPS_CALLER_SK", kCallerSk}});
    BOOST_TEST_REQUIRE(r.rc == 0, r.out);
    BOOST_TEST(r.out.find(kToken) == std::string::npos);
    BOOST_TEST(r.out.find(kCallerSk) == std::string::npos);
    BOOST_TEST(r.out.find(R"("token": {"file": ")" + token_file + "\"}") != std::string::npos, r.out);
    BOOST_TEST(r.out.find(R"("secret_key": {"env": "OPS_CALLER_SK"})") != std::string::npos);
    BOOST_TEST(r.out.find(R"("password": {"env": "RDS_IAM_PASSWORD"})") != std::string::npos);  // a default
    BOOST_TEST(r.out.find(R"("pool_size": 32)") != std::string::npos);
    BOOST_TEST(r.out.find(R"("expiry_margin_s": 60)") != std::string::npos);
    // What it prints is a config that passes the check, unchanged.
    const std::string printed = d.write("printed.json", r.out);
    BOOST_TEST(run({"-t", printed}, {{"OPS_CALLER_SK", kCallerSk}}).rc == 0);
    BOOST_TEST(run({"--print-config=" + printed}).out == r.out);
    BOOST_TEST(run({"--print-config", d.write("bad.json", "{\"x\": 1}")}).rc == 2);
}

// The listening record is JSON like every other diagnostic line; /metrics has the process metrics and the
// build info, and a real scrape passes promtool.
BOOST_AUTO_TEST_CASE(listening_record_metrics_and_promtool) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"auth":"static","static_token":")" + kToken + "\"}");
    auto cfg = base_config(mock, &pki);
    cfg.at("log").as_object()["access"] = "off";
    cfg.at("log").as_object()["level"] = "error";  // the listening record is written whatever the level
    GatewayProc gw(cfg, {{"RDS_AUTH_TOKEN", kToken}});
    BOOST_TEST(gw.port > 0);
    BOOST_TEST(gw.admin_port > 0);
    BOOST_TEST(gw.get(backup_path(), with_key()).status == 200u);
    const std::string out = gw.child.output();
    std::istringstream lines(out);
    int records = 0;
    for (std::string line; std::getline(lines, line);) {
        boost::system::error_code ec;
        const auto v = json::parse(line, ec);
        BOOST_TEST((!ec && v.is_object()), "not a JSON record: " << line);
        if (!ec && v.is_object() && v.as_object().contains("event")) {
            ++records;
            BOOST_TEST(v.at("event").as_string() == "listening");
            BOOST_TEST(v.at("port").to_number<int>() == gw.port);
            BOOST_TEST(v.at("admin_port").to_number<int>() == gw.admin_port);
            BOOST_TEST(v.at("address").as_string() == "127.0.0.1");
            BOOST_TEST(v.at("level").as_string() == "info");
        }
    }
    BOOST_TEST(records == 1);

    // The session counts a request after writing its answer: scrape until the MISS is counted.
    const std::string miss = R"(rdsgw_requests_total{cache="MISS",code="200")";
    std::string text;
    BOOST_TEST(
        eventually([&] { return (text = gw.admin_get("/metrics").body).find(miss) != std::string::npos; }));
    for (const char* p : {"process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds",
                          "process_max_fds", "process_cpu_seconds_total", "process_start_time_seconds"})
        BOOST_TEST(text.find(std::string("\n") + p + " ") != std::string::npos, p);
    static const std::regex info(
        R"re(\nrdsgw_build_info\{allocator="(jemalloc|glibc)",boost="1\.81\.[0-9]+",commit="([0-9a-f]{12}(-dirty)?|unknown)",openssl="3\.[0-9.]+",version="[0-9.]+"\} 1\n)re");
    BOOST_TEST(std::regex_search(text, info), text.substr(0, 400));
    BOOST_TEST(text.find("=\"\"") == std::string::npos);  // no empty label value
    BOOST_TEST(text.find(R"(rdsgw_cache_events_total{event="stale"} 0)") != std::string::npos);

    if (::access("/usr/bin/promtool", X_OK) != 0) {
        BOOST_TEST_MESSAGE("promtool not installed: skipping `promtool check metrics`");
        return;
    }
    TempDir d("rdsgw-prom");
    const std::string scrape = d.write("metrics.txt", text);
    Child promtool;
    promtool.spawn({"/bin/sh", "-c", "exec /usr/bin/promtool check metrics < '" + scrape + "'"});
    BOOST_TEST(promtool.wait_exit(60s).value_or(-1) == 0, promtool.output());
    BOOST_TEST(promtool.output().empty(), promtool.output());
}

// Secrets handed over by systemd (LoadCredential=) are read from $CREDENTIALS_DIRECTORY.
BOOST_AUTO_TEST_CASE(systemd_credentials_directory) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"auth":"static","static_token":")" + kToken + "\"}");
    TempDir creds("rdsgw-creds");
    creds.write("rds-token", kToken + "\n");
    auto cfg = base_config(mock, &pki);
    cfg.at("auth").as_object()["token"] = {{"credential", "rds-token"}};
    TempDir d("rdsgw-ops");
    const std::string path = write(d, "cfg.json", cfg);
    auto r = run({"-t", path});
    BOOST_TEST(r.rc == 2);
    BOOST_TEST(r.out.find("auth.token: systemd credential rds-token: $CREDENTIALS_DIRECTORY is not set") !=
                   std::string::npos,
               r.out);
    BOOST_TEST(run({"-t", path}, {{"CREDENTIALS_DIRECTORY", creds.path()}}).rc == 0);
    GatewayProc gw(cfg, {{"CREDENTIALS_DIRECTORY", creds.path()}});
    auto resp = gw.get(backup_path(), with_key());
    BOOST_TEST(resp.status == 200u, resp.body);  // the mock accepted the token from the credential
    BOOST_TEST(mock.stat("rds_requests") == 1);
    BOOST_TEST(gw.child.output().find(kToken) == std::string::npos);
}

// Type=notify: READY=1 after the listening record, WATCHDOG=1 while the loops answer, STOPPING=1 on SIGTERM,
// RELOADING=1 then READY=1 around a SIGHUP.
BOOST_AUTO_TEST_CASE(sd_notify_ready_watchdog_reload_stopping) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"auth":"static","static_token":")" + kToken + "\"}");
    NotifySocket sock;
    GatewayProc gw(base_config(mock, &pki),
                   {{"RDS_AUTH_TOKEN", kToken}, {"NOTIFY_SOCKET", sock.path()}, {"WATCHDOG_USEC", "400000"}});
    std::string before;
    BOOST_TEST_REQUIRE(sock.wait_for("READY=1", 20s, &before));
    BOOST_TEST(gw.child.output().find("\"event\":\"listening\"") !=
               std::string::npos);  // written before READY
    BOOST_TEST(gw.get("/readyz").status == 200u);
    int pings = 0;
    for (int i = 0; i < 3; ++i) pings += sock.wait_for("WATCHDOG=1", 20s) ? 1 : 0;
    BOOST_TEST(pings == 3);

    gw.child.signal(SIGHUP);
    BOOST_TEST(sock.wait_for("RELOADING=1", 20s));
    BOOST_TEST(sock.wait_for("READY=1", 20s));

    gw.child.signal(SIGTERM);
    BOOST_TEST(sock.wait_for("STOPPING=1", 20s));
    BOOST_TEST(gw.child.wait_exit(20s).value_or(-1) == 0);
}

// READY=1 waits for usable upstream credentials: in IAM mode, the first token.
BOOST_AUTO_TEST_CASE(ready_waits_for_the_first_iam_token) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"auth":"iam","iam_fail_status":500})");
    auto cfg = base_config(mock, &pki);
    cfg.as_object()["auth"] = iam_auth(mock, 60, 1, 50, 200);
    NotifySocket sock;
    GatewayProc gw(cfg, {{"GW_IAM_PASSWORD", "pw"}, {"NOTIFY_SOCKET", sock.path()}});
    std::string before;
    // The notifier has seen the gateway not ready (IAM failing), and said why, without READY=1.
    BOOST_TEST_REQUIRE(sock.wait_for("STATUS=not ready: upstream credentials:", 20s, &before));
    BOOST_TEST_REQUIRE(eventually([&] { return mock.stat("iam_requests") >= 1; }, 10s));
    BOOST_TEST(gw.get("/readyz").status == 503u);
    BOOST_TEST(before.find("READY=1") == std::string::npos, before);
    while (auto m = sock.receive(0ms)) BOOST_TEST(m->find("READY=1") == std::string::npos, *m);
    mock.configure(R"({"iam_fail_status":0})");
    BOOST_TEST(sock.wait_for("READY=1", 20s));
    BOOST_TEST(gw.get("/readyz").status == 200u);
}

// SIGHUP names each changed setting that needs a restart, and refuses a file whose secrets are unusable
// (a caller's SK missing, a token file with CR/LF): the running callers and token stay.
BOOST_AUTO_TEST_CASE(sighup_restart_warnings_and_refused_secrets) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"auth":"static","static_token":")" + kToken + "\"}");
    TempDir d("rdsgw-ops");
    const std::string token_file = d.write("token", kToken + "\n");
    auto cfg = base_config(mock, &pki);
    cfg.at("auth").as_object()["token"] = {{"file", token_file}};
    cfg.as_object()["cache"] = {{"enabled", false}};  // every request goes upstream with the current token
    GatewayProc gw(cfg);
    BOOST_TEST_REQUIRE(gw.get(backup_path(), with_key()).status == 200u);
    const auto sighup_and_wait = [&](const std::string& marker) {
        const auto from = gw.child.output().size();
        gw.child.signal(SIGHUP);
        return eventually([&] { return gw.child.output().find(marker, from) != std::string::npos; }, 10s);
    };

    // Settings SIGHUP does not apply are named, one warning each.
    auto changed = cfg;
    changed.at("upstream").as_object()["pool_size"] = 3;
    changed.as_object()["limits"] = {{"max_inflight", 77}};
    gw.write_config(changed);
    auto from = gw.child.output().size();
    BOOST_TEST_REQUIRE(sighup_and_wait("callers reloaded"));
    std::string out = gw.child.output().substr(from);
    BOOST_TEST(
        out.find(
            R"("SIGHUP: upstream.pool_size changed; it takes effect only after a restart","setting":"upstream.pool_size")") !=
            std::string::npos,
        out);
    BOOST_TEST(out.find(R"("setting":"limits.max_inflight")") != std::string::npos, out);
    BOOST_TEST(count(out, "\"setting\":") == 2, out);

    // A new caller whose SK is missing: the whole file is refused, the old callers stay.
    const std::string new_key = "ops-new-caller-key-0001";
    auto broken = changed;
    broken.at("callers").as_object()["list"].as_array().push_back(
        json::object{{"name", "new"},
                     {"api_key_sha256", json::array{rdsgw::sha256_hex(new_key)}},
                     {"access_key", "NEWAK"},
                     {"secret_key", {{"env", "OPS_UNSET_SK"}}},
                     {"projects", json::array{"*"}}});
    gw.write_config(broken);
    from = gw.child.output().size();
    BOOST_TEST_REQUIRE(sighup_and_wait("config not reloaded"));
    BOOST_TEST(gw.child.output().find("callers.list[1].secret_key (caller new)", from) != std::string::npos);
    BOOST_TEST(gw.get(backup_path("b1" + kBackup.substr(2)), {{"X-Api-Key", new_key}}).status == 401u);
    BOOST_TEST(gw.get(backup_path("b2" + kBackup.substr(2)), with_key()).status == 200u);

    // A token file that would inject a header upstream: refused, the old token stays in use.
    gw.write_config(changed);
    std::ofstream(token_file) << kToken << "\r\nX-Injected: yes\n";
    from = gw.child.output().size();
    BOOST_TEST_REQUIRE(sighup_and_wait("config not reloaded"));
    BOOST_TEST(gw.child.output().find("contains a control character", from) != std::string::npos);
    BOOST_TEST(gw.get(backup_path("b3" + kBackup.substr(2)), with_key()).status == 200u);
    BOOST_TEST(gw.child.output().find("X-Injected") == std::string::npos);
    BOOST_TEST(gw.child.output().find(kToken) == std::string::npos);
    BOOST_TEST(gw.child.running());
}

// The check also loads what the regions, the proxy and the shared tier name: CAs, tokens, keys.
BOOST_AUTO_TEST_CASE(check_config_covers_regions_proxy_and_redis) {
    const Pki pki = make_pki();
    TempDir d("rdsgw-ops-regions");
    json::value cfg = {
        {"listen", {{"address", "127.0.0.1"}, {"port", 0}}},
        {"upstream",
         {{"base_url_template", "https://rds.{region}.example"},
          {"proxy", {{"url", "http://127.0.0.1:3128"}, {"credentials", {{"env", "OPS_PROXY_CRED"}}}}}}},
        {"regions",
         {{"cn-north-4", {{"ca_file", d.file("no-region-ca.pem")}, {"token", {{"env", "OPS_R1_TOKEN"}}}}}}},
        {"projects", {{"static", {{"0a000000000000000000000000000001", "cn-north-4"}}}}},
        {"auth", {{"mode", "token"}, {"token", {{"env", "RDS_AUTH_TOKEN"}}}}},
        {"callers", {{"required", false}}},
        {"redis",
         {{"enabled", true},
          {"encryption_keys", json::array{json::object{{"id", "k1"}, {"key", {{"env", "OPS_L2_KEY"}}}}}}}},
    };
    auto r =
        run({"-t", write(d, "regions.json", cfg)}, {{"RDS_AUTH_TOKEN", kToken}, {"OPS_L2_KEY", "too-short"}});
    BOOST_TEST(r.rc == 2, r.out);
    for (const char* m : {"regions.cn-north-4.ca_file: cannot load CA", "regions.cn-north-4.token:",
                          "upstream.proxy.credentials:", "redis.encryption_keys[0].key: must be 32 bytes"})
        BOOST_TEST(r.out.find(m) != std::string::npos, m << "\n" << r.out);
    BOOST_TEST(r.out.find("(4 problems)") != std::string::npos, r.out);
}
