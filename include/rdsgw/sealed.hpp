// Values at rest in the shared (Redis) cache tier: a CachedAnswer serialized to bytes, then sealed with
// AES-256-GCM (OpenSSL EVP) under a key from a secret. Pure: no I/O, no Asio.
//
// Sealed value layout (all binary):
//   version (1 byte, 0x01) | key id length (1 byte, 1..32) | key id | nonce (12 random bytes)
//   | ciphertext (as long as the plaintext) | tag (16 bytes)
// The associated data is the cache key, so a value copied under another key does not open. The first key
// of a Sealer seals; every key it holds opens (by the key id in the value), so keys can be rotated: put the
// new key first, keep the old one listed until the values sealed with it have expired.
#pragma once
#include <array>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "rdsgw/answer.hpp"

namespace rdsgw {

struct SealKey {
    std::string id;  // 1..32 of [A-Za-z0-9._-]
    std::array<unsigned char, 32> key{};
};

// Key material as configured: 64 hex digits, or standard base64 (with or without padding) of 32 bytes.
// Surrounding white space is ignored. nullopt for anything else (never says what the text was).
std::optional<std::array<unsigned char, 32>> parse_key_material(std::string_view text);
// True when `id` is a usable key id (1..32 of [A-Za-z0-9._-]).
bool valid_key_id(std::string_view id);

class Sealer {
  public:
    // Throws std::invalid_argument (naming the key id, never the key) when `keys` is empty, an id is invalid
    // or used twice.
    explicit Sealer(std::vector<SealKey> keys);
    ~Sealer();
    Sealer(Sealer&&) noexcept;
    Sealer& operator=(Sealer&&) noexcept;
    Sealer(const Sealer&) = delete;
    Sealer& operator=(const Sealer&) = delete;

    // Seals with the first key and a fresh random nonce. Throws std::runtime_error only when OpenSSL fails
    // (no randomness, out of memory).
    std::string seal(std::string_view plaintext, std::string_view aad) const;
    // nullopt when the value is malformed, names a key id this Sealer does not hold, was altered, or was
    // sealed with another associated data. Never throws for bad input.
    std::optional<std::string> open(std::string_view sealed, std::string_view aad) const;

    const std::string& sealing_key_id() const;

  private:
    std::vector<SealKey> keys_;
};

// CachedAnswer <-> bytes (the plaintext inside a sealed value). Layout, little-endian:
//   format (1 byte, 0x01) | status (u16) | earliest_expiry (i64, ms since the epoch; INT64_MAX = none)
//   | stored_at (i64 ms) | upstream_request_id (u32 length + bytes) | body (u32 length + bytes)
std::string serialize_answer(const CachedAnswer& a);
// Null when malformed (truncated, trailing bytes, unknown format, status other than 200 or 404).
AnswerPtr parse_answer(std::string_view bytes);

}  // namespace rdsgw
