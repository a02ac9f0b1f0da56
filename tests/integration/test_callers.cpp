// Caller authentication, authorization and rate limits end to end (API keys, SDK-HMAC-SHA256 signatures,
// mTLS subjects, per-project permissions, token buckets, SIGHUP reload of the callers' list, metrics),
// against the real gateway binary and rds-mock.
#define BOOST_TEST_MODULE callers
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <thread>

#include "harness.hpp"

using namespace rdsgw::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

const std::string kToken = "callers-upstream-token-SECRET-5e1d";
const std::string kP1 = kProject;
const std::string kP2 = "0123456789abcdef0123456789abcdef";
const std::string kMissingBackup = "ffffffffffffffffffffffffffffffffbr01";
const std::string kKeyA = "caller-a-key-SECRET-4b1f0c77";
const std::string kKeyB = "caller-b-key-SECRET-77ae2190";

using Env = std::vector<std::pair<std::string, std::string>>;
Env token_env() {
    return {{"RDS_AUTH_TOKEN", kToken}};
}

struct Fixture {
    Pki pki = make_pki();
    MockServer mock{&pki, R"({"auth":"static","static_token":")" + kToken + R"(","missing_backups":[")" +
                              kMissingBackup + R"("]})"};
};

// One callers.list entry with API keys.
json::object key_caller(const std::string& name, std::initializer_list<std::string> keys,
                        std::initializer_list<std::string> projects) {
    json::array hashes, ps;
    for (const auto& k : keys) hashes.emplace_back(rdsgw::sha256_hex(k));
    for (const auto& p : projects) ps.emplace_back(p);
    return json::object{{"name", name}, {"api_key_sha256", std::move(hashes)}, {"projects", std::move(ps)}};
}

// base_config with the callers' list replaced.
json::value with_callers(const MockServer& mock, const Pki& pki, json::array list) {
    auto cfg = base_config(mock, &pki);
    cfg.at("callers").as_object()["list"] = std::move(list);
    return cfg;
}

Headers key_header(const std::string& key) {
    return {{"X-Api-Key", key}};
}
Headers bearer(const std::string& key) {
    return {{"Authorization", "Bearer " + key}};
}

std::string str(const json::value& v, const char* field) {
    return std::string(v.at(field).as_string());
}

// Checks the RDS error shape of a gateway-made error and returns its error_msg.
std::string check_error_shape(const Response& r, unsigned status) {
    BOOST_TEST(r.status == status);
    json::value b;
    try {
        b = r.json();
    } catch (const std::exception& e) {
        BOOST_ERROR("error body is not JSON: " << e.what());
        return {};
    }
    BOOST_TEST(str(b, "error_code") == "RDSGW." + std::to_string(status));
    BOOST_TEST(str(b, "request_id") == r.header("x-request-id"));
    BOOST_TEST(!str(b, "error_msg").empty());
    return str(b, "error_msg");
}

double metric(GatewayProc& gw, const std::string& series) {
    auto r = gw.admin_get("/metrics");
    BOOST_REQUIRE(r.status == 200u);
    return metric_value(r.body, series);
}

// The headers of an SDK-signed GET: Host, X-Sdk-Date and the Authorization computed over exactly them,
// the path and the raw query.
Headers sdk_signed(const std::string& host, const std::string& path, const std::string& query,
                   std::chrono::system_clock::time_point when, const std::string& ak, const std::string& sk) {
    rdsgw::SignableRequest req;
    req.method = "GET";
    req.path = path;
    req.query = query;
    const std::string date = rdsgw::sdk_date(when);
    req.headers = {{"Host", host}, {"X-Sdk-Date", date}};
    return {
        {"Host", host}, {"X-Sdk-Date", date}, {"Authorization", rdsgw::authorization_header(req, ak, sk)}};
}

