// Many projects, many regions (issue 16), end to end: three rds-mock instances, one per region, each serving
// only its own projects and (IAM mode) accepting only tokens scoped to them, and a fourth as IAM
// (project-scoped tokens, the project list). The gateway routes each project to its region with the right
// token; one region down or slow leaves the others alone; discovery adds a project without a restart; an
// unknown project is a 404 without upstream traffic; renewing one project's token leaves the others' alone.
#define BOOST_TEST_MODULE regions
#include <signal.h>

#include <array>
#include <atomic>
#include <thread>

#include "harness.hpp"

using namespace rdsgw::test;
using namespace std::chrono_literals;
namespace json = boost::json;
using steady = std::chrono::steady_clock;

namespace {

const std::array<std::string, 3> kRegion = {"cn-north-4", "cn-east-3", "ap-southeast-1"};
const std::array<std::string, 3> kP = {"0a000000000000000000000000000001", "0b000000000000000000000000000002",
                                       "0c000000000000000000000000000003"};
const std::string kPassword = "iam-PASSWORD-regions-5d1e";

std::string backup(int n) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%032dbr01", n);
    return buf;
}

// IAM's project list: P0 "cn-north-4", P1 a sub-project "cn-east-3_team", P2 "ap-southeast-1", plus `extra`.
json::array iam_projects(const json::array& extra = {}) {
    json::array a{json::object{{"id", kP[0]}, {"name", kRegion[0]}, {"enabled", true}},
                  json::object{{"id", kP[1]}, {"name", kRegion[1] + "_team"}, {"enabled", true}},
                  json::object{{"id", kP[2]}, {"name", kRegion[2]}, {"enabled", true}}};
    for (auto& e : extra) a.push_back(e);
    return a;
}

std::string s(const json::value& v) {
    return json::serialize(v);
}

std::int64_t num(const json::value& v, std::initializer_list<const char*> path) {
    const json::value* cur = &v;
    for (const char* k : path) {
        const auto* o = cur->if_object();
        cur = o ? o->if_contains(k) : nullptr;
        if (!cur) return 0;
    }
    return cur->to_number<std::int64_t>();
}

// The mocks: IAM and one instance per region. `auth` is the RDS side's: "iam", "static" or "aksk".
struct World {
    Pki pki = make_pki();
    std::unique_ptr<MockServer> iam;
    std::array<std::unique_ptr<MockServer>, 3> rds;

    explicit World(const std::string& auth = "iam",
                   const std::vector<std::string>& rds_extra = {"", "", ""}) {
        iam = std::make_unique<MockServer>(
            &pki,
            s(json::object{{"auth", "iam"}, {"iam_password", kPassword}, {"iam_projects", iam_projects()}}));
        for (int i = 0; i < 3; ++i) {
            json::value b = {{"auth", auth},
                             {"strict_scope", true},
                             {"served_projects", json::array{kP[i]}},
                             {"iam_projects", iam_projects()}};
            if (!rds_extra[i].empty()) merge(b, json::parse(rds_extra[i]));
            rds[i] = std::make_unique<MockServer>(&pki, s(b), 2);
        }
    }
    std::int64_t rds_total() {
        std::int64_t n = 0;
        for (auto& m : rds) n += m->stat("rds_requests");
        return n;
    }
};

// Three regions with explicit base URLs, the three projects mapped statically, IAM mode (per-project tokens).
json::value gateway_config(World& w, json::value patch = json::object{}) {
    auto cfg = base_config(*w.rds[0], &w.pki);
    auto& o = cfg.as_object();
    o["upstream"].as_object().erase("base_url");
    json::object regions, statics;
    for (int i = 0; i < 3; ++i) {
        regions[kRegion[i]] = {{"base_url", w.rds[i]->base_url()}};
        statics[kP[i]] = kRegion[i];
    }
    o["regions"] = std::move(regions);
    o["projects"] = {{"static", std::move(statics)}};
    o["auth"] = iam_auth(*w.iam, 3600, 30, 50, 500);
    o["retry"].as_object()["breaker_failures"] = 3;
    o["retry"].as_object()["breaker_open_ms"] = 60000;
    merge(cfg, patch);
    return cfg;
}

