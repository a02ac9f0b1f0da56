// The response contract: validates an upstream "backup-files" answer and rewrites it to one canonical form.
// Pure: bytes and a time in, canonical bytes (or an error naming the JSON path) out. No I/O, no Asio.
#pragma once
#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace rdsgw {

struct NormalizeOptions {
    std::size_t max_body_bytes = 1 << 20;         // larger bodies are refused
    bool allow_http_links = false;                // download_link must be https unless this is set
    std::vector<std::string> link_host_suffixes;  // when non-empty, the link host must end in one of them
    bool drop_unknown_fields = false;             // default: unknown fields pass through unchanged
    bool emit_legacy_expiry_field = false;        // also write "link_expired_link" beside the canonical one
};

struct NormalizedAnswer {
    std::string body;  // canonical JSON (compact)
    // Earliest link expiry among the files; time_point::max() when there are no files (and, clamped, when
    // the earliest lies beyond what time_point holds: after the year 2262).
    std::chrono::system_clock::time_point earliest_expiry;
    std::size_t file_count = 0;
};

struct NormalizeError {
    std::string path;    // JSON path that failed, e.g. "files[2].size", or "" for the whole body
    std::string reason;  // short, never contains a value from the body, e.g. "not a non-negative integer"
    std::string message() const;  // "invalid upstream answer at files[2].size: not a non-negative integer"
};

using NormalizeResult = std::variant<NormalizedAnswer, NormalizeError>;

// Normalizes a 200 answer's body. `now` is the current time (used for nothing that changes the output
// but kept in the signature so policies on link age stay pure and testable).
//
// The contract (every error names its JSON path and a fixed reason; no text of the body ever appears in
// it, except member names that are plain identifiers [A-Za-z0-9_-]{1,64} in a path, others show "<key>"):
// - the body: at most max_body_bytes, one strict RFC 8259 JSON document (no comments, no trailing commas,
//   valid UTF-8, depth <= 32, every number finite as a double), an object. An object with a duplicate key
//   anywhere is refused ("duplicate key", path of that object; in the odd case where the earlier
//   duplicate's value itself held objects, the path may name an object inside the duplicated member).
// - "files": required array (may be empty) of objects "files[i]":
//   - "name": detail::check_file_name: non-empty, not "." or "..", without '/', '\', control characters
//     (C0, DEL, C1, U+2028/U+2029), Unicode Bidi_Control characters (U+061C, U+200E, U+200F,
//     U+202A-U+202E, U+2066-U+2069) or look-alikes of '/' and '\' (U+2044, U+2215, U+29F8, U+FF0F,
//     U+2216, U+29F5, U+29F9, U+FE68, U+FF3C); valid UTF-8.
//   - "size": KB, 0..INT64_MAX: a JSON integer literal (a number with a fraction or an exponent is refused,
//     "not an integer", even 2803.0: a double would round it) or a string of ASCII digits only; written as
//     a JSON integer.
//   - "download_link": an RFC 3986 URI (Boost.URL) with scheme https (or http when allow_http_links), no
//     userinfo, a port (when there is one) 1-65535 written without a leading zero (an empty port and port 0
//     are refused too), after the authority a path that is empty or starts with "/" (so
//     "https://10.0.0.1.evil.net/" is refused, where Boost.URL 1.81 alone would find host 10.0.0.1), and a
//     host that passes detail::check_link_host: a DNS name [A-Za-z0-9._-] of at least two non-empty labels,
//     no trailing dot, not localhost or *.localhost, and not an IP address in any form (IPv4/IPv6 literals,
//     and any name whose last label is numeric: 127.1, 0x7f000001, 2130706433, 017700000001). These refusals
//     always apply; when link_host_suffixes is set the host must also equal a suffix or end in "." + suffix
//     (ASCII case-insensitive; a leading "." on a suffix is ignored; an empty suffix matches nothing).
//     Written unchanged.
//   - "link_expired_time", or the documentation's misnamed "link_expired_link" (renamed): parse_rds_time;
//     when both are present they must be the same instant (the canonical name's offset is kept); written
//     in format_rds_time's form.
//   - "database_name": optional string, kept.
// - "bucket": optional string, kept.
// - Other members pass through unchanged (or are dropped with drop_unknown_fields). Their values are
//   re-serialized compactly: numbers exactly as the body spelled them (1.0 stays 1.0; only the integer -0
//   becomes 0), strings re-escaped as Boost.JSON does ("\/" -> "/", "\u00e9" -> UTF-8).
// Output: compact JSON; top level: files, bucket, other members in their order; per file: name, size,
// download_link, link_expired_time, [link_expired_link], [database_name], other members in their order.
NormalizeResult normalize_backup_files(std::string_view body, std::chrono::system_clock::time_point now,
                                       const NormalizeOptions& opts);

// True when `body` is a well-formed RDS error: a JSON object with string "error_code" and "error_msg".
bool is_rds_error_body(std::string_view body);

// "https://host/path" of a download link, without query or fragment: what logs may show of a link.
std::string redact_link(std::string_view link);

namespace detail {
// The download_link check, exposed for fuzz/fuzz_link.cpp and the unit tests. check_link returns a reason,
// or nullptr and the link's host. plain_link_host is its fast path (the common shape with an acceptable
// host only, else nullopt); check_link_reference is Boost.URL's verdict plus check_link_host. Where
// plain_link_host answers, the three agree. check_link_host: why a host (a reg-name as Boost.URL gives it)
// may not be linked to, or nullptr. check_file_name: why a file name is refused, or nullptr.
const char* check_link_host(std::string_view host);
// Why the digits after "host:" are not a port a link may name (1-65535, no leading zero, not empty), or
// nullptr.
const char* check_link_port(std::string_view digits);
const char* check_file_name(std::string_view name);
// Scanners behind plain_link_host and check_file_name, sixteen bytes per step (SSE2, part of every x86-64
// CPU; elsewhere the byte tables: eight bytes per step for the link, one for the name). link_rest_span: the
// first index from `i` on whose byte is not allowed unescaped after a link's authority (RFC 3986 pchar, '/',
// '?'), or s.size(). name_is_plain: every byte is printable ASCII but '/' and '\\' (a name that needs no
// closer look).
std::size_t link_rest_span(std::string_view s, std::size_t i);
bool name_is_plain(std::string_view name);
std::optional<std::string_view> plain_link_host(std::string_view link, bool allow_http);
const char* check_link_reference(std::string_view link, bool allow_http);
const char* check_link(std::string_view link, bool allow_http, std::string_view& host);
// normalize_backup_files is normalize_plain (a one-pass fast path for the plain shape; false: not handled)
// and, when that declines, normalize_reference (the general path, the source of every error). Where
// normalize_plain answers, normalize_reference gives the same answer (fuzz/fuzz_normalize.cpp).
bool normalize_plain(std::string_view body, const NormalizeOptions& opts, NormalizedAnswer& out);
NormalizeResult normalize_reference(std::string_view body, const NormalizeOptions& opts);
}  // namespace detail

}  // namespace rdsgw
