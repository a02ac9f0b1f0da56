// What goes back to callers (issue 15): never a dying link (on a miss too), upstream header values
// re-issued by the gateway rather than reflected, reads bounded by response.max_body_bytes.
#define BOOST_TEST_MODULE answers
#include "harness.hpp"

using namespace rdsgw::test;
using namespace std::chrono_literals;

namespace {

std::vector<std::pair<std::string, std::string>> env() {
    return {{"RDS_AUTH_TOKEN", "answers-token"}};
}

struct Fixture {
    Pki pki = make_pki();
    MockServer mock{&pki};
    json::value config(const std::string& patch = "{}") {
        auto cfg = base_config(mock, &pki);
        merge(cfg, json::parse(R"({"retry":{"breaker_failures":1000},"cache":{"expiry_margin_s":60}})"));
        merge(cfg, json::parse(patch));
        return cfg;
    }
};

void expect_refused_as_expiring(const Response& r) {
    BOOST_TEST_REQUIRE(r.status == 502u, r.body);
    const auto b = r.json().as_object();
    BOOST_TEST(std::string(b.at("error_code").as_string()) == "RDSGW.502");
    BOOST_TEST(std::string(b.at("error_msg").as_string()) ==
               "upstream answer's download links expire within the expiry margin");
    // No link, no time value (the message is fixed; the request id is the only other text).
    const std::string msg(b.at("error_msg").as_string());
    for (const char* part : {"https", "obs.", "+0800", ":"}) BOOST_TEST(msg.find(part) == std::string::npos, part);
    BOOST_TEST(r.body.find("https") == std::string::npos);
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(a_dying_link_is_never_served_on_a_miss, Fixture) {
    GatewayProc gw(config(), env());
    for (int lifetime : {-100, 30}) {  // expired 100 s ago; 30 s left with a 60 s margin
        BOOST_TEST_CONTEXT("link lifetime " << lifetime << " s") {
            mock.reset();
            mock.configure("{\"link_lifetime_s\":" + std::to_string(lifetime) + "}");
            const std::string backup = "dying" + std::to_string(lifetime + 1000);
            expect_refused_as_expiring(gw.get(backup_path(backup), with_key()));
            BOOST_TEST(mock.stat("rds_requests") == 1);
            // Negative-cached: the next caller within cache.negative_ttl_s gets the same refusal, no upstream
            // call.
            expect_refused_as_expiring(gw.get(backup_path(backup), with_key()));
            BOOST_TEST(mock.stat("rds_requests") == 1);
        }
    }
    const auto metrics = gw.admin_get("/metrics").body;
    BOOST_TEST(metric_value(metrics, "rdsgw_upstream_answers_refused_total{reason=\"expiring\"}") == 2);
    // A link with enough life left is served as before.
    mock.reset();
    mock.configure(R"({"link_lifetime_s":900})");
    BOOST_TEST(gw.get(backup_path("healthy1"), with_key()).status == 200u);
}

BOOST_FIXTURE_TEST_CASE(retry_after_is_the_gateways_own_whole_seconds, Fixture) {
    GatewayProc gw(config(R"({"retry":{"max_attempts":1}})"), env());
    const std::pair<std::string, std::string> cases[] = {
        {"120", "120"},                             // passed on as the same number
        {"1, <script>x</script>", ""},              // malformed: not reflected at all
        {"99999999", "3600"},                       // capped
        {"Fri, 01 Jan 3000 00:00:00 GMT", "3600"},  // an HTTP-date far away: capped, no overflow
    };
    int n = 0;
    for (const auto& [sent, expected] : cases) {
        BOOST_TEST_CONTEXT("Retry-After: " << sent) {
            mock.reset();
            mock.configure(json::serialize(json::object{{"status", 429}, {"retry_after", sent}}));
            const auto r = gw.get(backup_path("ra" + std::to_string(++n)), with_key());
            BOOST_TEST(r.status == 429u, r.body);  // RDS's own error passes through
            BOOST_TEST(r.header("retry-after") == expected);
            BOOST_TEST(r.body.find("<script>") == std::string::npos);
        }
    }
}

BOOST_FIXTURE_TEST_CASE(a_large_answer_is_refused_while_it_is_read, Fixture) {
    // response.max_body_bytes bounds the read itself (upstream.max_response_bytes is larger).
    GatewayProc gw(
        config(R"({"response":{"max_body_bytes":4096},"upstream":{"max_response_bytes":4194304}})"), env());
    mock.configure(R"({"files":200})");  // about 70 KB
    const auto r = gw.get(backup_path("large1"), with_key());
    BOOST_TEST_REQUIRE(r.status == 502u, r.body);
    BOOST_TEST(std::string(r.json().at("error_msg").as_string()) == "upstream answer too large");
}

BOOST_FIXTURE_TEST_CASE(the_gateways_own_credential_never_passes_through, Fixture) {
    GatewayProc gw(config(R"({"retry":{"max_attempts":1}})"), env());
    const std::string token = env().front().second;
    // An RDS error that echoes the token, an unknown field that hides it behind JSON escapes.
    const std::string escaped = "\\u0061nswers-token";  // "answers-token" with its first letter escaped
    const std::string bodies[] = {
        json::serialize(json::object{{"status", 400}, {"error_msg", "bad token: X-Auth-Token: " + token}}),
        json::serialize(json::object{{"body_mode", "custom"},
                                     {"custom_body", R"({"files":[],"debug":"token=)" + escaped + R"("})"}}),
    };
    int n = 0;
    for (const auto& behaviour : bodies) {
        BOOST_TEST_CONTEXT(behaviour) {
            mock.reset();
            mock.configure(behaviour);
            const auto r = gw.get(backup_path("echo" + std::to_string(++n)), with_key());
            BOOST_TEST_REQUIRE(r.status == 502u, r.body);
            BOOST_TEST(std::string(r.json().at("error_msg").as_string()) ==
                       "upstream answer contained a gateway credential");
            BOOST_TEST(r.body.find(token) == std::string::npos);
            BOOST_TEST(!r.has_header("x-upstream-request-id"));
        }
    }
    const auto metrics = gw.admin_get("/metrics").body;
    BOOST_TEST(metric_value(metrics, "rdsgw_upstream_answers_refused_total{reason=\"credential_echo\"}") ==
               2);
    BOOST_TEST(gw.child.output().find(token) == std::string::npos);  // logged without the value
}