GatewayProc start(const json::value& cfg, std::vector<std::pair<std::string, std::string>> env = {}) {
    env.emplace_back("GW_IAM_PASSWORD", kPassword);
    return GatewayProc(cfg, env);
}

// POST /_mock/revoke {"project_id": ...}: the tokens scoped to that project stop working on that instance.
void revoke_project(MockServer& m, const std::string& project) {
    HttpClient c(m.port, m.tls());
    auto r = c.request("POST", "/_mock/revoke", {{"Content-Type", "application/json"}},
                       R"({"project_id":")" + project + R"("})");
    BOOST_REQUIRE_EQUAL(r.status, 200u);
}

void no_secrets_in(const std::string& text) {
    for (const std::string& secret : {kPassword, std::string("MOCKTOKEN-")})
        BOOST_TEST(text.find(secret) == std::string::npos, "secret found: " << secret.substr(0, 4) << "...");
}

}  // namespace

// The mock itself: scoped tokens from any instance, strict scope, served projects, the project list.
BOOST_AUTO_TEST_CASE(mock_regions_and_scoped_tokens) {
    World w;
    HttpClient iam(w.iam->port, w.iam->tls());
    auto token_for = [&](const std::string& scope) {
        const std::string body =
            R"({"auth":{"identity":{"methods":["password"],"password":{"user":{"domain":{"name":"acct"},)"
            R"("name":"u","password":")" +
            kPassword + R"("}}},"scope":)" + scope + "}}";
        auto r = iam.request("POST", "/v3/auth/tokens", {{"Content-Type", "application/json"}}, body);
        BOOST_REQUIRE_EQUAL(r.status, 201u);
        return r.header("x-subject-token");
    };
    const std::string t0 = token_for(R"({"project":{"id":")" + kP[0] + R"("}})");
    const std::string t1_by_name = token_for(R"({"project":{"name":"cn-east-3_team"}})");
    const std::string account = token_for(R"({"domain":{"name":"acct"}})");
    auto rds_get = [&](int region, const std::string& project, const std::string& token) {
        HttpClient c(w.rds[region]->port, w.rds[region]->tls());
        return c.request("GET", backup_path(kBackup, project), {{"X-Auth-Token", token}});
    };
    BOOST_TEST(rds_get(0, kP[0], t0).status == 200u);          // a token from another instance
    BOOST_TEST(rds_get(1, kP[1], t1_by_name).status == 200u);  // scoped by name: iam_projects maps it
    BOOST_TEST(rds_get(0, kP[1], t0).status == 403u);          // scoped to another project
    BOOST_TEST(rds_get(1, kP[1], t0).status == 403u);
    BOOST_TEST(rds_get(0, kP[0], account).status == 403u);  // an account-scoped token reads no project
    BOOST_TEST(rds_get(0, kP[0], "MOCKTOKEN-forged.00.1.99999999999.00").status == 401u);
    // Served projects: region 0's instance does not serve P1 (even with a token scoped to P1).
    const std::string t1 = token_for(R"({"project":{"id":")" + kP[1] + R"("}})");
    HttpClient loose(w.rds[0]->port, w.rds[0]->tls());
    w.rds[0]->configure(R"({"strict_scope":false})");
    auto r = loose.request("GET", backup_path(kBackup, kP[1]), {{"X-Auth-Token", t1}});
    BOOST_TEST(r.status == 403u);
    BOOST_TEST(r.body.find("DBS.200010") != std::string::npos);
    // Revoking one project's tokens on an instance: only those.
    revoke_project(*w.rds[1], kP[1]);
    BOOST_TEST(rds_get(1, kP[1], t1).status == 401u);
    BOOST_TEST(rds_get(1, kP[1], t1_by_name).status == 200u);  // scoped by name: not "id:" P1
    // The project list: any valid token; none is a 401.
    auto list = iam.request("GET", "/v3/auth/projects", {{"X-Auth-Token", account}});
    BOOST_TEST(list.status == 200u);
    BOOST_TEST(list.json().at("projects").as_array().size() == 3u);
    BOOST_TEST(iam.request("GET", "/v3/auth/projects").status == 401u);
    auto st = w.iam->stats();
    BOOST_TEST(num(st, {"tokens_by_scope", ("id:" + kP[0]).c_str()}) == 1);
    BOOST_TEST(num(st, {"tokens_by_scope", "domain:acct"}) == 1);
    BOOST_TEST(num(st, {"iam_project_lists"}) == 2);
    BOOST_TEST(num(w.rds[0]->stats(), {"rds_by_project", kP[1].c_str()}) == 2);
}

