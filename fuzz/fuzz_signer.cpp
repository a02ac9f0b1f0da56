// libFuzzer target: parse_sdk_authorization and canonical_request on arbitrary bytes.
// Checks invariants, not just absence of crashes:
// - a parsed Authorization has a non-empty AK, lower-case non-empty signed-header names and a 64-char
//   lower-hex signature, and re-serializing it parses back to the same value;
// - the canonical URI ends in '/', and the canonical URI and query contain only unreserved bytes,
//   '%XX' (upper-case hex) and their separators; canonicalization is idempotent.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "rdsgw/signer.hpp"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

bool is_unreserved(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '~';
}

// Only unreserved bytes, separators and well-formed upper-case %XX escapes.
bool is_canonical(std::string_view s, std::string_view separators) {
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char c = s[i];
        if (is_unreserved(c) || separators.find(c) != std::string_view::npos) continue;
        if (c != '%' || i + 2 >= s.size()) return false;
        for (int k = 1; k <= 2; ++k) {
            const char h = s[i + k];
            if (!((h >= '0' && h <= '9') || (h >= 'A' && h <= 'F'))) return false;
        }
        i += 2;
    }
    return true;
}

std::string_view line(std::string_view text, int n) {
    for (int i = 0; i < n; ++i) text.remove_prefix(text.find('\n') + 1);
    return text.substr(0, text.find('\n'));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);

    if (const auto a = rdsgw::parse_sdk_authorization(in)) {
        check(!a->access_key.empty() && !a->signed_headers.empty() && a->signature.size() == 64);
        std::string again = "SDK-HMAC-SHA256 Access=" + a->access_key + ", SignedHeaders=";
        for (std::size_t i = 0; i < a->signed_headers.size(); ++i) {
            check(!a->signed_headers[i].empty());
            for (const char c : a->signed_headers[i]) check(!(c >= 'A' && c <= 'Z'));
            again += (i ? ";" : "") + a->signed_headers[i];
        }
        for (const char c : a->signature) check((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
        again += ", Signature=" + a->signature;
        const auto b = rdsgw::parse_sdk_authorization(again);
        check(b && b->access_key == a->access_key && b->signed_headers == a->signed_headers &&
              b->signature == a->signature);
    }

    // Split the input into path, query and one header value at the first two NUL bytes.
    const std::size_t n1 = in.find('\0');
    const std::size_t n2 = n1 == std::string_view::npos ? n1 : in.find('\0', n1 + 1);
    rdsgw::SignableRequest req;
    req.method = "GET";
    req.path = std::string(in.substr(0, n1));
    if (n1 != std::string_view::npos) req.query = std::string(in.substr(n1 + 1, n2 - (n1 + 1)));
    if (n2 != std::string_view::npos) req.headers.emplace_back("X-Fuzz", std::string(in.substr(n2 + 1)));
    req.headers.emplace_back("Host", "h");
    req.headers.emplace_back("X-Sdk-Date", "20200608T023900Z");

    const std::string c = rdsgw::canonical_request(req);
    const std::string_view uri = line(c, 1), query = line(c, 2);
    check(!uri.empty() && uri.back() == '/');
    check(is_canonical(uri, "/"));
    check(is_canonical(query, "&="));

    // Canonical forms are fixed points: signing the canonical path and query gives the same text.
    rdsgw::SignableRequest again = req;
    again.path = std::string(uri);
    again.query = std::string(query);
    check(rdsgw::canonical_request(again) == c);
    return 0;
}
