// The one JSON string escaper (include/rdsgw/text.hpp).
#include "rdsgw/text.hpp"

namespace rdsgw {
namespace {

// Bytes copied as they are: ASCII from 0x20 on (DEL included) except '"' and '\\'. Everything else takes a
// closer look.
constexpr ByteSet kJsonPlain([](unsigned char c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; });

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
