// parse_plain_answer (see include/rdsgw/answer_wire.hpp).
#include "rdsgw/answer_wire.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "rdsgw/text.hpp"

namespace rdsgw {
namespace {

// The field names read here: letters, digits and '-' (Beast takes any RFC 9110 token; a name with another
// token byte is declined).
constexpr ByteSet kName([](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
});
// A field value's or a reason's bytes here: printable ASCII, space and tab (Beast also takes 0x80-0xff).
constexpr ByteSet kText([](unsigned char c) { return c == '\t' || (c >= 0x20 && c <= 0x7e); });

constexpr std::size_t kMaxHead = 64 * 1024;  // the exchange's header_limit for Beast
constexpr std::size_t kMaxLengthDigits = 15;

bool blank(char c) {
    return c == ' ' || c == '\t';
}
bool digit(char c) {
    return c >= '0' && c <= '9';
}

// The first byte from p on (before end) not in kText, or end: sixteen bytes per step while there are.
const char* text_end(const char* p, const char* end) {
#if defined(__SSE2__)
    const __m128i below = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7f), tab = _mm_set1_epi8('\t');
    for (; end - p >= 16; p += 16) {
        const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        // As signed bytes, controls and bytes above 0x7f are both below 0x20.
        const __m128i bad = _mm_andnot_si128(_mm_cmpeq_epi8(x, tab),
                                             _mm_or_si128(_mm_cmplt_epi8(x, below), _mm_cmpeq_epi8(x, del)));
        if (const int m = _mm_movemask_epi8(bad); m != 0) return p + __builtin_ctz(static_cast<unsigned>(m));
    }
#endif
    while (p < end && kText(static_cast<unsigned char>(*p))) ++p;
    return p;
}

// The first byte from p on (before end) not in kName, or end.
const char* name_end(const char* p, const char* end) {
#if defined(__SSE2__)
    const auto in = [](__m128i x, char lo, char hi) {  // lo <= x <= hi, for ASCII lo and hi
        return _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8(static_cast<char>(lo - 1))),
                             _mm_cmplt_epi8(x, _mm_set1_epi8(static_cast<char>(hi + 1))));
    };
    for (; end - p >= 16; p += 16) {
        const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
        const __m128i ok =
            _mm_or_si128(_mm_or_si128(in(x, '0', '9'), in(_mm_or_si128(x, _mm_set1_epi8(0x20)), 'a', 'z')),
                         _mm_cmpeq_epi8(x, _mm_set1_epi8('-')));
        if (const int m = _mm_movemask_epi8(ok); m != 0xffff)
            return p + __builtin_ctz(static_cast<unsigned>(~m & 0xffff));
    }
#endif
    while (p < end && kName(static_cast<unsigned char>(*p))) ++p;
    return p;
}

// A field name (kName bytes, as name_end() has checked) against a name in lower case made of letters and
// '-': or-ing 0x20 into a kName byte gives a lower-case letter only for that letter in either case, and '-'
// only for '-' (a digit stays a digit). Eight (or four) bytes at a time, the last word overlapping the one
// before; names of 4 to 24 bytes.
template <std::size_t N>
bool name_is(std::string_view name, const char (&lower)[N]) {
    constexpr std::size_t n = N - 1;
    static_assert(n >= 4 && n <= 24);
    if (name.size() != n) return false;
    // The differences of the words, or-ed: zero when every word is the same.
    if constexpr (n >= 8) {
        constexpr std::uint64_t kCase = 0x2020202020202020ULL;
        const auto diff = [&](std::size_t at) {
            std::uint64_t a, b;
            std::memcpy(&a, name.data() + at, 8);
            std::memcpy(&b, lower + at, 8);
            return (a | kCase) ^ b;
        };
        std::uint64_t d = diff(0) | diff(n - 8);
        if constexpr (n > 16) d |= diff(8);
        return d == 0;
    } else {
        constexpr std::uint32_t kCase = 0x20202020U;
        const auto diff = [&](std::size_t at) {
            std::uint32_t a, b;
            std::memcpy(&a, name.data() + at, 4);
            std::memcpy(&b, lower + at, 4);
            return (a | kCase) ^ b;
        };
        return (diff(0) | diff(n - 4)) == 0;
    }
}

}  // namespace

