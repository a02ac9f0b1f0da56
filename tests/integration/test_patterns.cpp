// Issue 14 end to end: configured id patterns run on callers' input in linear time and bounded stack. With
// std::regex, ([A-Za-z0-9]+-?)+ blocked a worker for seconds on a 28-character id and [A-Za-z0-9-]+ killed
// the process (stack overflow) on a 40,000-character one. Here the real gateway, configured with those
// patterns and a header limit large enough to read such ids, answers 400 at once, stays up, and never asks
// the upstream. Bad patterns are refused at start with RE2's reason.
#define BOOST_TEST_MODULE patterns
#include "harness.hpp"

using namespace rdsgw::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

struct Fixture {
    Pki pki = make_pki();
    MockServer mock{&pki};

    json::value config(const std::string& project_pattern, const std::string& backup_pattern) {
        auto cfg = base_config(mock, &pki);
        merge(cfg, json::value{
                       {"cache", {{"enabled", false}}},
                       {"limits", {{"max_header_bytes", 262144}}},
                       {"request",
                        {{"project_id_pattern", project_pattern}, {"backup_id_pattern", backup_pattern}}}});
        return cfg;
    }
};

std::vector<std::pair<std::string, std::string>> env() {
    return {{"RDS_AUTH_TOKEN", "patterns-token-0123456789"}};
}

// One request; the answer must be a 400 naming `field`, within a generous bound (std::regex took seconds on
// the short id and crashed on the long ones; RE2 and the length cap take microseconds).
void expect_fast_400(GatewayProc& gw, const std::string& target, const std::string& field) {
    const auto t0 = std::chrono::steady_clock::now();
    const Response r = gw.get(target, with_key());
    const auto took = std::chrono::steady_clock::now() - t0;
    BOOST_TEST_REQUIRE(r.status == 400u, r.body.substr(0, 200));
    const json::value body = r.json();
    BOOST_TEST(std::string(body.at("error_code").as_string()) == "RDSGW.400");
    BOOST_TEST(std::string(body.at("error_msg").as_string()).find(field) != std::string::npos);
    BOOST_TEST(r.body.size() < 512u);  // the id is not echoed
    BOOST_TEST(to_ms(took) < 1000, "took " << to_ms(took) << " ms");
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(catastrophic_patterns_answer_400_at_once_and_the_process_stays_up, Fixture) {
    GatewayProc gw(config("([A-Za-z0-9]+-?)+", "[A-Za-z0-9-]+"), env());
    const std::string long_id(40000, 'a');

    // Backtracking bait: 28 alphanumerics then a character the pattern cannot match (RE2, under the cap).
    expect_fast_400(gw, backup_path(kBackup, std::string(28, 'a') + "!"), "project_id");
    expect_fast_400(gw, backup_path(kBackup, std::string(200, 'a') + "!"), "project_id");
    // 40,000 characters: over the cap of 256 bytes, refused before any matching.
    expect_fast_400(gw, backup_path(kBackup, long_id + "!"), "project_id");
    expect_fast_400(gw, backup_path(kBackup, long_id), "project_id");
    expect_fast_400(gw, backup_path(long_id, kProject), "backup_id");
    expect_fast_400(gw, backup_path(long_id + "-", kProject), "backup_id");

    BOOST_TEST(gw.child.running());
    BOOST_TEST(gw.get("/healthz").status == 200u);
    BOOST_TEST(mock.stat("rds_requests") == 0);  // nothing refused went upstream

    // The patterns still accept what they describe.
    const Response ok = gw.get(backup_path(kBackup + "-x", "97b026aa-9cc4417888c14c84a1ad9860"), with_key());
    BOOST_TEST(ok.status == 200u, ok.body.substr(0, 200));
    BOOST_TEST(mock.stat("rds_requests") == 1);
    BOOST_TEST(gw.child.running());
}

BOOST_FIXTURE_TEST_CASE(invalid_patterns_are_refused_with_re2s_reason, Fixture) {
    TempDir dir("rdsgw-patterns");
    const std::string path = dir.path() + "/gateway.json";
    for (const auto& [pattern, reason] :
         std::vector<std::pair<std::string, std::string>>{{"([a-z]+", "missing )"},
                                                          {"(?=a)a", "invalid perl operator"},
                                                          {"a{1,5000}", "invalid repetition size"}}) {
        BOOST_TEST_CONTEXT(pattern) {
            {
                std::ofstream f(path);
                f << json::serialize(config("[A-Za-z0-9]{1,64}", pattern));
            }
            Child check;
            check.spawn({RDSGW_GATEWAY_BIN, "--check-config", path}, env());
            const std::optional<int> code = check.wait_exit(20s);
            BOOST_TEST_REQUIRE(code.has_value());
            BOOST_TEST(*code == 2);
            const std::string out = check.output();
            BOOST_TEST(out.find("request.backup_id_pattern: is not a valid RE2 regular expression: " +
                                reason) != std::string::npos,
                       out);
        }
    }
}
