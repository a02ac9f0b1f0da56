#define BOOST_TEST_MODULE request
#include <boost/test/unit_test.hpp>

#include "rdsgw/framing.hpp"
#include "rdsgw/request.hpp"

#include <re2/re2.h>

#include <chrono>
#include <stdexcept>

namespace rdsgw {
inline std::ostream& operator<<(std::ostream& o, Route r) {
    return o << route_name(r);
}
}  // namespace rdsgw

using namespace rdsgw;

namespace {
const RequestConfig kCfg;
const RequestRules& rules() {
    static RequestRules r(kCfg);
    return r;
}
const std::string P = "97b026aa9cc4417888c14c84a1ad9860";
const std::string B = "c0c9f155c7b7423a9d30f0175998b63bbr01";
}  // namespace

BOOST_AUTO_TEST_CASE(valid_request) {
    auto r = parse_backup_files("/v3/" + P + "/backup-files?backup_id=" + B, rules());
    BOOST_REQUIRE(std::holds_alternative<BackupFilesRequest>(r));
    BOOST_TEST(std::get<BackupFilesRequest>(r).project_id == P);
    BOOST_TEST(std::get<BackupFilesRequest>(r).backup_id == B);
    // One percent-decoding pass of an allowed character.
    auto r2 = parse_backup_files("/v3/%39" + P.substr(1) + "/backup-files?backup_id=" + B, rules());
    BOOST_REQUIRE(std::holds_alternative<BackupFilesRequest>(r2));
    BOOST_TEST(std::get<BackupFilesRequest>(r2).project_id == P);
}

struct Case {
    std::string target;
    unsigned status;
    std::string field;
};

BOOST_AUTO_TEST_CASE(bad_requests_table) {
    const std::string ok_q = "?backup_id=" + B;
    const std::vector<Case> cases = {
        {"/V3/" + P + "/backup-files" + ok_q, 400, "version_id"},
        {"/v2/" + P + "/backup-files" + ok_q, 400, "version_id"},
        {"/v3.0/" + P + "/backup-files" + ok_q, 400, "version_id"},
        {"/%76%33x/" + P + "/backup-files" + ok_q, 400, "version_id"},
        {"/v3//backup-files" + ok_q, 400, "request-target"},  // '//' anywhere in the path
        {"/v3//" + P + "/backup-files" + ok_q, 400, "request-target"},
        {"/v3/" + P + "//backup-files" + ok_q, 400, "request-target"},
        {"/v3/" + P + "/backup-files//" + ok_q, 400, "request-target"},
        {"/v3/" + P + "-x/backup-files" + ok_q, 400, "project_id"},
        {"/v3/" + std::string(65, 'a') + "/backup-files" + ok_q, 400, "project_id"},
        {"/v3/%zz/backup-files" + ok_q, 400, "request-target"},
        {"/v3/" + P + "%2500/backup-files" + ok_q, 400, "project_id"},  // decoded once: "%00" is not alnum
        {"/v3/" + P + "/backup-files", 400, "backup_id"},
        {"/v3/" + P + "/backup-files?", 400, "backup_id"},
        {"/v3/" + P + "/backup-files?backup_id=", 400, "backup_id"},
        {"/v3/" + P + "/backup-files?backup_id", 400, "backup_id"},
        {"/v3/" + P + "/backup-files?backup_id=" + B + "&backup_id=" + B, 400, "backup_id"},
        {"/v3/" + P + "/backup-files?backup_id=a+b", 400, "backup_id"},
        {"/v3/" + P + "/backup-files?backup_id=a%20b", 400, "backup_id"},
        {"/v3/" + P + "/backup-files?backup_id=%G1", 400, "backup_id"},
        {"/v3/" + P + "/backup-files?backup_id=" + std::string(65, 'b'), 400, "backup_id"},
        {"/v3/" + P + "/backup-files?backup_id=" + B + "&limit=1", 400, "limit"},
        {"/v3/" + P + "/backup-files?backup_id=" + B + "&%00=1", 400, "query"},
        {"/v3/" + P + "/backup-files?backup_id=" + B + "&backup%5Fid=" + B, 400,
         "backup_id"},                                                   // decoded name
        {"/v3/" + P + "/backup%2Efiles" + ok_q, 400, "request-target"},  // an encoded dot stays refused
        {"http://evil.example/v3/" + P + "/backup-files" + ok_q, 400, "request-target"},
        {"*", 400, "request-target"},
        {"/v3/" + P + "%2Fx/backup-files" + ok_q, 400, "request-target"},
        {"/v3/" + P + "%2fx/backup-files" + ok_q, 400, "request-target"},
        {"/v3/" + P + "%5cx/backup-files" + ok_q, 400, "request-target"},
        {"/v3/../v3/" + P + "/backup-files" + ok_q, 400, "request-target"},
        {"/v3/./" + P + "/backup-files" + ok_q, 400, "request-target"},
        {"/v3/%2e%2e/backup-files" + ok_q, 400, "request-target"},
        {"/v3/" + P + "/backup-files" + ok_q + "#frag", 400, "request-target"},
        {"/v3/" + P + "/backup-files" + ok_q + "\r\nX-Evil: 1", 400, "request-target"},
        {"/v3/" + P + "/backup-files" + ok_q + "\n", 400, "request-target"},
        {"/v3/" + P + "/backup-files" + ok_q + "%0d%0a", 400, "backup_id"},
        {"/v3/" + P + "/backup-files?backup_id=a\tb", 400, "request-target"},
        {"/v3/" + P + "\\backup-files" + ok_q, 400, "request-target"},
        {"/v3/" + P + "/backup-files" + ok_q + "\x7f", 400, "request-target"},
        {"/v3/" + P + "/backup-files" + ok_q + "\xc3\xa9", 400, "request-target"},
        {"//v3/" + P + "/backup-files" + ok_q, 400, "request-target"},
        {"/v3/" + P + "/backup-files/" + ok_q, 404, "request-target"},
        {"/v3/" + P + "/backups" + ok_q, 404, "request-target"},
    };
    for (const auto& c : cases) {
        auto r = parse_backup_files(c.target, rules());
        BOOST_TEST_CONTEXT(c.target) {
            BOOST_REQUIRE(std::holds_alternative<RequestError>(r));
            auto& e = std::get<RequestError>(r);
            BOOST_TEST(e.status == c.status);
            BOOST_TEST(e.field == c.field);
            if (c.status == 400 && c.field != "request-target" && c.field != "query")
                BOOST_TEST(e.message.find(c.field) != std::string::npos);
        }
    }
}

