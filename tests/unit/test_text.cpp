#define BOOST_TEST_MODULE text
#include <boost/test/unit_test.hpp>

#include <boost/json.hpp>

#include <cstdio>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "rdsgw/text.hpp"

using namespace rdsgw;
using namespace std::string_literals;

namespace {

std::string escaped(std::string_view s) {
    std::string out;
    json_escape_append(out, s);
    return out;
}

// UTF-8 encoding of one code point (test oracle; no validity checks).
std::string encode(char32_t cp) {
    std::string s;
    if (cp < 0x80) {
        s += static_cast<char>(cp);
    } else if (cp < 0x800) {
        s += static_cast<char>(0xC0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        s += static_cast<char>(0xE0 | (cp >> 12));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        s += static_cast<char>(0xF0 | (cp >> 18));
        s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        s += static_cast<char>(0x80 | (cp & 0x3F));
    }
    return s;
}

// The escaper's output must be one valid JSON string; returns its decoded value.
std::string parse_back(const std::string& json_text) {
    boost::system::error_code ec;
    const boost::json::value v = boost::json::parse(json_text, ec);
    BOOST_REQUIRE_MESSAGE(!ec && v.is_string(), "not a JSON string: " << json_text);
    return std::string(v.get_string());
}

bool valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();)
        if (decode_utf8(s, i) == kInvalidUtf8) return false;
    return true;
}

}  // namespace

BOOST_AUTO_TEST_CASE(escapes_table) {
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"", R"("")"},
        {"plain-id_1.2", R"("plain-id_1.2")"},
        {"a\"b\\c/d", R"("a\"b\\c/d")"},
        {"\b\f\n\r\t", R"("\b\f\n\r\t")"},
        {"\x01\x1f"s, R"("\u0001\u001f")"},
        {"a\0b"s, R"("a\u0000b")"},
        {"\x7f", "\"\x7f\""},  // DEL is valid JSON as it is (as Boost.JSON writes it)
        {"\xc3\xa9\xe5\xa4\x87", "\"\xc3\xa9\xe5\xa4\x87\""},  // well-formed UTF-8 is copied
        {"\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\""},
        // Ill-formed UTF-8: one U+FFFD per maximal subpart (Unicode's recommended practice).
        {"a\xff"
         "b",
         R"("a\ufffdb")"},
        {"\xc3", R"("\ufffd")"},
        {"\xc0\xaf", R"("\ufffd\ufffd")"},            // overlong '/'
        {"\xe0\x80\xaf", R"("\ufffd\ufffd\ufffd")"},  // overlong '/'
        {"\xed\xa0\x80", R"("\ufffd\ufffd\ufffd")"},  // a surrogate
        {"\xf0\x9f\x98", R"("\ufffd")"},              // truncated 4-byte sequence
        {"\xf0\x9f\x98"
         "a",
         R"("\ufffda")"},
        {"\xf4\x90\x80\x80", R"("\ufffd\ufffd\ufffd\ufffd")"},  // above U+10FFFF
        {"\x80\xbf", R"("\ufffd\ufffd")"},                      // lone continuation bytes
    };
    for (const auto& [in, out] : cases) BOOST_TEST(escaped(in) == out, "input of " << in.size() << " bytes");
    std::string appended = "x";
    json_escape_append(appended, "y");
    BOOST_TEST(appended == "x\"y\"");
}

// Every 1- and 2-byte input, and many random ones: the output is one valid JSON string; for well-formed
// UTF-8 it decodes to the input and is exactly what Boost.JSON's serializer writes.
BOOST_AUTO_TEST_CASE(output_is_valid_json_for_any_bytes) {
    std::vector<std::string> inputs;
    for (unsigned a = 0; a < 256; ++a) {
        inputs.push_back(std::string(1, static_cast<char>(a)));
        for (unsigned b = 0; b < 256; ++b) inputs.push_back({static_cast<char>(a), static_cast<char>(b)});
    }
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> len(0, 12), byte(0, 255);
    for (int n = 0; n < 50000; ++n) {
        std::string s(static_cast<std::size_t>(len(rng)), '\0');
        for (char& c : s) c = static_cast<char>(byte(rng) < 160 ? byte(rng) : 0x80 + byte(rng) % 0x75);
        inputs.push_back(std::move(s));
    }
    std::size_t valid = 0;
    for (const auto& in : inputs) {
        const std::string out = escaped(in);
        const std::string back = parse_back(out);
        if (valid_utf8(in)) {
            ++valid;
            BOOST_TEST(back == in);
            BOOST_TEST(out == boost::json::serialize(boost::json::string(in)));
        } else {
            BOOST_TEST(valid_utf8(back));
            BOOST_TEST(back.find("\xef\xbf\xbd") != std::string::npos);  // U+FFFD marks what was replaced
        }
    }
    BOOST_TEST(valid > 1000u);
}

