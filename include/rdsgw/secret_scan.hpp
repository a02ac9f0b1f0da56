// The gateway's own credentials never pass through: a pure check, run on every upstream body before it
// reaches a caller or the cache, that the body does not hold one of them. No I/O, no Asio.
#pragma once
#include <cstddef>
#include <initializer_list>
#include <optional>
#include <span>
#include <string_view>

namespace rdsgw {

// Secrets shorter than this are not looked for: a short "secret" matches ordinary text (one byte matches
// nearly every body) and would turn good answers into errors. The credentials guarded here are far longer
// (IAM tokens: thousands of bytes; security tokens: hundreds; SKs: 40), so the rule only leaves a static
// token shorter than 8 bytes unguarded, and no real token is that short.
inline constexpr std::size_t kMinScannedSecretBytes = 8;

struct SecretMatch {
    std::size_t index = 0;  // which secret (its position in the list given)
    bool decoded = false;   // true: found only in a decoded JSON string (escapes hid it in the raw bytes)
};

// Looks for every secret of at least kMinScannedSecretBytes bytes in `body`:
// - in its raw bytes (any body, JSON or not);
// - and when the body holds a '\\' (only then can JSON escapes such as \u0041 or \/ hide a secret), in every
//   string of the JSON document as Boost.JSON decodes it: member names and values, at any depth. The parse is
//   lenient (comments, trailing commas, ill-formed UTF-8 are read on) and stops at the first syntax error;
//   what follows such an error is covered by the raw scan only (a body that is not JSON never reaches a
//   caller as it is).
// Returns the first secret found (raw matches first, in the order of `secrets`), or nothing. Empty or short
// secrets are skipped; with none left it returns at once. No allocation unless the body holds a '\\'.
std::optional<SecretMatch> find_secret(std::string_view body, std::span<const std::string_view> secrets);
inline std::optional<SecretMatch> find_secret(std::string_view body,
                                              std::initializer_list<std::string_view> secrets) {
    return find_secret(body, std::span<const std::string_view>(secrets.begin(), secrets.size()));
}

}  // namespace rdsgw
