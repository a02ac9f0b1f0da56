#define BOOST_TEST_MODULE config
#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <fstream>

#include "rdsgw/config.hpp"
#include "rdsgw/resources.hpp"
#include "support/certs.hpp"
#include "support/config_errors.hpp"
#include "support/tempdir.hpp"

using namespace rdsgw;
using rdsgw::test::TempDir;

namespace {
// A minimal valid config, with `extra` spliced in as further top-level members.
std::string with(const std::string& extra) {
    std::string base = R"({"callers": {"required": false})";
    return base + (extra.empty() ? "" : ", " + extra) + "}";
}
std::vector<std::string> errors_of(const std::string& text) {
    return test::config_errors(text);
}
using test::mentions;
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

// ---------------------------------------------------------------------------------------------------------
// Issue 18: a config check you can trust. Issue 14: config-time refusals.

namespace {
std::string first_error(const std::string& text) {
    auto errs = errors_of(text);
    return errs.empty() ? std::string() : errs.front();
}
// A caller with one API key hash (64 hex digits made of `digit`).
std::string key_caller(const std::string& name, char digit, const std::string& extra = "") {
    return R"({"name": ")" + name + R"(", "api_key_sha256": [")" + std::string(64, digit) +
           R"("], "projects": ["*"])" + (extra.empty() ? "" : ", " + extra) + "}";
}
}  // namespace

BOOST_AUTO_TEST_CASE(duplicate_keys_are_refused_with_their_path) {
    const std::vector<BadCase> cases = {
        {R"({"callers": {"required": false, "required": true}})", "callers.required: duplicate key"},
        {R"({"callers": {"required": false}, "listen": {"port": 1}, "listen": {"port": 2}})",
         "listen: duplicate key"},
        {R"({"callers": {"list": [)" + key_caller("a", '1') + ", " +
             R"({"name": "b", "name": "c", "api_key_sha256": [")" + std::string(64, '2') +
             R"("], "projects": ["*"]}]}})",
         "callers.list[1].name: duplicate key"},
        {R"({"callers": {"required": false}, "auth": {"token": {"env": "A", "env": "B"}}})",
         "auth.token.env: duplicate key"},
    };
    for (const auto& c : cases) {
        auto errs = errors_of(c.text);
        BOOST_TEST(mentions(errs, c.named), c.text << " should name " << c.named << "; got: "
                                                   << (errs.empty() ? std::string("nothing") : errs.front()));
    }
    // Every duplicate is reported, not only the first.
    auto errs = errors_of(R"({"callers": {"required": false, "required": false}, "log": {"level": "info",
        "level": "debug"}})");
    BOOST_TEST(mentions(errs, "callers.required: duplicate key"));
    BOOST_TEST(mentions(errs, "log.level: duplicate key"));
    // The same key in different objects is fine.
    BOOST_TEST(errors_of(R"({"callers": {"required": false}, "listen": {"port": 1}, "admin": {"port": 2}})")
                   .empty());
}

BOOST_AUTO_TEST_CASE(syntax_errors_name_line_and_column) {
    // Line 3, the second comma at column 25 (1-based, in bytes).
    const std::string text =
        "// comment\n{\"callers\": {\"required\": false},\n  \"listen\": {\"port\": 80,,}\n}";
    const std::string e = first_error(text);
    BOOST_TEST(e.find("not valid JSON") != std::string::npos, e);
    BOOST_TEST(e.find("line 3, column 25") != std::string::npos, e);
    BOOST_TEST(first_error("{").find("line 1, column 2") != std::string::npos, first_error("{"));
    BOOST_TEST(first_error("{\"a\": 1} x").find("line 1, column 10") != std::string::npos,
               first_error("{\"a\": 1} x"));
    BOOST_TEST(first_error("\n\n  nope").find("line 3, column 3") != std::string::npos,
               first_error("\n\n  nope"));
}

