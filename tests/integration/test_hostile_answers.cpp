// Hostile upstream answers, written byte for byte by rds-mock's raw_answer (any status line, header lines and
// framing, then a close): what callers get for RDS error bodies under non-error statuses, repeated or
// oddly cased codings, transfer codings the gateway cannot decode, endless interim answers, error bodies
// with duplicate keys; and the Age of a cached refusal.
#define BOOST_TEST_MODULE hostile_answers
#include "harness.hpp"

using namespace rdsgw::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

const std::string kRdsError = R"({"error_code":"DBS.200001","error_msg":"param"})";
const std::string kGoodBody =
    R"({"files":[{"name":"a.qp","size":1,"download_link":"https://obs.cn-north-4.myhuaweicloud.com/b/a.qp",)"
    R"("link_expired_time":"2099-01-01T00:00:00+0800"}],"bucket":"b"})";
const std::string kContentEncodingRefusal =
    "upstream sent an encoded answer (Content-Encoding) although identity was requested";
const std::string kTransferEncodingRefusal =
    "upstream sent an encoded answer (Transfer-Encoding other than chunked) although none was requested";

// "HTTP/1.1 <status_line>" with `headers` (each ending in \r\n), Content-Length and Connection: close.
std::string answer(const std::string& status_line, const std::string& body, const std::string& headers = "") {
    return "HTTP/1.1 " + status_line + "\r\nContent-Type: application/json\r\n" + headers +
           "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

// The same body in one chunk, under `transfer_encoding`.
std::string chunked_answer(const std::string& transfer_encoding, const std::string& body) {
    char size[16];
    std::snprintf(size, sizeof size, "%zx", body.size());
    return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: " + transfer_encoding +
           "\r\nConnection: close\r\n\r\n" + size + "\r\n" + body + "\r\n0\r\n\r\n";
}

std::vector<std::pair<std::string, std::string>> env() {
    return {{"RDS_AUTH_TOKEN", "hostile-token"}};
}

struct Fixture {
    Pki pki = make_pki();
    MockServer mock{&pki};
    int n = 0;

    // One attempt per fetch (no retry muddles the counts), a breaker that stays closed, the cache on.
    json::value config(const std::string& patch = "{}") {
        auto cfg = base_config(mock, &pki);
        merge(cfg, json::parse(R"({"retry":{"max_attempts":1,"breaker_failures":1000}})"));
        merge(cfg, json::parse(patch));
        return cfg;
    }
    // The mock answers every RDS request with exactly these bytes.
    void serve_raw(const std::string& bytes) {
        mock.reset();
        mock.configure(json::serialize(json::object{{"raw_answer", bytes}}));
    }
    std::string next_backup() { return "hostile" + std::to_string(++n); }
};

std::string str(const json::value& v) {
    return std::string(v.as_string());
}

// The gateway's own 502: RDSGW shape, its request id, exactly `message`.
void expect_gateway_502(const Response& r, const std::string& message) {
    BOOST_TEST_REQUIRE(r.status == 502u, r.body);
    const auto b = r.json().as_object();
    BOOST_TEST(str(b.at("error_code")) == "RDSGW.502");
    BOOST_TEST(str(b.at("error_msg")) == message);
    BOOST_TEST(str(b.at("request_id")) == r.header("x-request-id"));
}

}  // namespace

