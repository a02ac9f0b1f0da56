// The response contract end to end: rds-mock serves every answer variant (normal, the documentation's
// example, not JSON, HTML, empty, an array, bad times and sizes, custom bodies, both expiry field names,
// RDS and non-RDS errors, gzip) and the test checks what a caller of the real gateway sees: the canonical
// form, or a 502 RDSGW error naming the JSON path and never echoing a link, its query string or a body
// value; RDS errors passing through; and the response.* options. The cache is disabled and every request
// uses its own backup id, so each case goes upstream.
#define BOOST_TEST_MODULE contract
#include <regex>

#include "harness.hpp"
#include "rdsgw/timefmt.hpp"

using namespace rdsgw::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

std::string next_backup() {
    static int n = 0;
    char b[32];
    std::snprintf(b, sizeof b, "contract%04d", ++n);
    return b;
}

struct Fixture {
    Pki pki = make_pki();
    MockServer mock{&pki};

    // Cache off, a breaker that does not open during a test case, plus `patch`.
    json::value config(const std::string& patch = "{}") {
        auto cfg = base_config(mock, &pki);
        merge(cfg, json::parse(R"({"cache":{"enabled":false},"retry":{"breaker_failures":1000}})"));
        merge(cfg, json::parse(patch));
        return cfg;
    }
    // Resets the mock to its defaults and applies `behaviour`.
    void serve(const std::string& behaviour) {
        mock.reset();
        mock.configure(behaviour);
    }
    void serve_custom(const std::string& body) {
        serve(json::serialize(json::object{{"body_mode", "custom"}, {"custom_body", body}}));
    }
};

std::vector<std::pair<std::string, std::string>> env() {
    return {{"RDS_AUTH_TOKEN", "contract-token"}};
}

Response fetch(GatewayProc& gw) {
    return gw.get(backup_path(next_backup()), with_key());
}

bool contains(const std::string& hay, const std::string& needle) {
    return hay.find(needle) != std::string::npos;
}

std::string str(const json::value& v) {
    return std::string(v.as_string());
}

// The caller got the gateway's own 502 whose message is exactly `message` (or, when `exact` is false,
// contains it), in the RDS error shape with the request id, and no link or link part anywhere in the body.
void expect_502(const Response& r, const std::string& message, bool exact = true) {
    BOOST_TEST_REQUIRE(r.status == 502u, r.body);
    BOOST_TEST(contains(r.header("content-type"), "application/json"));
    const auto b = r.json().as_object();
    BOOST_TEST(str(b.at("error_code")) == "RDSGW.502");
    BOOST_TEST(str(b.at("request_id")) == r.header("x-request-id"));
    const std::string msg = str(b.at("error_msg"));
    if (exact)
        BOOST_TEST(msg == message);
    else
        BOOST_TEST(contains(msg, message), msg);
    for (const char* secret :
         {"myhuaweicloud", "example.org", "AccessKeyId", "Signature", "mocksig", "Expires", "?"})
        BOOST_TEST(!contains(r.body, secret), secret);
}

// No link query string ever reached the gateway's logs (access log and warnings are on stdout).
void expect_clean_logs(const GatewayProc& gw) {
    const std::string out = gw.child.output();
    for (const char* secret : {"AccessKeyId", "Signature=", "mocksig", "SECRETSIG"})
        BOOST_TEST(!contains(out, secret), secret);
}

const std::regex kCanonicalTime(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{4})");