BOOST_AUTO_TEST_CASE(secrets_with_control_characters_are_refused) {
    TempDir d("rdsgw-cfg");
    std::string v = "unchanged", why;
    // A token file that would add a header upstream.
    const std::string injected = d.write("token", "tok-AAA\r\nX-Injected: yes\n");
    BOOST_TEST(!load_secret(SecretRef{"", injected}, v, why));
    BOOST_TEST(why.find("control character") != std::string::npos, why);
    BOOST_TEST(why.find("X-Injected") == std::string::npos);
    BOOST_TEST(why.find("tok-AAA") == std::string::npos);
    BOOST_TEST(v == "unchanged");  // the caller's old secret stays
    for (const std::string bad : {"a\tb", "a\x01b", "a\x7f", "a\nb"}) {
        ::setenv("RDSGW_TEST_CTL", bad.c_str(), 1);
        BOOST_TEST(!load_secret(SecretRef{"RDSGW_TEST_CTL", ""}, v, why));
        BOOST_TEST(why.find("RDSGW_TEST_CTL") != std::string::npos);
    }
    ::unsetenv("RDSGW_TEST_CTL");
    // Trailing white space of a file is trimmed, not refused; UTF-8 is not a control character.
    BOOST_TEST(load_secret(SecretRef{"", d.write("ok", "p\xc3\xa4ss\r\n")}, v, why));
    BOOST_TEST(v == "p\xc3\xa4ss");
}

BOOST_AUTO_TEST_CASE(systemd_credentials) {
    TempDir d("rdsgw-cred");
    d.write("rds-token", "cred-token-1\n");
    std::string v, why;
    ::unsetenv("CREDENTIALS_DIRECTORY");
    BOOST_TEST(!load_secret(SecretRef{"", "", "rds-token"}, v, why));
    BOOST_TEST(why.find("CREDENTIALS_DIRECTORY") != std::string::npos, why);
    ::setenv("CREDENTIALS_DIRECTORY", d.path().c_str(), 1);
    BOOST_TEST(load_secret(SecretRef{"", "", "rds-token"}, v, why), why);
    BOOST_TEST(v == "cred-token-1");
    BOOST_TEST(!load_secret(SecretRef{"", "", "missing"}, v, why));
    BOOST_TEST(why.find("systemd credential missing") != std::string::npos, why);
    ::unsetenv("CREDENTIALS_DIRECTORY");
    // Config syntax: exactly one source; a credential is a name, not a path.
    Config c;
    std::vector<std::string> errors;
    BOOST_TEST(parse_config(with(R"("auth": {"token": {"credential": "rds-token"}})"), c, errors));
    BOOST_TEST(c.auth.token.credential == "rds-token");
    BOOST_TEST(c.auth.token.describe() == "systemd credential rds-token");
    BOOST_TEST(mentions(errors_of(with(R"("auth": {"token": {"credential": "../x"}})")), "auth.token"));
    BOOST_TEST(
        mentions(errors_of(with(R"("auth": {"token": {"credential": "a", "env": "B"}})")), "auth.token"));
}