// The certificate's subject as the gateway writes it (X509_NAME_print_ex with XN_FLAG_RFC2253: the most
// specific RDN first, comma-separated), which is what callers' cert_subjects must list.
std::string rfc2253_subject(const std::string& cert_file) {
    std::string out;
    FILE* f = std::fopen(cert_file.c_str(), "r");
    BOOST_REQUIRE(f != nullptr);
    X509* cert = PEM_read_X509(f, nullptr, nullptr, nullptr);
    std::fclose(f);
    BOOST_REQUIRE(cert != nullptr);
    BIO* bio = BIO_new(BIO_s_mem());
    X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    if (n > 0) out.assign(data, static_cast<std::size_t>(n));
    BIO_free(bio);
    X509_free(cert);
    return out;
}

std::string files_path(const std::string& project) {
    return "/v3/" + project + "/backup-files";
}
std::string backup_query(const std::string& backup = kBackup) {
    return "backup_id=" + backup;
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(unauthenticated_requests_get_401_and_never_reach_upstream, Fixture) {
    GatewayProc gw(with_callers(mock, pki, {key_caller("a", {kKeyA}, {"*"})}), token_env());
    const std::string wrong = "wrong-key-SECRET-90af13";
    struct Case {
        const char* what;
        Headers headers;
        const char* reason;
    };
    const std::vector<Case> cases = {
        {"no credentials", {}, "missing credentials"},
        {"Basic scheme", {{"Authorization", "Basic " + wrong}}, "malformed credentials"},
        {"bare Bearer", {{"Authorization", "Bearer"}}, "malformed credentials"},
        {"two X-Api-Key headers", {{"X-Api-Key", wrong}, {"X-Api-Key", kKeyA}}, "malformed credentials"},
        {"wrong X-Api-Key", key_header(wrong), "invalid credentials"},
        {"wrong Bearer", bearer(wrong), "invalid credentials"},
        {"wrong key differing in case", key_header("CALLER-A-KEY-SECRET-4B1F0C77"), "invalid credentials"},
        // Two credentials (Authorization and X-Api-Key with different keys): neither is preferred.
        {"wrong Bearer with right X-Api-Key",
         {{"Authorization", "Bearer " + wrong}, {"X-Api-Key", kKeyA}},
         "malformed credentials"},
    };
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT(c.what) {
            auto r = gw.get(backup_path(), c.headers);
            BOOST_TEST(check_error_shape(r, 401) == c.reason);
            BOOST_TEST(r.has_header("www-authenticate"));
            BOOST_TEST(!r.has_header("x-cache"));
            BOOST_TEST(r.body.find(wrong) == std::string::npos);
            BOOST_TEST(r.body.find(kKeyA) == std::string::npos);
        }
    }
    BOOST_TEST(mock.stat("rds_requests") == 0);

    // The right key, both ways, passes (so the 401s above were about the credentials).
    BOOST_TEST(gw.get(backup_path(), key_header(kKeyA)).status == 200u);
    BOOST_TEST(gw.get(backup_path(), bearer(kKeyA)).status == 200u);
    BOOST_TEST(mock.stat("rds_requests") == 1);

    const std::string out = gw.child.output();
    BOOST_TEST(out.find(wrong) == std::string::npos);
    BOOST_TEST(out.find(kKeyA) == std::string::npos);
    BOOST_TEST(out.find("CALLER-A-KEY") == std::string::npos);
    BOOST_TEST(out.find(kToken) == std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(other_project_is_403_and_never_served_from_cache, Fixture) {
    GatewayProc gw(
        with_callers(mock, pki, {key_caller("a", {kKeyA}, {kP1}), key_caller("b", {kKeyB}, {kP2})}),
        token_env());
    // A reads its project: MISS, then HIT; a missing backup of its project is the upstream's 404 (cached).
    auto r = gw.get(backup_path(kBackup, kP1), key_header(kKeyA));
    BOOST_TEST_REQUIRE(r.status == 200u, r.body);
    BOOST_TEST(r.header("x-cache") == "MISS");
    r = gw.get(backup_path(kBackup, kP1), key_header(kKeyA));
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(r.header("x-cache") == "HIT");
    r = gw.get(backup_path(kMissingBackup, kP1), key_header(kKeyA));
    BOOST_TEST(r.status == 404u);
    BOOST_TEST(mock.stat("rds_requests") == 2);

    // B may not read P1: 403 for the existing (cached) and the missing (cached 404) backup alike, byte for
    // byte once the request id is fixed, and never the cached answer.
    Headers probe = key_header(kKeyB);
    probe.emplace_back("X-Request-Id", "probe-403");
    auto existing = gw.get(backup_path(kBackup, kP1), probe);
    auto missing = gw.get(backup_path(kMissingBackup, kP1), probe);
    check_error_shape(existing, 403);
    check_error_shape(missing, 403);
    BOOST_TEST(existing.body == missing.body);
    BOOST_TEST(existing.body.find("files") == std::string::npos);
    BOOST_TEST(existing.body.find("download_link") == std::string::npos);
    BOOST_TEST(existing.body.find(kBackup) == std::string::npos);
    BOOST_TEST(!existing.has_header("x-cache"));
    BOOST_TEST(!existing.has_header("x-upstream-request-id"));
    BOOST_TEST(!missing.has_header("x-cache"));
    BOOST_TEST(mock.stat("rds_requests") == 2);

    // A, likewise, may not read P2; B may.
    check_error_shape(gw.get(backup_path(kBackup, kP2), key_header(kKeyA)), 403);
    BOOST_TEST(mock.stat("rds_requests") == 2);
    r = gw.get(backup_path(kBackup, kP2), key_header(kKeyB));
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(r.header("x-cache") == "MISS");
    BOOST_TEST(mock.stat("rds_requests") == 3);
    BOOST_TEST(metric(gw, "rdsgw_rejected_requests_total{reason=\"forbidden\"}") == 3);
}

BOOST_FIXTURE_TEST_CASE(sdk_signed_requests, Fixture) {
    const std::string ak = "GWAKCALLERSDK0000001";
    const std::string sk = "callerSecretKey-SECRET-0000000000000000";
    auto list = json::array{key_caller("tester", {kApiKey}, {"*"})};
    list.emplace_back(json::object{{"name", "sdk"},
                                   {"access_key", ak},
                                   {"secret_key", {{"env", "CALLER_SDK_SK"}}},
                                   {"projects", json::array{kP1, kP2}}});
    Env env = token_env();
    env.emplace_back("CALLER_SDK_SK", sk);
    GatewayProc gw(with_callers(mock, pki, std::move(list)), env);
    const std::string host = "127.0.0.1:" + std::to_string(gw.port);
    const auto now = std::chrono::system_clock::now();
    const std::string path = files_path(kP1), query = backup_query();
    const std::string target = path + "?" + query;

    struct Case {
        const char* what;
        std::string target;
        Headers headers;
    };
    std::vector<Case> cases;
    // Signed for P1, sent for P2 (which the caller may read, so only the signature can refuse it).
    cases.push_back({"altered path", backup_path(kBackup, kP2), sdk_signed(host, path, query, now, ak, sk)});
    cases.push_back(
        {"altered query", backup_path(kMissingBackup, kP1), sdk_signed(host, path, query, now, ak, sk)});
    {
        Headers h = sdk_signed(host, path, query, now, ak, sk);
        h[0].second = "localhost:" + std::to_string(gw.port);
        cases.push_back({"altered Host header", target, h});
    }
    cases.push_back({"date 20 min old", target, sdk_signed(host, path, query, now - 20min, ak, sk)});
    cases.push_back({"date 20 min ahead", target, sdk_signed(host, path, query, now + 20min, ak, sk)});
    cases.push_back({"wrong SK", target, sdk_signed(host, path, query, now, ak, sk + "x")});
    cases.push_back({"unknown AK", target, sdk_signed(host, path, query, now, "GWAKUNKNOWN000000000", sk)});
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT(c.what) {
            HttpClient client(gw.port);
            auto r = client.request("GET", c.target, c.headers);
            BOOST_TEST(check_error_shape(r, 401) == "invalid credentials");
        }
    }
    BOOST_TEST(mock.stat("rds_requests") == 0);

    // The exact request, correctly signed, passes; so does one for P2 signed for P2.
    HttpClient client(gw.port);
    auto r = client.request("GET", target, sdk_signed(host, path, query, now, ak, sk));
    BOOST_TEST(r.status == 200u, r.body);
    r = client.request("GET", backup_path(kBackup, kP2),
                       sdk_signed(host, files_path(kP2), query, std::chrono::system_clock::now(), ak, sk));
    BOOST_TEST(r.status == 200u, r.body);
    BOOST_TEST(mock.stat("rds_requests") == 2);
    // The SDK caller is bound to its projects like any other.
    const std::string p3 = "fedcba9876543210fedcba9876543210";
    r = client.request("GET", backup_path(kBackup, p3),
                       sdk_signed(host, files_path(p3), query, std::chrono::system_clock::now(), ak, sk));
    check_error_shape(r, 403);

    BOOST_TEST(gw.child.output().find(sk) == std::string::npos);
    BOOST_TEST(metric(gw, "rdsgw_caller_auth_failures_total{reason=\"invalid_credentials\"}") == 7);
}

BOOST_FIXTURE_TEST_CASE(rate_limit_per_caller, Fixture) {
    auto a = key_caller("limited", {kKeyA}, {"*"});
    a["rate_per_s"] = 1;
    a["burst"] = 3;
    auto b = key_caller("other", {kKeyB}, {"*"});
    b["rate_per_s"] = 1;
    b["burst"] = 3;
    GatewayProc gw(with_callers(mock, pki, {a, b}), token_env());

    HttpClient ca(gw.port), cb(gw.port);
    std::vector<Response> rs;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 5; ++i) rs.push_back(ca.request("GET", backup_path(), key_header(kKeyA)));
    const auto burst_ms = to_ms(std::chrono::steady_clock::now() - t0);
    // Meanwhile the other caller has its own bucket.
    auto other = cb.request("GET", backup_path(), key_header(kKeyB));

    BOOST_TEST_CONTEXT("the burst took " << burst_ms
                                         << " ms (must be well under 1 s for the bucket to stay empty)") {
        for (int i = 0; i < 3; ++i) BOOST_TEST(rs[i].status == 200u, "request " << i);
        for (int i = 3; i < 5; ++i) {
            BOOST_TEST_CONTEXT("request " << i) {
                check_error_shape(rs[i], 429);
                BOOST_TEST_REQUIRE(rs[i].has_header("retry-after"));
                BOOST_TEST(std::stol(rs[i].header("retry-after")) >= 1);
            }
        }
    }
    BOOST_TEST(other.status == 200u);
    BOOST_TEST(mock.stat("rds_requests") == 1);  // one MISS, then HITs; the 429s never went upstream
    BOOST_TEST(metric(gw, "rdsgw_rejected_requests_total{reason=\"rate\"}") == 2);

    // The scenario itself: wait as long as Retry-After says; then one token is back.
    std::this_thread::sleep_for(std::chrono::seconds(std::stol(rs[4].header("retry-after"))));
    BOOST_TEST(ca.request("GET", backup_path(), key_header(kKeyA)).status == 200u);
}

