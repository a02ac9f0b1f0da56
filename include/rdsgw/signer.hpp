// SDK-HMAC-SHA256 request signing (Huawei Cloud "AK/SK" authentication), as ../shared/RDS_API.md describes.
// Pure functions: no I/O, no clock reads. Used both to sign upstream requests and to verify callers.
#pragma once
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rdsgw {

// The parts of a request that the signature covers.
struct SignableRequest {
    std::string method;  // "GET"
    // The path as sent on the wire (percent-encoded form, e.g. "/v3/abc/backup-files"); the signer
    // decodes each segment once and re-encodes it canonically, and appends the trailing "/".
    std::string path;
    // The raw query string as sent on the wire, without '?' (e.g. "backup_id=x&size=1"); may be empty.
    std::string query;
    // Headers to sign (name as given, value as sent). Must include Host and X-Sdk-Date.
    std::vector<std::pair<std::string, std::string>> headers;
    std::string_view body;  // empty for GET
};

// "YYYYMMDDTHHMMSSZ" for the given instant (UTC).
std::string sdk_date(std::chrono::system_clock::time_point t);
// Parses an X-Sdk-Date value; nullopt when malformed.
std::optional<std::chrono::system_clock::time_point> parse_sdk_date(std::string_view s);

// URI-encoding of RDS_API.md: keeps A-Z a-z 0-9 - _ . ~ and writes every other byte as %XX (upper-case).
std::string sdk_uri_encode(std::string_view raw);
void sdk_uri_encode_to(std::string& out, std::string_view raw);  // appends sdk_uri_encode(raw)

// The canonical request text (lines joined by '\n'), exposed for tests and diagnostics.
std::string canonical_request(const SignableRequest& req);
// lower-hex HMAC-SHA256(SK, "SDK-HMAC-SHA256\n{date}\n{hex(sha256(canonical request))}").
// The date is taken from the request's X-Sdk-Date header.
std::string compute_signature(const SignableRequest& req, std::string_view secret_key);
// The complete Authorization header value:
// "SDK-HMAC-SHA256 Access={ak}, SignedHeaders={h1;h2}, Signature={sig}".
std::string authorization_header(const SignableRequest& req, std::string_view access_key,
                                 std::string_view secret_key);

// A parsed "SDK-HMAC-SHA256 Access=..., SignedHeaders=..., Signature=..." header.
struct SdkAuthorization {
    std::string access_key;
    std::vector<std::string> signed_headers;  // lower-case, in the order given
    std::string signature;                    // lower-hex
};
std::optional<SdkAuthorization> parse_sdk_authorization(std::string_view header_value);

// Constant-time comparison of two byte strings (length difference is not hidden).
bool constant_time_equal(std::string_view a, std::string_view b);
// lower-hex SHA-256 of the input.
std::string sha256_hex(std::string_view data);

}  // namespace rdsgw