// RFC 3986 §6.2.2.2: an encoded unreserved character is that character, in every fixed part of the target
// and in parameter names alike (backup%2Dfiles was a 404 while %763 and backup%5Fid were accepted).
BOOST_AUTO_TEST_CASE(encoded_unreserved_characters_are_the_characters_everywhere) {
    for (const std::string& t :
         {"/%763/" + P + "/backup-files?backup_id=" + B, "/v3/" + P + "/backup%2Dfiles?backup_id=" + B,
          "/v3/" + P + "/%62ackup%2dfile%73?backup_id=" + B, "/v3/" + P + "/backup-files?backup%5Fid=" + B,
          "/%76%33/" + P + "/%62%61%63%6B%75%70%2D%66%69%6C%65%73?%62ackup_id=" + B}) {
        BOOST_TEST_CONTEXT(t) {
            BOOST_TEST(classify(t) == Route::backup_files);
            auto r = parse_backup_files(t, rules());
            BOOST_REQUIRE(std::holds_alternative<BackupFilesRequest>(r));
            BOOST_TEST(std::get<BackupFilesRequest>(r).project_id == P);
            BOOST_TEST(std::get<BackupFilesRequest>(r).backup_id == B);
        }
    }
    BOOST_TEST(classify("/heal%74hz") == Route::healthz);
    BOOST_TEST(classify("/%6Detrics?x=1") == Route::metrics);
    BOOST_TEST(classify("/admin/cach%65") == Route::admin_cache);
    BOOST_TEST(classify("/admin/status%2Ejson") ==
               Route::not_found);                                // '.' is not decoded: check_target refuses
    BOOST_TEST(classify("/admin%2Fcache") == Route::not_found);  // nor '/'
    std::string buf;
    BOOST_TEST(normalize_path("/a%2Db%2e%2F%7E%25%zz%4", buf) == "/a-b%2e%2F~%25%zz%4");
    BOOST_TEST(normalize_path("/plain", buf) == "/plain");
}

