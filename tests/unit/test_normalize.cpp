#define BOOST_TEST_MODULE normalize
#include <boost/test/unit_test.hpp>

#include "rdsgw/normalize.hpp"
#include "rdsgw/timefmt.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cctype>
#include <chrono>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

using namespace std::chrono;
using namespace std::string_literals;
using namespace std::string_view_literals;
using rdsgw::is_rds_error_body;
using rdsgw::normalize_backup_files;
using rdsgw::NormalizedAnswer;
using rdsgw::NormalizeError;
using rdsgw::NormalizeOptions;
using rdsgw::redact_link;

namespace {

// The example answer of the RDS documentation page, verbatim (seed/000_77f0e23c5fff866d.txt): typographic
// quotes, a full-width comma after "]", and the time " 2018-08-016T10:15:14+0800".
constexpr std::string_view kDocExample = R"DOC(
    {
       “files”: [
        {
            “name": “43e4feaab48f11e89039fa163ebaa7e4br01.xxx”,
            “size”: 2803,
            “download_link”:”https://obs.myhwclouds.com/rdsbucket.southchina.user.2/xxxxxx”,
            “link_expired_time”:” 2018-08-016T10:15:14+0800”
         }, 
         {
            “name": “43e4feaab48f11e89039fa163ebaa7e4br01.xxx”,
            “size”: 2803,
            “download_link”:”https://obs.myhwclouds.com/rdsbucket.southchina.user.2/xxxxxx”,
            “link_expired_time”:” 2018-08-016T10:15:14+0800”
         }
         ]，
        "bucket": "rdsbucket.op.svc.rds.1024.cn.north.1"
    }
)DOC";

// The same example as quoted in the issue: one file, a trailing comma, and the full-width comma.
constexpr std::string_view kIssueExample = R"DOC({
   “files”: [
    {
        “name": “43e4feaab48f11e89039fa163ebaa7e4br01.xxx”,
        “size”: 2803,
        “download_link”:”https://obs.myhwclouds.com/rdsbucket.southchina.user.2/xxxxxx”,
        “link_expired_time”:” 2018-08-016T10:15:14+0800”
     },
  ]，
  "bucket": "rdsbucket.bucket"
})DOC";

// The documentation example with its typography repaired: what a real answer looks like.
constexpr std::string_view kDocExampleRepaired = R"({
   "files": [
    {
        "name": "43e4feaab48f11e89039fa163ebaa7e4br01.xxx",
        "size": 2803,
        "download_link":"https://obs.myhwclouds.com/rdsbucket.southchina.user.2/xxxxxx",
        "link_expired_time":" 2018-08-016T10:15:14+0800"
     },
     {
        "name": "43e4feaab48f11e89039fa163ebaa7e4br01.xxx",
        "size": 2803,
        "download_link":"https://obs.myhwclouds.com/rdsbucket.southchina.user.2/xxxxxx",
        "link_expired_time":" 2018-08-016T10:15:14+0800"
     }
  ],
  "bucket": "rdsbucket.op.svc.rds.1024.cn.north.1"
})";

// Text that must never appear in an error message: it is in every failing body below.
constexpr std::string_view kSecrets[] = {"SECRET", "AKEXAMPLE", "myhwclouds", "2018-08", "br01"};

const std::string kLink =
    "https://obs.myhwclouds.com/rdsbucket.southchina.user.2/br01.qp?AccessKeyId=AKEXAMPLE&Expires=1534385714"
    "&Signature=SECRETSIG%2Bx";
const std::string kName = "43e4feaab48f11e89039fa163ebaa7e4br01.qp";
const std::string kTime = "2018-08-16T10:15:14+0800";

using Fields = std::vector<std::pair<std::string, std::string>>;  // key, raw JSON value

// The fields of a valid file, in upstream order.
Fields base_fields() {
    return {{"name", "\"" + kName + "\""},
            {"size", "2803"},
            {"download_link", "\"" + kLink + "\""},
            {"link_expired_time", "\"" + kTime + "\""}};
}

// A valid file with `key` set to the raw JSON `value` (added at the end when absent).
Fields with(std::string key, std::string value, Fields f = base_fields()) {
    for (auto& [k, v] : f)
        if (k == key) {
            v = std::move(value);
            return f;
        }
    f.emplace_back(std::move(key), std::move(value));
    return f;
}

Fields without(std::string_view key, Fields f = base_fields()) {
    std::erase_if(f, [&](const auto& kv) { return kv.first == key; });
    return f;
}

std::string object(const Fields& f) {
    std::string s = "{";
    for (const auto& [k, v] : f) {
        if (s.size() > 1) s += ',';
        s += '"' + k + "\":" + v;
    }
    return s + '}';
}

// An answer with the given file objects and bucket "b".
std::string answer(const std::vector<Fields>& files) {
    std::string s = "{\"files\":[";
    for (std::size_t i = 0; i < files.size(); ++i) s += (i ? "," : "") + object(files[i]);
    return s + "],\"bucket\":\"b\"}";
}
std::string answer(const Fields& file) {
    return answer(std::vector<Fields>{file});
}

// The canonical form of the base file.
const std::string kCanonicalBase = "{\"name\":\"" + kName + "\",\"size\":2803,\"download_link\":\"" + kLink +
                                   "\",\"link_expired_time\":\"" + kTime + "\"}";
std::string canonical_answer(const std::string& file) {
    return "{\"files\":[" + file + "],\"bucket\":\"b\"}";
}

NormalizeOptions opts() {
    return NormalizeOptions{};
}
NormalizeOptions http_allowed() {
    NormalizeOptions o;
    o.allow_http_links = true;
    return o;
}
NormalizeOptions suffixes(std::vector<std::string> s) {
    NormalizeOptions o;
    o.link_host_suffixes = std::move(s);
    return o;
}
NormalizeOptions legacy() {
    NormalizeOptions o;
    o.emit_legacy_expiry_field = true;
    return o;
}
NormalizeOptions drop_unknown() {
    NormalizeOptions o;
    o.drop_unknown_fields = true;
    return o;
}
NormalizeOptions max_body(std::size_t n) {
    NormalizeOptions o;
    o.max_body_bytes = n;
    return o;
}

const system_clock::time_point kNow = sys_days{2018y / 8 / 16} + 2h;

rdsgw::NormalizeResult run(std::string_view body, const NormalizeOptions& o = {}) {
    return normalize_backup_files(body, kNow, o);
}

struct ErrorCase {
    std::string label;
    std::string body;
    NormalizeOptions options;
    std::string path;
    std::string reason;
};

