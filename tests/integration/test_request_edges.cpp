// Request edges a hostile review found, end to end against the real gateway and rds-mock: the purge's query,
// admin routes with callers.metrics_require_auth but callers.required false, '//' inside a path, Host ports,
// Cache-Control: max-age=0, two credentials in one request, and encoded unreserved characters in the path.
#define BOOST_TEST_MODULE request_edges
#include "harness.hpp"

using namespace rdsgw::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

const std::string kOtherKey = "other-caller-key-SECRET-93c1";

json::object key_caller(const std::string& name, const std::string& key) {
    return json::object{{"name", name},
                        {"api_key_sha256", json::array{rdsgw::sha256_hex(key)}},
                        {"projects", json::array{"*"}}};
}

// Checks the gateway's error shape and returns its error_msg. A body is shown only when it is an error (an
// answer's download links are secrets, even the mock's).
std::string error_msg(const Response& r, unsigned status) {
    BOOST_TEST(r.status == status, (r.status >= 400 ? r.body.substr(0, 120) : std::string("(an answer)")));
    if (r.status != status) return {};
    json::value b;
    try {
        b = r.json();
    } catch (const std::exception&) {
        BOOST_ERROR("error body is not JSON");
        return {};
    }
    const auto* code = b.is_object() ? b.as_object().if_contains("error_code") : nullptr;
    const auto* msg = b.is_object() ? b.as_object().if_contains("error_msg") : nullptr;
    const auto* id = b.is_object() ? b.as_object().if_contains("request_id") : nullptr;
    BOOST_TEST_REQUIRE((code && msg && id && code->is_string() && msg->is_string() && id->is_string()));
    BOOST_TEST(code->as_string() == "RDSGW." + std::to_string(status));
    BOOST_TEST(id->as_string() == r.header("x-request-id"));
    return std::string(msg->as_string());
}

// How many HTTP responses a raw read holds.
std::size_t answers(const std::string& raw) {
    std::size_t n = 0;
    for (auto at = raw.find("HTTP/1.1 "); at != std::string::npos; at = raw.find("HTTP/1.1 ", at + 1)) ++n;
    return n;
}

struct Fixture {
    Pki pki = make_pki();
    MockServer mock{&pki};
    GatewayProc gw = GatewayConfig(mock, pki)
                         .callers(json::array{key_caller("tester", kApiKey), key_caller("other", kOtherKey)})
                         .start();
};

}  // namespace

BOOST_FIXTURE_TEST_CASE(purge_needs_both_ids_or_no_query_at_all, Fixture) {
    BOOST_TEST(gw.get(backup_path(), with_key()).header("x-cache") == "MISS");
    HttpClient admin(gw.admin_port);
    const std::string ok = "project_id=" + kProject + "&backup_id=" + kBackup;
    for (const std::string& q :
         std::vector<std::string>{"?project_id=&backup_id=", "?", "?project_id=a&project_id=b&backup_id=c",
                                  "?" + ok + "&backup_id=" + kBackup, "?" + ok + "&all=1",
                                  "?project_id=" + kProject, "?project_id=" + kProject + "&backup_id="}) {
        BOOST_TEST_CONTEXT(q) {
            const auto r = admin.request("DELETE", "/admin/cache" + q);
            BOOST_TEST(!error_msg(r, 400).empty());
        }
    }
    // Nothing was purged by any of them.
    BOOST_TEST(gw.get(backup_path(), with_key()).header("x-cache") == "HIT");
    BOOST_TEST(mock.stat("rds_requests") == 1);
    BOOST_TEST(admin.request("DELETE", "/admin/cache?" + ok).body == "{\"purged\":1}");
    gw.get(backup_path(), with_key());
    BOOST_TEST(admin.request("DELETE", "/admin/cache").body == "{\"purged\":1}");
}

