// rds-mock, the mock RDS + IAM upstream, checked from the outside (and the test-support library with it).
#define BOOST_TEST_MODULE test_mock
#include <boost/test/unit_test.hpp>

#include <csignal>
#include <cstdio>
#include <future>
#include <thread>

#include <boost/json.hpp>

#include "rdsgw/signer.hpp"
#include "support/certs.hpp"
#include "support/http.hpp"
#include "support/mock_server.hpp"
#include "support/process.hpp"
#include "support/tempdir.hpp"

using namespace rdsgw::test;
namespace json = boost::json;
using std::chrono::system_clock;

namespace {

const std::string kProject = "97b026aa9cc4417888c14c84a1ad9860";
const std::string kBackup = "c0c9f155c7b7423a9d30f0175998b63bbr01";
const std::string kTarget = "/v3/" + kProject + "/backup-files?backup_id=" + kBackup;

std::string target_for(const std::string& backup) {
    return "/v3/" + kProject + "/backup-files?backup_id=" + backup;
}

const Pki& pki() {
    static const Pki p = make_pki();
    return p;
}

std::string str(const json::value& v) {
    return std::string(v.as_string());
}

// Parses "yyyy-mm-ddThh:mm:ss+0800" (the mock's format) into seconds since the epoch.
std::int64_t parse_beijing(const std::string& s) {
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0;
    char tail[8] = {};
    BOOST_REQUIRE_EQUAL(s.size(), 24u);
    BOOST_REQUIRE_EQUAL(
        std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%5s", &y, &mo, &d, &h, &mi, &sec, tail), 7);
    BOOST_REQUIRE_EQUAL(std::string(tail), "+0800");
    using namespace std::chrono;
    const auto day = sys_days{year{y} / month{static_cast<unsigned>(mo)} / static_cast<unsigned>(d)};
    return (day + hours{h} + minutes{mi} + seconds{sec} - hours{8}).time_since_epoch() / seconds{1};
}

std::int64_t now_s() {
    return std::chrono::duration_cast<std::chrono::seconds>(system_clock::now().time_since_epoch()).count();
}

// The token request of RDS_API.md (the password is JSON-safe in these tests).
std::string iam_body(const std::string& password = "secret-pw") {
    return R"({"auth":{"identity":{"methods":["password"],"password":{"user":{"domain":{"name":"acct"},)"
           R"("name":"svc-user","password":")" +
           password + R"("}}},"scope":{"project":{"name":"cn-north-4"}}}})";
}

Response post_json(HttpClient& c, const std::string& target, const std::string& body) {
    return c.request("POST", target, {{"Content-Type", "application/json;charset=utf8"}}, body);
}

std::uint64_t stat(const json::object& s, const char* key) {
    return s.at(key).to_number<std::uint64_t>();
}

}  // namespace

BOOST_AUTO_TEST_CASE(normal_answer_has_the_documented_shape) {
    MockServer mock;
    HttpClient c(mock.port);
    const auto before = now_s();
    const auto r = c.request("GET", kTarget);
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(r.header("content-type") == "application/json");
    const auto id1 = r.header("x-request-id");
    BOOST_TEST(!id1.empty());

    const auto body = r.json().as_object();
    BOOST_TEST(str(body.at("bucket")) == "rdsbucket.demo");
    const auto& files = body.at("files").as_array();
    BOOST_REQUIRE_EQUAL(files.size(), 2u);
    for (std::size_t i = 0; i < files.size(); ++i) {
        const auto& f = files[i].as_object();
        const std::string name = kBackup + "_" + std::to_string(i) + ".qp";
        BOOST_TEST(str(f.at("name")) == name);
        BOOST_TEST(f.at("size").is_int64());
        BOOST_TEST(f.at("size").as_int64() > 0);
        BOOST_TEST(str(f.at("database_name")) == "");
        const auto link = str(f.at("download_link"));
        const std::string prefix = "https://obs.cn-north-4.myhuaweicloud.com/rdsbucket.demo/" + name +
                                   "?AccessKeyId=MOCKAK&Expires=";
        BOOST_TEST(link.rfind(prefix, 0) == 0u, link);
        BOOST_TEST(link.find("&Signature=mocksig") != std::string::npos);
        const auto expiry = parse_beijing(str(f.at("link_expired_time")));
        BOOST_TEST(expiry >= before + 900);
        BOOST_TEST(expiry <= now_s() + 900);
        BOOST_TEST(link.find("Expires=" + std::to_string(expiry) + "&") != std::string::npos);
        BOOST_TEST(!f.contains("link_expired_link"));
    }
    // Links are fresh per answer, and so are request ids.
    const auto r2 = c.request("GET", kTarget);
    BOOST_TEST(r2.status == 200u);
    BOOST_TEST(r2.header("x-request-id") != id1);
    BOOST_TEST(str(r2.json().at("files").at(0).at("download_link")) != str(files[0].at("download_link")));
    BOOST_TEST(c.connects() == 1);
}

