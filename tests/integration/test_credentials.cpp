// Upstream credentials (issue 3): IAM tokens obtained and refreshed by the gateway, AK/SK signing, a token
// file rotated with SIGHUP — end to end against rds-mock's IAM and RDS sides.
#define BOOST_TEST_MODULE credentials
#include <signal.h>

#include <atomic>
#include <thread>

#include "harness.hpp"

using namespace rdsgw::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {
const std::string kPassword = "iam-PASSWORD-s3cr3t-91b2";
const std::string kAk = "HPUAGATEWAYAK0000001";
const std::string kSk = "gateway-SECRET-KEY-c0ffee-000000000000";

// IAM mode against the mock, cache off (every request goes upstream).
GatewayConfig iam_config(const MockServer& mock, const Pki& pki, int margin_s, int min_validity_s) {
    return GatewayConfig(mock, pki).iam(mock, kPassword, margin_s, min_validity_s, 50, 300).no_cache();
}

void no_secrets_in(const std::string& text) {
    for (const std::string& s : {kPassword, kSk, std::string("MOCKTOKEN-")}) {
        BOOST_TEST(text.find(s) == std::string::npos, "secret found: " << s.substr(0, 4) << "...");
    }
}
}  // namespace

BOOST_AUTO_TEST_CASE(iam_refresh_under_load) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"auth":"iam","token_lifetime_s":6,"iam_password":")" + kPassword + R"("})", 2);
    auto gw = iam_config(mock, pki, 2, 1).start();
    BOOST_REQUIRE(eventually([&] { return gw.get("/readyz").status == 200; }, 5s));

    std::atomic<int> ok{0}, bad{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t) {
        ts.emplace_back([&] {
            HttpClient c(gw.port);
            while (!stop) {
                auto r = c.request("GET", backup_path(), with_key());
                if (r.status == 200)
                    ++ok;
                else {
                    ++bad;
                    BOOST_TEST_MESSAGE("unexpected " << r.status << " " << r.body);
                }
            }
        });
    }
    // Run for 3 token lifetimes, measured by the gateway's own clock-driven refreshes.
    auto t0 = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() - t0 < 15s) std::this_thread::sleep_for(100ms);
    stop = true;
    for (auto& t : ts) t.join();
    auto iam = mock.stat("iam_requests");
    BOOST_TEST_MESSAGE("ok=" << ok << " bad=" << bad << " iam_requests=" << iam);
    BOOST_TEST(bad.load() == 0);
    BOOST_TEST(ok.load() > 200);
    // A token lives 6 s and is refreshed 2 s before expiry: one IAM call per ~4 s, not one per request.
    BOOST_TEST(iam >= 3);
    BOOST_TEST(iam <= 7);
    BOOST_TEST(mock.stat("rds_unauthorized") == 0);
    no_secrets_in(gw.child.output());
}

BOOST_AUTO_TEST_CASE(iam_down_at_start_then_back) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"auth":"iam","iam_fail_status":500})");
    auto gw = iam_config(mock, pki, 2, 1).start();
    auto rz = gw.get("/readyz");
    BOOST_TEST(rz.status == 503u);
    BOOST_TEST(rz.body.find("credentials") != std::string::npos);
    auto t0 = std::chrono::steady_clock::now();
    auto r = gw.get(backup_path(), with_key());
    BOOST_TEST(r.status == 503u);
    BOOST_TEST(std::string(r.json().at("error_msg").as_string()) == "no valid upstream credentials");
    BOOST_TEST(to_ms(std::chrono::steady_clock::now() - t0) < 1000);  // fast: not the 5 s retry deadline
    BOOST_TEST(mock.stat("rds_requests") == 0);
    // IAM recovers: the gateway resumes by itself.
    mock.configure(R"({"iam_fail_status":0})");
    BOOST_TEST(eventually([&] { return gw.get("/readyz").status == 200; }, 5s));
    BOOST_TEST(gw.get(backup_path(), with_key()).status == 200u);
    no_secrets_in(gw.child.output());
}

BOOST_AUTO_TEST_CASE(iam_down_later_uses_token_until_margin) {
    Pki pki = make_pki();
    // Lifetime 4 s, refresh from 3 s before expiry, never inject with less than 1 s left.
    MockServer mock(&pki, R"({"auth":"iam","token_lifetime_s":4})");
    auto gw = iam_config(mock, pki, 3, 1).start();
    BOOST_REQUIRE(eventually([&] { return gw.get("/readyz").status == 200; }, 5s));
    mock.configure(R"({"iam_fail_status":503})");
    // The current token is still valid: requests succeed although refreshes fail.
    BOOST_TEST(gw.get(backup_path(), with_key()).status == 200u);
    // Once the token is inside the safety window: fast 503 with the reason, never a doomed request.
    BOOST_REQUIRE(eventually([&] { return gw.get("/readyz").status == 503; }, 6s));
    auto before = mock.stat("rds_requests");
    auto r = gw.get(backup_path(), with_key());
    BOOST_TEST(r.status == 503u);
    BOOST_TEST(mock.stat("rds_requests") == before);
    BOOST_TEST(mock.stat("rds_unauthorized") == 0);
    mock.configure(R"({"iam_fail_status":0})");
    BOOST_TEST(eventually([&] { return gw.get("/readyz").status == 200; }, 5s));
    BOOST_TEST(gw.get(backup_path(), with_key()).status == 200u);
}

