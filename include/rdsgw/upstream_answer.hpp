// What the gateway accepts of an upstream answer before the response contract (normalize.hpp) looks at it:
// its codings and, for a non-200 answer, whether it is an RDS error that may pass through. Pure functions
// over header values and bytes (the upstream client collects the values, gateway.cpp asks these).
#pragma once
#include <string_view>

namespace rdsgw {

// The Content-Encoding field value(s), every field line joined with ", " (RFC 9110 §5.3): true when it names
// no coding but identity. Codings compare case-insensitively (§8.4.1); empty list elements are ignored, so
// "" and "identity, IDENTITY" are identity, "identity, gzip" is not.
bool identity_content_coding(std::string_view content_encoding);

// The Transfer-Encoding field value(s), joined likewise: true when absent or exactly the one coding
// "chunked" (any case). The gateway sends no TE header, so an upstream may use no other transfer coding
// (RFC 9112 §6.1); "gzip, chunked" and "gzip" (read until close) cannot be decoded and are refused.
bool plain_transfer_coding(std::string_view transfer_encoding);

// True when some JSON object in `json_text` (anywhere in it) has the same member name twice (after JSON
// unescaping, so "a" and "\u0061" are the same name). Text that is not JSON: false (other checks refuse it).
bool json_has_duplicate_key(std::string_view json_text);

// An answer that is neither 200 nor a transport failure passes through to callers only when this holds: a
// 4xx or 5xx status with a well-formed RDS error body (is_rds_error_body) without duplicate keys. A 2xx,
// 3xx or any other status (600, 999...) never passes through, whatever its body.
bool passable_rds_error(unsigned status, std::string_view body);

}  // namespace rdsgw
