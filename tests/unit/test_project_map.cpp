// The pure parts of multi-region routing: region ids, IAM project names, base-URL templates, the project map
// (static entries win), IAM's answers (tokens, the project list) and the multi-region config keys.
#define BOOST_TEST_MODULE project_map
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include "rdsgw/config.hpp"
#include "rdsgw/iam.hpp"
#include "rdsgw/project_map.hpp"
#include "support/config_errors.hpp"

using namespace rdsgw;
using sys = std::chrono::system_clock;

BOOST_AUTO_TEST_CASE(region_ids) {
    for (const char* ok : {"cn-north-4", "ap-southeast-1", "eu-west-101", "la-south-2", "x"})
        BOOST_TEST(is_region_id(ok), ok);
    for (const char* bad : {"", "CN-north-4", "cn_north_4", "4cn", "cn-north-4-", "cn.north", "cn north",
                            "-cn", "cn/north", "cn-north-4\n"})
        BOOST_TEST(!is_region_id(bad), bad);
    BOOST_TEST(!is_region_id(std::string(65, 'a')));
    BOOST_TEST(is_region_id(std::string(64, 'a')));
}

BOOST_AUTO_TEST_CASE(project_names_to_regions) {
    BOOST_TEST(region_of_project_name("cn-north-4") == "cn-north-4");
    BOOST_TEST(region_of_project_name("cn-north-4_sub") == "cn-north-4");
    BOOST_TEST(region_of_project_name("cn-north-4_sub_more") == "cn-north-4");
    BOOST_TEST(region_of_project_name("ap-southeast-1_backup-team") == "ap-southeast-1");
    BOOST_TEST(region_of_project_name("MOS") == "");          // Huawei's global "MOS" project: not a region
    BOOST_TEST(region_of_project_name("cn-north-4_") == "");  // no sub-project name
    BOOST_TEST(region_of_project_name("_sub") == "");
    BOOST_TEST(region_of_project_name("") == "");
    BOOST_TEST(region_of_project_name("cn north_x") == "");
}

BOOST_AUTO_TEST_CASE(template_expansion) {
    BOOST_TEST(expand_region_template("https://rds.{region}.myhuaweicloud.com", "cn-north-4") ==
               "https://rds.cn-north-4.myhuaweicloud.com");
    BOOST_TEST(expand_region_template("https://{region}.{region}.example:8443", "eu-west-101") ==
               "https://eu-west-101.eu-west-101.example:8443");
    BOOST_TEST(expand_region_template("https://fixed.example", "cn-north-4") == "https://fixed.example");
    BOOST_TEST(expand_region_template("https://rds.{regio}.x", "cn-north-4") == "https://rds.{regio}.x");
}

namespace {
std::vector<IamProject> listed(std::initializer_list<IamProject> l) {
    return std::vector<IamProject>(l);
}
}  // namespace

BOOST_AUTO_TEST_CASE(static_entries_win_over_discovery) {
    const ProjectMap base({{"p1", "cn-north-4"}, {"p2", "cn-east-3"}});
    BOOST_TEST(base.size() == 2u);
    BOOST_TEST(base.find("p1")->region == "cn-north-4");
    BOOST_TEST(base.find("p1")->from_config);
    BOOST_TEST(base.find("p9") == nullptr);

    ProjectMap::Merge m;
    const auto next = base.with_discovered(listed({{"p1", "ap-southeast-1", true},  // static wins
                                                   {"p3", "ap-southeast-1_team", true},
                                                   {"p4", "cn-north-4", false},  // disabled
                                                   {"p5", "MOS", true},          // not a region
                                                   {"", "cn-north-4", true}}),
                                           100, &m);
    BOOST_TEST(next.find("p1")->region == "cn-north-4");
    BOOST_TEST(next.find("p2")->region == "cn-east-3");
    BOOST_TEST(next.find("p3")->region == "ap-southeast-1");
    BOOST_TEST(!next.find("p3")->from_config);
    BOOST_TEST(!next.find("p4")->enabled);
    BOOST_TEST(next.find("p5") == nullptr);
    BOOST_TEST(m.added == 2u);
    BOOST_TEST(m.overridden == 1u);
    BOOST_TEST(m.bad_names == 2u);
    BOOST_TEST(next.discovered() == 2u);

    // A later discovery replaces the earlier one's entries; static entries stay.
    const auto later = next.with_discovered(listed({{"p6", "cn-east-3", true}}), 100);
    BOOST_TEST(later.find("p3") == nullptr);
    BOOST_TEST(later.find("p6")->region == "cn-east-3");
    BOOST_TEST(later.find("p1")->region == "cn-north-4");
    BOOST_TEST(later.size() == 3u);
    // The original map is untouched (maps are immutable once built).
    BOOST_TEST(base.size() == 2u);
}