BOOST_AUTO_TEST_CASE(double_slashes_anywhere_in_the_path) {
    BOOST_TEST(!check_target("//x").empty());
    BOOST_TEST(!check_target("/a//b").empty());
    BOOST_TEST(!check_target("/a/b//").empty());
    BOOST_TEST(check_target("/a/b?x=//").empty());  // the query is not a path
    BOOST_TEST(check_target("/a/b/").empty());
}

namespace {
// parse_purge_query's verdict: "" and the two strings when accepted, else "<status> <field>".
std::string purge(const std::string& target, std::string* project = nullptr, std::string* backup = nullptr) {
    std::string p = "unset", b = "unset";
    auto e = parse_purge_query(target, rules(), p, b);
    if (project) *project = p;
    if (backup) *backup = b;
    return e ? std::to_string(e->status) + " " + e->field : "";
}
}  // namespace

BOOST_AUTO_TEST_CASE(purge_query_is_both_ids_or_nothing) {
    std::string p, b;
    BOOST_TEST(purge("/admin/cache", &p, &b) == "");
    BOOST_TEST((p.empty() && b.empty()));  // everything
    BOOST_TEST(purge("/admin/cache?project_id=" + P + "&backup_id=" + B, &p, &b) == "");
    BOOST_TEST(p == P);
    BOOST_TEST(b == B);
    BOOST_TEST(purge("/admin/cache?backup%5Fid=" + B + "&project_id=%39" + P.substr(1), &p, &b) == "");
    BOOST_TEST(p == P);
    const std::vector<std::pair<std::string, std::string>> bad = {
        {"?project_id=&backup_id=", "400 project_id"},  // present but empty: was {"purged":N}, everything
        {"?project_id=" + P + "&backup_id=", "400 backup_id"},
        {"?project_id&backup_id=" + B, "400 project_id"},
        {"?", "400 project_id"},
        {"?&", "400 project_id"},
        {"?project_id=" + P, "400 backup_id"},
        {"?backup_id=" + B, "400 project_id"},
        {"?project_id=a&project_id=b&backup_id=c", "400 project_id"},  // was accepted, the last one won
        {"?project_id=" + P + "&backup_id=" + B + "&backup_id=" + B, "400 backup_id"},
        {"?project_id=" + P + "&backup_id=" + B + "&all=1", "400 all"},
        {"?project_id=" + P + "&backup_id=" + B + "&%00=1", "400 query"},
        {"?project_id=%zz&backup_id=" + B, "400 project_id"},
        {"?project_id=" + P + "-x&backup_id=" + B, "400 project_id"},
        {"?project_id=" + P + "&backup_id=" + std::string(300, 'b'), "400 backup_id"},
    };
    for (const auto& [q, want] : bad) BOOST_TEST(purge("/admin/cache" + q) == want, q);
}

BOOST_AUTO_TEST_CASE(host_ports) {
    for (const std::string ok : {"gw", "gw:80", "gw:0080", "127.0.0.1:1", "gw:65535", "[::1]", "[::1]:443"})
        BOOST_TEST(host_port_error(ok).empty(), ok);
    for (const std::string bad :
         {"gw:", "gw:99999", "1.2.3.4:65536", "gw:0", "gw:00000", "[::1]:", "[::1]:70000", "gw:8x"})
        BOOST_TEST(!host_port_error(bad).empty(), bad);
    BOOST_TEST(host_port_error("gw:99999").find("99999") == std::string::npos);  // no echo of the input
}