bool parse_plain_answer(std::string_view in, std::size_t max_body, PlainAnswer& a) {
    constexpr std::string_view kVersion = "HTTP/1.1 ";
    if (in.size() < 19 || in.substr(0, kVersion.size()) != kVersion) return false;
    if (!digit(in[9]) || !digit(in[10]) || !digit(in[11]) || in[12] != ' ') return false;
    a = PlainAnswer{};
    a.status = static_cast<unsigned>((in[9] - '0') * 100 + (in[10] - '0') * 10 + (in[11] - '0'));
    if (a.status < 200 || a.status > 599 || a.status == 204 || a.status == 304) return false;
    const char* const base = in.data();
    const char* const end = base + std::min(in.size(), kMaxHead);
    const char* p = text_end(base + 13, end);
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n') return false;
    p += 2;

    std::optional<std::size_t> length;
    for (;;) {
        if (end - p < 2) return false;  // the head does not end within the limit (or not yet)
        if (*p == '\r') {
            if (p[1] != '\n') return false;
            p += 2;
            break;
        }
        const char* const ne = name_end(p, end);
        if (ne == p || ne == end || *ne != ':') return false;
        const std::string_view name(p, static_cast<std::size_t>(ne - p));
        const char* v = ne + 1;
        while (v < end && blank(*v)) ++v;
        const char* const e = text_end(v, end);
        if (end - e < 2 || e[0] != '\r' || e[1] != '\n') return false;
        const char* ve = e;
        while (ve > v && blank(ve[-1])) --ve;
        const std::string_view value(v, static_cast<std::size_t>(ve - v));
        p = e + 2;
        // The first line of a field wins, as AnswerParser's take() has it.
        const auto first = [value](bool& seen, std::string_view& out) {
            if (!seen) {
                seen = true;
                out = value;
            }
        };

        switch (name.size()) {
            case 7:
                if (name_is(name, "upgrade")) return false;
                break;
            case 10:
                if (name_is(name, "connection")) {
                    if (ascii_iequals(value, "close"))
                        a.keep_alive = false;
                    else if (!ascii_iequals(value, "keep-alive"))
                        return false;
                }
                break;
            case 11:
                if (name_is(name, "retry-after")) first(a.has_retry_after, a.retry_after);
                break;
            case 12:
                if (name_is(name, "x-request-id")) first(a.has_request_id, a.request_id);
                break;
            case 14:
                if (name_is(name, "content-length")) {
                    if (length || value.empty() || value.size() > kMaxLengthDigits ||
                        (value.size() > 1 && value[0] == '0'))
                        return false;
                    std::size_t l = 0;
                    for (const char c : value) {
                        if (!digit(c)) return false;
                        l = l * 10 + static_cast<std::size_t>(c - '0');
                    }
                    length = l;
                }
                break;
            case 15:
                if (name_is(name, "x-subject-token")) first(a.has_subject_token, a.subject_token);
                break;
            case 16:
                if (name_is(name, "proxy-connection")) return false;
                if (name_is(name, "content-encoding")) {
                    if (a.content_encodings == a.content_encoding.size()) return false;
                    a.content_encoding[a.content_encodings++] = value;
                }
                break;
            case 17:
                if (name_is(name, "transfer-encoding")) return false;
                break;
            default:
                break;
        }
    }
    const auto head = static_cast<std::size_t>(p - base);
    if (!length || *length > max_body || *length > in.size() - head) return false;
    a.body = in.substr(head, *length);
    a.size = head + *length;
    return true;
}

}  // namespace rdsgw