BOOST_AUTO_TEST_CASE(discovered_entries_are_bounded) {
    std::vector<IamProject> many;
    for (int i = 0; i < 50; ++i) many.push_back({"p" + std::to_string(i), "cn-north-4", true});
    ProjectMap::Merge m;
    const ProjectMap base(std::vector<std::pair<std::string, std::string>>{{"static1", "cn-east-3"}});
    const auto map = base.with_discovered(many, 10, &m);
    BOOST_TEST(map.discovered() == 10u);
    BOOST_TEST(map.size() == 11u);
    BOOST_TEST(m.over_limit == 40u);
    // The first listed win; a duplicate id keeps its first entry.
    const auto dup =
        ProjectMap().with_discovered(listed({{"a", "cn-north-4", true}, {"a", "cn-east-3", true}}), 10);
    BOOST_TEST(dup.find("a")->region == "cn-north-4");
    BOOST_TEST(dup.size() == 1u);
}

BOOST_AUTO_TEST_CASE(projects_answer) {
    std::vector<IamProject> out;
    std::string err;
    const std::string body = R"({"links":{"self":"https://iam/v3/auth/projects"},"projects":[
        {"id":"06f1cbbaf280106b2f14c00313a9d065","name":"af-south-1","enabled":true,"domain_id":"d1"},
        {"id":"aa","name":"cn-north-4_sub","enabled":false},
        {"id":"bb","name":"cn-east-3"},
        {"id":17,"name":"cn-east-3"},
        {"name":"no-id"},
        "not an object"]})";
    BOOST_TEST(parse_projects_answer(body, 100, out, err));
    BOOST_TEST(out.size() == 3u);
    BOOST_TEST(out[0].name == "af-south-1");
    BOOST_TEST(out[0].enabled);
    BOOST_TEST(!out[1].enabled);
    BOOST_TEST(out[2].enabled);  // enabled defaults to true
    BOOST_TEST(parse_projects_answer(body, 2, out, err));
    BOOST_TEST(out.size() == 2u);

    for (const char* bad : {"", "[]", "{}", R"({"projects":{}})", "not json", R"({"projects":"x"})"}) {
        err.clear();
        BOOST_TEST(!parse_projects_answer(bad, 100, out, err), bad);
        BOOST_TEST(!err.empty());
    }
    // Far more entries than asked for: refused as a whole.
    std::string huge = R"({"projects":[)";
    for (int i = 0; i < 50; ++i) huge += std::string(i ? "," : "") + R"({"id":"x","name":"cn-north-4"})";
    huge += "]}";
    BOOST_TEST(!parse_projects_answer(huge, 10, out, err));
}

