#define BOOST_TEST_MODULE config
#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <fstream>

#include "rdsgw/config.hpp"

using namespace rdsgw;

namespace {
// A minimal valid config, with `extra` spliced in as further top-level members.
std::string with(const std::string& extra) {
    std::string base = R"({"callers": {"required": false})";
    return base + (extra.empty() ? "" : ", " + extra) + "}";
}
std::vector<std::string> errors_of(const std::string& text) {
    Config c;
    std::vector<std::string> errors;
    parse_config(text, c, errors);
    return errors;
}
bool mentions(const std::vector<std::string>& errs, const std::string& what) {
    for (auto& e : errs)
        if (e.find(what) != std::string::npos) return true;
    return false;
}
}  // namespace

BOOST_AUTO_TEST_CASE(defaults_and_comments) {
    Config c;
    std::vector<std::string> errors;
    BOOST_TEST(parse_config("// comment\n{\"callers\": {\"required\": false}, /* block */ }", c, errors));
    BOOST_TEST(errors.empty());
    BOOST_TEST(c.listen.port == 8080);
    BOOST_TEST(c.upstream.connect_timeout_ms == 2000u);
    BOOST_TEST(c.cache.expiry_margin_s == 60u);
    BOOST_TEST(c.auth.token.env == "RDS_AUTH_TOKEN");
    BOOST_TEST(!c.admin.enabled);
}

BOOST_AUTO_TEST_CASE(reference_and_demo_files_are_valid) {
    for (const char* f : {"/conf/gateway.json", "/conf/demo.json"}) {
        Config c;
        std::vector<std::string> errors;
        bool ok = load_config_file(std::string(RDSGW_SOURCE_DIR) + f, c, errors);
        BOOST_TEST(ok, f);
        for (auto& e : errors) BOOST_TEST_MESSAGE(e);
    }
}

struct BadCase {
    std::string text;
    std::string named;  // the key path the message must name
};

BOOST_AUTO_TEST_CASE(bad_keys_are_named) {
    const std::vector<BadCase> cases = {
        {"{", "not valid JSON"},
        {"[]", "must be a JSON object"},
        {with(R"("listen": {"port": 70000})"), "listen.port"},
        {with(R"("listen": {"port": "80"})"), "listen.port"},
        {with(R"("listen": {"prot": 80})"), "listen.prot: unknown key"},
        {with(R"("lisen": {})"), "lisen: unknown key"},
        {with(R"("listen": 5)"), "listen: must be an object"},
        {with(R"("listen": {"threads": -1})"), "listen.threads"},
        {with(R"("listen": {"tls_cert_file": "a.pem"})"), "listen.tls_cert_file"},
        {with(R"("listen": {"require_client_cert": true})"), "listen.require_client_cert"},
        {with(R"("upstream": {"base_url": "ftp://x"})"), "upstream.base_url"},
        {with(R"("upstream": {"base_url": "https://x/path"})"), "upstream.base_url"},
        {with(R"("upstream": {"base_url": "https://user:pw@x"})"), "upstream.base_url"},
        {with(R"("upstream": {"connect_timeout_ms": 0})"), "upstream.connect_timeout_ms"},
        {with(R"("upstream": {"request_timeout_ms": 1.5})"), "upstream.request_timeout_ms"},
        {with(R"("retry": {"budget_ratio": 2})"), "retry.budget_ratio"},
        {with(R"("retry": {"base_backoff_ms": 100, "max_backoff_ms": 10})"), "retry.max_backoff_ms"},
        {with(R"("auth": {"mode": "magic"})"), "auth.mode"},
        {with(R"("auth": {"token": "s3cr3t-in-file"})"), "auth.token"},
        {with(R"("auth": {"token": {"env": "A", "file": "/b"}})"), "auth.token"},
        {with(R"("auth": {"token": {"value": "x"}})"), "auth.token.value: unknown key"},
        {with(R"("auth": {"mode": "iam", "iam": {"user": "u", "project": "p"}})"), "auth.iam.domain"},
        {with(R"("auth": {"mode": "iam", "iam": {"domain": "d", "user": "u"}})"), "auth.iam.project"},
        {with(R"("auth": {"iam": {"password": "pw"}})"), "auth.iam.password"},
        {with(R"("cache": {"max_entries": 0})"), "cache.max_entries"},
        {with(R"("cache": {"enabled": "yes"})"), "cache.enabled"},
        {with(R"("limits": {"max_header_bytes": 10})"), "limits.max_header_bytes"},
        {with(R"("request": {"project_id_pattern": "[unclosed"})"), "request.project_id_pattern"},
        {with(R"("response": {"link_host_suffixes": [1]})"), "response.link_host_suffixes"},
        {with(R"("log": {"level": "loud"})"), "log.level"},
        {R"({"callers": {"list": []}})", "callers.list"},
        {R"({"callers": {"list": [{"name": "a", "projects": ["*"]}]}})", "callers.list[0].name"},
        {R"({"callers": {"list": [{"name": "a", "api_key_sha256": ["abc"], "projects": ["*"]}]}})",
         "callers.list[0].api_key_sha256"},
        {R"({"callers": {"list": [{"name": "a", "api_key_sha256": ["0000000000000000000000000000000000000000000000000000000000000000"]}]}})",
         "callers.list[0].projects"},
        {R"({"callers": {"list": [{"name": "a", "access_key": "AK", "projects": ["*"]}]}})",
         "callers.list[0].secret_key"},
        {R"({"callers": {"list": [{"name": "a", "cert_subjects": ["CN=a"], "projects": ["*"], "rate": 1}]}})",
         "callers.list[0].rate: unknown key"},
    };
    for (const auto& c : cases) {
        auto errs = errors_of(c.text);
        BOOST_TEST(!errs.empty(), c.text);
        BOOST_TEST(mentions(errs, c.named), c.text << " should name " << c.named << "; got: "
                                                   << (errs.empty() ? std::string("nothing") : errs.front()));
    }
}

BOOST_AUTO_TEST_CASE(secret_values_never_in_messages) {
    auto errs = errors_of(with(R"("auth": {"token": "s3cr3t-in-file"})"));
    BOOST_REQUIRE(!errs.empty());
    for (auto& e : errs) BOOST_TEST(e.find("s3cr3t") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(load_secret_env_and_file) {
    std::string v, why;
    ::setenv("RDSGW_TEST_SECRET", "tok-123", 1);
    BOOST_TEST(load_secret(SecretRef{"RDSGW_TEST_SECRET", ""}, v, why));
    BOOST_TEST(v == "tok-123");
    ::unsetenv("RDSGW_TEST_SECRET");
    BOOST_TEST(!load_secret(SecretRef{"RDSGW_TEST_SECRET", ""}, v, why));
    BOOST_TEST(why.find("RDSGW_TEST_SECRET") != std::string::npos);
    std::string path = "/tmp/rdsgw-test-secret-" + std::to_string(::getpid());
    {
        std::ofstream f(path);
        f << "file-secret\n";
    }
    BOOST_TEST(load_secret(SecretRef{"", path}, v, why));
    BOOST_TEST(v == "file-secret");
    std::remove(path.c_str());
    BOOST_TEST(!load_secret(SecretRef{"", path}, v, why));
    BOOST_TEST(why.find("file-secret") == std::string::npos);
}
