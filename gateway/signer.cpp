// SDK-HMAC-SHA256 signing and verification helpers (see include/rdsgw/signer.hpp and shared/RDS_API.md).
//
// Decisions worth knowing:
// - Percent-decoding (path segments, query names and values) decodes a '%' followed by two hex digits;
//   any other '%' is kept literally (and is therefore canonicalized as "%25"). '+' is never a space.
// - Several headers with the same name (case-insensitively) are signed as one canonical header whose value
//   is their trimmed values joined by ',' in the order given; the name appears once in SignedHeaders.
// - The string to sign uses the (trimmed) value of the X-Sdk-Date header; without one it uses "".
// - parse_sdk_date accepts exactly "YYYYMMDDTHHMMSSZ" with a real calendar date, hours 00-23, minutes and
//   seconds 00-59 (no leap second), years from 1970 up to what system_clock can represent.
#include "rdsgw/signer.hpp"
#include "rdsgw/text.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <memory>
#include <stdexcept>

namespace rdsgw {
namespace {

constexpr std::string_view kAlgorithm = "SDK-HMAC-SHA256";
std::string to_lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = ascii_lower(c);
    return out;
}

// Decodes "%XX" sequences once; anything else (including a malformed '%') is copied as is.
std::string percent_decode(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && is_hex_digit(s[i + 1]) && is_hex_digit(s[i + 2])) {
            out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
            i += 2;
        } else {
            out.push_back(s[i]);
        }
    }
    return out;
}

// OpenSSL algorithm objects are fetched once and shared (they are reference-counted and thread-safe).
const EVP_MD* sha256_md() {
    static const std::unique_ptr<EVP_MD, decltype(&EVP_MD_free)> md(EVP_MD_fetch(nullptr, "SHA256", nullptr),
                                                                    &EVP_MD_free);
    if (!md) throw std::runtime_error("OpenSSL: SHA256 is unavailable");
    return md.get();
}

EVP_MAC* hmac_mac() {
    static const std::unique_ptr<EVP_MAC, decltype(&EVP_MAC_free)> mac(
        EVP_MAC_fetch(nullptr, "HMAC", nullptr), &EVP_MAC_free);
    if (!mac) throw std::runtime_error("OpenSSL: HMAC is unavailable");
    return mac.get();
}

std::string hmac_sha256_hex(std::string_view key, std::string_view data) {
    std::unique_ptr<EVP_MAC_CTX, decltype(&EVP_MAC_CTX_free)> ctx(EVP_MAC_CTX_new(hmac_mac()),
                                                                  &EVP_MAC_CTX_free);
    if (!ctx) throw std::runtime_error("OpenSSL: cannot create an HMAC context");
    char digest_name[] = "SHA256";
    const OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
        OSSL_PARAM_construct_end(),
    };
    // OpenSSL rejects a null key pointer even with length 0, so give it a valid address.
    static const unsigned char empty_key = 0;
    const auto* key_ptr = key.empty() ? &empty_key : reinterpret_cast<const unsigned char*>(key.data());
    std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
    std::size_t out_len = 0;
    if (EVP_MAC_init(ctx.get(), key_ptr, key.size(), params) != 1 ||
        EVP_MAC_update(ctx.get(), reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1 ||
        EVP_MAC_final(ctx.get(), out.data(), &out_len, out.size()) != 1) {
        throw std::runtime_error("OpenSSL: HMAC-SHA256 failed");
    }
    return hex_lower(out.data(), out_len);
}

struct CanonicalHeaders {
    std::string block;    // "name:value\n" for each header
    std::string signed_;  // "h1;h2"
};

CanonicalHeaders canonical_headers(const SignableRequest& req) {
    // Lower-case names; stable sort keeps duplicates in the order given so that their join is deterministic.
    std::vector<std::pair<std::string, std::string_view>> hs;
    hs.reserve(req.headers.size());
    for (const auto& [name, value] : req.headers) hs.emplace_back(to_lower(name), trim_ows(value));
    std::stable_sort(hs.begin(), hs.end(), [](const auto& a, const auto& b) { return a.first < b.first; });

    CanonicalHeaders out;
    for (std::size_t i = 0; i < hs.size();) {
        const std::string& name = hs[i].first;
        if (!out.signed_.empty()) out.signed_ += ';';
        out.signed_ += name;
        out.block += name;
        out.block += ':';
        out.block += hs[i].second;
        std::size_t j = i + 1;
        for (; j < hs.size() && hs[j].first == name; ++j) {
            out.block += ',';
            out.block += hs[j].second;
        }
        out.block += '\n';
        i = j;
    }
    return out;
}

