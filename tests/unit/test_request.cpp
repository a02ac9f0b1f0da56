#define BOOST_TEST_MODULE request
#include <boost/test/unit_test.hpp>

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
        {"/v3//backup-files" + ok_q, 400, "project_id"},
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