std::vector<ErrorCase> error_cases() {
    const auto file_err = [](std::string label, Fields f, std::string field, std::string reason,
                             NormalizeOptions o = {}) {
        return ErrorCase{std::move(label), answer(f), std::move(o), "files[0]." + field, std::move(reason)};
    };
    const auto size_err = [&](std::string raw, std::string reason) {
        return file_err("size " + raw, with("size", raw), "size", std::move(reason));
    };
    const auto name_err = [&](std::string raw, std::string reason) {
        return file_err("name " + raw, with("name", raw), "name", std::move(reason));
    };
    const auto link_err = [&](std::string link, std::string reason, NormalizeOptions o = {}) {
        return file_err("link " + link, with("download_link", "\"" + link + "\""), "download_link",
                        std::move(reason), std::move(o));
    };
    const auto time_err = [&](std::string raw) {
        return file_err("time " + raw, with("link_expired_time", raw), "link_expired_time",
                        "not a valid time");
    };
    const std::string q = "?Signature=SECRETSIG";  // a secret-looking query on every bad link

    return {
        // The whole body.
        {"documentation example, verbatim", std::string(kDocExample), opts(), "", "not valid JSON"},
        {"issue example, verbatim", std::string(kIssueExample), opts(), "", "not valid JSON"},
        {"empty body", "", opts(), "", "not valid JSON"},
        {"white space only", "  \n", opts(), "", "not valid JSON"},
        {"truncated", answer(base_fields()).substr(0, 40), opts(), "", "not valid JSON"},
        {"trailing data", answer(base_fields()) + " {}", opts(), "", "not valid JSON"},
        {"two documents", "{}{}", opts(), "", "not valid JSON"},
        {"comment", "{\"files\":[] /* SECRET */}", opts(), "", "not valid JSON"},
        {"trailing comma", "{\"files\":[],}", opts(), "", "not valid JSON"},
        {"single quotes", "{'files':[]}", opts(), "", "not valid JSON"},
        {"invalid UTF-8", "{\"files\":[],\"x\":\"\xff\xfe SECRET\"}", opts(), "", "not valid JSON"},
        {"NaN", "{\"files\":[],\"x\":NaN}", opts(), "", "not valid JSON"},
        {"number beyond a double", "{\"files\":[],\"x\":1e400}", opts(), "", "number out of range"},
        {"negative number beyond a double", "{\"files\":[],\"x\":[-1e309]}", opts(), "",
         "number out of range"},
        {"size beyond a double", answer(with("size", "1e400")), opts(), "", "number out of range"},
        {"too deep", "{\"files\":[],\"x\":" + std::string(40, '[') + std::string(40, ']') + "}", opts(), "",
         "not valid JSON"},
        {"array", "[" + answer(base_fields()) + "]", opts(), "", "not a JSON object"},
        {"string", "\"SECRET\"", opts(), "", "not a JSON object"},
        {"number", "42", opts(), "", "not a JSON object"},
        {"null", "null", opts(), "", "not a JSON object"},
        {"too large", answer(base_fields()), max_body(answer(base_fields()).size() - 1), "",
         "body too large"},
        {"too large, even if not JSON", std::string(2000, 'x'), max_body(1000), "", "body too large"},
        // Duplicate keys: the path names the object.
        {"duplicate top-level key", "{\"files\":[],\"files\":[" + object(base_fields()) + "]}", opts(), "",
         "duplicate key"},
        {"duplicate bucket", "{\"files\":[],\"bucket\":\"a\",\"bucket\":\"b\"}", opts(), "", "duplicate key"},
        {"duplicate key in a file",
         "{\"files\":[" + object(base_fields()).insert(1, "\"name\":\"x\",") + "]}", opts(), "files[0]",
         "duplicate key"},
        {"duplicate key in the second file",
         "{\"files\":[" + object(base_fields()) + "," + object(base_fields()).insert(1, "\"size\":1,") + "]}",
         opts(), "files[1]", "duplicate key"},
        {"duplicate key inside an unknown field", "{\"files\":[],\"extra\":{\"k\":1,\"k\":2}}", opts(),
         "extra", "duplicate key"},
        {"duplicate key deep inside a file",
         answer(with("meta", "{\"tags\":[{\"a\":1},{\"b\":1,\"b\":\"SECRET\"}]}")), opts(),
         "files[0].meta.tags[1]", "duplicate key"},
        {"duplicate key under a key that is not an identifier",
         "{\"files\":[],\"SECRET key\\n\":{\"k\":1,\"k\":2}}", opts(), "<key>", "duplicate key"},
        {"duplicated member whose first value held objects",
         "{\"files\":[],\"x\":{\"a\":{\"p\":{}},\"a\":1}}", opts(), "", "duplicate key"},  // see below
        // files
        {"files missing", "{\"bucket\":\"SECRET\"}", opts(), "files", "missing"},
        {"files an object", "{\"files\":{}}", opts(), "files", "not an array"},
        {"files null", "{\"files\":null}", opts(), "files", "not an array"},
        {"files a string", "{\"files\":\"SECRET\"}", opts(), "files", "not an array"},
        {"file not an object", "{\"files\":[\"SECRET\"]}", opts(), "files[0]", "not an object"},
        {"second file not an object", "{\"files\":[" + object(base_fields()) + ",[]]}", opts(), "files[1]",
         "not an object"},
        {"error in the third file", answer({base_fields(), base_fields(), with("size", "-1")}), opts(),
         "files[2].size", "negative"},
        // bucket
        {"bucket a number", "{\"files\":[],\"bucket\":1}", opts(), "bucket", "not a string"},
        {"bucket null", "{\"files\":[],\"bucket\":null}", opts(), "bucket", "not a string"},
        // name
        file_err("name missing", without("name"), "name", "missing"),
        name_err("1", "not a string"),
        name_err("null", "not a string"),
        name_err("[\"SECRET\"]", "not a string"),
        name_err("\"\"", "empty"),
        name_err("\"SECRET/x\"", "contains a path separator"),
        name_err("\"/SECRET\"", "contains a path separator"),
        name_err("\"..\\\\SECRET\"", "contains a path separator"),
        name_err("\"SECRET\\\\\"", "contains a path separator"),
        name_err("\"..\"", "a dot segment"),
        name_err("\".\"", "a dot segment"),
        name_err("\"SECRET\\u0000x\"", "contains a control character"),
        name_err("\"SECRET\\nx\"", "contains a control character"),
        name_err("\"SECRET\\tx\"", "contains a control character"),
        name_err("\"SECRET\\u001fx\"", "contains a control character"),
        name_err("\"SECRET\\u007fx\"", "contains a control character"),
        // Issue 15: C1 controls, line separators, bidi controls and look-alikes of '/' and '\\'.
        name_err("\"SECRET\\u0085x\"", "contains a control character"),
        name_err("\"SECRET\xc2\x85x\"", "contains a control character"),
        name_err("\"SECRET\\u0080x\"", "contains a control character"),
        name_err("\"SECRET\\u009fx\"", "contains a control character"),
        name_err("\"SECRET\\u2028x\"", "contains a control character"),
        name_err("\"SECRET\\u2029x\"", "contains a control character"),
        name_err("\"SECRET\\u202ex\"", "contains a bidirectional control character"),
        name_err("\"SECRET\xe2\x80\xaex\"", "contains a bidirectional control character"),
        name_err("\"SECRET\\u202ax\"", "contains a bidirectional control character"),
        name_err("\"SECRET\\u2066x\"", "contains a bidirectional control character"),
        name_err("\"SECRET\\u2069x\"", "contains a bidirectional control character"),
        name_err("\"SECRET\\u200ex\"", "contains a bidirectional control character"),
        name_err("\"SECRET\\u200fx\"", "contains a bidirectional control character"),
        name_err("\"SECRET\\u061cx\"", "contains a bidirectional control character"),
        name_err("\"..\\u2215SECRET\"", "contains a look-alike of a path separator"),
        name_err("\"..\\u2044SECRET\"", "contains a look-alike of a path separator"),
        name_err("\"..\\uff0fSECRET\"", "contains a look-alike of a path separator"),
        name_err("\"..\xef\xbc\x8fSECRET\"", "contains a look-alike of a path separator"),
        name_err("\"..\\u29f8SECRET\"", "contains a look-alike of a path separator"),
        name_err("\"..\\uff3cSECRET\"", "contains a look-alike of a path separator"),
        name_err("\"..\\u2216SECRET\"", "contains a look-alike of a path separator"),
        // size
        file_err("size missing", without("size"), "size", "missing"),
        size_err("-1", "negative"),
        size_err("-9223372036854775809", "negative"),
        size_err("-0.5", "not an integer"),
        size_err("1.5", "not an integer"),
        size_err("2803.000001", "not an integer"),
        size_err("9223372036854775808", "out of range"),
        size_err("18446744073709551615", "out of range"),
        size_err("18446744073709551616", "out of range"),
        size_err("1e30", "not an integer"),
        size_err("9.3e18", "not an integer"),
        // A number with a fraction or an exponent is refused whatever its value: a double rounds it.
        size_err("0.99999999999999999", "not an integer"),
        size_err("12345678901234567890e-2", "not an integer"),
        size_err("9007199254740993.0", "not an integer"),
        size_err("2803.0", "not an integer"),
        size_err("2.803e3", "not an integer"),
        size_err("2803e0", "not an integer"),
        size_err("2803E+0", "not an integer"),
        size_err("9.2e18", "not an integer"),
        size_err("0.0", "not an integer"),
        size_err("-0.0", "not an integer"),
        size_err("123456789012345678901234567890", "out of range"),
        size_err("-123456789012345678901234567890", "negative"),
        size_err("true", "not an integer"),
        size_err("false", "not an integer"),
        size_err("null", "not an integer"),
        size_err("{}", "not an integer"),
        size_err("[2803]", "not an integer"),
        size_err("\"\"", "not an integer"),
        size_err("\"-1\"", "not an integer"),
        size_err("\"+1\"", "not an integer"),
        size_err("\" 1\"", "not an integer"),
        size_err("\"1 \"", "not an integer"),
        size_err("\"1.0\"", "not an integer"),
        size_err("\"0x10\"", "not an integer"),
        size_err("\"SECRET\"", "not an integer"),
        size_err("\"\\uff11\"", "not an integer"),  // full-width digit one
        size_err("\"9223372036854775808\"", "out of range"),
        size_err("\"99999999999999999999999\"", "out of range"),
        // download_link
        file_err("link missing", without("download_link"), "download_link", "missing"),
        file_err("link a number", with("download_link", "1"), "download_link", "not a string"),
        file_err("link null", with("download_link", "null"), "download_link", "not a string"),
        link_err("http://obs.myhwclouds.com/x" + q, "scheme is not https"),
        link_err("ftp://obs.myhwclouds.com/x" + q, "scheme is not https or http", http_allowed()),
        link_err("file:///etc/passwd" + q, "scheme is not https"),
        link_err("javascript:alert(1)//SECRET", "scheme is not https"),
        link_err("https:obs.myhwclouds.com/x" + q, "no host"),
        link_err("https:///x" + q, "no host"),
        link_err("https://:443/x" + q, "no host"),
        link_err("//obs.myhwclouds.com/x" + q, "not an absolute URL"),
        link_err("/x" + q, "not an absolute URL"),
        link_err("", "not an absolute URL"),
        link_err("SECRET", "not an absolute URL"),
        link_err("https://obs.myhwclouds.com/x" + q + "#a#b", "not an absolute URL"),
        link_err("https://obs.myhwclouds.com/x y" + q, "contains white space or a control character"),
        link_err(" https://obs.myhwclouds.com/x" + q, "contains white space or a control character"),
        link_err("https://obs.myhwclouds.com/x" + q + "\\t", "contains white space or a control character"),
        link_err("https://obs.myhwclouds.com/x" + q + "\\u007f",
                 "contains white space or a control character"),
        link_err("https://obs.myhwclouds.com/\\u00e9" + q, "not an absolute URL"),
        link_err("https://obs.myhwclouds.com/a\\\"b" + q, "not an absolute URL"),
        link_err("https://obs.myhwclouds.com/a\\\\b" + q, "not an absolute URL"),
        link_err("https://obs.myhwclouds.com/a<b>" + q, "not an absolute URL"),
        link_err("https://obs.myhwclouds.com/a%zz" + q, "not an absolute URL"),
        link_err("https://user:SECRET@obs.myhwclouds.com/x" + q, "userinfo not allowed"),
        link_err("https://@obs.myhwclouds.com/x" + q, "userinfo not allowed"),
        link_err("https://obs.myhwclouds.com%2eevil.net/x" + q, "host is not a DNS name"),
        link_err("https://obs.myhwclouds.com!evil/x" + q, "host is not a DNS name"),
        link_err("https://[v1.SECRET]/x" + q, "host is not a DNS name or an IP address"),
        link_err("https://evilobs.com/x" + q, "host not allowed", suffixes({"obs.com"})),
        link_err("https://obs.com.evil.net/x" + q, "host not allowed", suffixes({"obs.com"})),
        link_err("https://obs.com./x" + q, "host ends in a dot", suffixes({"obs.com"})),
        link_err("https://xobs.myhwclouds.com/x" + q, "host not allowed", suffixes({"obs.myhwclouds.com"})),
        link_err("https://10.0.0.1/x" + q, "host is an IP address", suffixes({"obs.com"})),
        link_err("https://10.0.0.1/x" + q, "host is an IP address", suffixes({"10.0.0.1", "0.1"})),
        // Boost.URL 1.81 alone would read these as host 10.0.0.1 (or obs.com) followed by a "path" that
        // does not start with '/': a client would go to another host than the one checked.
        link_err("https://10.0.0.1.evil.net/x" + q, "not an absolute URL", suffixes({"10.0.0.1"})),
        link_err("https://10.0.0.1evil/x" + q, "not an absolute URL"),
        link_err("https://obs.com:443evil.net/x" + q, "not an absolute URL"),
        link_err("https://obs.com:443/x" + q, "host not allowed", suffixes({"evil.net"})),
        // Ports: 1-65535 without a leading zero; an empty port and port 0 are refused too.
        link_err("https://obs.myhuaweicloud.com:99999/b/f" + q, "port out of range"),
        link_err("https://obs.myhuaweicloud.com:65536/b/f" + q, "port out of range"),
        link_err("https://obs.myhuaweicloud.com:4294967739/b/f" + q, "port out of range"),  // 2^32 + 443
        link_err("https://obs.myhuaweicloud.com:0/b/f" + q, "port out of range"),
        link_err("https://obs.myhuaweicloud.com:0443/b/f" + q, "port out of range"),
        link_err("https://obs.myhuaweicloud.com:/b/f" + q, "empty port"),
        link_err("https://obs.myhuaweicloud.com:" + q, "empty port"),
        link_err("HTTPS://obs.myhuaweicloud.com:99999/b/f" + q, "port out of range"),  // Boost.URL's path
        link_err("https://[::1]:99999/x" + q, "host is an IP address"),
        link_err("https://obs.myhwclouds.com/x" + q, "host not allowed", suffixes({""})),
        // Issue 15: hosts that point callers at internal addresses, refused by default. Every form of IP
        // address a resolver accepts (inet_aton: 1-4 parts, decimal, 0x-hex, 0-octal; IPv6 incl. mapped).
        link_err("https://169.254.169.254/latest/meta-data/" + q, "host is an IP address"),
        link_err("https://127.0.0.1/x" + q, "host is an IP address"),
        link_err("https://10.0.0.1/x" + q, "host is an IP address"),
        link_err("https://0x7f000001/x" + q, "host is an IP address"),
        link_err("https://0X7F000001/x" + q, "host is an IP address"),
        link_err("https://2130706433/x" + q, "host is an IP address"),
        link_err("https://017700000001/x" + q, "host is an IP address"),
        link_err("https://127.1/x" + q, "host is an IP address"),
        link_err("https://0x7f.1/x" + q, "host is an IP address"),
        link_err("https://0177.0.0.01/x" + q, "host is an IP address"),
        link_err("https://0x7f.0x0.0x0.0x1:8443/x" + q, "host is an IP address"),
        link_err("https://1.2.3.4.5/x" + q, "not an absolute URL"),  // Boost.URL: 1.2.3.4 and ".5"
        link_err("https://0x/x" + q, "host is an IP address"),
        link_err("https://obs.myhwclouds.com.127/x" + q, "host is an IP address"),  // last label numeric
        link_err("https://evil.0x7f/x" + q, "host is an IP address"),
        link_err("https://[::1]/x" + q, "host is an IP address"),
        link_err("https://[::1]:8443/x" + q, "host is an IP address"),
        link_err("https://[::ffff:127.0.0.1]/x" + q, "host is an IP address"),
        link_err("https://[::ffff:7f00:1]/x" + q, "host is an IP address"),
        link_err("https://[fd00:ec2::254]/x" + q, "host is an IP address"),
        link_err("https://localhost/x" + q, "host is localhost"),
        link_err("https://LocalHost:8443/x" + q, "host is localhost"),
        link_err("https://metadata.localhost/x" + q, "host is localhost"),
        link_err("https://intranet/x" + q, "host is a single label"),
        link_err("https://metadata/computeMetadata/v1/" + q, "host is a single label"),
        link_err("https://localhost./x" + q, "host ends in a dot"),
        link_err("https://obs.myhwclouds.com./x" + q, "host ends in a dot"),
        link_err("https://.obs.myhwclouds.com/x" + q, "host is not a DNS name"),
        link_err("https://obs..myhwclouds.com/x" + q, "host is not a DNS name"),
        // expiry
        file_err("no expiry", without("link_expired_time"), "link_expired_time", "missing"),
        file_err("time a number", with("link_expired_time", "1534385714"), "link_expired_time",
                 "not a string"),
        file_err("time null", with("link_expired_time", "null"), "link_expired_time", "not a string"),
        file_err("legacy time a number", with("link_expired_link", "1", without("link_expired_time")),
                 "link_expired_link", "not a string"),
        file_err("legacy time invalid", with("link_expired_link", "\"SECRET\"", without("link_expired_time")),
                 "link_expired_link", "not a valid time"),
        file_err("legacy time invalid beside a valid one",
                 with("link_expired_link", "\"2018-02-30T00:00:00Z\""), "link_expired_link",
                 "not a valid time"),
        file_err("both, different", with("link_expired_link", "\"2018-08-16T10:15:15+0800\""),
                 "link_expired_link", "differs from link_expired_time"),
        file_err("both, same clock time in another zone",
                 with("link_expired_link", "\"2018-08-16T10:15:14Z\""), "link_expired_link",
                 "differs from link_expired_time"),
        time_err("\"SECRET\""),
        time_err("\"\""),
        time_err("\"2018-13-16T10:15:14+0800\""),
        time_err("\"2018-02-30T10:15:14+0800\""),
        time_err("\"2023-02-29T10:15:14+0800\""),
        time_err("\"2018-08-16T24:15:14+0800\""),
        time_err("\"2018-08-16T10:60:14+0800\""),
        time_err("\"2018-08-16T10:15:60+0800\""),
        time_err("\"2018-08-16T10:15:14+1500\""),
        time_err("\"2018-08-16T10:15:14+0860\""),
        time_err("\"2018-08-16T10:15:14\""),
        time_err("\"2018-08-116T10:15:14+0800\""),
        time_err("\"16/08/2018 10:15:14 +0800\""),
        time_err("\"2018-08-16T10:15:14+0800\\u0000\""),
        // database_name
        file_err("database_name a number", with("database_name", "1"), "database_name", "not a string"),
        file_err("database_name null", with("database_name", "null"), "database_name", "not a string"),
    };
}