BOOST_AUTO_TEST_CASE(token_requests_and_answers) {
    IamConfig cfg;
    cfg.domain = "acct";
    cfg.user = "gw";
    namespace json = boost::json;
    auto scope_of = [&](const IamScope& s) {
        return json::serialize(json::parse(iam_token_request_body(cfg, "pw", s)).at("auth").at("scope"));
    };
    BOOST_TEST(scope_of(IamScope::project("0123abcd")) == R"({"project":{"id":"0123abcd"}})");
    BOOST_TEST(scope_of({IamScope::Kind::project_name, "cn-north-4"}) ==
               R"({"project":{"name":"cn-north-4"}})");
    BOOST_TEST(scope_of({IamScope::Kind::domain, "acct"}) == R"({"domain":{"name":"acct"}})");
    BOOST_TEST(IamScope::configured(cfg).key() == "domain:acct");
    cfg.project = "cn-north-4";
    BOOST_TEST(IamScope::configured(cfg).key() == "name:cn-north-4");
    cfg.project_id = "abc";
    BOOST_TEST(IamScope::configured(cfg).key() == "id:abc");

    const auto now = sys::now();
    IamToken t;
    std::string err;
    const std::string ok_body = R"({"token":{"expires_at":"2099-01-04T09:05:22.701000Z"}})";
    BOOST_TEST(parse_token_answer(201, "TOKEN", ok_body, now, std::chrono::seconds(30), t, err));
    BOOST_TEST(t.value == "TOKEN");
    BOOST_TEST(!parse_token_answer(500, "TOKEN", ok_body, now, std::chrono::seconds(30), t, err));
    BOOST_TEST(err == "IAM answered HTTP 500");
    BOOST_TEST(!parse_token_answer(201, "", ok_body, now, std::chrono::seconds(30), t, err));
    BOOST_TEST(!parse_token_answer(201, "T", R"({"token":{}})", now, std::chrono::seconds(30), t, err));
    BOOST_TEST(!parse_token_answer(201, "T", R"({"token":{"expires_at":"yesterday"}})", now,
                                   std::chrono::seconds(30), t, err));
    BOOST_TEST(!parse_token_answer(201, "T", R"({"token":{"expires_at":"2001-01-01T00:00:00Z"}})", now,
                                   std::chrono::seconds(30), t, err));
    BOOST_TEST(err.find("T") == std::string::npos);  // the token never appears in a message
}

// ------------------------------------------------------------------------------ config

namespace {
std::vector<std::string> errors_of(const std::string& body, Config* out = nullptr) {
    return test::config_errors(R"({"callers": {"required": false}, )" + body + "}", out);
}
using test::mentions;
std::string all(const std::vector<std::string>& errs) {
    std::string s;
    for (auto& e : errs) s += e + "\n";
    return s;
}
}  // namespace