BOOST_AUTO_TEST_CASE(one_credential_one_caller) {
    const std::string sk = R"("secret_key": {"env": "X"})";
    const std::vector<BadCase> cases = {
        {R"({"callers": {"list": [)" + key_caller("a", '1') + ", " + key_caller("b", '1') + "]}}",
         "callers.list[1].api_key_sha256: an API key hash is also listed by caller \"a\""},
        // Hashes are compared lower-cased.
        {R"({"callers": {"list": [)" + key_caller("a", 'a') + ", " + key_caller("b", 'A') + "]}}",
         "callers.list[1].api_key_sha256"},
        {R"({"callers": {"list": [)" + key_caller("a", '1', R"("access_key": "AK1", )" + sk) + ", " +
             key_caller("b", '2', R"("access_key": "AK1", )" + sk) + "]}}",
         "callers.list[1].access_key: this access key is also listed by caller \"a\""},
        {R"({"callers": {"list": [)" + key_caller("a", '1', R"("cert_subjects": ["CN=x,O=y"])") + ", " +
             key_caller("b", '2', R"("cert_subjects": ["CN=z", "CN=x,O=y"])") + "]}}",
         "callers.list[1].cert_subjects: subject \"CN=x,O=y\" is also listed by caller \"a\""},
    };
    for (const auto& c : cases) {
        auto errs = errors_of(c.text);
        BOOST_TEST(mentions(errs, c.named), c.text << " should name " << c.named << "; got: "
                                                   << (errs.empty() ? std::string("nothing") : errs.front()));
    }
    // Distinct credentials pass.
    BOOST_TEST(errors_of(R"({"callers": {"list": [)" + key_caller("a", '1', R"("cert_subjects": ["CN=a"])") +
                         ", " + key_caller("b", '2', R"("cert_subjects": ["CN=b"])") + "]}}")
                   .empty());
}

BOOST_AUTO_TEST_CASE(listen_and_admin_must_not_overlap) {
    const auto overlap = [](const std::string& main, int main_port, const std::string& admin,
                            int admin_port) {
        return mentions(errors_of(with(R"("listen": {"address": ")" + main + R"(", "port": )" +
                                       std::to_string(main_port) + R"(}, "admin": {"address": ")" + admin +
                                       R"(", "port": )" + std::to_string(admin_port) + "}")),
                        "admin.port: the admin listener");
    };
    BOOST_TEST(overlap("127.0.0.1", 8080, "127.0.0.1", 8080));
    BOOST_TEST(overlap("0.0.0.0", 8080, "127.0.0.1", 8080));
    BOOST_TEST(overlap("10.1.2.3", 8080, "0.0.0.0", 8080));
    BOOST_TEST(overlap("::", 8080, "127.0.0.1", 8080));  // dual-stack wildcard
    BOOST_TEST(overlap("::1", 9000, "0:0:0:0:0:0:0:1", 9000));
    BOOST_TEST(!overlap("127.0.0.1", 8080, "127.0.0.2", 8080));
    BOOST_TEST(!overlap("0.0.0.0", 8080, "0.0.0.0", 9090));
    BOOST_TEST(!overlap("0.0.0.0", 0, "0.0.0.0", 0));  // both picked by the OS
    BOOST_TEST(!overlap("0.0.0.0", 8080, "::1", 8080));
    // Without an admin block, the default admin port does not count.
    BOOST_TEST(errors_of(with(R"("listen": {"port": 9090})")).empty());
    BOOST_TEST(mentions(errors_of(with(R"("listen": {"address": "localhost"})")), "listen.address"));
    BOOST_TEST(mentions(errors_of(with(R"("admin": {"address": "1.2.3"})")), "admin.address"));
}

// metrics_require_auth asks for a caller from the list whatever callers.required says: with no list nobody
// could read /metrics, so the combination is refused at load, naming the key.
BOOST_AUTO_TEST_CASE(metrics_require_auth_needs_callers) {
    const auto errs = errors_of(R"({"callers": {"required": false, "metrics_require_auth": true}})");
    BOOST_TEST(mentions(errs, "callers.metrics_require_auth"));
    BOOST_TEST(
        errors_of(R"({"callers": {"required": false, "metrics_require_auth": true, "list": [{"name": "a",
        "api_key_sha256": ["0000000000000000000000000000000000000000000000000000000000000000"],
        "projects": ["*"]}]}})")
            .empty());
}