BOOST_FIXTURE_TEST_CASE(rds_error_bodies_pass_through_only_with_4xx_or_5xx, Fixture) {
    GatewayProc gw(config(), env());
    for (const char* status : {"201 Created", "206 Partial Content", "301 Moved Permanently", "302 Found",
                               "600 Whatever", "999 Nine"}) {
        BOOST_TEST_CONTEXT(status) {
            const std::string code(status, 3);
            serve_raw(answer(status, kRdsError, "Location: https://evil.example/x\r\n"));
            const std::string backup = next_backup();
            for (int i = 0; i < 2; ++i) {  // the second asks the upstream again: nothing was cached
                const auto r = gw.get(backup_path(backup), with_key());
                expect_gateway_502(
                    r, "upstream answered HTTP " + code + ", which is neither 200 nor an error status");
                BOOST_TEST(!r.has_header("location"));
                BOOST_TEST(r.header("x-cache") == "MISS");
            }
            BOOST_TEST(mock.stat("rds_requests") == 2);
        }
    }
    // Counted as the 502s the callers got (rdsgw_upstream_requests_total keeps the upstream's own codes). The
    // session counts a request after writing its answer: wait until all 12 are counted.
    std::vector<std::string> request_lines;
    int requests_502 = 0;
    eventually([&] {
        std::istringstream metrics(gw.admin_get("/metrics").body);
        request_lines.clear();
        requests_502 = 0;
        for (std::string line; std::getline(metrics, line);) {
            if (line.rfind("rdsgw_requests_total{", 0) != 0) continue;
            if (line.find("code=\"502\"") != std::string::npos)
                requests_502 += std::stoi(line.substr(line.rfind(' ')));
            request_lines.push_back(line);
        }
        return requests_502 >= 12;
    });
    BOOST_TEST(requests_502 == 12);
    for (const auto& line : request_lines)
        for (const char* code : {"201", "206", "301", "302", "600", "999"})
            BOOST_TEST(line.find("code=\"" + std::string(code) + "\"") == std::string::npos, line);

    // A 4xx/5xx RDS error still passes through unchanged: its status and body, nothing added.
    for (const char* status : {"400 Bad Request", "503 Service Unavailable"}) {
        BOOST_TEST_CONTEXT(status) {
            serve_raw(answer(status, kRdsError));
            const auto r = gw.get(backup_path(next_backup()), with_key());
            BOOST_TEST(r.status == static_cast<unsigned>(std::stoi(status)));
            BOOST_TEST(r.body == kRdsError);
        }
    }
}

BOOST_FIXTURE_TEST_CASE(every_content_encoding_line_counts_in_any_case, Fixture) {
    GatewayProc gw(config(R"({"cache":{"enabled":false}})"), env());
    const std::pair<std::string, bool> cases[] = {
        // header lines, served?
        {"Content-Encoding: identity\r\nContent-Encoding: gzip\r\n", false},
        {"Content-Encoding: gzip\r\nContent-Encoding: identity\r\n", false},
        {"Content-Encoding: identity, gzip\r\n", false},
        {"Content-Encoding: IDENTITY\r\n", true},
        {"Content-Encoding: Identity\r\nContent-Encoding: identity\r\n", true},
    };
    int refused = 0;
    for (const auto& [lines, served] : cases) {
        BOOST_TEST_CONTEXT(lines) {
            serve_raw(answer("200 OK", kGoodBody, lines));
            const auto r = gw.get(backup_path(next_backup()), with_key());
            if (served) {
                BOOST_TEST(r.status == 200u, r.body);
                BOOST_TEST(r.body == kGoodBody);
            } else {
                expect_gateway_502(r, kContentEncodingRefusal);
                ++refused;
            }
        }
    }
    const std::string metrics = gw.admin_get("/metrics").body;
    BOOST_TEST(metric_value(metrics, "rdsgw_upstream_answers_refused_total{reason=\"encoding\"}") == refused);
}

BOOST_FIXTURE_TEST_CASE(transfer_codings_other_than_chunked_are_refused, Fixture) {
    GatewayProc gw(config(R"({"cache":{"enabled":false}})"), env());
    // gzip, chunked: the chunks are decoded, the gzip coding cannot be (here the body is not even gzipped).
    serve_raw(chunked_answer("gzip, chunked", kGoodBody));
    expect_gateway_502(gw.get(backup_path(next_backup()), with_key()), kTransferEncodingRefusal);
    // gzip alone: the body runs until the close.
    serve_raw("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip\r\n\r\n" +
              kGoodBody);
    expect_gateway_502(gw.get(backup_path(next_backup()), with_key()), kTransferEncodingRefusal);
    // Two lines: another coding, then chunked (the chunks are read; the other coding is not ignored).
    serve_raw("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: gzip\r\n" +
              chunked_answer("chunked", kGoodBody).substr(std::string("HTTP/1.1 200 OK\r\n").size()));
    expect_gateway_502(gw.get(backup_path(next_backup()), with_key()), kTransferEncodingRefusal);
    const std::string metrics = gw.admin_get("/metrics").body;
    BOOST_TEST(metric_value(metrics, "rdsgw_upstream_answers_refused_total{reason=\"encoding\"}") == 3);
    // Chunked alone, in any case, is served.
    for (const char* te : {"chunked", "Chunked"}) {
        BOOST_TEST_CONTEXT(te) {
            serve_raw(chunked_answer(te, kGoodBody));
            const auto r = gw.get(backup_path(next_backup()), with_key());
            BOOST_TEST(r.status == 200u, r.body);
            BOOST_TEST(r.body == kGoodBody);
        }
    }
}