BOOST_AUTO_TEST_CASE(three_regions_right_endpoint_right_token) {
    World w;
    auto gw = start(gateway_config(w));
    BOOST_REQUIRE_MESSAGE(eventually([&] { return gw.get("/readyz").status == 200; }, 10s),
                          gw.child.output());
    for (int i = 0; i < 3; ++i) {
        auto r = gw.get(backup_path(backup(i), kP[i]), with_key());
        BOOST_TEST(r.status == 200u, kRegion[i] << ": " << r.body);
    }
    for (int i = 0; i < 3; ++i) {
        auto st = w.rds[i]->stats();
        BOOST_TEST(num(st, {"rds_requests"}) == 1, kRegion[i]);
        BOOST_TEST(num(st, {"rds_by_project", kP[i].c_str()}) == 1, kRegion[i]);
        BOOST_TEST(num(st, {"rds_unauthorized"}) == 0);
    }
    // One project-scoped token each, obtained ahead of time (static projects), plus the configured scope's
    // only when the project list is needed (no discovery here: none).
    auto iam = w.iam->stats();
    for (int i = 0; i < 3; ++i) BOOST_TEST(num(iam, {"tokens_by_scope", ("id:" + kP[i]).c_str()}) == 1);
    BOOST_TEST(num(iam, {"tokens_issued"}) == 3);

    auto ready = gw.get("/readyz").json();
    for (int i = 0; i < 3; ++i) {
        const auto& reg = ready.at("checks").at("regions").at(kRegion[i]);
        BOOST_TEST(reg.at("ok").as_bool());
        BOOST_TEST(std::string(reg.at("breaker").as_string()) == "closed");
        BOOST_TEST(std::string(reg.at("endpoint").as_string()) ==
                   "localhost:" + std::to_string(w.rds[i]->port));
    }
    const auto metrics = gw.admin_get("/metrics").body;
    BOOST_TEST(metric_value(metrics,
                            R"(rdsgw_upstream_requests_total{attempt="1",code="200",region="cn-east-3"})") ==
               1);
    BOOST_TEST(metric_value(metrics, R"(rdsgw_circuit_breaker_state{region="ap-southeast-1"})") == 0);
    BOOST_TEST(metrics.find("\nrdsgw_circuit_breaker_state ") == std::string::npos);  // no unlabelled series
    BOOST_TEST(metric_value(metrics, R"(rdsgw_credential_expiry_seconds{region="cn-north-4"})") > 3000);
    // The access log names the region of a miss (the writer flushes every 20 ms: wait for the line).
    BOOST_TEST(eventually([&] {
        return gw.child.output().find(R"("project_id":")" + kP[1] + R"(","backup_id":")" + backup(1) +
                                      R"(","status":200,"cache":"MISS","region":"cn-east-3")") !=
               std::string::npos;
    }));
    // A hit never resolves a region: the same request again is a HIT without a region.
    auto hit = gw.get(backup_path(backup(1), kP[1]), with_key());
    BOOST_TEST(hit.header("x-cache") == "HIT");
    no_secrets_in(gw.child.output());
}

