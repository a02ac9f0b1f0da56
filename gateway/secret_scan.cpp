// The gateway's credentials in upstream bodies (include/rdsgw/secret_scan.hpp).
//
// The raw scan is glibc's memmem (two-way search: linear, no allocation) per secret. Decoding is Boost.JSON's
// own SAX parser (the same decoder that reads every answer), with a handler that only collects strings: no
// DOM. Only a body with a backslash is decoded: without one, every decoded string is a substring of the raw
// bytes, which the raw scan has already covered.
#include "rdsgw/secret_scan.hpp"

#include <boost/json/basic_parser_impl.hpp>

#include "rdsgw/json_sax.hpp"

#include <cstring>
#include <string>

namespace rdsgw {
namespace {

namespace json = boost::json;

bool scanned(std::string_view secret) {
    return secret.size() >= kMinScannedSecretBytes;
}

// glibc's memmem prepares a needle longer than 256 bytes (two-way factorization, shift table) at a cost of
// about 1 us per KB of needle, and credentials are long (IAM tokens: KBs). So a long secret is first looked
// for by its first kProbe bytes (memmem's quick short-needle search) and each hit is checked with memcmp;
// after kMaxProbeHits false hits the plain memmem takes over, which keeps the worst case linear.
constexpr std::size_t kProbe = 32;
constexpr int kMaxProbeHits = 8;

bool contains(std::string_view hay, std::string_view needle) {
    if (needle.size() > hay.size()) return false;
    const char* p = hay.data();
    if (needle.size() > kProbe) {
        const char* const last = hay.data() + (hay.size() - needle.size());  // the last possible start
        for (int hits = 0; hits < kMaxProbeHits; ++hits) {
            const auto span = static_cast<std::size_t>(last - p) + kProbe;
            const auto* hit = static_cast<const char*>(::memmem(p, span, needle.data(), kProbe));
            if (hit == nullptr) return false;
            if (std::memcmp(hit + kProbe, needle.data() + kProbe, needle.size() - kProbe) == 0) return true;
            if (hit == last) return false;
            p = hit + 1;
        }
    }
    const auto rest = static_cast<std::size_t>(hay.data() + hay.size() - p);
    return ::memmem(p, rest, needle.data(), needle.size()) != nullptr;
}

// Collects each decoded string (member names too) and stops the parse at the first one holding a secret.
struct StringScanner : SaxIgnoring {
    static constexpr std::size_t max_object_size = static_cast<std::size_t>(-1);
    static constexpr std::size_t max_array_size = static_cast<std::size_t>(-1);
    static constexpr std::size_t max_key_size = static_cast<std::size_t>(-1);
    static constexpr std::size_t max_string_size = static_cast<std::size_t>(-1);

    explicit StringScanner(std::span<const std::string_view> s) : secrets(s) {}

    std::span<const std::string_view> secrets;
    std::string buf;  // a string handed over in parts
    std::optional<std::size_t> found;

    bool part(json::string_view s) {
        buf.append(s.data(), s.size());
        return true;
    }
    bool whole(json::string_view s) {
        std::string_view text(s.data(), s.size());
        if (!buf.empty()) {
            buf.append(s.data(), s.size());
            text = buf;
        }
        for (std::size_t i = 0; i < secrets.size(); ++i) {
            if (scanned(secrets[i]) && contains(text, secrets[i])) {
                found = i;
                return false;  // stops the parse
            }
        }
        buf.clear();
        return true;
    }

    bool on_key_part(json::string_view s, std::size_t, json::error_code&) { return part(s); }
    bool on_key(json::string_view s, std::size_t, json::error_code&) { return whole(s); }
    bool on_string_part(json::string_view s, std::size_t, json::error_code&) { return part(s); }
    bool on_string(json::string_view s, std::size_t, json::error_code&) { return whole(s); }
};

std::optional<std::size_t> find_in_decoded_strings(std::string_view body,
                                                   std::span<const std::string_view> secrets) {
    json::parse_options opt;
    opt.max_depth = 4096;  // a deep document is still read (the parser keeps its stack on the heap)
    opt.allow_comments = true;
    opt.allow_trailing_commas = true;
    opt.allow_invalid_utf8 = true;
    json::basic_parser<StringScanner> p(opt, secrets);
    json::error_code ec;
    p.write_some(false, body.data(), body.size(), ec);
    return p.handler().found;
}

}  // namespace

std::optional<SecretMatch> find_secret(std::string_view body, std::span<const std::string_view> secrets) {
    if (body.empty()) return std::nullopt;
    bool any = false;
    for (std::size_t i = 0; i < secrets.size(); ++i) {
        if (!scanned(secrets[i])) continue;
        any = true;
        if (contains(body, secrets[i])) return SecretMatch{i, false};
    }
    if (!any || std::memchr(body.data(), '\\', body.size()) == nullptr) return std::nullopt;
    if (const auto i = find_in_decoded_strings(body, secrets)) return SecretMatch{*i, true};
    return std::nullopt;
}

}  // namespace rdsgw