// The escaper skips plain text sixteen bytes at a time (json_plain_span): every byte value at every offset of
// a longer string (inside and after the 16-byte block) is found and escaped exactly as on its own; longer
// random UTF-8 text comes out as Boost.JSON's serializer writes it.
BOOST_AUTO_TEST_CASE(the_word_at_a_time_scan_misses_no_byte) {
    constexpr std::size_t kLen = 27;
    for (unsigned c = 0; c < 256; ++c) {
        const std::string alone = escaped(std::string(1, static_cast<char>(c)));
        const std::string inner = alone.substr(1, alone.size() - 2);
        for (std::size_t at = 0; at < kLen; ++at) {
            std::string in(kLen, 'a');
            in[at] = static_cast<char>(c);
            const std::string want =
                "\"" + std::string(at, 'a') + inner + std::string(kLen - at - 1, 'a') + "\"";
            BOOST_TEST(escaped(in) == want, "byte " << c << " at " << at);
        }
    }
    std::mt19937 rng(11);
    std::uniform_int_distribution<int> len(8, 80), ascii(0, 127), pick(0, 99);
    const char* const multi[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    for (int n = 0; n < 20000; ++n) {
        std::string in;
        const int l = len(rng);
        while (static_cast<int>(in.size()) < l) {
            const int p = pick(rng);
            if (p < 90)
                in.push_back(static_cast<char>(p < 80 ? 'a' + p % 26 : ascii(rng)));
            else
                in += multi[p % 3];
        }
        BOOST_TEST(escaped(in) == boost::json::serialize(boost::json::string(in)));
    }
}

BOOST_AUTO_TEST_CASE(decode_utf8_accepts_exactly_the_well_formed_sequences) {
    for (char32_t cp = 0; cp <= 0x10FFFF; ++cp) {
        const std::string s = encode(cp);
        std::size_t i = 0;
        const char32_t got = decode_utf8(s, i);
        if (cp >= 0xD800 && cp <= 0xDFFF) {
            BOOST_TEST((got == kInvalidUtf8 && i == 1u));  // a surrogate: the lead byte alone is the subpart
        } else if (got != cp || i != s.size()) {
            BOOST_TEST(false, "code point " << static_cast<unsigned>(cp));
        }
    }
    // Overlong forms and lead bytes that never start a sequence.
    for (const std::string bad :
         {"\xc0\x80", "\xc1\xbf", "\xe0\x9f\xbf", "\xf0\x8f\xbf\xbf", "\xf5\x80\x80\x80", "\xff", "\x80"}) {
        std::size_t i = 0;
        BOOST_TEST((decode_utf8(bad, i) == kInvalidUtf8 && i == 1u));
    }
    // A truncated sequence: its valid prefix is one subpart.
    const std::string truncated = "\xe5\xa4";
    std::size_t i = 0;
    BOOST_TEST((decode_utf8(truncated, i) == kInvalidUtf8 && i == 2u));
}

BOOST_AUTO_TEST_CASE(hex_helpers) {
    for (unsigned c = 0; c < 256; ++c) {
        const char ch = static_cast<char>(c);
        const std::string_view digits = "0123456789abcdef";
        const std::string_view upper = "0123456789ABCDEF";
        int expected = -1;
        if (digits.find(ch) != std::string_view::npos) expected = static_cast<int>(digits.find(ch));
        if (upper.find(ch) != std::string_view::npos) expected = static_cast<int>(upper.find(ch));
        BOOST_TEST(hex_value(ch) == expected, "byte " << c);
        BOOST_TEST(is_hex_digit(ch) == (expected >= 0));
    }
    const unsigned char bytes[] = {0x00, 0x0f, 0xa5, 0xff};
    BOOST_TEST(hex_lower(bytes, sizeof bytes) == "000fa5ff");
    std::string s = "x";
    append_hex_lower(s, bytes, 2);
    BOOST_TEST(s == "x000f");
    BOOST_TEST(hex_lower(bytes, 0).empty());
    BOOST_TEST(std::string_view(kHexUpper) == "0123456789ABCDEF");
}

// json_escape_to writes into storage sized by json_escaped_bound: the worst inputs (every byte a control
// character, every byte ill-formed UTF-8, every byte a quote) stay inside it, and a guard byte after the
// bound is never touched. json_escape_append, built on it, appends after what is already there.
BOOST_AUTO_TEST_CASE(raw_escaper_stays_inside_its_bound) {
    struct Fill {
        char byte;
        std::string_view each;  // what one such byte becomes
    };
    const Fill fills[] = {
        {'\x01', "\\u0001"}, {'\xff', "\\ufffd"}, {'\x80', "\\ufffd"}, {'"', "\\\""}, {'a', "a"}};
    for (const Fill& f : fills) {
        for (std::size_t n : {0u, 1u, 7u, 8u, 9u, 64u, 1000u}) {
            const std::string in(n, f.byte);
            std::vector<char> room(json_escaped_bound(n) + 1, '\x5a');
            char* end = json_escape_to(room.data(), in);
            BOOST_TEST(static_cast<std::size_t>(end - room.data()) <= json_escaped_bound(n));
            BOOST_TEST(room.back() == '\x5a');
            std::string want = "\"";
            for (std::size_t i = 0; i < n; ++i) want += f.each;
            want += "\"";
            BOOST_TEST(std::string(room.data(), end) == want);
        }
    }
    std::string out = "head:";
    json_escape_append(out, "a\"b");
    BOOST_TEST(out == "head:\"a\\\"b\"");
}

// hash_bytes: the same bytes hash the same; changing any one byte, or the length, changes the hash (every
// length the tail handling distinguishes, 0 to 80); cache-shaped keys spread evenly over 16 shards.
BOOST_AUTO_TEST_CASE(hash_bytes_sees_every_byte_and_spreads) {
    for (std::size_t n = 0; n <= 80; ++n) {
        std::string s(n, 'k');
        for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7) % 26);
        const std::uint64_t h = hash_bytes(s);
        BOOST_TEST(hash_bytes(std::string(s)) == h);
        BOOST_TEST(hash_bytes(s + '\0') != h);
        for (std::size_t i = 0; i < n; ++i) {
            std::string t = s;
            t[i] = static_cast<char>(t[i] ^ 1);
            BOOST_TEST(hash_bytes(t) != h, "length " << n << ", byte " << i);
        }
    }
    std::size_t shards[16] = {};
    constexpr int kKeys = 16000;
    for (int k = 0; k < kKeys; ++k) {
        char id[64];
        std::snprintf(id, sizeof id, "97b026aa9cc4417888c14c84a1ad9860\n%08xbr01", k);
        ++shards[hash_bytes(id) & 15];
    }
    for (std::size_t c : shards) {  // 1,000 expected each; 800..1,200 is more than six standard deviations
        BOOST_TEST(c > 800u);
        BOOST_TEST(c < 1200u);
    }
}

// put_hex64 (request, trace and span ids) spells every value as printf's %016llx does: the edges and
// 100,000 random values.
BOOST_AUTO_TEST_CASE(put_hex64_matches_printf) {
    std::mt19937_64 rng(5);
    for (int i = 0; i < 100300; ++i) {
        const std::uint64_t v = i < 150 ? std::uint64_t(i) : i < 300 ? ~std::uint64_t(i - 150) : rng();
        char got[16], want[17];
        put_hex64(got, v);
        std::snprintf(want, sizeof want, "%016llx", static_cast<unsigned long long>(v));
        BOOST_TEST(std::string_view(got, 16) == std::string_view(want, 16));
    }
}