BOOST_AUTO_TEST_CASE(config_one_region_is_not_multi) {
    Config c;
    BOOST_TEST(
        errors_of(R"("upstream": {"base_url": "https://rds.cn-north-4.myhuaweicloud.com"})", &c).empty());
    BOOST_TEST(!multi_region(c));
}

BOOST_AUTO_TEST_CASE(config_multi_region_keys) {
    Config c;
    const auto errs = errors_of(R"(
        "upstream": {"base_url_template": "https://rds.{region}.myhuaweicloud.com",
                     "proxy": {"url": "http://proxy.corp:3128", "credentials": {"env": "PROXY_CRED"},
                               "no_proxy": ["localhost", ".corp", "10.0.0.0/8"]}},
        "regions": {"cn-north-4": {"base_url": "https://rds.cn-north-4.example:8443", "ca_file": "/x.pem"},
                    "cn-east-3": {}},
        "projects": {"static": {"p1": "cn-north-4", "p2": "ap-southeast-1"},
                     "discovery": {"enabled": true, "refresh_s": 60, "min_interval_s": 5, "max_projects": 10}},
        "auth": {"mode": "iam", "iam": {"domain": "acct", "user": "u", "max_tokens": 8}})",
                                &c);
    BOOST_TEST(errs.empty(), all(errs));
    BOOST_TEST(multi_region(c));
    BOOST_TEST(c.regions.size() == 2u);
    BOOST_TEST(c.projects.static_map.size() == 2u);
    BOOST_TEST(c.projects.discovery.enabled);
    BOOST_TEST(c.projects.discovery.max_projects == 10u);
    BOOST_TEST(c.auth.iam.max_tokens == 8u);
    BOOST_TEST(c.upstream.proxy.no_proxy.size() == 3u);
    BOOST_TEST(c.upstream.proxy.credentials.env == "PROXY_CRED");
}

struct BadCase {
    std::string body, named;
};

BOOST_AUTO_TEST_CASE(config_multi_region_errors_name_the_key) {
    const std::vector<BadCase> cases = {
        {R"("regions": {"CN_North": {"base_url": "https://a.example"}})", "regions.CN_North"},
        {R"("regions": {"cn-north-4": {}})", "regions.cn-north-4.base_url"},
        {R"("regions": {"cn-north-4": {"base_url": "https://a.example/path"}})",
         "regions.cn-north-4.base_url"},
        {R"("regions": {"cn-north-4": {"base_url": "https://a.example", "colour": 1}})",
         "regions.cn-north-4.colour"},
        {R"("regions": {"cn-north-4": {"base_url": "https://a.example", "token": "plain"}})",
         "regions.cn-north-4.token"},
        {R"("regions": {"cn-north-4": {"base_url": "https://a.example", "token": {"env": "T"}}},
            "auth": {"mode": "aksk"})",
         "regions.cn-north-4.token"},
        {R"("upstream": {"base_url_template": "https://rds.myhuaweicloud.com"})",
         "upstream.base_url_template"},
        {R"("upstream": {"base_url_template": "ftp://{region}.x"})", "upstream.base_url_template"},
        {R"("upstream": {"base_url": "https://a.example"}, "regions": {"cn-north-4": {"base_url": "https://b.example"}})",
         "upstream"},
        {R"("projects": {"static": {"p1": "cn-north-4"}})", "projects.static.p1"},
        {R"("regions": {"cn-north-4": {"base_url": "https://b.example"}}, "projects": {"static": {"p1": 4}})",
         "projects.static.p1"},
        {R"("regions": {"cn-north-4": {"base_url": "https://b.example"}}, "projects": {"static": {"a/b": "cn-north-4"}})",
         "projects.static.a/b"},
        {R"("upstream": {"base_url_template": "https://{region}.x"}, "projects": {"discovery": {"enabled": true}})",
         "projects.discovery.enabled"},  // token mode cannot list projects
        {R"("upstream": {"base_url_template": "https://{region}.x"}, "projects": {"discovery": {"refresh_s": 1}})",
         "projects.discovery.refresh_s"},
        {R"("upstream": {"base_url_template": "https://{region}.x"})", "projects"},  // nothing served
        {R"("upstream": {"proxy": {"url": "https://proxy:3128"}})", "upstream.proxy.url"},
        {R"("upstream": {"proxy": {"url": "http://user:pw@proxy:3128"}})", "upstream.proxy.url"},
        {R"("upstream": {"proxy": {"credentials": {"env": "P"}}})", "upstream.proxy.credentials"},
        {R"("upstream": {"proxy": {"url": "http://proxy", "no_proxy": ["a, b"]}})",
         "upstream.proxy.no_proxy"},
        {R"("auth": {"mode": "iam", "iam": {"domain": "a", "user": "u"}})", "auth.iam.project"},
        {R"("auth": {"mode": "iam", "iam": {"domain": "a", "user": "u", "max_tokens": 0, "project": "p"}})",
         "auth.iam.max_tokens"},
    };
    for (const auto& c : cases) {
        const auto errs = errors_of(c.body);
        BOOST_TEST(!errs.empty(), c.body);
        BOOST_TEST(mentions(errs, c.named + ":"), c.named << " not named in: " << all(errs));
    }
}

BOOST_AUTO_TEST_CASE(config_iam_scope_rules) {
    // One region: exactly one of project / project_id. Several: neither is fine (the project list is then
    // read with an account-scoped token), both are not.
    BOOST_TEST(
        errors_of(R"("auth": {"mode": "iam", "iam": {"domain": "a", "user": "u", "project": "cn-north-4"}})")
            .empty());
    const std::string regions = R"("regions": {"cn-north-4": {"base_url": "https://b.example"}},
                                    "projects": {"static": {"p1": "cn-north-4"}}, )";
    BOOST_TEST(
        errors_of(regions + R"("auth": {"mode": "iam", "iam": {"domain": "a", "user": "u"}})").empty());
    BOOST_TEST(mentions(errors_of(regions + R"("auth": {"mode": "iam", "iam": {"domain": "a", "user": "u",
                                                 "project": "x", "project_id": "y"}})"),
                        "auth.iam.project:"));
}

BOOST_AUTO_TEST_CASE(regions_example_file_is_valid) {
    Config c;
    std::vector<std::string> errors;
    BOOST_TEST(load_config_file(std::string(RDSGW_SOURCE_DIR) + "/conf/regions.json", c, errors),
               all(errors));
    BOOST_TEST(multi_region(c));
    BOOST_TEST(c.regions.size() == 3u);
    BOOST_TEST(c.projects.static_map.size() == 3u);
    BOOST_TEST(c.projects.discovery.enabled);
}
