// Egress through an HTTP proxy (upstream.proxy): TLS to RDS tunnelled through CONNECT with
// Proxy-Authorization from a secret, the RDS certificate still verified inside the tunnel, the no_proxy list
// honoured (IAM direct). The test proxy (tests/support/connect_proxy) maps the real RDS host names of a
// base-URL template to local mocks whose certificates carry those names.
#define BOOST_TEST_MODULE proxy
#include "harness.hpp"
#include "rdsgw/proxy.hpp"
#include "support/connect_proxy.hpp"

using namespace rdsgw::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

const std::string kP0 = "0a000000000000000000000000000001", kP1 = "0b000000000000000000000000000002",
                  kP2 = "0c000000000000000000000000000003";
const std::string kProxyCred = "proxy-user:proxy-PASS-7a3c";
const std::string kPassword = "iam-PASSWORD-proxy-19fe";

// A mock whose certificate is for `host` only (signed by the test CA).
struct NamedMock {
    Pki pki;
    std::string host;
    std::unique_ptr<MockServer> mock;
    NamedMock(const Pki& base, const std::string& h, const std::string& behaviour) : pki(base), host(h) {
        std::tie(pki.server_cert, pki.server_key) = base.server_for(host);
        mock = std::make_unique<MockServer>(
            MockOptions().with_tls(pki).with_tls_name(host).with_config(behaviour));
    }
    std::int64_t stat(const char* name) {
        HttpClient c(mock->port, TlsOptions::trusting(pki.ca_cert, host));
        return c.request("GET", "/_mock/stats").json().at(name).to_number<std::int64_t>();
    }
};

}  // namespace

// Regions from a template, every RDS connection through the proxy with credentials; IAM (localhost) direct.
BOOST_AUTO_TEST_CASE(template_regions_through_the_proxy) {
    Pki pki = make_pki();
    MockServer iam(&pki, R"({"auth":"iam","iam_password":")" + kPassword + R"("})");
    NamedMock north(pki, "rds.cn-north-4.example", R"({"auth":"iam"})");
    NamedMock east(pki, "rds.cn-east-3.example", R"({"auth":"iam"})");
    ConnectProxy::Options po;
    po.required_authorization = rdsgw::basic_authorization(kProxyCred);
    po.routes = {{"rds.cn-north-4.example:443", north.mock->port},
                 {"rds.cn-east-3.example:443", east.mock->port}};
    ConnectProxy proxy(po);

    auto cfg = base_config(iam, &pki);
    auto& up = cfg.as_object()["upstream"].as_object();
    up.erase("base_url");
    up["base_url_template"] = "https://rds.{region}.example";
    up["proxy"] = {
        {"url", proxy.url()}, {"credentials", {{"env", "GW_PROXY_CRED"}}}, {"no_proxy", {"localhost"}}};
    cfg.as_object()["projects"] = {{"static", {{kP0, "cn-north-4"}, {kP1, "cn-east-3"}}}};
    cfg.as_object()["auth"] = iam_auth(iam, 3600, 30);
    cfg.as_object()["listen"].as_object()["threads"] = 1;  // one pool per region: tunnels are reused
    GatewayProc gw(cfg, {{"GW_PROXY_CRED", kProxyCred}, {"GW_IAM_PASSWORD", kPassword}});
    BOOST_REQUIRE_MESSAGE(eventually([&] { return gw.get("/readyz").status == 200; }, 10s),
                          gw.child.output());

    BOOST_TEST(gw.get(backup_path(kBackup, kP0), with_key()).status == 200u);
    BOOST_TEST(gw.get(backup_path(kBackup, kP1), with_key()).status == 200u);
    // The upstreams saw the requests (through the tunnel: they listen on ports only the proxy knows).
    BOOST_TEST(north.stat("rds_requests") == 1);
    BOOST_TEST(east.stat("rds_requests") == 1);
    BOOST_TEST(north.stat("tls_handshakes") >= 1);
    BOOST_TEST(proxy.count("rds.cn-north-4.example:443") >= 1u);
    BOOST_TEST(proxy.count("rds.cn-east-3.example:443") >= 1u);
    for (const auto& a : proxy.authorizations()) BOOST_TEST(a == po.required_authorization);
    // IAM is in no_proxy: never tunnelled, yet its tokens were obtained.
    for (const auto& t : proxy.targets()) BOOST_TEST(t.rfind("localhost:", 0) != 0, t);
    BOOST_TEST(iam.stat("tokens_issued") >= 2);
    // Pooled connections are reused: a second request opens no new tunnel.
    const auto tunnels = proxy.tunnels();
    BOOST_TEST(gw.get(backup_path("d" + kBackup.substr(1), kP0), with_key()).status == 200u);
    BOOST_TEST(proxy.tunnels() == tunnels);
    const auto out = gw.child.output();
    BOOST_TEST(out.find("proxy-PASS") == std::string::npos);
    BOOST_TEST(out.find(po.required_authorization) == std::string::npos);
}

