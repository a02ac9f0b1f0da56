#define BOOST_TEST_MODULE secret_scan
#include <boost/test/unit_test.hpp>

#include <boost/json.hpp>

#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "rdsgw/normalize.hpp"
#include "rdsgw/secret_scan.hpp"

using rdsgw::find_secret;
using rdsgw::kMinScannedSecretBytes;

namespace {

// Shaped like the real credentials: an IAM token (base64 with '+', '/', '='), an AK/SK security token, a
// static token.
const std::string kIam =
    "MIIEhQYJKoZIhvcNAQcCoIIEdjCCBHICAQExDTALBglghkgBZQMEAgEwggKXBgkqhkiG9w0BBwGgggKIBI+/ab==";
const std::string kSecurity = "gQpjbi1ub3J0aC00iZZ5pGnYx0wdtBgkqhkiG9w0BBwKgggr8MIIK-AIBATENMAsGCWCGSAFl";
const std::string kStatic = "static-token-0123456789";

std::optional<rdsgw::SecretMatch> scan(std::string_view body) {
    return find_secret(body, {kIam, kSecurity, kStatic});
}

// Every character as a \u escape.
std::string all_escaped(std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (const char ch : s) {
        const auto c = static_cast<unsigned char>(ch);
        out += "\\u00";
        out += hex[c >> 4];
        out += hex[c & 15];
    }
    return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(raw_occurrences_in_any_body) {
    // Issue 15's example: an RDS error that echoes the gateway's credential.
    const std::string echo =
        R"({"error_code":"APIGW.0301","error_msg":"bad token: X-Auth-Token: )" + kIam + R"("})";
    auto m = scan(echo);
    BOOST_TEST_REQUIRE(m.has_value());
    BOOST_TEST(m->index == 0u);
    BOOST_TEST(!m->decoded);
    m = scan(R"({"files":[],"debug":{"security_token":")" + kSecurity + R"("}})");
    BOOST_TEST_REQUIRE(m.has_value());
    BOOST_TEST(m->index == 1u);
    m = scan("<html>" + kStatic + "</html>");  // not JSON: the raw bytes are still scanned
    BOOST_TEST_REQUIRE(m.has_value());
    BOOST_TEST(m->index == 2u);
    BOOST_TEST(!scan(R"({"files":[],"note":"MIIEhQYJKoZIhvcNAQcCoIIEdjCCBHICAQExDTALBg"})")
                    .has_value());  // a prefix
    BOOST_TEST(!scan("").has_value());
}

BOOST_AUTO_TEST_CASE(escaped_occurrences_in_json_strings) {
    const std::string slashes = [] {
        std::string s;
        for (const char c : kIam) s += c == '/' ? std::string("\\/") : std::string(1, c);
        return s;
    }();
    const std::vector<std::pair<std::string, std::size_t>> cases = {
        {R"({"error_msg":"bad token: )" + slashes + R"("})", 0},      // "\/" for '/'
        {R"({"error_msg":")" + all_escaped(kSecurity) + R"("})", 1},  // every byte \u-escaped
        {R"({"a":[1,{"b":[[")" + all_escaped(kStatic).substr(0, 12) + kStatic.substr(2) + R"("]]}]})", 2},
        {R"({")" + all_escaped(kStatic) + R"(":1})", 2},  // in a member name
        {R"({"files":[],"x":"\n)" + slashes + R"(\n"})", 0},
        {R"({"x":1,/* lenient */"y":")" + all_escaped(kStatic) + R"(",})", 2},  // comment, trailing comma
        {R"({"x":"\u00ff\ud83d\ude00","y":")" + all_escaped(kStatic) + R"("})",
         2},  // other escapes before it
        {R"([")" + std::string("\xff") + R"(", ")" + all_escaped(kStatic) + R"("])",
         2},  // ill-formed UTF-8 before
    };
    for (const auto& [body, index] : cases) {
        BOOST_TEST_CONTEXT(body) {
            BOOST_TEST(body.find(index == 0 ? kIam : index == 1 ? kSecurity : kStatic) == std::string::npos);
            const auto m = scan(body);
            BOOST_TEST_REQUIRE(m.has_value());
            BOOST_TEST(m->index == index);
            BOOST_TEST(m->decoded);
        }
    }
    // A secret holding characters JSON must escape, and non-ASCII.
    const std::string odd = "tok\"en\\with/\xc3\xa9 and\ttab";
    const std::string body = boost::json::serialize(boost::json::object{{"error_msg", odd}});
    BOOST_TEST(body.find(odd) == std::string::npos);
    const auto m = find_secret(body, {odd});
    BOOST_TEST_REQUIRE(m.has_value());
    BOOST_TEST(m->decoded);
    BOOST_TEST(find_secret(R"({"m":"tok\"en\\with\/\u00e9 and\ttab"})", {odd}).has_value());
}

BOOST_AUTO_TEST_CASE(short_and_empty_secrets_are_not_scanned_for) {
    const std::string body = R"({"files":[],"bucket":"b","error_msg":"a short x"})";
    BOOST_TEST(!find_secret(body, {}).has_value());
    BOOST_TEST(!find_secret(body, {"", "b", "short x"}).has_value());  // 7 bytes: below the minimum
    BOOST_TEST(std::string_view("short x").size() == kMinScannedSecretBytes - 1);
    const auto m = find_secret(body, {"", "a short x"});
    BOOST_TEST_REQUIRE(m.has_value());
    BOOST_TEST(m->index == 1u);
    BOOST_TEST(!find_secret(R"({"e":"\u0061 short x"})", {"short x"}).has_value());
    BOOST_TEST(find_secret(R"({"e":"\u0061 short x"})", {"a short x"}).has_value());
}

BOOST_AUTO_TEST_CASE(clean_bodies_are_not_flagged) {
    const std::string answer =
        R"({"files":[{"name":"a\u00e9.qp","size":1,"download_link":"https:\/\/obs.example.com\/b\/a?Signature=x",)"
        R"("link_expired_time":"2030-01-01T00:00:00+0800"}],"bucket":"b"})";
    BOOST_TEST(!scan(answer).has_value());
    BOOST_TEST(
        !scan(R"({"error_code":"APIGW.0301","error_msg":"Incorrect IAM authentication information"})"));
    BOOST_TEST(!scan("not json \\ at all").has_value());
}

// Random documents hiding one secret behind random escapes, at random depths and positions: always found.
// Also the property the gateway relies on: whatever the normalizer would hand to a caller contains no secret
// unless find_secret flagged the upstream body.
BOOST_AUTO_TEST_CASE(random_escapes_never_hide_a_secret) {
    std::mt19937 rng(42);
    std::bernoulli_distribution coin(0.3);
    const std::vector<std::string> secrets = {kIam, kSecurity, kStatic};
    const auto escape_randomly = [&](std::string_view s) {
        std::string out;
        for (const char c : s) {
            if (c == '/' && coin(rng))
                out += "\\/";
            else if (coin(rng))
                out += all_escaped(std::string_view(&c, 1));
            else
                out += c;
        }
        return out;
    };
    for (int n = 0; n < 2000; ++n) {
        const std::size_t which = static_cast<std::size_t>(n) % secrets.size();
        const std::string text = "prefix " + secrets[which] + " suffix";
        std::string str = "\"" + escape_randomly(text) + "\"";
        for (int depth = n % 5; depth > 0; --depth)
            str = (depth % 2 ? "[1," : "{\"k\":") + str + (depth % 2 ? "]" : "}");
        const std::string body =
            "{\"files\":[],\"bucket\":\"b\",\"" + escape_randomly("x/y") + "\":" + str + "}";
        const auto m = find_secret(body, {kIam, kSecurity, kStatic});
        BOOST_TEST_REQUIRE(m.has_value(), body);
        BOOST_TEST(m->index == which);
        const auto r = rdsgw::normalize_backup_files(body, {}, rdsgw::NormalizeOptions{});
        BOOST_TEST_REQUIRE(std::holds_alternative<rdsgw::NormalizedAnswer>(r), body);
        BOOST_TEST(std::get<rdsgw::NormalizedAnswer>(r).body.find(secrets[which]) != std::string::npos);
    }
}

// Long secrets are looked for by a prefix first, then in full after a few near misses: found at every
// position, also behind many near misses, and never found when one byte differs.
BOOST_AUTO_TEST_CASE(long_secrets_at_every_position_and_behind_near_misses) {
    std::string secret(100, 'x');
    for (std::size_t i = 0; i < secret.size(); ++i) secret[i] = static_cast<char>('A' + i % 26);
    for (std::size_t pos = 0; pos <= 60; ++pos) {
        std::string body(160, '.');
        body.replace(pos, secret.size(), secret);
        BOOST_TEST(find_secret(body, {secret}).has_value(), "at " << pos);
        body[pos + secret.size() - 1] = '#';
        BOOST_TEST(!find_secret(body, {secret}).has_value(), "at " << pos);
    }
    for (const std::size_t near_misses : {0, 1, 7, 8, 9, 40}) {
        std::string body;
        std::string miss = secret;
        miss[50] = '#';  // the prefix matches, the rest does not
        for (std::size_t i = 0; i < near_misses; ++i) body += miss;
        const std::string without = body;
        body += secret;
        BOOST_TEST(find_secret(body, {secret}).has_value(), near_misses << " near misses");
        BOOST_TEST(!find_secret(without, {secret}).has_value(), near_misses << " near misses");
    }
    // Overlapping candidates: a secret that repeats its own prefix.
    const std::string periodic = std::string(40, 'a') + "b";
    BOOST_TEST(find_secret(std::string(100, 'a') + "b", {periodic}).has_value());
    BOOST_TEST(!find_secret(std::string(100, 'a') + "c", {periodic}).has_value());
    BOOST_TEST(find_secret(secret, {secret}).has_value());
    BOOST_TEST(!find_secret(secret.substr(1), {secret}).has_value());
}
