// Small text helpers shared by the stages: byte tables, ASCII case, hex digits, UTF-8 decoding and the one
// JSON string escaper (access log, diagnostic log, gateway-made errors and the normalizer all use it).
#pragma once
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

namespace rdsgw {

// A set of byte values, built at compile time from a predicate: the byte scans over request targets, links,
// names and JSON strings cost one table lookup per byte.
struct ByteSet {
    bool has[256] = {};
    template <class Pred>
    constexpr explicit ByteSet(Pred pred) {
        for (unsigned c = 0; c < 256; ++c) has[c] = pred(static_cast<unsigned char>(c));
    }
    constexpr bool operator()(unsigned char c) const { return has[c]; }
    // The first index from `i` on whose byte is not in the set (s.size() when none): eight bytes per branch
    // (their table entries and-ed together), then byte by byte.
    constexpr std::size_t span(std::string_view s, std::size_t i) const {
        const auto at = [&](std::size_t k) {
            return static_cast<unsigned>(has[static_cast<unsigned char>(s[k])]);
        };
        while (i + 8 <= s.size() && (at(i) & at(i + 1) & at(i + 2) & at(i + 3) & at(i + 4) & at(i + 5) &
                                     at(i + 6) & at(i + 7)) != 0)
            i += 8;
        while (i < s.size() && at(i) != 0) ++i;
        return i;
    }
};

constexpr char ascii_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

constexpr bool ascii_iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    return true;
}

// Strips HTTP optional white space (spaces and tabs) from both ends.
constexpr std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Calls f(element) for each element of a comma-separated HTTP list (RFC 9110 §5.6.1: Cache-Control,
// Connection, Content-Encoding...), trimmed of optional white space; empty elements ("a, ,b") are visited
// too, as "". When f returns bool, false stops the walk and is returned; otherwise every element is visited.
template <class F>
constexpr bool for_each_list_element(std::string_view list, F f) {
    while (true) {
        const auto comma = list.find(',');
        const std::string_view element = trim_ows(list.substr(0, comma));
        if constexpr (std::is_void_v<std::invoke_result_t<F&, std::string_view>>)
            f(element);
        else if (!f(element))
            return false;
        if (comma == std::string_view::npos) return true;
        list.remove_prefix(comma + 1);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Hex digits: the one place for them (signatures, request ids, percent-escapes, JSON \u escapes).

inline constexpr char kHexLower[] = "0123456789abcdef";
inline constexpr char kHexUpper[] = "0123456789ABCDEF";

// The value of one hex digit (either case), or -1.
constexpr int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}
constexpr bool is_hex_digit(char c) {
    return hex_value(c) >= 0;
}

// The 8 lower-case hex digits of v as 8 bytes, the first digit in the lowest byte: each nibble spread to
// its own byte, then '0'+d or 'a'+d-10 for all eight at once (no table, no loop).
inline std::uint64_t hex_digits32(std::uint32_t v) {
    std::uint64_t x = v;
    x = ((x & 0xffff0000ULL) >> 16) | ((x & 0xffffULL) << 32);  // high half to the low bytes: digit order
    x = ((x & 0x0000ff000000ff00ULL) >> 8) | ((x & 0x000000ff000000ffULL) << 16);
    x = ((x & 0x00f000f000f000f0ULL) >> 4) | ((x & 0x000f000f000f000fULL) << 8);
    const std::uint64_t letters = ((x + 0x0606060606060606ULL) >> 4) & 0x0101010101010101ULL;  // digit > 9
    return x + 0x3030303030303030ULL + letters * ('a' - '0' - 10);
}
// The 16 lower-case hex digits of v, most significant first, at out.
inline char* put_hex64(char* out, std::uint64_t v) {
    const std::uint64_t hi = hex_digits32(static_cast<std::uint32_t>(v >> 32));
    const std::uint64_t lo = hex_digits32(static_cast<std::uint32_t>(v));
    static_assert(std::endian::native == std::endian::little, "hex_digits32 puts the first digit lowest");
    std::memcpy(out, &hi, 8);
    std::memcpy(out + 8, &lo, 8);
    return out + 16;
}
// Appends the lower-hex form of n bytes (two digits per byte).
inline void append_hex_lower(std::string& out, const unsigned char* p, std::size_t n) {
    const std::size_t at = out.size();
    out.resize(at + 2 * n);
    for (std::size_t i = 0; i < n; ++i) {
        out[at + 2 * i] = kHexLower[p[i] >> 4];
        out[at + 2 * i + 1] = kHexLower[p[i] & 0x0f];
    }
}
inline std::string hex_lower(const unsigned char* p, std::size_t n) {
    std::string out;
    append_hex_lower(out, p, n);
    return out;
}

// An internal invariant (never a check of input): in the sanitizer builds (RDSGW_CHECKED) a failure prints
// the condition and aborts, so the test suites catch it; the Release build compiles it out.
[[noreturn]] void invariant_failed(const char* cond, const char* file, int line) noexcept;
#if defined(RDSGW_CHECKED)
#define RDSGW_INVARIANT(cond) ((cond) ? void(0) : ::rdsgw::invariant_failed(#cond, __FILE__, __LINE__))
#else
#define RDSGW_INVARIANT(cond) ((void)0)
#endif

// Writes into raw storage the caller has sized for everything written (no bounds checks): literals as
// fixed-size copies, views, decimal integers. For text built on every request (the access line, the
// response head), where a std::string's capacity check, call and copy per piece add up.
class RawOut {
  public:
    explicit RawOut(char* p) : p_(p) {}
    char* end() const { return p_; }
    void advance(char* to) { p_ = to; }
    template <std::size_t N>
    void lit(const char (&s)[N]) {  // a string literal, copied without its NUL: a fixed-size copy
        std::memcpy(p_, s, N - 1);
        p_ += N - 1;
    }
    void raw(std::string_view s) {
        if (!s.empty()) std::memcpy(p_, s.data(), s.size());
        p_ += s.size();
    }
    void ch(char c) { *p_++ = c; }
    void uint(std::uint64_t v);  // at most 20 bytes
  private:
    char* p_;
};

// ---------------------------------------------------------------------------------------------------------
// Hashing and seeds.

// 64 bits from the OS (std::random_device) to seed the gateway's own generators and hash: request and span
// ids, retry jitter, hash_bytes. When the OS has no entropy source, the clock, an address and a counter
// (never a secret's source). Out of line and cold: a std::random_device is a 5 KB object on the stack.
std::uint64_t os_seed() noexcept;

// A 64-bit hash of bytes for the gateway's own tables (cache index and shards, single-flight, metric
// cells), seeded once per process from the OS. Multiply-and-fold over 16 bytes per step (wyhash's
// construction): for the 70-byte cache key of a miss it costs about a third of std::hash, which a miss
// computes about ten times. The seed keeps collisions from being chosen offline; keys are validated ids.
std::uint64_t hash_bytes(std::string_view s) noexcept;
// hash_bytes as an unordered container's hash, with heterogeneous lookup (by string_view, no key built).
// Deliberately not noexcept: libstdc++ then keeps each node's hash, as it does for std::hash of strings,
// instead of hashing the next node's key again at every step of a bucket walk.
struct BytesHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return hash_bytes(s); }
};