BOOST_AUTO_TEST_CASE(expiry_field_variants_and_file_count) {
    MockServer mock;
    HttpClient c(mock.port);

    mock.configure(R"({"expiry_field":"link_expired_link","files":3,"link_lifetime_s":60})");
    auto f = c.request("GET", kTarget).json().at("files");
    BOOST_REQUIRE_EQUAL(f.as_array().size(), 3u);
    BOOST_TEST(!f.at(0).as_object().contains("link_expired_time"));
    const auto t = parse_beijing(str(f.at(0).at("link_expired_link")));
    BOOST_TEST(t <= now_s() + 60);
    BOOST_TEST(t >= now_s() + 55);

    mock.configure(R"({"expiry_field":"both"})");
    f = c.request("GET", kTarget).json().at("files");
    BOOST_TEST(str(f.at(0).at("link_expired_time")) == str(f.at(0).at("link_expired_link")));

    mock.configure(R"({"expiry_field":"both_different","files":0})");
    BOOST_TEST(c.request("GET", kTarget).json().at("files").as_array().empty());
    mock.configure(R"({"files":1})");
    f = c.request("GET", kTarget).json().at("files");
    BOOST_TEST(parse_beijing(str(f.at(0).at("link_expired_link"))) <
               parse_beijing(str(f.at(0).at("link_expired_time"))));
}

BOOST_AUTO_TEST_CASE(body_modes) {
    MockServer mock;
    HttpClient c(mock.port);
    auto body_for = [&](const std::string& mode) {
        mock.configure(R"({"body_mode":")" + mode + R"("})");
        const auto r = c.request("GET", kTarget);
        BOOST_TEST(r.status == 200u);
        return r;
    };
    const auto doc = body_for("doc_example");
    BOOST_TEST(doc.body.find("\u201cfiles\u201d") != std::string::npos);
    BOOST_TEST(doc.body.find("2018-08-016T10:15:14+0800") != std::string::npos);
    BOOST_CHECK_THROW(doc.json(), std::runtime_error);
    BOOST_CHECK_THROW(body_for("not_json").json(), std::runtime_error);
    const auto html = body_for("html");
    BOOST_TEST(html.header("content-type") == "text/html");
    BOOST_TEST(html.body.find("<html>") != std::string::npos);
    const auto empty = body_for("empty");
    BOOST_TEST(empty.body.empty());
    BOOST_TEST(empty.header("content-length") == "0");
    BOOST_TEST(body_for("array").body == "[]");
    BOOST_TEST(str(body_for("bad_time").json().at("files").at(0).at("link_expired_time")) ==
               "2018-13-01T00:00:00+0800");
    BOOST_TEST(body_for("bad_size").json().at("files").at(0).at("size").as_int64() == -5);
    mock.configure(R"({"body_mode":"custom","custom_body":"{\"files\":7}"})");
    BOOST_TEST(c.request("GET", kTarget).body == R"({"files":7})");
}

BOOST_AUTO_TEST_CASE(script_then_normal_behaviour) {
    MockServer mock;
    HttpClient c(mock.port);
    mock.configure(R"({"script":[{"status":503},{"status":429,"retry_after":"1"},
                                 {"status":401,"error_code":"APIGW.0307","error_msg":"The token must be updated."}]})");
    auto r = c.request("GET", kTarget);
    BOOST_TEST(r.status == 503u);
    BOOST_TEST(str(r.json().at("error_code")) == "DBS.200001");
    BOOST_TEST(!r.has_header("retry-after"));
    r = c.request("GET", kTarget);
    BOOST_TEST(r.status == 429u);
    BOOST_TEST(r.header("retry-after") == "1");
    r = c.request("GET", kTarget);
    BOOST_TEST(r.status == 401u);
    BOOST_TEST(str(r.json().at("error_code")) == "APIGW.0307");
    r = c.request("GET", kTarget);
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(!r.has_header("retry-after"));
    const auto s = mock.stats();
    BOOST_TEST(stat(s, "rds_requests") == 4u);
    BOOST_TEST(stat(s, "rds_ok") == 1u);
    BOOST_TEST(stat(s, "rds_unauthorized") == 1u);
    BOOST_TEST(stat(s, "script_pending") == 0u);
}