// A canonical answer from the mock's normal mode: fields in canonical order, sizes integers, the expiry
// under its canonical name in the canonical format, about link_lifetime_s (900 s) from now.
void expect_canonical_mock_answer(const Response& r, bool legacy) {
    BOOST_TEST_REQUIRE(r.status == 200u, r.body);
    BOOST_TEST(contains(r.header("content-type"), "application/json"));
    const auto body = r.json().as_object();
    std::vector<std::string> top;
    for (const auto& kv : body) top.emplace_back(kv.key());
    BOOST_TEST(top == (std::vector<std::string>{"files", "bucket"}), boost::test_tools::per_element());
    BOOST_TEST(str(body.at("bucket")) == "rdsbucket.demo");
    const auto& files = body.at("files").as_array();
    BOOST_TEST_REQUIRE(files.size() == 2u);
    const auto now = std::chrono::system_clock::now();
    for (std::size_t i = 0; i < files.size(); ++i) {
        BOOST_TEST_CONTEXT("files[" << i << "]") {
            const auto& f = files[i].as_object();
            std::vector<std::string> keys;
            for (const auto& kv : f) keys.emplace_back(kv.key());
            std::vector<std::string> want = {"name", "size", "download_link", "link_expired_time"};
            if (legacy) want.emplace_back("link_expired_link");
            want.emplace_back("database_name");
            BOOST_TEST(keys == want, boost::test_tools::per_element());
            BOOST_TEST_REQUIRE(f.at("size").is_int64());
            BOOST_TEST(f.at("size").as_int64() == 2803 + static_cast<std::int64_t>(i));
            BOOST_TEST(str(f.at("download_link")).rfind("https://obs.cn-north-4.myhuaweicloud.com/", 0) ==
                       0u);
            const std::string t = str(f.at("link_expired_time"));
            BOOST_TEST(std::regex_match(t, kCanonicalTime), t);
            const auto parsed = rdsgw::parse_rds_time(t);
            BOOST_TEST_REQUIRE(parsed.has_value());
            BOOST_TEST(parsed->offset_minutes == 480);  // the mock writes Beijing time; its offset is kept
            const auto left = std::chrono::duration_cast<std::chrono::seconds>(parsed->utc - now).count();
            BOOST_TEST((left > 900 - 60 && left <= 900), left);
            if (legacy) BOOST_TEST(str(f.at("link_expired_link")) == t);
        }
    }
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(every_expiry_field_spelling_reaches_callers_in_canonical_form, Fixture) {
    GatewayProc gw(config(), env());
    for (const char* field : {"link_expired_time", "link_expired_link", "both"}) {
        BOOST_TEST_CONTEXT(field) {
            serve(std::string(R"({"expiry_field":")") + field + "\"}");
            const auto r = fetch(gw);
            expect_canonical_mock_answer(r, false);
            BOOST_TEST(mock.stat("rds_requests") == 1);
        }
    }
    // Two different instants under the two names: refused, naming the path, echoing neither time.
    serve(R"({"expiry_field":"both_different"})");
    const auto r = fetch(gw);
    expect_502(r, "invalid upstream answer at files[0].link_expired_link: differs from link_expired_time");
    BOOST_TEST(!contains(r.body, "+0800"));
    expect_clean_logs(gw);
}

BOOST_FIXTURE_TEST_CASE(custom_answer_is_rewritten_exactly_to_the_canonical_form, Fixture) {
    GatewayProc gw(config(), env());
    // Shuffled members, white space, a string size, an integer size, the misnamed field with a
    // padded "+08:00" time, a "Z" time, escaped slashes: one canonical, compact answer.
    serve_custom(R"( {"bucket" : "b",
        "files": [
          {"database_name": "db1", "link_expired_link": " 2030-11-28T10:15:14+08:00 ",
           "download_link": "https:\/\/obs.cn-north-4.myhuaweicloud.com/b/a.qp?AccessKeyId=AK&Signature=SECRETSIG",
           "size": "2803", "name": "a.qp"},
          {"name": "b.qp", "size": 2000, "link_expired_time": "2030-11-28T02:15:14Z",
           "download_link": "https://obs.cn-north-4.myhuaweicloud.com/b/b.qp"}
        ]} )");
    const auto r = fetch(gw);
    BOOST_TEST_REQUIRE(r.status == 200u, r.body);
    BOOST_TEST(
        r.body ==
        R"({"files":[{"name":"a.qp","size":2803,)"
        R"("download_link":"https://obs.cn-north-4.myhuaweicloud.com/b/a.qp?AccessKeyId=AK&Signature=SECRETSIG",)"
        R"("link_expired_time":"2030-11-28T10:15:14+0800","database_name":"db1"},)"
        R"({"name":"b.qp","size":2000,"download_link":"https://obs.cn-north-4.myhuaweicloud.com/b/b.qp",)"
        R"("link_expired_time":"2030-11-28T02:15:14+0000"}],"bucket":"b"})");
    BOOST_TEST(r.header("content-length") == std::to_string(r.body.size()));
    expect_clean_logs(gw);
}