BOOST_AUTO_TEST_CASE(unknown_project_is_404_without_upstream_traffic) {
    World w;
    auto gw = start(gateway_config(w));
    BOOST_REQUIRE(eventually([&] { return gw.get("/readyz").status == 200; }, 10s));
    // The three statically mapped projects' tokens are fetched ahead of time, and /readyz may say 200 before
    // the last of them is issued: count from when all three are.
    BOOST_REQUIRE(eventually([&] { return w.iam->stat("tokens_issued") == 3; }, 10s));
    const auto issued = w.iam->stat("tokens_issued");
    auto r = gw.get(backup_path(kBackup, "0f00000000000000000000000000ffff"), with_key());
    BOOST_TEST(r.status == 404u);
    auto body = r.json();
    BOOST_TEST(std::string(body.at("error_code").as_string()) == "RDSGW.404");
    BOOST_TEST(std::string(body.at("error_msg").as_string()) == "project is not served by this gateway");
    BOOST_TEST(std::string(body.at("request_id").as_string()) == r.header("x-request-id"));
    BOOST_TEST(w.rds_total() == 0);
    BOOST_TEST(w.iam->stat("tokens_issued") == issued);  // no token asked for it either
    BOOST_TEST(metric_value(gw.admin_get("/metrics").body,
                            R"(rdsgw_rejected_requests_total{reason="unknown_project"})") == 1);
}

// One region down: its callers get 502/503 (or stale answers); the others are unaffected.
BOOST_AUTO_TEST_CASE(one_region_down_others_unaffected) {
    World w;
    auto gw = start(gateway_config(
        w, {{"cache", {{"ttl_s", 1}}},
            {"retry", {{"max_attempts", 2}, {"base_backoff_ms", 5}, {"max_backoff_ms", 10}}}}));
    BOOST_REQUIRE(eventually([&] { return gw.get("/readyz").status == 200; }, 10s));
    BOOST_REQUIRE_EQUAL(gw.get(backup_path(backup(100), kP[1]), with_key()).status,
                        200u);  // cached, then stale

    w.rds[1]->child.signal(SIGKILL);  // cn-east-3 is gone: connections are refused
    BOOST_REQUIRE(w.rds[1]->child.wait_exit(10s).has_value());

    // Its callers: 502 until the breaker opens, then fast 503s.
    for (int i = 0; i < 4; ++i) {
        auto r = gw.get(backup_path(backup(200 + i), kP[1]), with_key());
        BOOST_TEST((r.status == 502u || r.status == 503u), r.status << " " << r.body);
    }
    BOOST_TEST(eventually([&] {
        return metric_value(gw.admin_get("/metrics").body,
                            R"(rdsgw_circuit_breaker_state{region="cn-east-3"})") == 2;
    }));
    auto fast = gw.get(backup_path(backup(300), kP[1]), with_key());
    BOOST_TEST(fast.status == 503u);
    BOOST_TEST(fast.body.find("circuit breaker") != std::string::npos);
    // A cached answer past its TTL whose links are valid: served stale.
    BOOST_TEST(eventually(
        [&] { return gw.get(backup_path(backup(100), kP[1]), with_key()).header("x-cache") == "STALE"; },
        10s));

    // The other regions: answered, promptly, and their breakers closed.
    for (int round = 0; round < 3; ++round) {
        for (int i : {0, 2}) {
            const auto t0 = steady::now();
            auto r = gw.get(backup_path(backup(400 + round), kP[i]), with_key());
            BOOST_TEST(r.status == 200u, kRegion[i] << ": " << r.body);
            BOOST_TEST(to_ms(steady::now() - t0) < 2000);
        }
    }
    const auto metrics = gw.admin_get("/metrics").body;
    BOOST_TEST(metric_value(metrics, R"(rdsgw_circuit_breaker_state{region="cn-north-4"})") == 0);
    BOOST_TEST(metric_value(metrics, R"(rdsgw_circuit_breaker_state{region="ap-southeast-1"})") == 0);
    // Ready (two regions can be served), and says which cannot.
    auto rz = gw.get("/readyz");
    BOOST_TEST(rz.status == 200u);
    auto ready = rz.json();
    BOOST_TEST(s(ready.at("checks").at("upstream").at("unavailable_regions")) == R"(["cn-east-3"])");
    BOOST_TEST(!ready.at("checks").at("regions").at("cn-east-3").at("ok").as_bool());
    BOOST_TEST(ready.at("checks").at("regions").at("cn-north-4").at("ok").as_bool());
}