BOOST_AUTO_TEST_CASE(revoked_token_one_refresh_no_caller_error) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"auth":"iam","token_lifetime_s":3600})", 2);
    auto gw = iam_config(mock, pki, 60, 5).start();
    BOOST_REQUIRE(eventually([&] { return gw.get("/readyz").status == 200; }, 5s));
    BOOST_TEST(gw.get(backup_path(), with_key()).status == 200u);
    auto iam_before = mock.stat("iam_requests");
    mock.revoke();
    std::atomic<int> bad{0};
    std::vector<std::thread> ts;
    for (int t = 0; t < 8; ++t) {
        ts.emplace_back([&] {
            HttpClient c(gw.port);
            for (int i = 0; i < 20; ++i) {
                auto r = c.request("GET", backup_path(), with_key());
                if (r.status != 200) {
                    ++bad;
                    BOOST_TEST_MESSAGE(r.status << " " << r.body);
                }
            }
        });
    }
    for (auto& t : ts) t.join();
    BOOST_TEST(bad.load() == 0);
    BOOST_TEST(mock.stat("iam_requests") - iam_before == 1);
    BOOST_TEST(mock.stat("rds_unauthorized") >= 1);
}

BOOST_AUTO_TEST_CASE(aksk_signing) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"auth":"aksk","ak":")" + kAk + R"(","sk":")" + kSk + R"("})");
    auto cfg = GatewayConfig(mock, pki).set(
        "/auth", {{"mode", "aksk"}, {"aksk", {{"ak", {{"env", "GW_AK"}}}, {"sk", {{"env", "GW_SK"}}}}}});
    {
        auto gw = GatewayConfig(cfg).env("GW_AK", kAk).env("GW_SK", kSk).start();
        auto r = gw.get(backup_path(), with_key());
        BOOST_TEST(r.status == 200u, r.body);
        auto seen = mock.stats().at("last_rds_headers").as_object();
        BOOST_TEST(std::string(seen.at("x-project-id").as_string()) == kProject);
        BOOST_TEST(seen.contains("x-sdk-date"));
        BOOST_TEST(
            std::string(seen.at("authorization").as_string()).rfind("SDK-HMAC-SHA256 Access=" + kAk, 0) == 0);
        BOOST_TEST(!seen.contains("x-auth-token"));
        no_secrets_in(gw.child.output() + r.body);
    }
    {
        // A wrong SK: the upstream's 401 passes through to the caller, once.
        auto gw = GatewayConfig(cfg).env("GW_AK", kAk).env("GW_SK", "wrong-secret").start();
        auto r = gw.get(backup_path(), with_key());
        BOOST_TEST(r.status == 401u);
        BOOST_TEST(r.body.find("APIGW.0301") != std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(token_file_rotated_on_sighup) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"auth":"static","static_token":"token-one-AAAA"})");
    TempDir d("rdsgw-tok");
    std::string tok = d.path() + "/token";
    std::ofstream(tok) << "token-one-AAAA\n";
    auto gw = GatewayConfig(mock, pki).set("/auth", {{"mode", "token"}, {"token", {{"file", tok}}}}).start();
    BOOST_TEST(gw.get(backup_path(), with_key()).status == 200u);
    mock.configure(R"({"static_token":"token-two-BBBB"})");
    BOOST_TEST(gw.get(backup_path("x" + kBackup.substr(1)), with_key()).status == 401u);
    std::ofstream(tok) << "token-two-BBBB\n";
    auto mark = gw.child.output().size();
    gw.child.signal(SIGHUP);
    BOOST_REQUIRE(eventually(
        [&] { return gw.child.output().find("credentials reloaded", mark) != std::string::npos; }, 5s));
    BOOST_TEST(gw.get(backup_path("y" + kBackup.substr(1)), with_key()).status == 200u);
    auto out = gw.child.output();
    BOOST_TEST(out.find("token-one-AAAA") == std::string::npos);
    BOOST_TEST(out.find("token-two-BBBB") == std::string::npos);
}

// The token dropped after a 401 stays on the list of credentials an answer may not echo: IAM issues A, a
// request succeeds with A; RDS then rejects A (401 APIGW.0301), the gateway renews (B) and retries, and the
// retry's answer echoes A. The caller must get the gateway's 502, never A.
BOOST_AUTO_TEST_CASE(a_token_dropped_after_a_401_is_still_never_echoed) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"auth":"iam","token_lifetime_s":3600})");
    auto gw = iam_config(mock, pki, 60, 5).start();
    BOOST_REQUIRE(eventually([&] { return gw.get("/readyz").status == 200; }, 5s));
    BOOST_TEST_REQUIRE(gw.get(backup_path(), with_key()).status == 200u);
    const std::string token_a(mock.stats().at("last_rds_headers").as_object().at("x-auth-token").as_string());
    BOOST_TEST_REQUIRE(token_a.size() >= 8u);
    const auto iam_before = mock.stat("iam_requests");

    json::object reject{{"status", 401}, {"error_code", "APIGW.0301"}, {"error_msg", "token rejected"}};
    json::object echo{{"status", 400}, {"error_code", "X"}, {"error_msg", token_a}};
    mock.configure(json::object{{"script", json::array{reject, echo}}});
    const auto r = gw.get(backup_path(), with_key());

    BOOST_TEST(mock.stat("iam_requests") - iam_before == 1);  // renewed once: B
    const std::string token_b(mock.stats().at("last_rds_headers").as_object().at("x-auth-token").as_string());
    BOOST_TEST((token_b != token_a));  // the retry went with B
    BOOST_TEST(r.status == 502u, r.status);
    BOOST_TEST(r.body.find(token_a) == std::string::npos);
    BOOST_TEST(r.body.find("upstream answer contained a gateway credential") != std::string::npos);
    BOOST_TEST(gw.child.output().find(token_a) == std::string::npos);
}