struct OkCase {
    std::string label;
    std::string body;
    NormalizeOptions options;
    std::string expected;
};

std::vector<OkCase> ok_cases() {
    const std::string t = ",\"link_expired_time\":\"" + kTime + "\"";
    const std::string head = "{\"name\":\"" + kName + "\",\"size\":2803,\"download_link\":\"" + kLink + "\"";
    const auto file_ok = [&](std::string label, Fields f, std::string expected_file,
                             NormalizeOptions o = {}) {
        return OkCase{std::move(label), answer(f), std::move(o), canonical_answer(expected_file)};
    };
    const auto size_ok = [&](std::string raw, std::string out) {
        return file_ok(
            "size " + raw, with("size", raw),
            "{\"name\":\"" + kName + "\",\"size\":" + out + ",\"download_link\":\"" + kLink + "\"" + t + "}");
    };
    const auto time_ok = [&](std::string text, std::string out) {
        return file_ok("time " + text, with("link_expired_time", "\"" + text + "\""),
                       head + ",\"link_expired_time\":\"" + out + "\"}");
    };
    const auto link_ok = [&](std::string link, NormalizeOptions o = {}) {
        return file_ok(
            "link " + link, with("download_link", "\"" + link + "\""),
            "{\"name\":\"" + kName + "\",\"size\":2803,\"download_link\":\"" + link + "\"" + t + "}",
            std::move(o));
    };
    const auto name_ok = [&](std::string raw) {
        return file_ok("name " + raw, with("name", raw),
                       "{\"name\":" + raw + ",\"size\":2803,\"download_link\":\"" + kLink + "\"" + t + "}");
    };

    return {
        {"canonical input is unchanged", answer(base_fields()), opts(), canonical_answer(kCanonicalBase)},
        {"white space between tokens is removed",
         "\n{ \"files\" : [ " + object(base_fields()) + " ] ,\r\n\t\"bucket\" : \"b\" }\n", opts(),
         canonical_answer(kCanonicalBase)},
        {"documentation example, repaired", std::string(kDocExampleRepaired), opts(),
         "{\"files\":[{\"name\":\"43e4feaab48f11e89039fa163ebaa7e4br01.xxx\",\"size\":2803,\"download_link\":"
         "\"https://obs.myhwclouds.com/rdsbucket.southchina.user.2/xxxxxx\",\"link_expired_time\":"
         "\"2018-08-16T10:15:14+0800\"},{\"name\":\"43e4feaab48f11e89039fa163ebaa7e4br01.xxx\",\"size\":2803,"
         "\"download_link\":\"https://obs.myhwclouds.com/rdsbucket.southchina.user.2/xxxxxx\","
         "\"link_expired_time\":\"2018-08-16T10:15:14+0800\"}],\"bucket\":\"rdsbucket.op.svc.rds.1024.cn."
         "north.1\"}"},
        {"no files", "{\"files\":[],\"bucket\":\"b\"}", opts(), "{\"files\":[],\"bucket\":\"b\"}"},
        {"no bucket", "{\"files\":[]}", opts(), "{\"files\":[]}"},
        {"empty bucket", "{\"bucket\":\"\",\"files\":[]}", opts(), "{\"files\":[],\"bucket\":\"\"}"},
        {"top-level order: files, bucket, then unknown fields in their order",
         "{\"z\":1,\"bucket\":\"b\",\"a\":{\"k\":[1,\"x\",null,true]},\"files\":[],\"m\":\"s\"}", opts(),
         "{\"files\":[],\"bucket\":\"b\",\"z\":1,\"a\":{\"k\":[1,\"x\",null,true]},\"m\":\"s\"}"},
        {"unknown top-level fields dropped", "{\"z\":1,\"bucket\":\"b\",\"files\":[],\"m\":\"s\"}",
         drop_unknown(), "{\"files\":[],\"bucket\":\"b\"}"},
        {"file order: name, size, link, expiry, database_name, then unknown fields in their order",
         answer(Fields{{"zeta", "[1,2]"},
                       {"link_expired_time", "\"" + kTime + "\""},
                       {"database_name", "\"db1\""},
                       {"download_link", "\"" + kLink + "\""},
                       {"alpha", "{\"x\":false}"},
                       {"size", "2803"},
                       {"name", "\"" + kName + "\""}}),
         opts(),
         canonical_answer(head + t + ",\"database_name\":\"db1\",\"zeta\":[1,2],\"alpha\":{\"x\":false}}")},
        file_ok("unknown file fields dropped", with("zeta", "1", with("database_name", "\"\"")),
                head + t + ",\"database_name\":\"\"}", drop_unknown()),
        file_ok("empty database_name kept", with("database_name", "\"\""),
                head + t + ",\"database_name\":\"\"}"),
        file_ok("unknown values are passed through, re-escaped",
                with("note", "\"a\\\"b\\\\c\\/d\\u0001\\u00e9\\n\""),
                head + t + ",\"note\":\"a\\\"b\\\\c/d\\u0001\xc3\xa9\\n\"}"),
        file_ok(
            "unknown numbers are passed through as spelled",
            with("n", "[-1,18446744073709551615,0.5,1.0,-0.0,1e2,123456789012345678901234567890]"),
            head + t + ",\"n\":[-1,18446744073709551615,0.5,1.0,-0.0,1e2,123456789012345678901234567890]}"),
        file_ok("unknown nested numbers keep their spelling",
                with("m", "{\"a\":[{\"b\":2.50}],\"c\":-0,\"d\":1E-7}"),
                head + t + ",\"m\":{\"a\":[{\"b\":2.50}],\"c\":0,\"d\":1E-7}}"),
        // expiry names
        file_ok("legacy expiry name only is renamed",
                with("link_expired_link", "\" 2018-08-016T10:15:14+0800\"", without("link_expired_time")),
                head + t + "}"),
        file_ok("both names, same text", with("link_expired_link", "\"" + kTime + "\""), head + t + "}"),
        file_ok("both names, same instant in other offsets: the canonical name's offset is kept",
                with("link_expired_link", "\"2018-08-16T02:15:14Z\""), head + t + "}"),
        file_ok("legacy name only, legacy emission",
                with("link_expired_link", "\"" + kTime + "\"", without("link_expired_time")),
                head + t + ",\"link_expired_link\":\"" + kTime + "\"}", legacy()),
        file_ok("legacy emission writes both", base_fields(),
                head + t + ",\"link_expired_link\":\"" + kTime + "\"}", legacy()),
        file_ok("legacy emission uses the canonical value",
                with("link_expired_time", "\"2018-08-16T10:15:14+08:00\""),
                head + t + ",\"link_expired_link\":\"" + kTime + "\"}", legacy()),
        // times
        time_ok("2018-08-16T02:15:14Z", "2018-08-16T02:15:14+0000"),
        time_ok("2018-08-16T10:15:14+08:00", "2018-08-16T10:15:14+0800"),
        time_ok("2018-08-16T10:15:14.701000+0800", "2018-08-16T10:15:14+0800"),
        time_ok(" 2018-08-16T10:15:14+0800\\t\\n", "2018-08-16T10:15:14+0800"),
        time_ok(" 2018-08-016T10:15:14+0800", "2018-08-16T10:15:14+0800"),
        time_ok("2024-02-29T10:15:14-0330", "2024-02-29T10:15:14-0330"),
        time_ok("2018-08-16T10:15:14+1400", "2018-08-16T10:15:14+1400"),
        // sizes
        size_ok("0", "0"),
        size_ok("-0", "0"),
        size_ok("\"2803\"", "2803"),
        size_ok("\"0002803\"", "2803"),
        size_ok("9223372036854775807", "9223372036854775807"),
        size_ok("\"9223372036854775807\"", "9223372036854775807"),
        // links
        link_ok("https://obs.myhwclouds.com/b/o?AccessKeyId=AK&Signature=s%2B"),
        link_ok("HTTPS://OBS.MYHWCLOUDS.COM/b/o"),
        link_ok("https://obs.myhwclouds.com:8443/b/o"),
        link_ok("https://obs.myhwclouds.com:1/b/o"),
        link_ok("https://obs.myhwclouds.com:65535/b/o"),
        link_ok("https://obs.myhwclouds.com:443"),
        link_ok("https://obs.myhwclouds.com"),
        link_ok("https://1.example/b/o"),  // a numeric label that is not the last one
        link_ok("https://obs.example.b0x1/b/o"),
        link_ok("https://0x1.example/b/o"),
        link_ok("https://localhost.example/b/o"),
        link_ok("https://xn--fiqs8s.xn--fiqs8s/b/o"),
        link_ok("https://obs.myhwclouds.com/b/o?x=1#frag"),
        link_ok("https://obs.myhwclouds.com?x=/?y"),
        link_ok("https://obs.myhwclouds.com#f?/"),
        link_ok("https://o_b-s.1.example/a:b@c!$&'()*+,;=~/%41%4a?q=%2F/?#f/?:@"),
        link_ok("http://obs.myhwclouds.com/b/o", http_allowed()),
        link_ok("https://obs.myhwclouds.com/b/o", http_allowed()),
        link_ok("https://obs.com/b/o", suffixes({"obs.com"})),
        link_ok("https://bucket.obs.com/b/o", suffixes({"obs.com"})),
        link_ok("https://Bucket.OBS.Com/b/o", suffixes({"obs.COM"})),
        link_ok("https://a.b.obs.com/b/o", suffixes({".obs.com"})),
        link_ok("https://x.obs.myhwclouds.com/b/o", suffixes({"example.org", "myhwclouds.com"})),
        // names
        name_ok("\"a\""),
        name_ok("\"...\""),
        name_ok("\".hidden\""),
        name_ok("\"a..b\""),
        name_ok("\"\xe5\xa4\x87\xe4\xbb\xbd.qp\""),  // UTF-8
        name_ok("\"a b:c*?\""),
        name_ok("\"a\xc2\xa0"
                "b~\""),  // U+00A0, the first character after the C1 block
        // Neighbours of the refused characters: U+2043 U+2045 U+2214 U+2217 U+202F U+2065 U+206A U+200D
        // U+FE69 U+FF0E.
        name_ok("\"\xe2\x81\x83\xe2\x81\x85\xe2\x88\x94\xe2\x88\x97\xe2\x80\xaf\xe2\x81\xa5\xe2\x81\xaa\xe2"
                "\x80\x8d"
                "\xef\xb9\xa9\xef\xbc\x8e\""),
        name_ok("\"\xd8\xa8\xd8\xa7\xd9\x83\xd8\xa7\xd8\xa8.qp\""),  // right-to-left text itself is fine
    };
}

}  // namespace