// A slow region holds only its own concurrency slots: the others' requests neither queue nor slow down.
BOOST_AUTO_TEST_CASE(slow_region_does_not_slow_others) {
    World w("iam", {"", R"({"latency_ms":4000})", ""});
    auto gw = start(gateway_config(w, {{"cache", {{"enabled", false}}},
                                       {"upstream",
                                        {{"max_concurrent", 2},
                                         {"max_queue", 1},
                                         {"queue_timeout_ms", 5000},
                                         {"request_timeout_ms", 8000}}},
                                       {"retry", {{"deadline_ms", 9000}}}}));
    BOOST_REQUIRE(eventually([&] { return gw.get("/readyz").status == 200; }, 10s));
    std::vector<std::thread> slow;
    std::atomic<int> slow_ok{0}, slow_refused{0}, slow_other{0};
    for (int i = 0; i < 5; ++i) {
        slow.emplace_back([&, i] {
            HttpClient c(gw.port, std::nullopt, 20s);
            auto r = c.request("GET", backup_path(backup(500 + i), kP[1]), with_key());
            (r.status == 200 ? slow_ok : r.status == 503 ? slow_refused : slow_other)++;
        });
    }
    // cn-east-3's two slots are taken (its mock holds both requests).
    BOOST_REQUIRE(eventually([&] { return w.rds[1]->stat("rds_requests") >= 2; }, 10s));
    for (int round = 0; round < 4; ++round) {
        for (int i : {0, 2}) {
            const auto t0 = steady::now();
            auto r = gw.get(backup_path(backup(600 + round), kP[i]), with_key());
            BOOST_TEST(r.status == 200u, kRegion[i] << ": " << r.body);
            BOOST_TEST(to_ms(steady::now() - t0) < 2000);  // cn-east-3 answers after 4 s
        }
    }
    for (auto& t : slow) t.join();
    BOOST_TEST(slow_other.load() == 0);
    BOOST_TEST(slow_ok.load() >= 2);
    BOOST_TEST(slow_refused.load() >= 1);  // past its own slots and queue
    BOOST_TEST(w.rds[1]->stat("rds_requests") <= 3);
}