BOOST_AUTO_TEST_CASE(warnings_for_an_open_admin_listener) {
    const auto warned = [](const std::string& extra) {
        Config c;
        std::vector<std::string> errors;
        BOOST_TEST_REQUIRE(parse_config(with(extra), c, errors), extra);
        for (auto& w : config_warnings(c))
            if (w.find("admin.address") != std::string::npos) return true;
        return false;
    };
    BOOST_TEST(warned(R"("admin": {"address": "0.0.0.0"})"));
    BOOST_TEST(warned(R"("admin": {"address": "10.0.0.5"})"));
    BOOST_TEST(!warned(R"("admin": {"address": "127.0.0.1"})"));
    BOOST_TEST(!warned(R"("admin": {"address": "::1"})"));
    BOOST_TEST(!warned(R"("admin": {"address": "0.0.0.0", "enabled": false})"));
    Config c;
    std::vector<std::string> errors;
    BOOST_TEST_REQUIRE(parse_config(R"({"admin": {"address": "0.0.0.0"}, "callers": {"required": false,
        "metrics_require_auth": true, "list": [)" +
                                        key_caller("a", '1') + "]}}",
                                    c, errors));
    for (auto& w : config_warnings(c)) BOOST_TEST(w.find("admin.address") == std::string::npos, w);
}

BOOST_AUTO_TEST_CASE(print_config_round_trips_and_shows_references_only) {
    Config c;
    std::vector<std::string> errors;
    BOOST_TEST_REQUIRE(load_config_file(std::string(RDSGW_SOURCE_DIR) + "/conf/gateway.json", c, errors));
    c.auth.aksk.security_token = SecretRef{"", "/run/secrets/st"};
    c.callers.list.front().access_key = "GWAK1";
    c.callers.list.front().secret_key = SecretRef{"RESTORE_SVC_SK", ""};
    ::setenv("RESTORE_SVC_SK", "caller-sk-VALUE-91", 1);
    const std::string printed = print_config(c);
    BOOST_TEST(printed.find("caller-sk-VALUE-91") == std::string::npos);
    BOOST_TEST(printed.find(R"("secret_key": {"env": "RESTORE_SVC_SK"})") != std::string::npos, printed);
    BOOST_TEST(printed.find(R"("security_token": {"file": "/run/secrets/st"})") != std::string::npos);
    BOOST_TEST(printed.find(R"("pool_size": 32)") != std::string::npos);
    BOOST_TEST(printed.find(R"("budget_ratio": 0.2)") != std::string::npos);
    ::unsetenv("RESTORE_SVC_SK");
    Config back;
    errors.clear();
    BOOST_TEST_REQUIRE(parse_config(printed, back, errors), (errors.empty() ? "" : errors.front()));
    BOOST_TEST(print_config(back) == printed);
    BOOST_TEST(changed_restart_settings(c, back).empty());
    // The defaults round-trip too: the one complaint is that required callers are not listed.
    Config d, d2;
    errors.clear();
    BOOST_TEST(!parse_config(print_config(d), d2, errors));
    BOOST_TEST(errors.size() == 1u);
    BOOST_TEST(mentions(errors, "callers.list"));
    BOOST_TEST(d2.auth.aksk.security_token.empty());
}

BOOST_AUTO_TEST_CASE(restart_settings_diff) {
    Config a;
    a.callers.required = false;
    Config b = a;
    BOOST_TEST(changed_restart_settings(a, b).empty());
    b.callers.list.push_back(CallerConfig{});  // callers: applied by SIGHUP
    b.callers.metrics_require_auth = true;
    b.log.level = "debug";  // applied by SIGHUP
    BOOST_TEST(changed_restart_settings(a, b).empty());
    b.upstream.pool_size = 7;
    b.listen.port = 1234;
    b.log.access = "/var/log/x";
    b.response.link_host_suffixes = {"example.com"};
    b.auth.token = SecretRef{"", "/run/token"};  // where the secret comes from: a restart
    b.admin.enabled = true;
    const auto changed = changed_restart_settings(a, b);
    const std::vector<std::string> expected = {
        "admin.enabled",     "auth.token", "listen.port", "log.access", "response.link_host_suffixes",
        "upstream.pool_size"};  // sorted
    BOOST_TEST(changed == expected, boost::test_tools::per_element());
    Config e = a;
    e.auth.token = SecretRef{"OTHER_VAR", ""};
    BOOST_TEST(changed_restart_settings(a, e) == std::vector<std::string>{"auth.token.env"},
               boost::test_tools::per_element());
}