// Inside the tunnel the certificate is checked against the real host: a server with another name fails.
BOOST_AUTO_TEST_CASE(wrong_certificate_inside_the_tunnel_fails) {
    Pki pki = make_pki();
    MockServer localhost_only(&pki, R"({"auth":"static","static_token":"tok-AAAA"})");  // cert for localhost
    ConnectProxy::Options po;
    po.routes = {{"rds.cn-north-4.example:443", localhost_only.port}};
    ConnectProxy proxy(po);
    auto cfg = base_config(localhost_only, &pki);
    auto& up = cfg.as_object()["upstream"].as_object();
    up["base_url"] = "https://rds.cn-north-4.example";  // one region, through the proxy
    up["proxy"] = {{"url", proxy.url()}};
    GatewayProc gw(cfg, {{"RDS_AUTH_TOKEN", "tok-AAAA"}});
    auto r = gw.get(backup_path(), with_key());
    BOOST_TEST(r.status == 502u);
    BOOST_TEST(std::string(r.json().at("error_msg").as_string()).rfind("upstream unreachable", 0) == 0);
    BOOST_TEST(proxy.count("rds.cn-north-4.example:443") >= 1u);  // the tunnel was opened...
    BOOST_TEST(localhost_only.stat("rds_requests") == 0);         // ...but nothing was sent through it
    BOOST_TEST(r.body.find("certificate verification failed") != std::string::npos, r.body);
    BOOST_TEST(gw.child.output().find("tok-AAAA") == std::string::npos);
}

// The proxy refuses (407 without credentials, 502 for an unknown host): the caller gets a 502 that says so.
BOOST_AUTO_TEST_CASE(proxy_refusals_are_upstream_failures) {
    Pki pki = make_pki();
    NamedMock north(pki, "rds.cn-north-4.example", R"({"auth":"static","static_token":"tok-BBBB"})");
    ConnectProxy::Options po;
    po.required_authorization = rdsgw::basic_authorization(kProxyCred);
    po.routes = {{"rds.cn-north-4.example:443", north.mock->port}};
    ConnectProxy proxy(po);
    auto cfg = base_config(*north.mock, &pki);
    auto& up = cfg.as_object()["upstream"].as_object();
    up["base_url"] = "https://rds.cn-north-4.example";
    up["proxy"] = {{"url", proxy.url()}, {"credentials", {{"env", "GW_PROXY_CRED"}}}};
    {
        GatewayProc gw(cfg, {{"RDS_AUTH_TOKEN", "tok-BBBB"}, {"GW_PROXY_CRED", "proxy-user:wrong"}});
        auto r = gw.get(backup_path(), with_key());
        BOOST_TEST(r.status == 502u);
        BOOST_TEST(north.stat("rds_requests") == 0);
        BOOST_TEST(r.body.find("HTTP 407") != std::string::npos, r.body);
        BOOST_TEST(gw.child.output().find("proxy-user:wrong") == std::string::npos);
    }
    {
        GatewayProc gw(cfg, {{"RDS_AUTH_TOKEN", "tok-BBBB"}, {"GW_PROXY_CRED", kProxyCred}});
        BOOST_TEST(gw.get(backup_path(), with_key()).status == 200u);
        BOOST_TEST(north.stat("rds_requests") == 1);
    }
    {
        auto other = cfg;
        other.as_object()["upstream"].as_object()["base_url"] = "https://rds.nowhere.example";
        GatewayProc gw(other, {{"RDS_AUTH_TOKEN", "tok-BBBB"}, {"GW_PROXY_CRED", kProxyCred}});
        auto r = gw.get(backup_path(), with_key());
        BOOST_TEST(r.status == 502u);
        BOOST_TEST(r.body.find("HTTP 502") != std::string::npos, r.body);
    }
}