BOOST_FIXTURE_TEST_CASE(mutual_tls_subjects, Fixture) {
    auto cfg = base_config(mock, &pki);
    merge(cfg, json::value{{"listen",
                            {{"tls_cert_file", pki.server_cert},
                             {"tls_key_file", pki.server_key},
                             {"client_ca_file", pki.ca_cert},
                             {"require_client_cert", true}}}});
    // The test PKI's client certificates carry O=rds-gateway tests besides the CN.
    auto [cert_a, key_a] = pki.client("svc-a");
    const std::string subject_a = rfc2253_subject(cert_a);
    BOOST_TEST(subject_a == "CN=svc-a,O=rds-gateway tests");
    auto svc = json::object{
        {"name", "svc-a"}, {"cert_subjects", json::array{subject_a}}, {"projects", json::array{kP1}}};
    cfg.at("callers").as_object()["list"].as_array().emplace_back(std::move(svc));
    GatewayProc gw(cfg, token_env());

    const auto trusting = TlsOptions::trusting(pki.ca_cert);
    // Under TLS 1.3 the client may finish its handshake before the server rejects its certificate: the
    // refusal then shows on the first request. Either way no response may come back.
    auto refused = [&](TlsOptions o, std::string& what) {
        try {
            HttpClient c(gw.port, o, 5s);
            auto r = c.request("GET", backup_path(), with_key());
            what = "answered HTTP " + std::to_string(r.status);
            return false;
        } catch (const std::exception& e) {
            what = e.what();
            return true;
        }
    };
    std::string what;
    BOOST_TEST(refused(trusting, what), "no client certificate: " << what);
    auto [other_cert, other_key] = pki.client("svc-a", /*by_other_ca=*/true);
    BOOST_TEST(refused(TlsOptions(trusting).with_client(other_cert, other_key), what),
               "certificate from the other CA: " << what);
    BOOST_TEST(mock.stat("rds_requests") == 0);
    BOOST_TEST(eventually([&] { return metric(gw, "rdsgw_rejected_requests_total{reason=\"auth\"}") >= 2; }));

    // A mapped subject: its projects only.
    HttpClient a(gw.port, TlsOptions(trusting).with_client(cert_a, key_a));
    auto r = a.request("GET", backup_path(kBackup, kP1));
    BOOST_TEST(r.status == 200u, r.body);
    BOOST_TEST(r.header("x-cache") == "MISS");
    check_error_shape(a.request("GET", backup_path(kBackup, kP2)), 403);

    // A valid certificate whose subject no caller lists: 401 on its own; it may still use an API key.
    auto [cert_b, key_b] = pki.client("svc-b");
    HttpClient b(gw.port, TlsOptions(trusting).with_client(cert_b, key_b));
    BOOST_TEST(check_error_shape(b.request("GET", backup_path(kBackup, kP1)), 401) == "invalid credentials");
    r = b.request("GET", backup_path(kBackup, kP1), with_key());
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(r.header("x-cache") == "HIT");
    BOOST_TEST(mock.stat("rds_requests") == 1);
}