BOOST_AUTO_TEST_CASE(error_message_format) {
    BOOST_TEST((NormalizeError{"files[2].size", "negative"}.message()) ==
               "invalid upstream answer at files[2].size: negative");
    BOOST_TEST((NormalizeError{"", "not valid JSON"}.message()) == "invalid upstream answer: not valid JSON");
}

BOOST_AUTO_TEST_CASE(rejects_each_broken_rule_naming_its_path) {
    for (const ErrorCase& c : error_cases()) {
        BOOST_TEST_CONTEXT("case: " << c.label) {
            if (c.label == "duplicated member whose first value held objects") {
                // Only the object or something inside the duplicated member may be named.
                const auto r = run(c.body, c.options);
                BOOST_TEST_REQUIRE(std::holds_alternative<NormalizeError>(r));
                const auto& e = std::get<NormalizeError>(r);
                BOOST_TEST(e.reason == "duplicate key");
                BOOST_TEST((e.path == "x" || e.path.starts_with("x.a")), "path " << e.path);
                continue;
            }
            const auto r = run(c.body, c.options);
            BOOST_TEST_REQUIRE(std::holds_alternative<NormalizeError>(r));
            const auto& e = std::get<NormalizeError>(r);
            BOOST_TEST(e.path == c.path);
            BOOST_TEST(e.reason == c.reason);
        }
    }
}

