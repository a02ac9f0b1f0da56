#define BOOST_TEST_MODULE signer
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <string>

#include "rdsgw/signer.hpp"

using namespace rdsgw;
using namespace std::chrono;

namespace {

SignableRequest vector1() {
    SignableRequest r;
    r.method = "GET";
    r.path = "/resources";
    r.query = "size=1";
    r.headers = {{"Host", "service.endpoint.myhuaweicloud.com"}, {"X-Sdk-Date", "20200608T023900Z"}};
    return r;
}

SignableRequest vector2() {
    SignableRequest r;
    r.method = "GET";
    r.path = "/v3/97b026aa9cc4417888c14c84a1ad9860/backup-files";
    r.query = "backup_id=c0c9f155c7b7423a9d30f0175998b63bbr01";
    r.headers = {{"Host", "rds.cn-north-4.myhuaweicloud.com"},
                 {"X-Sdk-Date", "20261127T120000Z"},
                 {"X-Project-Id", "97b026aa9cc4417888c14c84a1ad9860"}};
    return r;
}

// The canonical query line (third line) of a request with the given raw query.
std::string query_line(const std::string& raw) {
    SignableRequest r = vector1();
    r.query = raw;
    const std::string c = canonical_request(r);
    const auto a = c.find('\n');
    const auto b = c.find('\n', a + 1);
    const auto e = c.find('\n', b + 1);
    return c.substr(b + 1, e - b - 1);
}

// The canonical URI line (second line) of a request with the given path.
std::string uri_line(const std::string& path) {
    SignableRequest r = vector1();
    r.path = path;
    const std::string c = canonical_request(r);
    const auto a = c.find('\n');
    return c.substr(a + 1, c.find('\n', a + 1) - a - 1);
}

constexpr const char* kEmptySha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

}  // namespace

BOOST_AUTO_TEST_SUITE(vectors)

BOOST_AUTO_TEST_CASE(official_vector_1) {
    BOOST_TEST(authorization_header(vector1(), "AccessKey", "SecretKey") ==
               "SDK-HMAC-SHA256 Access=AccessKey, SignedHeaders=host;x-sdk-date, "
               "Signature=cfb4171acec81de07d50e53d57eb77edd537414d66ddb1d7d780f128e12cd842");
}

BOOST_AUTO_TEST_CASE(official_vector_2) {
    BOOST_TEST(
        authorization_header(vector2(), "HPUAEXAMPLEAK0000001", "exampleSecretKey0000000000000000000000") ==
        "SDK-HMAC-SHA256 Access=HPUAEXAMPLEAK0000001, SignedHeaders=host;x-project-id;x-sdk-date, "
        "Signature=e4b3c7127912904e4e7ad0019e5c5a4d1511ea8a7493bd6d673e5c6c63e30cfb");
}

BOOST_AUTO_TEST_CASE(canonical_request_of_vector_2) {
    BOOST_TEST(canonical_request(vector2()) ==
               std::string("GET\n"
                           "/v3/97b026aa9cc4417888c14c84a1ad9860/backup-files/\n"
                           "backup_id=c0c9f155c7b7423a9d30f0175998b63bbr01\n"
                           "host:rds.cn-north-4.myhuaweicloud.com\n"
                           "x-project-id:97b026aa9cc4417888c14c84a1ad9860\n"
                           "x-sdk-date:20261127T120000Z\n"
                           "\n"
                           "host;x-project-id;x-sdk-date\n") +
                   kEmptySha);
}