BOOST_FIXTURE_TEST_CASE(sighup_reloads_callers_without_disturbing_connections, Fixture) {
    const std::string k1 = "reload-key-one-SECRET-31c5", k2 = "reload-key-two-SECRET-8d07";
    auto cfg = with_callers(mock, pki, {key_caller("one", {k1}, {"*"})});
    // The slow request below waits at the mock for as long as the test needs: no timeout in between.
    merge(cfg, json::parse(R"({"upstream":{"request_timeout_ms":60000},"retry":{"deadline_ms":60000}})"));
    GatewayProc gw(cfg, token_env());
    check_error_shape(gw.get(backup_path(), key_header(k2)), 401);
    BOOST_TEST(gw.get(backup_path(), key_header(k1)).status == 200u);  // caches kBackup

    // An idle keep-alive connection, used once before the reload.
    HttpClient idle(gw.port);
    BOOST_TEST(idle.request("GET", backup_path(), key_header(k1)).status == 200u);

    // A slow request (another backup, so it goes upstream) in flight across the reload: the mock holds it
    // until released.
    mock.configure(R"({"hold":true})");
    HttpClient slow_client(gw.port);
    std::atomic<bool> slow_done{false};
    Response slow;
    std::jthread t([&] {
        try {
            slow = slow_client.request("GET", backup_path("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabr01"),
                                       key_header(k1));
        } catch (const std::exception& e) {
            slow.body = e.what();  // status stays 0: reported below
        }
        slow_done = true;
    });
    BOOST_TEST_REQUIRE(mock.wait_for("held", 1));  // the gateway is waiting on it

    cfg.at("callers").as_object()["list"] = json::array{key_caller("two", {k2}, {"*"})};
    gw.write_config(cfg);
    const auto from = gw.child.output().size();
    gw.child.signal(SIGHUP);
    const bool reloaded =
        eventually([&] { return gw.child.output().find("callers reloaded", from) != std::string::npos; });
    BOOST_TEST_REQUIRE(reloaded, gw.child.output());
    BOOST_TEST(!slow_done.load());  // the reload happened while the slow request was in flight

    // The idle connection goes on working, now with the new key only.
    BOOST_TEST(idle.connects() == 1);
    auto r = idle.request("GET", backup_path(), key_header(k2));
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(r.header("x-cache") == "HIT");
    check_error_shape(idle.request("GET", backup_path(), key_header(k1)), 401);
    BOOST_TEST(idle.connects() == 1);
    BOOST_TEST(gw.get(backup_path(), key_header(k2)).status == 200u);
    check_error_shape(gw.get(backup_path(), key_header(k1)), 401);

    BOOST_TEST(!slow_done.load());
    mock.release();
    t.join();
    BOOST_TEST(slow.status == 200u, slow.body);
    BOOST_TEST(slow.header("x-cache") == "MISS");
    const std::string out = gw.child.output();
    BOOST_TEST(out.find(k1) == std::string::npos);
    BOOST_TEST(out.find(k2) == std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(callers_not_required_is_open_and_warned, Fixture) {
    auto cfg = base_config(mock, &pki);
    cfg.at("callers").as_object()["required"] = false;
    GatewayProc gw(cfg, token_env());
    auto r = gw.get(backup_path());
    BOOST_TEST(r.status == 200u, r.body);
    BOOST_TEST(mock.stat("rds_requests") == 1);
    BOOST_TEST(gw.child.output().find("callers.required is false") != std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(health_needs_no_credentials_and_metrics_can_require_them, Fixture) {
    auto cfg = base_config(mock, &pki);
    cfg.as_object().erase("admin");
    cfg.at("callers").as_object()["metrics_require_auth"] = true;
    GatewayProc gw(cfg, token_env());
    BOOST_TEST(gw.admin_port == 0);
    for (const Headers& h : {Headers{}, key_header("wrong-key-SECRET-7")}) {
        BOOST_TEST(gw.get("/healthz", h).status == 200u);
        BOOST_TEST(gw.get("/readyz", h).status == 200u);
    }
    check_error_shape(gw.get("/metrics"), 401);
    check_error_shape(gw.get("/metrics", key_header("wrong-key-SECRET-7")), 401);
    auto r = gw.get("/metrics", with_key());
    BOOST_TEST_REQUIRE(r.status == 200u);
    BOOST_TEST(r.body.find("rdsgw_build_info") != std::string::npos);
    BOOST_TEST(metric_value(r.body, "rdsgw_rejected_requests_total{reason=\"auth\"}") == 2);
    BOOST_TEST(mock.stat("rds_requests") == 0);
    BOOST_TEST(gw.child.output().find("wrong-key-SECRET-7") == std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(failed_authentications_are_counted, Fixture) {
    GatewayProc gw(base_config(mock, &pki), token_env());
    const auto failures = [&](const char* reason) {
        return metric(gw, std::string("rdsgw_caller_auth_failures_total{reason=\"") + reason + "\"}");
    };
    const std::string auth = "rdsgw_rejected_requests_total{reason=\"auth\"}";
    const double missing0 = failures("missing_credentials"), malformed0 = failures("malformed_credentials"),
                 invalid0 = failures("invalid_credentials"), auth0 = metric(gw, auth);

    gw.get(backup_path());
    gw.get(backup_path(), {{"Authorization", "Digest x"}});
    gw.get(backup_path(), key_header("nope-1"));
    gw.get(backup_path(), bearer("nope-2"));
    BOOST_TEST(gw.get(backup_path(), with_key()).status == 200u);  // a success moves nothing

    BOOST_TEST(failures("missing_credentials") - missing0 == 1);
    BOOST_TEST(failures("malformed_credentials") - malformed0 == 1);
    BOOST_TEST(failures("invalid_credentials") - invalid0 == 2);
    BOOST_TEST(metric(gw, auth) - auth0 == 4);
}