BOOST_AUTO_TEST_CASE(error_messages_never_contain_values_from_the_body) {
    std::size_t checked = 0;
    for (const ErrorCase& c : error_cases()) {
        const auto r = run(c.body, c.options);
        BOOST_TEST_REQUIRE(std::holds_alternative<NormalizeError>(r));
        const std::string m = std::get<NormalizeError>(r).message();
        BOOST_TEST_CONTEXT("case: " << c.label << "; message: " << m) {
            for (const std::string_view secret : kSecrets) BOOST_TEST(m.find(secret) == std::string::npos);
            for (const char ch : m) BOOST_TEST((ch >= 0x20 && ch < 0x7f));
        }
        ++checked;
    }
    BOOST_TEST(checked > 100u);

    // A file whose secret-looking link is valid but whose time is not: neither the link nor the time
    // (nor the name) shows up in the message.
    const std::string body = answer(with("link_expired_time", "\"2018-08-16T10:15:14+0800 SECRETTIME\"",
                                         with("name", "\"SECRETNAME.qp\"")));
    const auto r = run(body);
    BOOST_TEST_REQUIRE(std::holds_alternative<NormalizeError>(r));
    const std::string m = std::get<NormalizeError>(r).message();
    BOOST_TEST(m == "invalid upstream answer at files[0].link_expired_time: not a valid time");
}