BOOST_FIXTURE_TEST_CASE(invalid_answers_become_502_naming_the_json_path, Fixture) {
    GatewayProc gw(config(), env());
    const std::string link =
        "https://obs.cn-north-4.myhuaweicloud.com/b/a.qp?AccessKeyId=AK&Signature=SECRETSIG";
    auto file = [&](const std::string& name, const std::string& size, const std::string& dl,
                    const std::string& t) {
        return R"({"name":)" + name + R"(,"size":)" + size + R"(,"download_link":)" + dl +
               R"(,"link_expired_time":)" + t + "}";
    };
    const std::string good = file("\"a.qp\"", "1", "\"" + link + "\"", "\"2030-01-01T00:00:00+0800\"");
    struct Case {
        std::string behaviour;  // mock behaviour (a JSON object)
        std::string message;    // exact error_msg, or a part of it when !exact
        bool exact;
        std::vector<std::string> never;  // body values that must not be echoed
    };
    auto custom = [](const std::string& body) {
        return json::serialize(json::object{{"body_mode", "custom"}, {"custom_body", body}});
    };
    const std::vector<Case> cases = {
        {R"({"body_mode":"doc_example"})",
         "invalid upstream answer: ",
         false,
         {"43e4feaab48f", "2018-08-016", "xxxxxx"}},
        {R"({"body_mode":"not_json"})", "invalid upstream answer: ", false, {"this is not JSON"}},
        {R"({"body_mode":"html"})", "invalid upstream answer: ", false, {"<html", "Welcome", "captive"}},
        {R"({"body_mode":"empty"})", "invalid upstream answer: ", false, {}},
        {R"({"body_mode":"array"})", "invalid upstream answer: not a JSON object", true, {}},
        {R"({"body_mode":"bad_time"})",
         "invalid upstream answer at files[0].link_expired_time: not a valid time",
         true,
         {"2018-13-01"}},
        {R"({"body_mode":"bad_size"})", "invalid upstream answer at files[0].size: negative", true, {"-5"}},
        {custom(R"({"bucket":"b"})"), "invalid upstream answer at files: missing", true, {}},
        {custom(R"({"files":{"x":1}})"), "invalid upstream answer at files: not an array", true, {}},
        {custom(R"({"files":[)" + good + "," +
                file("\"a.qp\"", "\"12kb\"", "\"" + link + "\"", "\"2030-01-01T00:00:00+0800\"") + "]}"),
         "invalid upstream answer at files[1].size: not an integer",
         true,
         {"12kb"}},
        // A size with a fraction or an exponent is refused, not rounded (0.99999999999999999 would be 1).
        {custom(R"({"files":[)" +
                file("\"a.qp\"", "0.99999999999999999", "\"" + link + "\"", "\"2030-01-01T00:00:00+0800\"") +
                "]}"),
         "invalid upstream answer at files[0].size: not an integer",
         true,
         {"0.9999"}},
        {custom(R"({"files":[)" +
                file("\"a.qp\"", "1", "\"https://obs.myhuaweicloud.com:99999/b/f?Signature=SECRETSIG\"",
                     "\"2030-01-01T00:00:00+0800\"") +
                "]}"),
         "invalid upstream answer at files[0].download_link: port out of range",
         true,
         {"99999", "SECRETSIG"}},
        {custom(R"({"files":[)" +
                file("\"../etc/passwd\"", "1", "\"" + link + "\"", "\"2030-01-01T00:00:00+0800\"") + "]}"),
         "invalid upstream answer at files[0].name: contains a path separator",
         true,
         {"passwd"}},
        {custom(R"({"files":[)" + good + "," + good + "," +
                file("\"a.qp\"", "1", "\"ftp://obs.cn-north-4.myhuaweicloud.com/x?Signature=SECRETSIG\"",
                     "\"2030-01-01T00:00:00+0800\"") +
                "]}"),
         "invalid upstream answer at files[2].download_link: scheme is not https",
         true,
         {"ftp"}},
        {custom(R"({"files":[)" +
                file("\"a.qp\"", "1", "\"https://user:pw@obs.x.com/a?Signature=SECRETSIG\"",
                     "\"2030-01-01T00:00:00+0800\"") +
                "]}"),
         "invalid upstream answer at files[0].download_link: userinfo not allowed",
         true,
         {"user:", "pw@"}},
        {custom(R"({"files":[)" + file("\"a.qp\"", "1", "\"" + link + "\"", "\"2018-08-16 10:15:14+0800\"") +
                "]}"),
         "invalid upstream answer at files[0].link_expired_time: not a valid time",
         true,
         {"2018-08-16"}},
        {custom(R"({"files":[{"name":"a.qp","size":1,"download_link":")" + link + R"("}]})"),
         "invalid upstream answer at files[0].link_expired_time: missing",
         true,
         {}},
        {custom(R"({"files":[)" + good + R"(],"bucket":["b"]})"),
         "invalid upstream answer at bucket: not a string",
         true,
         {}},
        {custom(R"({"files":[],"files":[]})"), "invalid upstream answer: duplicate key", true, {}},
    };
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT(c.behaviour) {
            serve(c.behaviour);
            const auto r = fetch(gw);
            expect_502(r, c.message, c.exact);
            for (const auto& v : c.never) BOOST_TEST(!contains(r.body, v), v);
            BOOST_TEST(mock.stat("rds_requests") == 1);  // a bad 200 answer is not retried
        }
    }
    expect_clean_logs(gw);
}