// conf/regions.json (the README's example) as it is, pointed at the test's world: IAM's endpoint, the CA, the
// callers and the ports are the test's; the RDS hosts of its template (rds.<region>.myhuaweicloud.com) are
// routed by the CONNECT proxy to three mocks whose certificates carry those names. Nothing leaves loopback.
BOOST_AUTO_TEST_CASE(the_regions_example_runs) {
    json::parse_options opts;
    opts.allow_comments = true;
    opts.allow_trailing_commas = true;
    std::ifstream in(std::string(RDSGW_SOURCE_DIR) + "/conf/regions.json");
    std::stringstream text;
    text << in.rdbuf();
    json::value cfg = json::parse(text.str(), {}, opts);
    json::array listed;
    std::vector<std::pair<std::string, std::string>> projects;  // id, region
    for (const auto& [id, region] : cfg.at("projects").at("static").as_object()) {
        projects.emplace_back(std::string(id), std::string(region.as_string()));
        listed.push_back(json::object{{"id", id}, {"name", region}, {"enabled", true}});
    }
    BOOST_REQUIRE_EQUAL(projects.size(), 3u);

    Pki pki = make_pki();
    MockServer iam(&pki, json::serialize(json::object{
                             {"auth", "iam"}, {"iam_password", kPassword}, {"iam_projects", listed}}));
    std::vector<std::unique_ptr<NamedMock>> rds;
    ConnectProxy::Options po;
    for (const auto& [id, region] : projects) {
        const std::string host = "rds." + region + ".myhuaweicloud.com";
        rds.push_back(std::make_unique<NamedMock>(
            pki, host,
            json::serialize(json::object{{"auth", "iam"},
                                         {"strict_scope", true},
                                         {"served_projects", json::array{json::string(id)}},
                                         {"iam_projects", listed}})));
        po.routes[host + ":443"] = rds.back()->mock->port;
    }
    ConnectProxy proxy(po);

    auto test = base_config(iam, &pki);
    auto& o = cfg.as_object();
    o["listen"] = test.at("listen");
    o["admin"] = test.at("admin");
    o["callers"] = test.at("callers");
    o["log"] = test.at("log");
    o["upstream"].as_object()["ca_file"] = pki.ca_cert;
    o["upstream"].as_object()["proxy"] = {{"url", proxy.url()}, {"no_proxy", {"localhost"}}};
    o["auth"].as_object()["iam"].as_object()["endpoint"] = iam.base_url();
    GatewayProc gw(cfg, {{"RDS_IAM_PASSWORD", kPassword}});
    BOOST_REQUIRE_MESSAGE(eventually([&] { return gw.get("/readyz").status == 200; }, 10s),
                          gw.child.output());
    BOOST_REQUIRE(
        eventually([&] { return gw.get("/readyz").json().at("checks").at("discovery").at("ok").as_bool(); }));
    for (std::size_t i = 0; i < projects.size(); ++i) {
        auto r = gw.get(backup_path(kBackup, projects[i].first), with_key());
        BOOST_TEST(r.status == 200u, projects[i].second << ": " << r.body);
        BOOST_TEST(rds[i]->stat("rds_requests") == 1);
        BOOST_TEST(rds[i]->stat("rds_unauthorized") == 0);
    }
    // The project list was read with an account-scoped token (the example names no project).
    BOOST_TEST(iam.stats().at("tokens_by_scope").at("domain:my-account").to_number<int>() == 1);
    BOOST_TEST(gw.get(backup_path(kBackup, "ffffffffffffffffffffffffffffffff"), with_key()).status == 404u);
}