// --check-config resolves every secret and loads every file as start-up does, and lists every problem.
BOOST_AUTO_TEST_CASE(check_resources_lists_every_problem) {
    const test::Pki pki = test::make_pki();
    TempDir d("rdsgw-res");
    ::setenv("RDSGW_RES_TOKEN", "tok", 1);
    ::setenv("RDSGW_RES_SK", "sk", 1);
    Config c;
    c.auth.token = SecretRef{"RDSGW_RES_TOKEN", ""};
    c.upstream.ca_file = pki.ca_cert;
    c.listen.tls_cert_file = pki.server_cert;
    c.listen.tls_key_file = pki.server_key;
    c.listen.client_ca_file = pki.ca_cert;
    CallerConfig k;
    k.name = "sdk-caller";
    k.access_key = "AK";
    k.secret_key = SecretRef{"RDSGW_RES_SK", ""};
    c.callers.list.push_back(k);
    c.log.access = d.file("access.log");
    BOOST_TEST(check_resources(c).empty());

    // The three bad configs of issue 18, all at once.
    ::unsetenv("RDSGW_RES_SK");
    c.upstream.ca_file = d.file("missing-ca.pem");
    c.listen.tls_cert_file = d.file("missing-cert.pem");
    const auto problems = check_resources(c);
    BOOST_TEST(mentions(problems,
                        "callers.list[0].secret_key (caller sdk-caller): environment variable RDSGW_RES_SK"));
    BOOST_TEST(mentions(problems, "upstream.ca_file: cannot load CA " + d.file("missing-ca.pem")));
    BOOST_TEST(mentions(problems, "listen.tls_cert_file: cannot load " + d.file("missing-cert.pem")));
    BOOST_TEST(problems.size() == 3u);
    for (auto& p : problems) BOOST_TEST_MESSAGE(p);

    // A key that does not belong to the certificate, a client CA that is not PEM, an unwritable log.
    c.listen.tls_cert_file = pki.server_cert;
    c.listen.tls_key_file = pki.wrong_host_key;
    c.listen.client_ca_file = d.write("garbage.pem", "not a certificate");
    c.log.access = "/proc/rdsgw-no-such-dir/access.log";
    ::setenv("RDSGW_RES_SK", "sk", 1);
    c.upstream.ca_file = pki.ca_cert;
    const auto more = check_resources(c);
    BOOST_TEST(mentions(more, "listen.tls_key_file"));
    BOOST_TEST(mentions(more, "listen.client_ca_file"));
    BOOST_TEST(mentions(more, "log.access"));
    BOOST_TEST(more.size() == 3u);
    ::unsetenv("RDSGW_RES_TOKEN");
    ::unsetenv("RDSGW_RES_SK");
    BOOST_TEST(mentions(check_secrets(c), "auth.token: environment variable RDSGW_RES_TOKEN"));
}

BOOST_AUTO_TEST_CASE(check_secrets_follows_the_auth_mode) {
    Config c;
    c.auth.mode = AuthMode::aksk;
    c.auth.aksk.ak = SecretRef{"RDSGW_NO_AK", ""};
    c.auth.aksk.sk = SecretRef{"RDSGW_NO_SK", ""};
    c.auth.aksk.security_token = SecretRef{"RDSGW_NO_ST", ""};
    auto p = check_secrets(c);
    BOOST_TEST(p.size() == 3u);  // all three, not the first only; auth.token is not used in this mode
    BOOST_TEST(!mentions(p, "auth.token"));
    c.auth.mode = AuthMode::iam;
    c.auth.iam.password = SecretRef{"RDSGW_NO_PW", ""};
    p = check_secrets(c);
    BOOST_TEST(p.size() == 1u);
    BOOST_TEST(mentions(p, "auth.iam.password"));
}