BOOST_FIXTURE_TEST_CASE(well_formed_rds_errors_pass_through_with_status_and_body, Fixture) {
    GatewayProc gw(config(), env());
    struct Case {
        unsigned status;
        std::string code, msg;
    };
    for (const Case& c :
         {Case{400, "DBS.200001", "parameter error"}, Case{403, "DBS.200010", "no permission"},
          Case{500, "DBS.108000", "internal error"}}) {
        BOOST_TEST_CONTEXT(c.status) {
            serve(json::serialize(
                json::object{{"status", c.status}, {"error_code", c.code}, {"error_msg", c.msg}}));
            const auto r = fetch(gw);
            BOOST_TEST(r.status == c.status);
            BOOST_TEST(r.body == R"({"error_code":")" + c.code + R"(","error_msg":")" + c.msg + R"("})");
            BOOST_TEST(r.header("x-upstream-request-id").rfind("mock-", 0) == 0u);
        }
    }
    // A missing backup: the mock's 404 DBS.200002 reaches the caller as it is.
    const std::string missing = next_backup();
    serve(R"({"missing_backups":[")" + missing + R"("]})");
    const auto r = gw.get(backup_path(missing), with_key());
    BOOST_TEST(r.status == 404u);
    BOOST_TEST(r.body == R"({"error_code":"DBS.200002","error_msg":"backup not found"})");
}

BOOST_FIXTURE_TEST_CASE(non_rds_error_pages_become_502_naming_the_upstream_status, Fixture) {
    GatewayProc gw(config(), env());
    serve(R"({"status":500,"error_body_mode":"html"})");
    auto r = fetch(gw);
    expect_502(r, "upstream answered HTTP 500 without an RDS error body");
    BOOST_TEST(!contains(r.body, "<html"));
    BOOST_TEST(mock.stat("rds_requests") == 1);  // a 500 is not retried

    serve(R"({"status":503,"error_body_mode":"empty"})");
    r = fetch(gw);
    expect_502(r, "upstream answered HTTP 503 without an RDS error body", false);
    BOOST_TEST(mock.stat("rds_requests") >= 1);

    serve(R"({"status":404,"error_body_mode":"html"})");
    r = fetch(gw);
    expect_502(r, "upstream answered HTTP 404 without an RDS error body");
}

BOOST_FIXTURE_TEST_CASE(encoded_answers_are_refused_and_identity_is_requested, Fixture) {
    GatewayProc gw(config(), env());
    serve(R"({"gzip":true})");
    auto r = fetch(gw);
    expect_502(r, "upstream sent an encoded answer (Content-Encoding) although identity was requested");
    BOOST_TEST(str(mock.stats().at("last_rds_headers").at("accept-encoding")) == "identity");
    // An encoded error body is refused too, not passed through as bytes the caller cannot read.
    serve(R"({"gzip":true,"status":400})");
    r = fetch(gw);
    expect_502(r, "upstream sent an encoded answer (Content-Encoding) although identity was requested");
    // The same answers without encoding are fine (the refusal is about the encoding).
    serve(R"({"gzip":false})");
    expect_canonical_mock_answer(fetch(gw), false);
    BOOST_TEST(str(mock.stats().at("last_rds_headers").at("accept-encoding")) == "identity");
}