BOOST_AUTO_TEST_CASE(discovery_adds_a_project_without_restart) {
    const std::string p4 = "0d000000000000000000000000000004", p5 = "0e000000000000000000000000000005",
                      p6 = "0f000000000000000000000000000006";
    World w;
    // Only P0 is static; P3 is listed but disabled; P6's region is not configured (and there is no template).
    w.iam->configure(s(
        json::object{{"iam_projects",
                      iam_projects({json::object{{"id", p5}, {"name", "cn-north-4_old"}, {"enabled", false}},
                                    json::object{{"id", p6}, {"name", "eu-west-0"}, {"enabled", true}}})}}));
    auto cfg = gateway_config(w);
    auto& projects = cfg.as_object()["projects"].as_object();
    projects["static"] = json::object{{kP[0], kRegion[0]}};
    projects["discovery"] = {
        {"enabled", true}, {"refresh_s", 3600}, {"min_interval_s", 1}, {"wait_ms", 3000}};
    auto gw = start(cfg);
    BOOST_REQUIRE(eventually([&] { return gw.get("/readyz").status == 200; }, 10s));
    BOOST_REQUIRE(
        eventually([&] { return gw.get("/readyz").json().at("checks").at("discovery").at("ok").as_bool(); }));
    // Discovered at start: P1 (a sub-project of cn-east-3) and P2.
    BOOST_TEST(gw.get(backup_path(backup(1), kP[1]), with_key()).status == 200u);
    BOOST_TEST(gw.get(backup_path(backup(2), kP[2]), with_key()).status == 200u);
    // Disabled, and in a region the gateway cannot serve: 404, no upstream call.
    const auto before = w.rds_total();
    BOOST_TEST(gw.get(backup_path(backup(5), p5), with_key()).status == 404u);
    BOOST_TEST(gw.get(backup_path(backup(6), p6), with_key()).status == 404u);
    BOOST_TEST(gw.get(backup_path(backup(4), p4), with_key()).status == 404u);  // not listed (yet)
    BOOST_TEST(w.rds_total() == before);

    // A new project appears in IAM (and in its region): served without a restart, by an on-demand refresh.
    const auto lists = w.iam->stat("iam_project_lists");
    w.iam->configure(s(json::object{
        {"iam_projects",
         iam_projects({json::object{{"id", p4}, {"name", "ap-southeast-1_new"}, {"enabled", true}}})}}));
    w.rds[2]->configure(s(json::object{{"served_projects", json::array{kP[2], p4}}}));
    BOOST_TEST(eventually([&] { return gw.get(backup_path(backup(4), p4), with_key()).status == 200; }, 10s));
    BOOST_TEST(num(w.rds[2]->stats(), {"rds_by_project", p4.c_str()}) == 1);
    BOOST_TEST(w.iam->stat("iam_project_lists") > lists);
    // Rate-limited: a burst of unknown projects makes at most a few IAM calls (one per min_interval_s).
    const auto lists2 = w.iam->stat("iam_project_lists");
    const auto t0 = steady::now();
    for (int i = 0; i < 20; ++i)
        gw.get(backup_path(backup(i), "0f00000000000000000000000000aa" + std::to_string(10 + i)), with_key());
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(steady::now() - t0).count();
    BOOST_TEST(w.iam->stat("iam_project_lists") - lists2 <= secs + 2);
    no_secrets_in(gw.child.output());
}

BOOST_AUTO_TEST_CASE(token_renewal_for_one_project_leaves_the_others) {
    World w;
    auto gw = start(gateway_config(w, {{"cache", {{"enabled", false}}}}));
    BOOST_REQUIRE(eventually([&] { return gw.get("/readyz").status == 200; }, 10s));
    for (int i = 0; i < 3; ++i)
        BOOST_REQUIRE_EQUAL(gw.get(backup_path(backup(i), kP[i]), with_key()).status, 200u);
    // cn-north-4 revokes P0's tokens: the next P0 request gets 401 APIGW.0307, renews P0's token, succeeds.
    revoke_project(*w.rds[0], kP[0]);
    std::vector<std::thread> ts;
    std::atomic<int> bad{0};
    for (int t = 0; t < 4; ++t)
        ts.emplace_back([&, t] {
            HttpClient c(gw.port);
            for (int i = 0; i < 5; ++i) {
                auto r = c.request("GET", backup_path(backup(10 * t + i), kP[0]), with_key());
                if (r.status != 200) {
                    ++bad;
                    BOOST_TEST_MESSAGE(r.status << " " << r.body);
                }
            }
        });
    for (auto& t : ts) t.join();
    BOOST_TEST(bad.load() == 0);
    auto iam = w.iam->stats();
    BOOST_TEST(num(iam, {"tokens_by_scope", ("id:" + kP[0]).c_str()}) == 2);  // one renewal for the burst
    BOOST_TEST(num(iam, {"tokens_by_scope", ("id:" + kP[1]).c_str()}) == 1);
    BOOST_TEST(num(iam, {"tokens_by_scope", ("id:" + kP[2]).c_str()}) == 1);
    BOOST_TEST(w.rds[0]->stat("rds_unauthorized") >= 1);
    for (int i : {1, 2}) {
        BOOST_TEST(gw.get(backup_path(backup(50), kP[i]), with_key()).status == 200u);
        BOOST_TEST(w.rds[i]->stat("rds_unauthorized") == 0);
    }
    BOOST_TEST(w.iam->stat("tokens_issued") == 4);
    no_secrets_in(gw.child.output());
}

