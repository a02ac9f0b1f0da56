// The one JSON string escaper (include/rdsgw/text.hpp).
#include "rdsgw/text.hpp"

#include <cstdint>
#include <cstring>

namespace rdsgw {
namespace {

// Bytes copied as they are: ASCII from 0x20 on (DEL included) except '"' and '\\'. Everything else takes a
// closer look.
constexpr ByteSet kJsonPlain([](unsigned char c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; });

// Whether all 8 bytes of v are kJsonPlain, in a few word operations instead of 8 table lookups (the escaper
// runs over every access-log line and every normalized answer; per byte it was 6 % of a cache hit's
// instructions). Each test below is exact about whether *any* byte matches (the well-known "has zero byte"
// and "has byte less than n" tricks; n <= 128), which is all that is asked.
bool plain8(std::uint64_t v) {
    constexpr std::uint64_t k01 = 0x0101010101010101ULL, k80 = 0x8080808080808080ULL;
    const std::uint64_t q = v ^ (k01 * '"'), b = v ^ (k01 * '\\');
    const std::uint64_t below_space = (v - k01 * 0x20) & ~v;
    const std::uint64_t quote = (q - k01) & ~q;
    const std::uint64_t backslash = (b - k01) & ~b;
    return ((below_space | quote | backslash | v) & k80) == 0;
}

void escape_ascii(std::string& out, unsigned char c) {
    switch (c) {
        case '"':
            out += "\\\"";
            return;
        case '\\':
            out += "\\\\";
            return;
        case '\b':
            out += "\\b";
            return;
        case '\f':
            out += "\\f";
            return;
        case '\n':
            out += "\\n";
            return;
        case '\r':
            out += "\\r";
            return;
        case '\t':
            out += "\\t";
            return;
        default: {
            const char esc[6] = {'\\', 'u', '0', '0', kHexLower[c >> 4], kHexLower[c & 0xf]};
            out.append(esc, sizeof esc);
        }
    }
}

}  // namespace

void json_escape_append(std::string& out, std::string_view s) {
    out.push_back('"');
    const char* const base = s.data();
    std::size_t i = 0;
    while (i < s.size()) {
        const std::size_t run = i;
        for (std::uint64_t v; i + 8 <= s.size(); i += 8) {
            std::memcpy(&v, base + i, 8);
            if (!plain8(v)) break;
        }
        while (i < s.size() && kJsonPlain(static_cast<unsigned char>(s[i]))) ++i;
        out.append(base + run, i - run);
        if (i == s.size()) break;
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            escape_ascii(out, c);
            ++i;
            continue;
        }
        const std::size_t start = i;
        if (decode_utf8(s, i) == kInvalidUtf8)
            out += "\\ufffd";
        else
            out.append(base + start, i - start);
    }
    out.push_back('"');
}

}  // namespace rdsgw