BOOST_AUTO_TEST_CASE(messages_do_not_echo_input) {
    auto r = parse_backup_files("/v3/SECRETVALUE-x/backup-files?backup_id=abc", rules());
    BOOST_REQUIRE(std::holds_alternative<RequestError>(r));
    BOOST_TEST(std::get<RequestError>(r).message.find("SECRETVALUE") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(configured_patterns) {
    RequestConfig cfg;
    cfg.project_id_pattern = "[0-9a-f]{32}";
    cfg.backup_id_pattern = "[0-9a-f]{32}br0[134]";
    RequestRules strict(cfg);
    BOOST_TEST(std::holds_alternative<BackupFilesRequest>(
        parse_backup_files("/v3/" + P + "/backup-files?backup_id=" + B, strict)));
    BOOST_TEST(std::holds_alternative<RequestError>(
        parse_backup_files("/v3/" + P + "/backup-files?backup_id=" + B.substr(0, 32) + "br02", strict)));
    BOOST_TEST(std::holds_alternative<RequestError>(
        parse_backup_files("/v3/" + P.substr(1) + "/backup-files?backup_id=" + B, strict)));
}

BOOST_AUTO_TEST_CASE(routes) {
    BOOST_TEST(classify("/healthz") == Route::healthz);
    BOOST_TEST(classify("/readyz?x=1") == Route::readyz);
    BOOST_TEST(classify("/metrics") == Route::metrics);
    BOOST_TEST(classify("/admin/cache") == Route::admin_cache);
    BOOST_TEST(classify("/v3/p/backup-files?backup_id=b") == Route::backup_files);
    BOOST_TEST(classify("/v9/p/backup-files") == Route::backup_files);  // then 400 naming version_id
    BOOST_TEST(classify("/") == Route::not_found);
    BOOST_TEST(classify("/v3/p/backup-files/x") == Route::not_found);
}

BOOST_AUTO_TEST_CASE(request_ids_and_language) {
    BOOST_TEST(is_sane_request_id("abc-DEF_1.2"));
    BOOST_TEST(!is_sane_request_id(""));
    BOOST_TEST(!is_sane_request_id(std::string(65, 'a')));
    BOOST_TEST(!is_sane_request_id("a b"));
    BOOST_TEST(!is_sane_request_id("a\r\nb"));
    auto a = make_request_id(), b = make_request_id();
    BOOST_TEST(a.size() == 32u);
    BOOST_TEST(a != b);
    BOOST_TEST(is_sane_request_id(a));
    BOOST_TEST(valid_language("EN-us") == "en-us");
    BOOST_TEST(valid_language("zh-cn") == "zh-cn");
    BOOST_TEST(valid_language("fr-fr").empty());
    BOOST_TEST(valid_language("en-us\r\nX: y").empty());
}

BOOST_AUTO_TEST_CASE(fast_patterns_agree_with_re2) {
    const std::vector<std::string> patterns = {
        "[A-Za-z0-9]{1,64}", "[0-9a-f]{32}", "[a-z0-9_.]{2,5}", "[A-Z]{3}", "[0-9a-f]{32}br0[134]",
        "(abc|def)",         "[^x]{1,3}",    "[A-Za-z0-9-]+",   "[-a-c]+",  "[a-c-]{0,2}",
        "[.-_]{1,2}",        "[+a]{1}",      "[]a]{1}",         "[a-c]*",   "[A-Z]{,3}"};
    const std::vector<std::string> inputs = {"",
                                             "a",
                                             "abc",
                                             "ABC",
                                             "a_b",
                                             "a.b",
                                             "-",
                                             "a-",
                                             "0123456789abcdef0123456789abcdef",
                                             "0123456789abcdef0123456789abcdeF",
                                             std::string(64, 'z'),
                                             std::string(65, 'z'),
                                             std::string(IdPattern::kMaxIdBytes, 'a'),
                                             "abc-def",
                                             "def",
                                             "x",
                                             "yy",
                                             "]a",
                                             "A{,3}",
                                             "a\nb",
                                             "\xc3\xa9",
                                             "a\xff"};
    re2::RE2::Options o;
    o.set_never_capture(true);
    for (const auto& p : patterns) {
        const IdPattern pattern(p);
        const re2::RE2 re(p, o);
        BOOST_REQUIRE_MESSAGE(re.ok(), p);
        for (const auto& in : inputs)
            BOOST_TEST(pattern.match(in) == re2::RE2::FullMatch(in, re), p << " on " << in);
    }
    BOOST_TEST(IdPattern("[A-Za-z0-9]{1,64}").is_fast());
    BOOST_TEST(IdPattern("[A-Za-z0-9-]+").is_fast());
    BOOST_TEST(IdPattern("[-a-c]+").is_fast());
    BOOST_TEST(!IdPattern("(abc|def)").is_fast());
    BOOST_TEST(!IdPattern("[0-9a-f]{32}br0[134]").is_fast());
    BOOST_TEST(!IdPattern("[+a]{1}").is_fast());
}

// Issue 14: patterns that made std::regex take exponential time or overflow its stack.
BOOST_AUTO_TEST_CASE(patterns_run_in_linear_time_and_bounded_stack) {
    const IdPattern nested("([A-Za-z0-9]+-?)+");  // std::regex: 8.6 s for 28 characters, doubling per char
    const IdPattern plus("[A-Za-z0-9-]+");        // std::regex: SIGSEGV (recursion) on 40,000 characters
    BOOST_TEST(!nested.is_fast());
    const std::string long_id(40000, 'a');
    const std::string bad_tail = std::string(28, 'a') + "!";
    const auto t0 = std::chrono::steady_clock::now();
    BOOST_TEST(!nested.match(long_id));
    BOOST_TEST(!plus.match(long_id));
    for (std::size_t n = 20; n <= IdPattern::kMaxIdBytes - 1; ++n) {
        BOOST_TEST(!nested.match(std::string(n, 'a') + "!"));
        BOOST_TEST(nested.match(std::string(n, 'a')));
    }
    BOOST_TEST(!nested.match(bad_tail));
    BOOST_TEST(nested.match("abc-def-"));
    // A generous bound (std::regex needed seconds for the 28-character id alone): RE2 needs microseconds.
    const auto took = std::chrono::steady_clock::now() - t0;
    BOOST_TEST(std::chrono::duration_cast<std::chrono::milliseconds>(took).count() < 2000);
}

BOOST_AUTO_TEST_CASE(ids_longer_than_the_cap_are_refused_before_matching) {
    for (const std::string p : {"[a-z]{1,1000}", "[a-z]+", "(a|b)+", "a*"}) {
        const IdPattern pattern(p);
        BOOST_TEST(pattern.match(std::string(IdPattern::kMaxIdBytes, 'a')), p);
        BOOST_TEST(!pattern.match(std::string(IdPattern::kMaxIdBytes + 1, 'a')), p);
    }
    RequestConfig cfg;
    cfg.backup_id_pattern = "[a-z]+";
    const RequestRules loose(cfg);
    auto r = parse_backup_files("/v3/" + P + "/backup-files?backup_id=" + std::string(40000, 'a'), loose);
    BOOST_REQUIRE(std::holds_alternative<RequestError>(r));
    BOOST_TEST(std::get<RequestError>(r).field == "backup_id");
}

BOOST_AUTO_TEST_CASE(invalid_patterns_report_re2s_reason) {
    BOOST_TEST(id_pattern_error("[A-Za-z0-9]{1,64}").empty());
    BOOST_TEST(id_pattern_error("([A-Za-z0-9]+-?)+").empty());
    BOOST_TEST(id_pattern_error("(abc").find("missing )") != std::string::npos);
    BOOST_TEST(id_pattern_error("[a-").find("missing ]") != std::string::npos);
    // ECMAScript features RE2 does not have: look-around and back-references.
    BOOST_TEST(id_pattern_error("(?=a)a").find("invalid perl operator") != std::string::npos);
    BOOST_TEST(!id_pattern_error("(a)\\1").empty());
    BOOST_TEST(id_pattern_error("a{1,5000}").find("invalid repetition size") != std::string::npos);
    BOOST_CHECK_THROW(IdPattern("(abc"), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(config_refuses_invalid_patterns_with_re2s_reason) {
    Config c;
    std::vector<std::string> errors;
    BOOST_TEST(!parse_config(R"({"callers":{"required":false},"request":{"project_id_pattern":"([a-z]+"}})",
                             c, errors));
    BOOST_TEST_REQUIRE(errors.size() == 1u);
    BOOST_TEST(errors[0] ==
               "request.project_id_pattern: is not a valid RE2 regular expression: missing ): ([a-z]+");
    errors.clear();
    c = Config{};
    BOOST_TEST(parse_config(R"({"callers":{"required":false},"request":{"backup_id_pattern":"([a-z]+-?)+"}})",
                            c, errors));
    BOOST_TEST(errors.empty());
}