BOOST_AUTO_TEST_CASE(writes_the_canonical_form) {
    for (const OkCase& c : ok_cases()) {
        BOOST_TEST_CONTEXT("case: " << c.label) {
            const auto r = run(c.body, c.options);
            if (const auto* e = std::get_if<NormalizeError>(&r)) BOOST_TEST_MESSAGE(e->message());
            BOOST_TEST_REQUIRE(std::holds_alternative<NormalizedAnswer>(r));
            const auto& a = std::get<NormalizedAnswer>(r);
            BOOST_TEST(a.body == c.expected);
            // Canonical output is a fixed point.
            const auto again = run(a.body, c.options);
            BOOST_TEST_REQUIRE(std::holds_alternative<NormalizedAnswer>(again));
            BOOST_TEST(std::get<NormalizedAnswer>(again).body == a.body);
        }
    }
}

BOOST_AUTO_TEST_CASE(the_documentation_example_is_refused_and_its_time_is_read) {
    BOOST_TEST(std::get<NormalizeError>(run(kDocExample)).message() ==
               "invalid upstream answer: not valid JSON");
    BOOST_TEST(kDocExample.find("]\xef\xbc\x8c") != std::string_view::npos);  // the full-width comma
    BOOST_TEST(kDocExample.find("\xe2\x80\x9c") != std::string_view::npos);   // a typographic quote
    const auto t = rdsgw::parse_rds_time(" 2018-08-016T10:15:14+0800");
    BOOST_TEST_REQUIRE(t.has_value());
    BOOST_TEST(rdsgw::format_rds_time(*t) == "2018-08-16T10:15:14+0800");
}

BOOST_AUTO_TEST_CASE(earliest_expiry_and_file_count) {
    const auto at = [](std::string text) { return with("link_expired_time", "\"" + text + "\""); };
    const auto r = run(answer({at("2018-08-16T10:15:14+0800"), at("2018-08-16T01:00:00Z"),
                               at("2018-08-16T03:00:00+0100"), at("2018-08-17T00:00:00+1400")}));
    BOOST_TEST_REQUIRE(std::holds_alternative<NormalizedAnswer>(r));
    const auto& a = std::get<NormalizedAnswer>(r);
    BOOST_TEST(a.file_count == 4u);
    // 2018-08-17T00:00:00+1400 is 2018-08-16T10:00:00Z; 2018-08-16T03:00:00+0100 is 02:00Z; min is 01:00Z.
    BOOST_TEST((a.earliest_expiry == sys_days{2018y / 8 / 16} + 1h));

    const auto one = run(answer(at("2018-08-17T00:00:00+1400")));
    BOOST_TEST((std::get<NormalizedAnswer>(one).earliest_expiry == sys_days{2018y / 8 / 16} + 10h));

    const auto none = run("{\"files\":[]}");
    BOOST_TEST(std::get<NormalizedAnswer>(none).file_count == 0u);
    BOOST_TEST((std::get<NormalizedAnswer>(none).earliest_expiry == system_clock::time_point::max()));

    // Beyond what system_clock::time_point holds (year 2262 with nanoseconds): clamped, not overflowed.
    const auto far = run(answer(at("9999-12-31T23:59:59Z")));
    BOOST_TEST((std::get<NormalizedAnswer>(far).earliest_expiry == system_clock::time_point::max()));
}

BOOST_AUTO_TEST_CASE(recognizes_rds_error_bodies) {
    const std::pair<std::string_view, bool> cases[] = {
        {R"({"error_code":"DBS.200001","error_msg":"parameter error"})", true},
        {R"({"error_msg":"The token must be updated.","error_code":"APIGW.0307","request_id":"abc"})", true},
        {R"({"error_code":"","error_msg":""})", true},
        {R"( {"error_code":"X","error_msg":"y","extra":{"a":[1]}} )", true},
        {R"({"error_code":"DBS.200001"})", false},
        {R"({"error_msg":"x"})", false},
        {R"({"error_code":200001,"error_msg":"x"})", false},
        {R"({"error_code":"X","error_msg":null})", false},
        {R"([{"error_code":"X","error_msg":"y"}])", false},
        {R"({"error_code":"X","error_msg":"y"} trailing)", false},
        {R"({"files":[]})", false},
        {"", false},
        {"<html>502 Bad Gateway</html>", false},
    };
    for (const auto& [body, expected] : cases) BOOST_TEST(is_rds_error_body(body) == expected, body);
}

BOOST_AUTO_TEST_CASE(redacts_links_to_scheme_host_and_path) {
    const std::pair<std::string_view, std::string_view> cases[] = {
        {"https://obs.myhwclouds.com/bucket/obj.qp?AccessKeyId=AK&Expires=1&Signature=SECRET",
         "https://obs.myhwclouds.com/bucket/obj.qp"},
        {"https://obs.myhwclouds.com:8443/b/o?x#frag", "https://obs.myhwclouds.com:8443/b/o"},
        {"https://user:SECRET@obs.myhwclouds.com/b/o", "https://obs.myhwclouds.com/b/o"},
        {"https://obs.myhwclouds.com", "https://obs.myhwclouds.com"},
        {"https://obs.myhwclouds.com/b/o#SECRET", "https://obs.myhwclouds.com/b/o"},
        {"http://[::1]:80/a%20b?q=SECRET", "http://[::1]:80/a%20b"},
        {"not a link SECRET", "<invalid link>"},
        {"", "<invalid link>"},
        {"/relative/path?SECRET", "<invalid link>"},
        {"mailto:SECRET@example.com", "<invalid link>"},
        {"https://obs.myhwclouds.com/b\r\nX-Injected: SECRET", "<invalid link>"},
    };
    for (const auto& [in, out] : cases) BOOST_TEST(redact_link(in) == out, in);
}