BOOST_AUTO_TEST_CASE(script_connection_actions_and_latency) {
    MockServer mock;
    mock.configure(
        R"({"script":[{"action":"reset"},{"action":"close"},{"latency_ms":200},{"action":"hang"}]})");
    HttpClient c(mock.port);
    BOOST_CHECK_THROW(c.request("GET", kTarget), std::runtime_error);  // reset
    BOOST_TEST(!c.connected());
    c.reconnect();
    BOOST_CHECK_THROW(c.request("GET", kTarget), std::runtime_error);  // closed without an answer
    c.reconnect();
    const auto start = std::chrono::steady_clock::now();
    BOOST_TEST(c.request("GET", kTarget).status == 200u);  // one slow answer
    const auto elapsed = std::chrono::steady_clock::now() - start;
    BOOST_TEST(elapsed >= std::chrono::milliseconds(200));
    c.set_timeout(300ms);
    BOOST_CHECK_THROW(c.request("GET", kTarget), std::runtime_error);  // hangs: the client times out
    c.set_timeout(10s);
    c.reconnect();
    BOOST_TEST(c.request("GET", kTarget).status == 200u);
    BOOST_TEST(stat(mock.stats(), "rds_requests") == 5u);
}

BOOST_AUTO_TEST_CASE(script_hang_with_raw_answer_starts_an_answer_then_stalls) {
    MockServer mock;
    const std::string partial = "HTTP/1.1 200 OK\r\nContent-Length: 400\r\n\r\n{\"files\":[";
    mock.configure(json::serialize(
        json::object{{"script", json::array{json::object{{"action", "hang"}, {"raw_answer", partial}}}}}));
    const auto start = std::chrono::steady_clock::now();
    // Reads until the client's 500 ms timeout: the connection is neither answered in full nor closed.
    const std::string got =
        send_raw(mock.port, "GET " + std::string(kTarget) + " HTTP/1.1\r\nHost: mock\r\n\r\n", 500ms);
    BOOST_TEST(got == partial);
    BOOST_TEST((std::chrono::steady_clock::now() - start >= 450ms));
    BOOST_TEST(stat(mock.stats(), "rds_requests") == 1u);
}

BOOST_AUTO_TEST_CASE(status_and_missing_backups) {
    MockServer mock;
    HttpClient c(mock.port);
    mock.configure(R"({"missing_backups":["gone"]})");
    auto r = c.request("GET", target_for("gone"));
    BOOST_TEST(r.status == 404u);
    BOOST_TEST(str(r.json().at("error_code")) == "DBS.200002");
    BOOST_TEST(str(r.json().at("error_msg")) == "backup not found");
    BOOST_TEST(c.request("GET", target_for("here")).status == 200u);

    mock.configure(R"({"status":500})");
    r = c.request("GET", kTarget);
    BOOST_TEST(r.status == 500u);
    BOOST_TEST(r.body == R"({"error_code":"DBS.200001","error_msg":"mock error"})");
    mock.configure(R"({"error_body_mode":"html"})");
    r = c.request("GET", kTarget);
    BOOST_TEST(r.status == 500u);
    BOOST_TEST(r.header("content-type") == "text/html");
    mock.configure(R"({"error_body_mode":"empty","status":502})");
    r = c.request("GET", kTarget);
    BOOST_TEST(r.status == 502u);
    BOOST_TEST(r.body.empty());

    const auto s = mock.stats();
    BOOST_TEST(stat(s.at("rds_by_backup").as_object(), "gone") == 1u);
    BOOST_TEST(stat(s.at("rds_by_backup").as_object(), "here") == 1u);
    BOOST_TEST(stat(s.at("rds_by_backup").as_object(), kBackup.c_str()) == 3u);

    mock.reset();
    BOOST_TEST(c.request("GET", target_for("gone")).status == 200u);
    BOOST_TEST(stat(mock.stats(), "rds_requests") == 1u);
}