// ---------------------------------------------------------------------------------------------------------
// UTF-8.

inline constexpr char32_t kInvalidUtf8 = 0xFFFFFFFF;

// Decodes the UTF-8 sequence starting at s[i] (i < s.size()) and moves i past it. Only well-formed sequences
// count (Unicode Table 3-7: no overlong forms, no surrogates, nothing above U+10FFFF); for anything else it
// returns kInvalidUtf8 and moves i past the maximal ill-formed subpart (at least one byte), the unit that
// Unicode's "U+FFFD substitution of maximal subparts" replaces.
constexpr char32_t decode_utf8(std::string_view s, std::size_t& i) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    if (b0 < 0x80) {
        ++i;
        return b0;
    }
    std::size_t need = 0;
    char32_t cp = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the range of the next byte
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1;
        cp = b0 & 0x1Fu;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        cp = b0 & 0x0Fu;
        if (b0 == 0xE0) lo = 0xA0;  // no overlong forms
        if (b0 == 0xED) hi = 0x9F;  // no surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        cp = b0 & 0x07u;
        if (b0 == 0xF0) lo = 0x90;  // no overlong forms
        if (b0 == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
    } else {
        ++i;
        return kInvalidUtf8;
    }
    std::size_t j = i + 1;
    for (std::size_t k = 0; k < need; ++k, ++j) {
        const auto b = j < s.size() ? static_cast<unsigned char>(s[j]) : 0;
        if (j >= s.size() || b < lo || b > hi) {
            i = j;
            return kInvalidUtf8;
        }
        cp = (cp << 6) | (b & 0x3Fu);
        lo = 0x80;
        hi = 0xBF;
    }
    i = j;
    return cp;
}

// ---------------------------------------------------------------------------------------------------------
// JSON.

// Appends s to out as a JSON string literal (with its quotes). The output is valid JSON (RFC 8259) for any
// input bytes: '"' and '\\' are escaped, control characters (below 0x20) are written as \b \f \n \r \t or
// \u00XX (lower-case hex), well-formed UTF-8 (and DEL) is copied unchanged, and each ill-formed UTF-8
// subpart (see decode_utf8) becomes \ufffd. This is also how Boost.JSON's serializer writes a string, so a
// normalized answer spells every string one way. Runs of printable ASCII are copied in one step.
void json_escape_append(std::string& out, std::string_view s);

// The same into raw storage: writes the literal at out and returns its end. The room it needs is at most
// json_escaped_bound(s.size()) bytes (two quotes, and six bytes for any input byte: "\u00XX" or "\ufffd").
char* json_escape_to(char* out, std::string_view s);
// The first index from `i` on whose byte a JSON string cannot hold as it is (a control character, '"', '\\'
// or a byte outside ASCII), or s.size(): the run json_escape_to copies unchanged, and the run the
// normalizer's reader takes without a closer look. Sixteen bytes per step with SSE2 (every x86-64 CPU).
std::size_t json_plain_span(std::string_view s, std::size_t i);
constexpr std::size_t json_escaped_bound(std::size_t n) {
    return 2 + 6 * n;
}

}  // namespace rdsgw