BOOST_AUTO_TEST_CASE(passed_through_numbers_keep_their_exact_value) {
    // Boost.JSON 1.81 alone reads this 1 ulp off; the normalizer re-reads doubles exactly (fuzzer finding).
    NormalizeOptions opts;
    auto r = normalize_backup_files(R"({"files":[],"x":6.406666666666667E69})",
                                    std::chrono::system_clock::now(), opts);
    BOOST_REQUIRE(std::holds_alternative<NormalizedAnswer>(r));
    const std::string& body = std::get<NormalizedAnswer>(r).body;
    BOOST_TEST(body.find("6.406666666666667E69") != std::string::npos, body);
    auto again = normalize_backup_files(body, std::chrono::system_clock::now(), opts);
    BOOST_REQUIRE(std::holds_alternative<NormalizedAnswer>(again));
    BOOST_TEST(std::get<NormalizedAnswer>(again).body == body);
}

// The sixteen-bytes-at-a-time scanners against their definitions, for every byte value at every position of
// strings long enough for two vector steps and a tail.
BOOST_AUTO_TEST_CASE(vector_scanners_agree_with_their_byte_definitions) {
    const auto link_rest = [](unsigned char c) {  // RFC 3986 pchar without pct-encoded, '/' and '?'
        return std::isalnum(c) != 0 ||
               std::string_view("-._~!$&'()*+,;=:@/?").find(static_cast<char>(c)) != std::string_view::npos;
    };
    const auto name_plain = [](unsigned char c) { return c >= 0x20 && c < 0x7f && c != '/' && c != '\\'; };
    int checked = 0;
    for (const std::size_t len : {1u, 15u, 16u, 17u, 33u, 40u}) {
        for (std::size_t at = 0; at < len; ++at) {
            for (unsigned b = 0; b < 256; ++b) {
                std::string s(len, 'a');
                for (std::size_t k = 0; k < len; ++k) s[k] = "aZ09-._~!$&'()*+,;=:@/?"[k % 23];
                s[at] = static_cast<char>(b);
                const std::size_t want = link_rest(static_cast<unsigned char>(b)) ? len : at;
                for (const std::size_t from : {std::size_t{0}, std::size_t{1}}) {
                    if (from > at) continue;
                    if (rdsgw::detail::link_rest_span(s, from) != want) {
                        BOOST_ERROR("link_rest_span: byte " << b << " at " << at << " of " << len << " from "
                                                            << from);
                    }
                }
                std::string n(len, 'x');
                n[at] = static_cast<char>(b);
                if (rdsgw::detail::name_is_plain(n) != name_plain(static_cast<unsigned char>(b)))
                    BOOST_ERROR("name_is_plain: byte " << b << " at " << at << " of " << len);
                ++checked;
            }
        }
    }
    BOOST_TEST(checked == 256 * (1 + 15 + 16 + 17 + 33 + 40));
    BOOST_TEST(rdsgw::detail::link_rest_span("", 0) == 0u);
    BOOST_TEST(rdsgw::detail::name_is_plain(""));
}

// The fast path of the link check answers only for links Boost.URL accepts with the same host; everything
// else goes to Boost.URL (fuzz/fuzz_link.cpp checks this on arbitrary bytes).
BOOST_AUTO_TEST_CASE(link_fast_path_agrees_with_boost_url) {
    const std::vector<std::pair<std::string, std::string>> plain = {
        {"https://obs.cn-north-4.myhuaweicloud.com/b/x.qp?AccessKeyId=AK&Expires=1&Signature=a%2Bb",
         "obs.cn-north-4.myhuaweicloud.com"},
        {"https://obs.myhwclouds.com", "obs.myhwclouds.com"},
        {"https://obs.myhwclouds.com:8443/b/o", "obs.myhwclouds.com"},
        {"https://obs.myhwclouds.com?x", "obs.myhwclouds.com"},
    };
    for (const auto& [link, host] : plain) {
        BOOST_TEST_CONTEXT("link " << link) {
            const auto fast = rdsgw::detail::plain_link_host(link, false);
            BOOST_TEST_REQUIRE(fast.has_value());
            BOOST_TEST(*fast == host);
            BOOST_TEST(rdsgw::detail::check_link_reference(link, false) == nullptr);
        }
    }
    // Not the plain shape: the fast path declines and check_link gives Boost.URL's verdict.
    for (const std::string link : {"HTTPS://obs.com/x",
                                   "https://10.0.0.1/x",
                                   "https://[::1]/x",
                                   "https://u@obs.com/x",
                                   "https://10.0.0.1.evil.net/x",
                                   "https://obs.com/%zz",
                                   "https://obs.com/a b",
                                   "http://obs.com/x",
                                   "https://obs.com/x#a#b",
                                   "https://obs.com%2e/x",
                                   "https://localhost/x",
                                   "https://intranet/x",
                                   "https://obs.com./x",
                                   "https://obs.com.0x1f/x",
                                   "https://a.b.localhost:8443/x",
                                   "https://obs..com/x",
                                   "https://obs.com:99999/x",
                                   "https://obs.com:65536/x",
                                   "https://obs.com:0/x",
                                   "https://obs.com:0443/x",
                                   "https://obs.com:/x",
                                   "https://obs.com:"}) {
        BOOST_TEST_CONTEXT("link " << link) {
            BOOST_TEST(!rdsgw::detail::plain_link_host(link, false).has_value());
            std::string_view host;
            const char* verdict = rdsgw::detail::check_link(link, false, host);
            const char* reference = rdsgw::detail::check_link_reference(link, false);
            BOOST_TEST((verdict == nullptr) == (reference == nullptr));
            if (verdict && reference) BOOST_TEST(std::string_view(verdict) == std::string_view(reference));
        }
    }
    BOOST_TEST(rdsgw::detail::plain_link_host("http://obs.com/x", true).value_or("") == "obs.com");
}