BOOST_FIXTURE_TEST_CASE(too_many_interim_answers_are_named_as_such, Fixture) {
    GatewayProc gw(config(R"({"cache":{"enabled":false}})"), env());
    std::string interim;
    for (int i = 0; i < 4; ++i) interim += "HTTP/1.1 102 Processing\r\n\r\n";
    // Four are skipped (the cap).
    serve_raw(interim + answer("200 OK", kGoodBody));
    auto r = gw.get(backup_path(next_backup()), with_key());
    BOOST_TEST(r.status == 200u, r.body);
    BOOST_TEST(r.body == kGoodBody);
    // A fifth is one too many: a broken answer, not "HTTP 102 without an RDS error body".
    serve_raw(interim + "HTTP/1.1 102 Processing\r\n\r\n" + answer("200 OK", kGoodBody));
    r = gw.get(backup_path(next_backup()), with_key());
    BOOST_TEST_REQUIRE(r.status == 502u, r.body);
    const std::string msg = str(r.json().at("error_msg"));
    BOOST_TEST(msg.find("upstream sent too many interim (1xx) answers") != std::string::npos, msg);
    BOOST_TEST(msg.find("HTTP 102") == std::string::npos, msg);
    BOOST_TEST(mock.stat("rds_requests") == 1);  // not retried: the upstream did answer, wrongly
}

BOOST_FIXTURE_TEST_CASE(rds_error_bodies_with_duplicate_keys_do_not_pass_through, Fixture) {
    GatewayProc gw(config(R"({"cache":{"enabled":false}})"), env());
    for (const std::string body : {R"({"error_code":"A","error_msg":"m","error_code":"B"})",
                                   R"({"error_code":"A","error_msg":"m","error_\u0063ode":"B"})",
                                   R"({"error_code":"A","error_msg":"m","x":{"k":1,"k":2}})"}) {
        BOOST_TEST_CONTEXT(body) {
            serve_raw(answer("400 Bad Request", body));
            const auto r = gw.get(backup_path(next_backup()), with_key());
            expect_gateway_502(r, "upstream answered HTTP 400 without an RDS error body");
            BOOST_TEST(r.body.find("\"B\"") == std::string::npos);
        }
    }
}

BOOST_FIXTURE_TEST_CASE(a_cached_refusal_reports_its_age, Fixture) {
    GatewayProc gw(config(R"({"cache":{"negative_ttl_s":60}})"), env());
    serve_raw(answer("200 OK", "this is not JSON"));
    const std::string backup = next_backup();
    const auto before = std::chrono::steady_clock::now();
    auto r = gw.get(backup_path(backup), with_key());
    BOOST_TEST_REQUIRE(r.status == 502u, r.body);
    BOOST_TEST(r.header("x-cache") == "MISS");
    BOOST_TEST(r.header("age") == "0");
    // Served from the cache from now on; its Age grows with the time since the fetch, as a cached 404's does.
    long long age = -1;
    const bool grew = eventually(
        [&] {
            r = gw.get(backup_path(backup), with_key());
            if (r.status != 502u || r.header("x-cache") != "HIT") return false;
            age = std::stoll(r.header("age"));
            return age >= 1;
        },
        20s);
    BOOST_TEST(grew, "Age of the cached refusal stayed " << age);
    const auto elapsed =
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - before);
    BOOST_TEST(age <= elapsed.count() + 1);
    BOOST_TEST(r.header("x-cache") == "HIT");
    BOOST_TEST(str(r.json().at("error_code")) == "RDSGW.502");
    BOOST_TEST(mock.stat("rds_requests") == 1);
}