BOOST_AUTO_TEST_CASE(static_tokens_per_region) {
    World w("static", {R"({"static_token":"tok-north-AAAA"})", R"({"static_token":"tok-east-BBBB"})",
                       R"({"static_token":"tok-default-CCCC"})"});
    auto cfg = gateway_config(w);
    auto& o = cfg.as_object();
    o["auth"] = {{"mode", "token"}, {"token", {{"env", "GW_TOKEN_DEFAULT"}}}};
    o["regions"].as_object()[kRegion[0]].as_object()["token"] = {{"env", "GW_TOKEN_NORTH"}};
    o["regions"].as_object()[kRegion[1]].as_object()["token"] = {{"env", "GW_TOKEN_EAST"}};
    auto gw = start(cfg, {{"GW_TOKEN_DEFAULT", "tok-default-CCCC"},
                          {"GW_TOKEN_NORTH", "tok-north-AAAA"},
                          {"GW_TOKEN_EAST", "tok-east-BBBB"}});
    for (int i = 0; i < 3; ++i) {
        auto r = gw.get(backup_path(backup(i), kP[i]), with_key());
        BOOST_TEST(r.status == 200u, kRegion[i] << ": " << r.body);
    }
    for (int i = 0; i < 3; ++i) BOOST_TEST(w.rds[i]->stat("rds_unauthorized") == 0);
    const auto out = gw.child.output();
    for (const char* t : {"tok-north-AAAA", "tok-east-BBBB", "tok-default-CCCC"})
        BOOST_TEST(out.find(t) == std::string::npos);
}

// AK/SK: each region's requests are signed for its own endpoint; discovery signs IAM's project list with the
// account id (X-Domain-Id).
BOOST_AUTO_TEST_CASE(aksk_signs_for_each_region_and_for_discovery) {
    const std::string ak = "HPUAREGIONSAK000001", sk = "regions-SECRET-key-0000000000000000";
    const std::string keys = R"({"ak":")" + ak + R"(","sk":")" + sk + R"("})";
    World w("aksk", {keys, keys, keys});
    w.iam->configure(s(json::object{{"auth", "aksk"}, {"ak", ak}, {"sk", sk}, {"domain_id", "dom-0123"}}));
    auto cfg = gateway_config(w);
    auto& o = cfg.as_object();
    o["auth"] = {
        {"mode", "aksk"},
        {"aksk", {{"ak", {{"env", "GW_AK"}}}, {"sk", {{"env", "GW_SK"}}}, {"domain_id", "dom-0123"}}},
        {"iam", {{"endpoint", w.iam->base_url()}}}};
    o["projects"] = {{"static", {{kP[0], kRegion[0]}}}, {"discovery", {{"enabled", true}}}};
    auto gw = start(cfg, {{"GW_AK", ak}, {"GW_SK", sk}});
    BOOST_REQUIRE(
        eventually([&] { return gw.get("/readyz").json().at("checks").at("discovery").at("ok").as_bool(); }));
    for (int i = 0; i < 3; ++i) {
        auto r = gw.get(backup_path(backup(i), kP[i]), with_key());
        BOOST_TEST(r.status == 200u, kRegion[i] << ": " << r.body);
        auto seen = w.rds[i]->stats().at("last_rds_headers").as_object();
        BOOST_TEST(std::string(seen.at("x-project-id").as_string()) == kP[i]);
        BOOST_TEST(std::string(seen.at("host").as_string()) == "localhost:" + std::to_string(w.rds[i]->port));
    }
    BOOST_TEST(w.iam->stat("iam_project_lists") >= 1);
    BOOST_TEST(gw.child.output().find(sk) == std::string::npos);
}
