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

// Writes the escape for an ASCII byte that kJsonPlain refuses; returns the end.
char* escape_ascii(char* out, unsigned char c) {
    char second = 0;
    switch (c) {
        case '"':
            second = '"';
            break;
        case '\\':
            second = '\\';
            break;
        case '\b':
            second = 'b';
            break;
        case '\f':
            second = 'f';
            break;
        case '\n':
            second = 'n';
            break;
        case '\r':
            second = 'r';
            break;
        case '\t':
            second = 't';
            break;
        default: {
            const char esc[6] = {'\\', 'u', '0', '0', kHexLower[c >> 4], kHexLower[c & 0xf]};
            std::memcpy(out, esc, sizeof esc);
            return out + sizeof esc;
        }
    }
    out[0] = '\\';
    out[1] = second;
    return out + 2;
}

}  // namespace

char* json_escape_to(char* out, std::string_view s) {
    *out++ = '"';
    const char* const base = s.data();
    const std::size_t n = s.size();
    std::size_t i = 0;
    while (i < n) {
        // Eight plain bytes at a time, copied as one word; then byte by byte up to the next special one.
        for (std::uint64_t v; i + 8 <= n; i += 8, out += 8) {
            std::memcpy(&v, base + i, 8);
            if (!plain8(v)) break;
            std::memcpy(out, &v, 8);
        }
        while (i < n && kJsonPlain(static_cast<unsigned char>(base[i]))) *out++ = base[i++];
        if (i == n) break;
        const auto c = static_cast<unsigned char>(base[i]);
        if (c < 0x80) {
            out = escape_ascii(out, c);
            ++i;
            continue;
        }
        const std::size_t start = i;
        if (decode_utf8(s, i) == kInvalidUtf8) {
            std::memcpy(out, "\\ufffd", 6);
            out += 6;
        } else {
            std::memcpy(out, base + start, i - start);
            out += i - start;
        }
    }
    *out++ = '"';
    return out;
}

void json_escape_append(std::string& out, std::string_view s) {
    const std::size_t at = out.size();
    out.resize(at + json_escaped_bound(s.size()));
    out.resize(static_cast<std::size_t>(json_escape_to(out.data() + at, s) - out.data()));
}

}  // namespace rdsgw