std::string canonical_uri(std::string_view path) {
    std::string out;
    out.reserve(path.size() + 8);
    std::size_t start = 0;
    while (true) {
        const std::size_t slash = path.find('/', start);
        const std::string_view seg =
            path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
        out += sdk_uri_encode(percent_decode(seg));
        if (slash == std::string_view::npos) break;
        out += '/';
        start = slash + 1;
    }
    if (out.empty() || out.back() != '/') out += '/';
    return out;
}

std::string canonical_query(std::string_view query) {
    std::vector<std::pair<std::string, std::string>> params;
    std::size_t start = 0;
    while (start <= query.size()) {
        std::size_t amp = query.find('&', start);
        if (amp == std::string_view::npos) amp = query.size();
        const std::string_view part = query.substr(start, amp - start);
        if (!part.empty()) {
            const std::size_t eq = part.find('=');
            if (eq == std::string_view::npos)
                params.emplace_back(percent_decode(part), std::string());
            else
                params.emplace_back(percent_decode(part.substr(0, eq)), percent_decode(part.substr(eq + 1)));
        }
        start = amp + 1;
    }
    // std::string compares bytes as unsigned char, which is the byte order the SDKs use.
    std::sort(params.begin(), params.end());
    std::string out;
    for (const auto& [name, value] : params) {
        if (!out.empty()) out += '&';
        out += sdk_uri_encode(name);
        out += '=';
        out += sdk_uri_encode(value);
    }
    return out;
}

std::string_view sdk_date_header(const SignableRequest& req) {
    for (const auto& [name, value] : req.headers)
        if (ascii_iequals(name, "x-sdk-date")) return trim_ows(value);
    return {};
}

bool is_tchar(char c) {
    // RFC 9110 token characters.
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

}  // namespace

std::string sdk_date(std::chrono::system_clock::time_point t) {
    using namespace std::chrono;
    const auto secs = floor<seconds>(t);
    const auto days = floor<std::chrono::days>(secs);
    const year_month_day ymd{days};
    const hh_mm_ss<seconds> hms{secs - days};
    char buf[32];
    std::snprintf(buf, sizeof buf, "%04d%02u%02uT%02d%02d%02dZ", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                  static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                  static_cast<int>(hms.seconds().count()));
    return buf;
}

std::optional<std::chrono::system_clock::time_point> parse_sdk_date(std::string_view s) {
    using namespace std::chrono;
    if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z') return std::nullopt;
    auto num = [&](std::size_t pos, std::size_t len) -> int {
        int v = 0;
        for (std::size_t i = pos; i < pos + len; ++i) {
            if (s[i] < '0' || s[i] > '9') return -1;
            v = v * 10 + (s[i] - '0');
        }
        return v;
    };
    const int y = num(0, 4), mo = num(4, 2), d = num(6, 2), h = num(9, 2), mi = num(11, 2), se = num(13, 2);
    if (y < 1970 || mo < 1 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 || se > 59)
        return std::nullopt;
    const year_month_day ymd{year{y}, month{static_cast<unsigned>(mo)}, day{static_cast<unsigned>(d)}};
    if (!ymd.ok()) return std::nullopt;
    const sys_seconds secs = sys_days{ymd} + hours{h} + minutes{mi} + seconds{se};
    if (secs > floor<seconds>(system_clock::time_point::max())) return std::nullopt;
    return time_point_cast<system_clock::duration>(secs);
}

std::string sdk_uri_encode(std::string_view raw) {
    std::string out;
    sdk_uri_encode_to(out, raw);
    return out;
}

void sdk_uri_encode_to(std::string& out, std::string_view raw) {
    static constexpr ByteSet unreserved([](unsigned char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
               c == '_' || c == '.' || c == '~';
    });
    const std::size_t plain = unreserved.span(raw, 0);  // the common case (ids): nothing to encode, one copy
    if (plain == raw.size()) {
        out.append(raw);
        return;
    }
    out.reserve(out.size() + plain + (raw.size() - plain) * 3);
    out.append(raw.data(), plain);
    for (const char ch : raw.substr(plain)) {
        const auto c = static_cast<unsigned char>(ch);
        if (unreserved(c)) {
            out.push_back(ch);
        } else {
            out.push_back('%');
            out.push_back(kHexUpper[c >> 4]);
            out.push_back(kHexUpper[c & 0x0F]);
        }
    }
}

