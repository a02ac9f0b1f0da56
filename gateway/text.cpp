// The JSON string escaper, the tables' byte hash and the invariant check (include/rdsgw/text.hpp).
#include "rdsgw/text.hpp"

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace rdsgw {
namespace {

// Bytes copied as they are: ASCII from 0x20 on (DEL included) except '"' and '\\'. Everything else takes a
// closer look.
constexpr ByteSet kJsonPlain([](unsigned char c) { return c >= 0x20 && c < 0x80 && c != '"' && c != '\\'; });

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

std::size_t json_plain_span(std::string_view s, std::size_t i) {
#if defined(__SSE2__)
    const __m128i quote = _mm_set1_epi8('"'), backslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(0x20);
    for (; i + 16 <= s.size(); i += 16) {
        const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s.data() + i));
        // As signed bytes, controls (< 0x20) and non-ASCII bytes (negative) are both less than 0x20.
        const __m128i stop = _mm_or_si128(
            _mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, backslash)), _mm_cmplt_epi8(x, space));
        if (const int m = _mm_movemask_epi8(stop); m != 0)
            return i + static_cast<std::size_t>(__builtin_ctz(m));
    }
#endif
    return kJsonPlain.span(s, i);
}

char* json_escape_to(char* out, std::string_view s) {
    *out++ = '"';
    const char* const base = s.data();
    const std::size_t n = s.size();
    std::size_t i = 0;
    while (i < n) {
        const std::size_t plain_end = json_plain_span(s, i);  // copied as they are, in one piece
        std::memcpy(out, base + i, plain_end - i);
        out += plain_end - i;
        i = plain_end;
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
    const std::size_t at = out.size(), bound = json_escaped_bound(s.size());
    if (out.capacity() - at >= bound) {  // room for the worst case: straight into out
        out.resize(at + bound);
        out.resize(static_cast<std::size_t>(json_escape_to(out.data() + at, s) - out.data()));
        return;
    }
    // Too little room for six bytes per byte: escape into per-thread scratch and append what it took, so
    // that out (a normalized answer sized for its input) grows by the text, not by the worst case.
    thread_local std::string scratch;
    scratch.resize(bound);
    out.append(scratch.data(), static_cast<std::size_t>(json_escape_to(scratch.data(), s) - scratch.data()));
}

namespace {
__extension__ typedef unsigned __int128 u128;
inline std::uint64_t mum(std::uint64_t a, std::uint64_t b) {
    const u128 r = static_cast<u128>(a) * b;
    return static_cast<std::uint64_t>(r) ^ static_cast<std::uint64_t>(r >> 64);
}
inline std::uint64_t read8(const char* p) {
    std::uint64_t v;
    std::memcpy(&v, p, 8);
    return v;
}
struct HashSeed {
    std::uint64_t k[3];
    HashSeed() {
        for (auto& v : k) v = os_seed() | 1;
    }
};
}  // namespace

[[gnu::noinline, gnu::cold]] std::uint64_t os_seed() noexcept {
    try {
        std::random_device rd;
        return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    } catch (...) {  // no OS entropy source
        static std::atomic<std::uint64_t> calls{0};
        std::uint64_t x =
            static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
            reinterpret_cast<std::uintptr_t>(&calls) ^
            (calls.fetch_add(1, std::memory_order_relaxed) + 1) * 0x9e3779b97f4a7c15ULL;
        x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;  // splitmix64's finalizer
        x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
        return x ^ (x >> 31);
    }
}

std::uint64_t hash_bytes(std::string_view s) noexcept {
    static const HashSeed seed;
    constexpr std::uint64_t p0 = 0xa0761d6478bd642fULL, p1 = 0xe7037ed1a0b428dbULL;
    const char* d = s.data();
    std::size_t n = s.size();
    std::uint64_t h = seed.k[0] ^ mum(n ^ p0, seed.k[1]);
    for (; n > 16; n -= 16, d += 16) h = mum(read8(d) ^ p1 ^ h, read8(d + 8) ^ seed.k[2]);
    // The last 0..16 bytes, in whole-word reads that may overlap bytes already taken (never a byte loop).
    const char* const end = s.data() + s.size();
    std::uint64_t a = 0, b = 0;
    if (n > 8) {
        a = read8(d);
        b = read8(end - 8);
    } else if (s.size() >= 8) {
        a = read8(end - 8);
    } else if (n >= 4) {
        std::uint32_t lo, hi;
        std::memcpy(&lo, d, 4);
        std::memcpy(&hi, end - 4, 4);
        a = (static_cast<std::uint64_t>(hi) << 32) | lo;
    } else if (n > 0) {
        const auto byte = [](char c) { return static_cast<std::uint64_t>(static_cast<unsigned char>(c)); };
        a = (byte(d[0]) << 16) | (byte(d[n / 2]) << 8) | byte(d[n - 1]);
    }
    return mum(mum(a ^ p1 ^ h, b ^ seed.k[2]) ^ p0, s.size() ^ seed.k[1]);
}

void RawOut::uint(std::uint64_t v) {
    p_ = std::to_chars(p_, p_ + 20, v).ptr;
}

void invariant_failed(const char* cond, const char* file, int line) noexcept {
    std::fprintf(stderr, "rds-gateway: internal invariant failed: %s (%s:%d)\n", cond, file, line);
    std::abort();
}

}  // namespace rdsgw
