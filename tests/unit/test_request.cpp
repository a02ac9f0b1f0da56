#define BOOST_TEST_MODULE request
#include <boost/test/unit_test.hpp>

#include "rdsgw/request.hpp"

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

BOOST_AUTO_TEST_CASE(fast_patterns_agree_with_std_regex) {
    const std::vector<std::string> patterns = {"[A-Za-z0-9]{1,64}", "[0-9a-f]{32}",         "[a-z0-9_.]{2,5}",
                                               "[A-Z]{3}",          "[0-9a-f]{32}br0[134]", "(abc|def)",
                                               "[^x]{1,3}"};
    const std::vector<std::string> inputs = {"",
                                             "a",
                                             "abc",
                                             "ABC",
                                             "a_b",
                                             "a.b",
                                             "0123456789abcdef0123456789abcdef",
                                             "0123456789abcdef0123456789abcdeF",
                                             std::string(64, 'z'),
                                             std::string(65, 'z'),
                                             "abc-def",
                                             "def",
                                             "x",
                                             "yy",
                                             "a\nb"};
    for (const auto& p : patterns) {
        IdPattern fast(p);
        std::regex re(p, std::regex::ECMAScript);
        for (const auto& in : inputs)
            BOOST_TEST(fast.match(in) == std::regex_match(in, re), p << " on " << in);
    }
    BOOST_TEST(IdPattern("[A-Za-z0-9]{1,64}").is_fast());
    BOOST_TEST(!IdPattern("(abc|def)").is_fast());
    BOOST_TEST(!IdPattern("[0-9a-f]{32}br0[134]").is_fast());
}