BOOST_AUTO_TEST_CASE(static_token_auth) {
    MockServer mock(MockOptions().with_config(R"({"auth":"static","static_token":"s3cr3t"})"));
    HttpClient c(mock.port);
    auto r = c.request("GET", kTarget);
    BOOST_TEST(r.status == 401u);
    BOOST_TEST(str(r.json().at("error_code")) == "APIGW.0307");
    BOOST_TEST(str(r.json().at("error_msg")) == "The token must be updated.");
    BOOST_TEST(c.request("GET", kTarget, {{"X-Auth-Token", "wrong"}}).status == 401u);
    BOOST_TEST(c.request("GET", kTarget, {{"X-Auth-Token", "s3cr3t"}}).status == 200u);
    const auto s = mock.stats();
    BOOST_TEST(stat(s, "rds_unauthorized") == 2u);
    BOOST_TEST(stat(s, "rds_ok") == 1u);
    BOOST_TEST(str(s.at("last_rds_headers").at("x-auth-token")) == "s3cr3t");
    BOOST_TEST(str(s.at("last_rds_target")) == kTarget);
}

BOOST_AUTO_TEST_CASE(iam_tokens_issue_use_and_revoke) {
    MockServer mock(MockOptions().with_config(R"({"auth":"iam","iam_password":"secret-pw"})"));
    HttpClient c(mock.port);

    auto r = post_json(c, "/v3/auth/tokens?nocatalog=true", iam_body());
    BOOST_TEST(r.status == 201u);
    const auto token = r.header("x-subject-token");
    BOOST_TEST(token.rfind("MOCKTOKEN-", 0) == 0u);
    const auto expires = str(r.json().at("token").at("expires_at"));
    BOOST_TEST(expires.size() == 27u);  // 2020-01-04T09:05:22.701000Z
    BOOST_TEST(expires.back() == 'Z');
    BOOST_TEST(!str(r.json().at("token").at("issued_at")).empty());

    auto s = mock.stats();
    BOOST_TEST(stat(s, "iam_requests") == 1u);
    BOOST_TEST(stat(s, "tokens_issued") == 1u);
    BOOST_TEST(str(s.at("last_iam_body").at("auth").at("identity").at("password").at("user").at("name")) ==
               "svc-user");

    BOOST_TEST(c.request("GET", kTarget, {{"X-Auth-Token", token}}).status == 200u);
    BOOST_TEST(c.request("GET", kTarget, {{"X-Auth-Token", "MOCKTOKEN-forged"}}).status == 401u);
    BOOST_TEST(c.request("GET", kTarget).status == 401u);

    // A new token does not revoke the old one; /_mock/revoke revokes both.
    const auto token2 = post_json(c, "/v3/auth/tokens", iam_body()).header("x-subject-token");
    BOOST_TEST(token2 != token);
    BOOST_TEST(c.request("GET", kTarget, {{"X-Auth-Token", token}}).status == 200u);
    mock.revoke();
    r = c.request("GET", kTarget, {{"X-Auth-Token", token2}});
    BOOST_TEST(r.status == 401u);
    BOOST_TEST(str(r.json().at("error_code")) == "APIGW.0307");
    const auto token3 = post_json(c, "/v3/auth/tokens", iam_body()).header("x-subject-token");
    BOOST_TEST(c.request("GET", kTarget, {{"X-Auth-Token", token3}}).status == 200u);

    // Wrong password, malformed body, scripted failure, already-expired token.
    r = post_json(c, "/v3/auth/tokens", iam_body("nope"));
    BOOST_TEST(r.status == 401u);
    BOOST_TEST(str(r.json().at("error_code")) == "APIGW.0301");
    BOOST_TEST(post_json(c, "/v3/auth/tokens", R"({"auth":{}})").status == 400u);
    mock.configure(R"({"iam_script":[{"status":503}],"token_lifetime_s":-1})");
    BOOST_TEST(post_json(c, "/v3/auth/tokens", iam_body()).status == 503u);
    const auto expired = post_json(c, "/v3/auth/tokens", iam_body()).header("x-subject-token");
    BOOST_TEST(!expired.empty());
    BOOST_TEST(c.request("GET", kTarget, {{"X-Auth-Token", expired}}).status == 401u);
    BOOST_TEST(stat(mock.stats(), "tokens_issued") == 4u);
}