std::string canonical_request(const SignableRequest& req) {
    const CanonicalHeaders hs = canonical_headers(req);
    std::string out;
    out.reserve(256 + hs.block.size());
    out += req.method;
    out += '\n';
    out += canonical_uri(req.path);
    out += '\n';
    out += canonical_query(req.query);
    out += '\n';
    out += hs.block;
    out += '\n';
    out += hs.signed_;
    out += '\n';
    out += sha256_hex(req.body);
    return out;
}

std::string compute_signature(const SignableRequest& req, std::string_view secret_key) {
    std::string to_sign;
    to_sign += kAlgorithm;
    to_sign += '\n';
    to_sign += sdk_date_header(req);
    to_sign += '\n';
    to_sign += sha256_hex(canonical_request(req));
    return hmac_sha256_hex(secret_key, to_sign);
}

std::string authorization_header(const SignableRequest& req, std::string_view access_key,
                                 std::string_view secret_key) {
    std::string out;
    out += kAlgorithm;
    out += " Access=";
    out += access_key;
    out += ", SignedHeaders=";
    out += canonical_headers(req).signed_;
    out += ", Signature=";
    out += compute_signature(req, secret_key);
    return out;
}

std::optional<SdkAuthorization> parse_sdk_authorization(std::string_view header_value) {
    std::string_view v = header_value;
    // "SDK-HMAC-SHA256" 1*SP "Access=" ak "," *SP "SignedHeaders=" h *(";" h) "," *SP "Signature=" 64HEXDIG
    // The three parts may come in any order but each exactly once; nothing else is accepted.
    if (v.size() <= kAlgorithm.size() || v.substr(0, kAlgorithm.size()) != kAlgorithm ||
        v[kAlgorithm.size()] != ' ')
        return std::nullopt;
    v.remove_prefix(kAlgorithm.size());
    while (!v.empty() && v.front() == ' ') v.remove_prefix(1);

    SdkAuthorization out;
    bool have_access = false, have_signed = false, have_sig = false;
    while (true) {
        const std::size_t comma = v.find(',');
        const std::string_view part = v.substr(0, comma);
        const std::size_t eq = part.find('=');
        if (eq == std::string_view::npos) return std::nullopt;
        const std::string_view key = part.substr(0, eq);
        const std::string_view val = part.substr(eq + 1);
        if (val.empty()) return std::nullopt;
        if (key == "Access") {
            if (have_access) return std::nullopt;
            for (const char c : val)
                if (c <= ' ' || c > '~') return std::nullopt;  // printable ASCII, no spaces
            out.access_key = std::string(val);
            have_access = true;
        } else if (key == "SignedHeaders") {
            if (have_signed) return std::nullopt;
            std::size_t start = 0;
            while (true) {
                const std::size_t semi = val.find(';', start);
                const std::string_view h =
                    val.substr(start, semi == std::string_view::npos ? semi : semi - start);
                if (h.empty() || !std::all_of(h.begin(), h.end(), is_tchar)) return std::nullopt;
                out.signed_headers.push_back(to_lower(h));
                if (semi == std::string_view::npos) break;
                start = semi + 1;
            }
            have_signed = true;
        } else if (key == "Signature") {
            if (have_sig) return std::nullopt;
            if (val.size() != 64 || !std::all_of(val.begin(), val.end(), is_hex_digit)) return std::nullopt;
            out.signature = to_lower(val);
            have_sig = true;
        } else {
            return std::nullopt;
        }
        if (comma == std::string_view::npos) break;
        v.remove_prefix(comma + 1);
        while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    }
    if (!have_access || !have_signed || !have_sig) return std::nullopt;
    return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    if (a.empty()) return true;
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string sha256_hex(std::string_view data) {
    std::array<unsigned char, EVP_MAX_MD_SIZE> out{};
    unsigned int out_len = 0;
    if (EVP_Digest(data.data(), data.size(), out.data(), &out_len, sha256_md(), nullptr) != 1)
        throw std::runtime_error("OpenSSL: SHA-256 failed");
    return hex_lower(out.data(), out_len);
}

}  // namespace rdsgw