BOOST_FIXTURE_TEST_CASE(emit_legacy_expiry_field_writes_both_names_equal, Fixture) {
    GatewayProc gw(config(R"({"response":{"emit_legacy_expiry_field":true}})"), env());
    for (const char* field : {"link_expired_time", "link_expired_link", "both"}) {
        BOOST_TEST_CONTEXT(field) {
            serve(std::string(R"({"expiry_field":")") + field + "\"}");
            expect_canonical_mock_answer(fetch(gw), true);
        }
    }
    serve(R"({"expiry_field":"both_different"})");
    expect_502(fetch(gw),
               "invalid upstream answer at files[0].link_expired_link: differs from link_expired_time");
}

BOOST_FIXTURE_TEST_CASE(link_host_suffixes_refuse_other_hosts, Fixture) {
    GatewayProc gw(config(R"({"response":{"link_host_suffixes":["example.org"]}})"), env());
    serve("{}");  // the mock's links are on obs.cn-north-4.myhuaweicloud.com
    expect_502(fetch(gw), "invalid upstream answer at files[0].download_link: host not allowed");

    auto one_link = [](const std::string& link) {
        return R"({"files":[{"name":"a.qp","size":1,"download_link":")" + link +
               R"(","link_expired_time":"2030-01-01T00:00:00+0800"}]})";
    };
    // The suffix matches whole labels only.
    serve_custom(one_link("https://obs.evil-example.org/a?Signature=SECRETSIG"));
    expect_502(fetch(gw), "invalid upstream answer at files[0].download_link: host not allowed");
    serve_custom(one_link("https://example.org.evil.com/a?Signature=SECRETSIG"));
    expect_502(fetch(gw), "invalid upstream answer at files[0].download_link: host not allowed");
    // A host under the suffix (any case) passes, its link unchanged.
    for (const char* link : {"https://obs.example.org/b/a?Signature=SECRETSIG", "https://OBS.Example.ORG/b/a",
                             "https://example.org/b/a"}) {
        BOOST_TEST_CONTEXT(link) {
            serve_custom(one_link(link));
            const auto r = fetch(gw);
            BOOST_TEST_REQUIRE(r.status == 200u, r.body);
            BOOST_TEST(str(r.json().at("files").at(0).at("download_link")) == link);
        }
    }
    expect_clean_logs(gw);
}

BOOST_FIXTURE_TEST_CASE(unknown_fields_pass_through_by_default_and_can_be_dropped, Fixture) {
    const std::string body =
        R"({"files":[{"name":"a.qp","size":1,"download_link":"https://obs.example.org/a",)"
        R"("link_expired_time":"2030-01-01T00:00:00+0800","x_file_extra":"v","x_num":1}],)"
        R"("bucket":"b","x_top_extra":{"k":[1,true,null]}})";
    {
        GatewayProc gw(config(), env());
        serve_custom(body);
        const auto r = fetch(gw);
        BOOST_TEST_REQUIRE(r.status == 200u, r.body);
        BOOST_TEST(r.body ==
                   R"({"files":[{"name":"a.qp","size":1,"download_link":"https://obs.example.org/a",)"
                   R"("link_expired_time":"2030-01-01T00:00:00+0800","x_file_extra":"v","x_num":1}],)"
                   R"("bucket":"b","x_top_extra":{"k":[1,true,null]}})");
    }
    {
        GatewayProc gw(config(R"({"response":{"drop_unknown_fields":true}})"), env());
        serve_custom(body);
        const auto r = fetch(gw);
        BOOST_TEST_REQUIRE(r.status == 200u, r.body);
        BOOST_TEST(r.body ==
                   R"({"files":[{"name":"a.qp","size":1,"download_link":"https://obs.example.org/a",)"
                   R"("link_expired_time":"2030-01-01T00:00:00+0800"}],"bucket":"b"})");
    }
}

BOOST_FIXTURE_TEST_CASE(max_body_bytes_refuses_larger_answers, Fixture) {
    GatewayProc gw(config(R"({"response":{"max_body_bytes":256}})"), env());
    serve(R"({"files":2})");  // about 700 bytes
    // The read is bounded by max_body_bytes itself: the answer is refused while it is read.
    expect_502(fetch(gw), "upstream answer too large");
    serve(R"({"files":0})");  // {"files":[],"bucket":"rdsbucket.demo"}
    const auto r = fetch(gw);
    BOOST_TEST(r.status == 200u);
    BOOST_TEST(r.body == R"({"files":[],"bucket":"rdsbucket.demo"})");
}