BOOST_AUTO_TEST_CASE(aksk_signatures_are_verified) {
    MockServer mock(
        MockOptions().with_config(R"({"auth":"aksk","ak":"HPUAEXAMPLEAK0000001","sk":"exampleSecretKey"})"));
    HttpClient c(mock.port);
    auto signed_headers = [&](const std::string& sk, system_clock::time_point when) {
        rdsgw::SignableRequest req;
        req.method = "GET";
        req.path = "/v3/" + kProject + "/backup-files";
        req.query = "backup_id=" + kBackup;
        const auto host = "127.0.0.1:" + std::to_string(mock.port);
        const auto date = rdsgw::sdk_date(when);
        req.headers = {{"Host", host}, {"X-Sdk-Date", date}, {"X-Project-Id", kProject}};
        return Headers{{"Host", host},
                       {"X-Sdk-Date", date},
                       {"X-Project-Id", kProject},
                       {"Authorization", rdsgw::authorization_header(req, "HPUAEXAMPLEAK0000001", sk)}};
    };
    BOOST_TEST(c.request("GET", kTarget, signed_headers("exampleSecretKey", system_clock::now())).status ==
               200u);
    auto r = c.request("GET", kTarget, signed_headers("wrongSecretKey", system_clock::now()));
    BOOST_TEST(r.status == 401u);
    BOOST_TEST(str(r.json().at("error_code")) == "APIGW.0301");
    BOOST_TEST(
        c.request("GET", kTarget, signed_headers("exampleSecretKey", system_clock::now() - 20min)).status ==
        401u);
    BOOST_TEST(c.request("GET", kTarget).status == 401u);
}

BOOST_AUTO_TEST_CASE(stats_count_connections_and_headers) {
    MockServer mock;
    const auto base = mock.stats();
    BOOST_TEST(stat(base, "connections") == 1u);  // the control connection
    BOOST_TEST(stat(base, "control_connections") == 1u);
    {
        HttpClient a(mock.port);
        for (int i = 0; i < 3; ++i)
            BOOST_TEST(a.request("GET", kTarget, {{"X-Request-Id", "req-a"}}).status == 200u);
        HttpClient b(mock.port);
        BOOST_TEST(b.request("GET", target_for("other")).status == 200u);
        const auto s = mock.stats();
        BOOST_TEST(stat(s, "connections") == 3u);
        BOOST_TEST(stat(s, "open_connections") == 3u);
        BOOST_TEST(stat(s, "rds_requests") == 4u);
        BOOST_TEST(stat(s, "tls_handshakes") == 0u);
        BOOST_TEST(str(s.at("last_rds_target")) == target_for("other"));
        BOOST_TEST(str(s.at("last_rds_headers").at("host")) == "127.0.0.1:" + std::to_string(mock.port));
        BOOST_TEST(!s.at("last_rds_headers").as_object().contains("x-request-id"));
    }
    // Unknown paths: 404 JSON, not counted as RDS requests.
    const auto r = get(mock.port, "/v3/" + kProject + "/instances");
    BOOST_TEST(r.status == 404u);
    BOOST_TEST(r.json().as_object().contains("error_code"));
    BOOST_TEST(stat(mock.stats(), "rds_requests") == 4u);
}