BOOST_AUTO_TEST_CASE(metrics_require_auth_holds_without_callers_required) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    auto gw = GatewayConfig(mock, pki)
                  .patch(R"({"callers":{"required":false,"metrics_require_auth":true}})")
                  .start();
    BOOST_TEST(gw.get(backup_path()).status == 200u);  // backup-files stays open: callers.required is false
    for (const std::string path : {"/metrics", "/admin/status.json", "/admin/status"}) {
        BOOST_TEST_CONTEXT(path) {
            BOOST_TEST(error_msg(get(gw.admin_port, path), 401) == "missing credentials");
            BOOST_TEST(error_msg(get(gw.admin_port, path, {{"X-Api-Key", "wrong-SECRET-1"}}), 401) ==
                       "invalid credentials");
            BOOST_TEST(get(gw.admin_port, path, with_key()).status == 200u);
        }
    }
    HttpClient admin(gw.admin_port);
    BOOST_TEST(error_msg(admin.request("DELETE", "/admin/cache"), 401) == "missing credentials");
    BOOST_TEST(gw.get(backup_path()).header("x-cache") == "HIT");  // not purged
    BOOST_TEST(admin.request("DELETE", "/admin/cache", with_key()).body == "{\"purged\":1}");
    BOOST_TEST(gw.child.output().find("wrong-SECRET-1") == std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(double_slashes_inside_the_path_are_400, Fixture) {
    for (const std::string& t : std::vector<std::string>{
             "/v3//" + kProject + "/backup-files?backup_id=" + kBackup,
             "/v3/" + kProject + "//backup-files?backup_id=" + kBackup, "//v3/x", "/a//b"}) {
        BOOST_TEST_CONTEXT(t) {
            BOOST_TEST(error_msg(gw.get(t, with_key()), 400).find("//") != std::string::npos);
        }
    }
    BOOST_TEST(mock.stat("rds_requests") == 0);
}

BOOST_FIXTURE_TEST_CASE(host_ports_out_of_range_are_400_and_close, Fixture) {
    for (const std::string host : {"gw:99999", "1.2.3.4:65536", "gw:", "gw:0", "[::1]:70000"}) {
        BOOST_TEST_CONTEXT(host) {
            // A second request behind the first: the refusal closes the connection, so it is never answered.
            const std::string req = "GET /healthz HTTP/1.1\r\nHost: " + host + "\r\n\r\n";
            const std::string raw = send_raw(gw.port, req + "GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n");
            BOOST_TEST(raw.rfind("HTTP/1.1 400", 0) == 0, raw.substr(0, 60));
            BOOST_TEST(answers(raw) == 1u);
            BOOST_TEST(raw.find("invalid Host header") != std::string::npos);
        }
    }
    for (const std::string host : {"gw:0080", "gw:65535", "[::1]:1"}) {
        BOOST_TEST_CONTEXT(host) {
            const std::string raw =
                send_raw(gw.port, "GET /healthz HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
            BOOST_TEST(raw.rfind("HTTP/1.1 200", 0) == 0, raw.substr(0, 60));
        }
    }
}

BOOST_FIXTURE_TEST_CASE(max_age_zero_is_a_fresh_fetch, Fixture) {
    BOOST_TEST(gw.get(backup_path(), with_key()).header("x-cache") == "MISS");
    BOOST_TEST(gw.get(backup_path(), with_key()).header("x-cache") == "HIT");
    for (const std::string cc : {"max-age=0", "MAX-AGE=\"0\"", "no-transform, max-age=00"}) {
        BOOST_TEST_CONTEXT(cc) {
            BOOST_TEST(gw.get(backup_path(), with_key({{"Cache-Control", cc}})).header("x-cache") ==
                       "BYPASS");
        }
    }
    BOOST_TEST(mock.stat("rds_requests") == 4);
    // max-age above 0 is not honoured (documented): still a hit.
    BOOST_TEST(gw.get(backup_path(), with_key({{"Cache-Control", "max-age=5"}})).header("x-cache") == "HIT");
}

BOOST_FIXTURE_TEST_CASE(two_credentials_naming_different_callers_are_401, Fixture) {
    const Headers both = {{"Authorization", "Bearer " + kOtherKey}, {"X-Api-Key", kApiKey}};
    BOOST_TEST(error_msg(gw.get(backup_path(), both), 401) == "malformed credentials");
    const Headers swapped = {{"X-Api-Key", kOtherKey}, {"Authorization", "Bearer " + kApiKey}};
    BOOST_TEST(error_msg(gw.get(backup_path(), swapped), 401) == "malformed credentials");
    BOOST_TEST(mock.stat("rds_requests") == 0);
    // The same key in both headers is one credential.
    const Headers same = {{"Authorization", "Bearer " + kApiKey}, {"X-Api-Key", kApiKey}};
    BOOST_TEST(gw.get(backup_path(), same).status == 200u);
    const std::string out = gw.child.output();
    BOOST_TEST(out.find(kOtherKey) == std::string::npos);
    BOOST_TEST(out.find(kApiKey) == std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(encoded_unreserved_characters_are_decoded_everywhere, Fixture) {
    for (const std::string& t :
         std::vector<std::string>{"/v3/" + kProject + "/backup%2Dfiles?backup_id=" + kBackup,
                                  "/%763/" + kProject + "/backup-files?backup_id=" + kBackup,
                                  "/v3/" + kProject + "/backup-files?backup%5Fid=" + kBackup}) {
        BOOST_TEST_CONTEXT(t) {
            BOOST_TEST(gw.get(t, with_key()).status == 200u);
        }
    }
    BOOST_TEST(mock.stat("rds_requests") == 1);  // one cache key: the same request three times
    BOOST_TEST(gw.get("/heal%74hz").status == 200u);
    BOOST_TEST(get(gw.admin_port, "/%6Detrics").status == 200u);
    BOOST_TEST(error_msg(gw.get("/v3/" + kProject + "/backup%2Efiles?backup_id=" + kBackup, with_key()), 400)
                   .find("encoded dot") != std::string::npos);
}