// The one-pass fast path answers for the plain shape only, and then exactly as the general path does; every
// error comes from the general path.
BOOST_AUTO_TEST_CASE(fast_path_agrees_with_the_general_path) {
    std::size_t handled = 0;
    for (const OkCase& c : ok_cases()) {
        BOOST_TEST_CONTEXT("case: " << c.label) {
            NormalizedAnswer fast;
            if (!rdsgw::detail::normalize_plain(c.body, c.options, fast)) continue;
            ++handled;
            const auto ref = rdsgw::detail::normalize_reference(c.body, c.options);
            BOOST_TEST_REQUIRE(std::holds_alternative<NormalizedAnswer>(ref));
            const auto& r = std::get<NormalizedAnswer>(ref);
            BOOST_TEST(fast.body == r.body);
            BOOST_TEST(fast.file_count == r.file_count);
            BOOST_TEST((fast.earliest_expiry == r.earliest_expiry));
            BOOST_TEST(fast.body == c.expected);
        }
    }
    BOOST_TEST(handled >= 20u);  // links, names, times, plain sizes: the shapes real answers have
    for (const ErrorCase& c : error_cases()) {
        BOOST_TEST_CONTEXT("case: " << c.label) {
            NormalizedAnswer fast;
            BOOST_TEST(!rdsgw::detail::normalize_plain(c.body, c.options, fast));
        }
    }
    // Shapes the fast path leaves to the general path although they are valid.
    const std::string file =
        R"({"name":"a","size":1,"download_link":"https://obs.com/a","link_expired_time":")" + kTime + R"("})";
    for (const std::string& body : {R"({"files":[)" + file + R"(],"x":1})",  // unknown member
                                    R"({"files":[)" + file.substr(0, file.size() - 1) + R"(,"x":1}]})",
                                    R"({"files":[{"name":"a","size":"1","download_link":"https://obs.com/a",)"
                                    R"("link_expired_time":")" +
                                        kTime + R"("}]})"}) {  // size as a string
        NormalizedAnswer fast;
        BOOST_TEST(!rdsgw::detail::normalize_plain(body, NormalizeOptions{}, fast));
        BOOST_TEST(
            std::holds_alternative<NormalizedAnswer>(normalize_backup_files(body, {}, NormalizeOptions{})));
    }
}

// The fast path's reader at its edges: JSON white space anywhere between tokens is read; an escape, a byte
// outside ASCII or a number JSON spells otherwise is left to the general path, which accepts what is valid;
// what is not JSON is declined and refused by the general path with its error.
BOOST_AUTO_TEST_CASE(fast_path_reader_edges) {
    const std::string spaced =
        " \r\n{ \"files\" :\t[ { \"name\" : \"a.qp\" , \"size\" : 0 , \"download_link\" : "
        "\"https://obs.com/a\" , \"link_expired_time\" : \"" +
        kTime +
        "\" } , {\"name\":\"b\",\"size\":123456789012345678,\"download_link\":"
        "\"https://obs.com/b\",\"link_expired_link\":\"" +
        kTime + "\"} ] , \"bucket\" : \"bk\" }\n ";
    NormalizedAnswer fast;
    BOOST_TEST_REQUIRE(rdsgw::detail::normalize_plain(spaced, NormalizeOptions{}, fast));
    const auto ref = rdsgw::detail::normalize_reference(spaced, NormalizeOptions{});
    BOOST_TEST_REQUIRE(std::holds_alternative<NormalizedAnswer>(ref));
    BOOST_TEST(fast.body == std::get<NormalizedAnswer>(ref).body);
    BOOST_TEST(fast.file_count == 2u);

    const auto body_with = [](std::string_view name, std::string_view size, std::string_view link) {
        return R"({"files":[{"name":")" + std::string(name) + R"(","size":)" + std::string(size) +
               R"(,"download_link":")" + std::string(link) + R"(","link_expired_time":")" + kTime + R"("}]})";
    };
    // Valid, left to the general path, accepted there.
    for (const std::string& body : {body_with("caf\xc3\xa9.qp", "1", "https://obs.com/a"),
                                    body_with("a\\u0062.qp", "1", "https://obs.com/a"),
                                    body_with("a.qp", "1", "https:\\/\\/obs.com\\/a"),
                                    body_with("a.qp", "1234567890123456789", "https://obs.com/a")}) {
        BOOST_TEST_CONTEXT("body " << body) {
            BOOST_TEST(!rdsgw::detail::normalize_plain(body, NormalizeOptions{}, fast));
            BOOST_TEST(std::holds_alternative<NormalizedAnswer>(
                normalize_backup_files(body, {}, NormalizeOptions{})));
        }
    }
    // Not valid JSON (or not a valid answer): declined here, refused there.
    const std::string good = body_with("a.qp", "1", "https://obs.com/a");
    for (const std::string& body :
         {body_with("a.qp", "01", "https://obs.com/a"), body_with("a.qp", "-1", "https://obs.com/a"),
          body_with("a\x01.qp", "1", "https://obs.com/a"), body_with("a\xff.qp", "1", "https://obs.com/a"),
          body_with("a.qp", "1x", "https://obs.com/a"),
          body_with("a.qp", "1.0e2", "https://obs.com/a"),  // a size is written as an integer
          good.substr(0, good.size() - 2) + ",]}",          // a trailing comma
          good.substr(0, good.size() - 1),                  // cut short
          good + "x",                                       // bytes after the answer
          good + good}) {
        BOOST_TEST_CONTEXT("body " << body) {
            BOOST_TEST(!rdsgw::detail::normalize_plain(body, NormalizeOptions{}, fast));
            BOOST_TEST(
                std::holds_alternative<NormalizeError>(normalize_backup_files(body, {}, NormalizeOptions{})));
        }
    }
}

// Issue 15: whatever a resolver would take for an IP address is refused as a link host. The oracle is the C
// library itself: inet_aton (IPv4 in every form it accepts) and inet_pton (IPv6), over random hosts made of
// the characters those forms use.
BOOST_AUTO_TEST_CASE(hosts_the_resolver_reads_as_addresses_are_refused) {
    std::mt19937 rng(15);
    const std::string_view alphabet = "0123456789xXabcdefABCDEF.:";
    std::uniform_int_distribution<std::size_t> len(1, 16), pick(0, alphabet.size() - 1);
    std::size_t addresses = 0;
    for (int n = 0; n < 300000; ++n) {
        std::string host(len(rng), '\0');
        for (char& c : host) c = alphabet[pick(rng)];
        in_addr v4{};
        in6_addr v6{};
        const bool is_v4 = inet_aton(host.c_str(), &v4) != 0;
        const bool is_v6 = inet_pton(AF_INET6, host.c_str(), &v6) == 1;
        if (!is_v4 && !is_v6) continue;
        ++addresses;
        const std::string link = is_v6 ? "https://[" + host + "]/x" : "https://" + host + "/x";
        std::string_view found;
        BOOST_TEST(rdsgw::detail::check_link(link, false, found) != nullptr, link);
        if (is_v4) BOOST_TEST(rdsgw::detail::check_link_host(host) != nullptr, host);
    }
    BOOST_TEST(addresses > 1000u);
    // And the forms named in the issue, through the whole normalizer.
    for (const std::string host : {"169.254.169.254", "[::1]", "127.0.0.1", "0x7f000001", "2130706433",
                                   "0x7f.1", "127.1", "017700000001", "[::ffff:127.0.0.1]"}) {
        const auto r = run(answer(with("download_link", "\"https://" + host + "/latest/meta-data/\"")));
        BOOST_TEST_REQUIRE(std::holds_alternative<NormalizeError>(r), host);
        BOOST_TEST(std::get<NormalizeError>(r).reason == "host is an IP address", host);
    }
}

BOOST_AUTO_TEST_CASE(file_names_must_be_valid_utf8) {
    using rdsgw::detail::check_file_name;
    BOOST_TEST(check_file_name("backup.qp") == nullptr);
    BOOST_TEST(check_file_name("\xe5\xa4\x87\xe4\xbb\xbd.qp") == nullptr);
    for (const std::string bad : {"a\xff"
                                  "b",
                                  "\xc3", "a\xc0\xaf", "\xed\xa0\x80.qp", "\xf4\x90\x80\x80", "\x85"})
        BOOST_TEST(std::string_view(check_file_name(bad)) == "not valid UTF-8");
    BOOST_TEST(std::string_view(check_file_name("a\xc2\x85")) == "contains a control character");
}