BOOST_AUTO_TEST_CASE(idle_close_gzip_and_pipelining) {
    MockServer mock(MockOptions().with_config(R"({"idle_close_ms":100,"gzip":true})"));
    HttpClient c(mock.port);
    const auto r = c.request("GET", kTarget);
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(r.header("content-encoding") == "gzip");
    BOOST_TEST(parse_json(gunzip(r.body)).at("files").as_array().size() == 2u);
    BOOST_TEST(c.wait_closed_by_peer(5s));
    BOOST_TEST(!c.connected());
    BOOST_CHECK_THROW(c.request("GET", kTarget), std::runtime_error);

    mock.configure(R"({"idle_close_ms":0,"gzip":false})");
    const std::string one = "GET " + kTarget + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    const std::string last =
        "GET " + target_for("x") + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    const auto raw = send_raw(mock.port, one + last);
    std::size_t answers = 0;
    for (auto pos = raw.find("HTTP/1.1 200 OK"); pos != std::string::npos;
         pos = raw.find("HTTP/1.1 200 OK", pos + 1))
        ++answers;
    BOOST_TEST(answers == 2u);
    BOOST_TEST(raw.find("x_0.qp") != std::string::npos);
    BOOST_TEST(send_raw(mock.port, "NOT HTTP AT ALL\r\n\r\n").find("400") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(wait_answers_when_the_counter_gets_there) {
    MockServer mock;
    HttpClient c(mock.port);
    // Already there: at once, with the stats.
    auto r = mock.control("GET", "/_mock/wait?counter=rds_requests&at_least=0");
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(stat(r.json().as_object(), "rds_requests") == 0u);
    BOOST_TEST(mock.wait_for("connections", 1));  // the control connection

    // Not yet: another connection long-polls while this one makes the two requests it waits for. The
    // mock counts pending long polls as "waiters".
    std::promise<Response> answer;
    std::thread waiter([&] {
        HttpClient w(mock.port, std::nullopt, 60s);
        answer.set_value(w.request("GET", "/_mock/wait?counter=rds_requests&at_least=2&timeout_ms=60000"));
    });
    const auto t0 = std::chrono::steady_clock::now();
    BOOST_TEST(mock.wait_for("waiters", 2));  // the other long poll is pending (this one is the second)
    BOOST_TEST(c.request("GET", kTarget).status == 200u);
    BOOST_TEST(c.request("GET", kTarget).status == 200u);
    r = answer.get_future().get();
    waiter.join();
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(stat(r.json().as_object(), "rds_requests") == 2u);
    // Woken by the second request, not by its 60 s timeout (a generous bound).
    BOOST_TEST((std::chrono::steady_clock::now() - t0 < 30s));
}

BOOST_AUTO_TEST_CASE(wait_times_out_with_408_and_checks_its_parameters) {
    MockServer mock;
    const auto t0 = std::chrono::steady_clock::now();
    auto r = mock.control("GET", "/_mock/wait?counter=rds_requests&at_least=5&timeout_ms=200");
    BOOST_TEST(r.status == 408u);
    BOOST_TEST(r.json().at("value").to_number<int>() == 0);
    BOOST_TEST(str(r.json().at("error_msg")).find("rds_requests") != std::string::npos);
    BOOST_TEST((std::chrono::steady_clock::now() - t0 >= 200ms));
    BOOST_TEST(!mock.wait_for("iam_requests", 1, 100ms));
    for (const char* bad :
         {"/_mock/wait?counter=nope&at_least=1", "/_mock/wait?counter=rds_requests", "/_mock/wait?at_least=1",
          "/_mock/wait?counter=rds_requests&at_least=-1", "/_mock/wait?counter=rds_requests&at_least=x",
          "/_mock/wait?counter=rds_requests&at_least=1&timeout_ms=999999",
          "/_mock/wait?counter=rds_requests&at_least=1&extra=1"}) {
        BOOST_TEST_CONTEXT(bad) {
            BOOST_TEST(mock.control("GET", bad).status == 400u);
        }
    }
    BOOST_CHECK_THROW(mock.wait_for("nope", 1), std::runtime_error);
    // A waiter that hangs up early is dropped; the mock goes on and stops cleanly.
    {
        HttpClient impatient(mock.port, std::nullopt, 100ms);
        BOOST_CHECK_THROW(
            impatient.request("GET", "/_mock/wait?counter=rds_requests&at_least=9&timeout_ms=60000"),
            std::runtime_error);
    }
    BOOST_TEST(get(mock.port, kTarget).status == 200u);
    BOOST_TEST(mock.wait_for("rds_requests", 1));
    BOOST_TEST(mock.stop().value_or(-1) == 0);
}

BOOST_AUTO_TEST_CASE(held_requests_wait_for_release) {
    MockServer mock;
    mock.configure(R"({"script":[{"hold":true},{"hold":true,"status":503}]})");
    std::vector<std::future<Response>> held;
    for (int i = 0; i < 2; ++i) {
        held.push_back(std::async(std::launch::async, [&] {
            HttpClient c(mock.port, std::nullopt, 60s);
            return c.request("GET", kTarget);
        }));
        BOOST_TEST_REQUIRE(mock.wait_for("held", i + 1));  // in script order
    }
    // Held, not answered; requests without "hold" go on meanwhile.
    for (auto& f : held) BOOST_TEST((f.wait_for(0s) == std::future_status::timeout));
    BOOST_TEST(get(mock.port, kTarget).status == 200u);
    BOOST_TEST(mock.stat("held") == 2);
    mock.release();
    BOOST_TEST(held[0].get().status == 200u);
    BOOST_TEST(held[1].get().status == 503u);
    BOOST_TEST(mock.stat("held") == 0);
    BOOST_TEST(mock.stat("releases") == 1);
    BOOST_TEST(mock.stat("rds_requests") == 3);
}

BOOST_AUTO_TEST_CASE(configuration_is_validated) {
    MockServer mock;
    auto r = mock.control("POST", "/_mock/config", R"({"no_such_key":1})");
    BOOST_TEST(r.status == 400u);
    BOOST_TEST(str(r.json().at("error_msg")).find("no_such_key") != std::string::npos);
    BOOST_TEST(mock.control("POST", "/_mock/config", R"({"files":"two"})").status == 400u);
    BOOST_TEST(mock.control("POST", "/_mock/config", R"({"script":[{"action":"explode"}]})").status == 400u);
    BOOST_TEST(mock.control("POST", "/_mock/config", "not json").status == 400u);
    BOOST_CHECK_THROW(mock.configure(R"({"body_mode":"weird"})"), std::runtime_error);
    // A rejected patch changes nothing.
    BOOST_TEST(mock.control("POST", "/_mock/config", R"({"files":5,"auth":"bogus"})").status == 400u);
    BOOST_TEST(get(mock.port, kTarget).json().at("files").as_array().size() == 2u);

    // A bad --config stops the mock at start with exit status 2.
    Child bad;
    bad.spawn({RDSGW_MOCK_BIN, "--port", "0", "--config", R"({"files":-1})"});
    BOOST_TEST(bad.wait_exit(10s).value_or(-1) == 2);
    BOOST_TEST(bad.output().find("files") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(tls_with_the_test_ca) {
    MockServer mock(MockOptions().with_tls(pki()).with_threads(2));
    BOOST_TEST(mock.base_url() == "https://localhost:" + std::to_string(mock.port));
    HttpClient c(mock.port, mock.client_tls());
    for (int i = 0; i < 3; ++i) BOOST_TEST(c.request("GET", kTarget).status == 200u);
    BOOST_TEST(c.connected());
    HttpClient fresh(mock.port, mock.client_tls());
    BOOST_TEST(fresh.connected());  // post-handshake messages (session tickets) do not look like a close
    BOOST_TEST(fresh.request("GET", kTarget).status == 200u);

    // Verification is real: another CA, or a name the certificate does not carry, fail the handshake.
    BOOST_CHECK_THROW(HttpClient(mock.port, TlsOptions::trusting(pki().other_ca_cert)), std::runtime_error);
    BOOST_CHECK_THROW(HttpClient(mock.port, TlsOptions::trusting(pki().ca_cert, "wrong.example")),
                      std::runtime_error);
    BOOST_TEST(
        HttpClient(mock.port, TlsOptions::trusting(pki().ca_cert, "")).request("GET", kTarget).status ==
        200u);  // checked against IP:127.0.0.1

    const auto s = mock.stats();
    BOOST_TEST(stat(s, "tls_handshakes") == 4u);  // control, c, fresh, and the IP-checked client
    BOOST_TEST(stat(s, "connections") == 6u);
    BOOST_TEST(stat(s, "rds_requests") == 5u);
}

BOOST_AUTO_TEST_CASE(pki_files_are_consistent) {
    const auto& p = pki();
    const auto [cert, key] = p.client("restore-svc");
    BOOST_TEST(std::filesystem::exists(cert));
    BOOST_TEST(std::filesystem::exists(key));
    // The openssl command checks chains and purposes independently of this library.
    auto openssl_verify = [](const std::vector<std::string>& args) {
        Child child;
        std::vector<std::string> argv{"openssl", "verify"};
        argv.insert(argv.end(), args.begin(), args.end());
        child.spawn(argv);
        return child.wait_exit(10s).value_or(-1);
    };
    BOOST_TEST(openssl_verify({"-CAfile", p.ca_cert, "-purpose", "sslclient", cert}) == 0);
    BOOST_TEST(openssl_verify({"-CAfile", p.ca_cert, "-purpose", "sslserver", cert}) != 0);
    BOOST_TEST(openssl_verify({"-CAfile", p.ca_cert, "-purpose", "sslserver", p.server_cert}) == 0);
    BOOST_TEST(openssl_verify({"-CAfile", p.other_ca_cert, p.server_cert}) != 0);
    BOOST_TEST(openssl_verify({"-CAfile", p.other_ca_cert, p.client("x", true).first}) == 0);
    BOOST_TEST(openssl_verify({"-CAfile", p.ca_cert, p.expired_cert}) != 0);
    // The mock serving the wrong-host, expired and untrusted certificates is rejected by a verifying client.
    for (const auto& [c, k] :
         {std::pair{p.wrong_host_cert, p.wrong_host_key}, std::pair{p.expired_cert, p.expired_key},
          std::pair{p.untrusted_server_cert, p.untrusted_server_key}}) {
        Child child;
        child.spawn({RDSGW_MOCK_BIN, "--port", "0", "--tls-cert", c, "--tls-key", k});
        const int port = start_and_get_port(child);
        BOOST_CHECK_THROW(HttpClient(port, TlsOptions::trusting(p.ca_cert)), std::runtime_error);
        BOOST_TEST(HttpClient(port, TlsOptions::unverified()).request("GET", kTarget).status ==
                   200u);  // unverified works
    }
}

BOOST_AUTO_TEST_CASE(sigterm_exits_zero) {
    Child child;
    child.spawn({RDSGW_MOCK_BIN, "--port", "0", "--threads", "3"});
    const int port = start_and_get_port(child);
    HttpClient c(port);
    BOOST_TEST(c.request("GET", kTarget).status == 200u);
    BOOST_TEST(child.running());
    child.signal(SIGTERM);
    BOOST_TEST(child.wait_exit(10s).value_or(-1) == 0);
    BOOST_TEST(!child.running());

    // With a connection hanging, a slow answer pending and TLS, too.
    MockServer mock(
        MockOptions().with_tls(pki()).with_config(R"({"script":[{"action":"hang"},{"latency_ms":5000}]})"));
    HttpClient hanging(mock.port, mock.client_tls(), 200ms);
    BOOST_CHECK_THROW(hanging.request("GET", kTarget), std::runtime_error);
    HttpClient slow(mock.port, mock.client_tls(), 200ms);
    BOOST_CHECK_THROW(slow.request("GET", kTarget), std::runtime_error);
    BOOST_TEST(mock.stop().value_or(-1) == 0);
}

BOOST_AUTO_TEST_CASE(child_process_helpers) {
    TempDir dir;
    const auto file = dir.write("in.txt", "hello\n");
    Child child;
    child.spawn({"sh", "-c", "echo start; cat \"$1\"; echo \"V=$RDSGW_T\"; exit 3", "sh", file},
                {{"RDSGW_T", "x y"}});
    BOOST_TEST(child.wait_for_line("V=").value_or("") == "V=x y");
    BOOST_TEST(child.wait_exit(10s).value_or(-1) == 3);
    BOOST_TEST(child.output() == "start\nhello\nV=x y\n");
    BOOST_TEST(!child.wait_for_line("never", 10s).has_value());  // returns at once: the child is gone
    BOOST_CHECK_THROW(start_and_get_port(child, 1s), std::runtime_error);

    Child missing;
    missing.spawn({dir.file("no-such-program")});
    BOOST_TEST(missing.wait_exit(10s).value_or(-1) == 127);
    BOOST_TEST(missing.output().find("cannot execute") != std::string::npos);

    Child sleeper;
    sleeper.spawn({"sleep", "30"});
    BOOST_TEST(!sleeper.wait_exit(50ms).has_value());
    sleeper.signal(SIGKILL);
    BOOST_TEST(sleeper.wait_exit(10s).value_or(-1) == 128 + SIGKILL);

    const std::string path = dir.path();
    { TempDir gone(std::move(dir)); }
    BOOST_TEST(!std::filesystem::exists(path));
}