BOOST_AUTO_TEST_CASE(signature_changes_with_every_input) {
    const std::string base = compute_signature(vector1(), "SecretKey");
    SignableRequest r = vector1();
    r.method = "POST";
    BOOST_TEST(compute_signature(r, "SecretKey") != base);
    r = vector1();
    r.body = "x";
    BOOST_TEST(compute_signature(r, "SecretKey") != base);
    r = vector1();
    r.headers[1].second = "20200608T023901Z";
    BOOST_TEST(compute_signature(r, "SecretKey") != base);
    BOOST_TEST(compute_signature(vector1(), "SecretKey2") != base);
    BOOST_TEST(compute_signature(vector1(), "") != base);
    BOOST_TEST(compute_signature(vector1(), "").size() == 64u);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(canonical_parts)

BOOST_AUTO_TEST_CASE(uri_encoding) {
    BOOST_TEST(sdk_uri_encode("AZaz09-_.~") == "AZaz09-_.~");
    BOOST_TEST(sdk_uri_encode("a b") == "a%20b");
    BOOST_TEST(sdk_uri_encode("100%") == "100%25");
    BOOST_TEST(sdk_uri_encode("\xE4\xB8\xAD") == "%E4%B8%AD");
    BOOST_TEST(sdk_uri_encode("+/=&?#*") == "%2B%2F%3D%26%3F%23%2A");
    BOOST_TEST(sdk_uri_encode(std::string_view("\0\xff", 2)) == "%00%FF");
    BOOST_TEST(sdk_uri_encode("") == "");
}

BOOST_AUTO_TEST_CASE(query_encoding) {
    BOOST_TEST(query_line("q=a%20b") == "q=a%20b");
    BOOST_TEST(query_line("q=a+b") == "q=a%2Bb");  // '+' is not a space
    BOOST_TEST(query_line("q=~x") == "q=~x");
    BOOST_TEST(query_line("q=%7Ex") == "q=~x");  // decoded once, '~' kept
    BOOST_TEST(query_line("q=100%25") == "q=100%25");
    BOOST_TEST(query_line("q=%2525") == "q=%2525");  // decoded once only
    BOOST_TEST(query_line("q=50%") == "q=50%25");    // a stray '%' is literal
    BOOST_TEST(query_line("q=%zz") == "q=%25zz");
    BOOST_TEST(query_line("q=%E4%B8%AD") == "q=%E4%B8%AD");
    BOOST_TEST(query_line("q=\xE4\xB8\xAD") == "q=%E4%B8%AD");  // raw UTF-8 bytes
    BOOST_TEST(query_line("q=%e4%b8%ad") == "q=%E4%B8%AD");     // upper-case hex on output
    BOOST_TEST(query_line("a b=c") == "a%20b=c");
    BOOST_TEST(query_line("flag") == "flag=");
    BOOST_TEST(query_line("flag=") == "flag=");
    BOOST_TEST(query_line("k=v=w") == "k=v%3Dw");  // split at the first '='
}

BOOST_AUTO_TEST_CASE(empty_query) {
    BOOST_TEST(query_line("") == "");
    BOOST_TEST(query_line("&&") == "");
    SignableRequest r = vector1();
    r.query.clear();
    BOOST_TEST(canonical_request(r).find("GET\n/resources/\n\nhost:") == 0u);
}

BOOST_AUTO_TEST_CASE(query_sorting) {
    BOOST_TEST(query_line("b=2&a=1&c=3") == "a=1&b=2&c=3");
    BOOST_TEST(query_line("a=2&a=1&a=10") == "a=1&a=10&a=2");  // by name, then value, byte order
    BOOST_TEST(query_line("B=1&a=1&_=1") == "B=1&_=1&a=1");    // 'B' < '_' < 'a'
    BOOST_TEST(query_line("&b=2&&a=1&") == "a=1&b=2");         // empty parts skipped
    BOOST_TEST(query_line("size=1&backup_id=x") == "backup_id=x&size=1");
    // Order on the wire does not change the signature.
    SignableRequest r1 = vector1(), r2 = vector1();
    r1.query = "x=1&y=2";
    r2.query = "y=2&x=1";
    BOOST_TEST(compute_signature(r1, "k") == compute_signature(r2, "k"));
}

BOOST_AUTO_TEST_CASE(canonical_uri) {
    BOOST_TEST(uri_line("/resources") == "/resources/");
    BOOST_TEST(uri_line("/resources/") == "/resources/");
    BOOST_TEST(uri_line("/") == "/");
    BOOST_TEST(uri_line("") == "/");
    BOOST_TEST(uri_line("/a%20b/c") == "/a%20b/c/");
    BOOST_TEST(uri_line("/a%2Fb") == "/a%2Fb/");  // an encoded '/' stays inside its segment
    BOOST_TEST(uri_line("/%7Euser") == "/~user/");
    BOOST_TEST(uri_line("/a:b") == "/a%3Ab/");
    BOOST_TEST(uri_line("/\xE4\xB8\xAD") == "/%E4%B8%AD/");
}

BOOST_AUTO_TEST_CASE(canonical_headers) {
    SignableRequest r;
    r.method = "GET";
    r.path = "/";
    r.headers = {
        {"X-Sdk-Date", " \t20200608T023900Z\t "}, {"HOST", "h.example:8443"}, {"X-B", "2"}, {"x-b", "1"}};
    BOOST_TEST(canonical_request(r) == std::string("GET\n/\n\n"
                                                   "host:h.example:8443\n"
                                                   "x-b:2,1\n"
                                                   "x-sdk-date:20200608T023900Z\n"
                                                   "\n"
                                                   "host;x-b;x-sdk-date\n") +
                                           kEmptySha);
    BOOST_TEST(authorization_header(r, "AK", "SK").find("SignedHeaders=host;x-b;x-sdk-date, ") !=
               std::string::npos);
}

BOOST_AUTO_TEST_CASE(non_default_port_is_signed_as_given) {
    SignableRequest with_port = vector1();
    with_port.headers[0].second = "service.endpoint.myhuaweicloud.com:8443";
    BOOST_TEST(canonical_request(with_port).find("\nhost:service.endpoint.myhuaweicloud.com:8443\n") !=
               std::string::npos);
    BOOST_TEST(compute_signature(with_port, "SecretKey") != compute_signature(vector1(), "SecretKey"));
}

BOOST_AUTO_TEST_CASE(body_hash) {
    SignableRequest r = vector1();
    BOOST_TEST(canonical_request(r).substr(canonical_request(r).size() - 64) == kEmptySha);
    r.body = "abc";
    BOOST_TEST(canonical_request(r).substr(canonical_request(r).size() - 64) ==
               "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(dates)

BOOST_AUTO_TEST_CASE(format) {
    const sys_seconds t = sys_days{2020y / June / 8} + 2h + 39min;
    BOOST_TEST(sdk_date(t) == "20200608T023900Z");
    BOOST_TEST(sdk_date(t + milliseconds(999)) == "20200608T023900Z");  // truncated, not rounded
    BOOST_TEST(sdk_date(sys_days{1970y / January / 1}) == "19700101T000000Z");
    BOOST_TEST(sdk_date(sys_days{2024y / February / 29} + 23h + 59min + 59s) == "20240229T235959Z");
}

BOOST_AUTO_TEST_CASE(round_trip) {
    for (const char* s : {"20200608T023900Z", "20261127T120000Z", "19700101T000000Z", "20240229T235959Z",
                          "21001231T235959Z"}) {
        const auto t = parse_sdk_date(s);
        BOOST_TEST_REQUIRE(t.has_value(), s);
        BOOST_TEST(sdk_date(*t) == s);
    }
    const auto now = floor<seconds>(system_clock::now());
    BOOST_TEST((parse_sdk_date(sdk_date(now)) == system_clock::time_point(now)));
    BOOST_TEST((*parse_sdk_date("20200608T023900Z") ==
                system_clock::time_point(sys_days{2020y / June / 8} + 2h + 39min)));
}

BOOST_AUTO_TEST_CASE(bad_dates) {
    for (const char* s : {"",
                          "20200608T023900",
                          "20200608T023900z",
                          "20200608t023900Z",
                          "2020-06-08T02:39:00Z",
                          "20200608T0239000Z",
                          "2020060T8023900Z",
                          " 20200608T023900Z",
                          "20200608T023900Z ",
                          "20201308T023900Z",
                          "20200008T023900Z",
                          "20200600T023900Z",
                          "20200230T023900Z",
                          "20230229T000000Z",
                          "20200608T243900Z",
                          "20200608T026000Z",
                          "20200608T023960Z",
                          "19691231T235959Z",
                          "99991231T235959Z",
                          "2020060+T023900Z",
                          "+0200608T023900Z",
                          "20200608T02390-Z"}) {
        BOOST_TEST(!parse_sdk_date(s).has_value(), "accepted: '" << s << "'");
    }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(authorization_parsing)

const std::string kSig = "cfb4171acec81de07d50e53d57eb77edd537414d66ddb1d7d780f128e12cd842";

BOOST_AUTO_TEST_CASE(parses_what_the_signer_writes) {
    const auto a = parse_sdk_authorization(authorization_header(vector2(), "AK1", "SK1"));
    BOOST_TEST_REQUIRE(a.has_value());
    BOOST_TEST(a->access_key == "AK1");
    BOOST_TEST((a->signed_headers == std::vector<std::string>{"host", "x-project-id", "x-sdk-date"}));
    BOOST_TEST(a->signature == compute_signature(vector2(), "SK1"));
}

BOOST_AUTO_TEST_CASE(tolerant_forms) {
    // No space after commas, several spaces, other order, upper-case names and hex.
    for (const std::string& h : std::vector<std::string>{
             "SDK-HMAC-SHA256 Access=AK,SignedHeaders=host;x-sdk-date,Signature=" + kSig,
             "SDK-HMAC-SHA256  Access=AK,   SignedHeaders=host;x-sdk-date,  Signature=" + kSig,
             "SDK-HMAC-SHA256 Signature=" + kSig + ", Access=AK, SignedHeaders=host;x-sdk-date",
             "SDK-HMAC-SHA256 Access=AK, SignedHeaders=Host;X-Sdk-Date, "
             "Signature=CFB4171ACEC81DE07D50E53D57EB77EDD537414D66DDB1D7D780F128E12CD842",
         }) {
        const auto a = parse_sdk_authorization(h);
        BOOST_TEST_REQUIRE(a.has_value(), h);
        BOOST_TEST(a->access_key == "AK");
        BOOST_TEST((a->signed_headers == std::vector<std::string>{"host", "x-sdk-date"}));
        BOOST_TEST(a->signature == kSig);
    }
}

BOOST_AUTO_TEST_CASE(rejects_everything_else) {
    const std::string ok_tail = ", SignedHeaders=host;x-sdk-date, Signature=" + kSig;
    for (const std::string& h : std::vector<std::string>{
             std::string(""),
             std::string("SDK-HMAC-SHA256"),
             std::string("SDK-HMAC-SHA256 "),
             "sdk-hmac-sha256 Access=AK" + ok_tail,
             "SDK-HMAC-SHA1 Access=AK" + ok_tail,
             "SDK-HMAC-SHA256Access=AK" + ok_tail,
             "Bearer Access=AK" + ok_tail,
             "SDK-HMAC-SHA256 Access=" + ok_tail,                         // empty AK
             "SDK-HMAC-SHA256 Access=A K" + ok_tail,                      // space inside AK
             "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date",  // no signature
             "SDK-HMAC-SHA256 Access=AK, Signature=" + kSig,              // no signed headers
             "SDK-HMAC-SHA256 SignedHeaders=host, Signature=" + kSig,     // no access
             "SDK-HMAC-SHA256 Access=AK, Access=AK" + ok_tail,            // duplicate part
             "SDK-HMAC-SHA256 Access=AK, Foo=bar" + ok_tail,              // unknown part
             "SDK-HMAC-SHA256 access=AK" + ok_tail,                       // part names are case-sensitive
             "SDK-HMAC-SHA256 Access=AK, SignedHeaders=, Signature=" + kSig,
             "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;;x-sdk-date, Signature=" + kSig,
             "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;, Signature=" + kSig,
             "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host x, Signature=" + kSig,
             "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=" + kSig.substr(1),
             "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=" + kSig + "0",
             "SDK-HMAC-SHA256 Access=AK, SignedHeaders=host;x-sdk-date, Signature=" + kSig.substr(1) + "g",
             "SDK-HMAC-SHA256 Access=AK" + ok_tail + ",",
             "SDK-HMAC-SHA256 Access=AK" + ok_tail + " ",
             "SDK-HMAC-SHA256 Access=AK," + ok_tail,
             "SDK-HMAC-SHA256 Access AK" + ok_tail,
         }) {
        BOOST_TEST(!parse_sdk_authorization(h).has_value(), "accepted: '" << h << "'");
    }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(primitives)

BOOST_AUTO_TEST_CASE(constant_time_equal_cases) {
    BOOST_TEST(constant_time_equal("", ""));
    BOOST_TEST(constant_time_equal("abc", "abc"));
    BOOST_TEST(!constant_time_equal("abc", "abd"));
    BOOST_TEST(!constant_time_equal("abc", "ab"));
    BOOST_TEST(!constant_time_equal("", "a"));
    BOOST_TEST(constant_time_equal(std::string_view("a\0b", 3), std::string_view("a\0b", 3)));
    BOOST_TEST(!constant_time_equal(std::string_view("a\0b", 3), std::string_view("a\0c", 3)));
}

BOOST_AUTO_TEST_CASE(sha256) {
    BOOST_TEST(sha256_hex("") == kEmptySha);
    BOOST_TEST(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

BOOST_AUTO_TEST_SUITE_END()
