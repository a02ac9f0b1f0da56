// AES-256-GCM sealing of shared-cache values and the CachedAnswer byte format (see include/rdsgw/sealed.hpp).
//
// Decisions worth knowing:
// - OpenSSL's EVP AEAD interface, one EVP_CIPHER_CTX per call (thread-safe without locks; a context costs
//   far less than the Redis round trip around it). Nonces are 12 random bytes from RAND_bytes: with random
//   nonces one key should seal at most 2^32 values (NIST SP 800-38D), which a cache refilled by upstream
//   misses does not reach in years; rotate keys anyway.
// - open() checks the layout before any crypto and compares nothing in variable time but the public key id.
#include "rdsgw/sealed.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <set>

namespace rdsgw {
namespace {

constexpr unsigned char kVersion = 0x01;
constexpr unsigned char kFormat = 0x01;
constexpr std::size_t kNonce = 12;
constexpr std::size_t kTag = 16;
constexpr std::size_t kMaxKeyId = 32;

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

CipherCtx new_ctx() {
    CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
    if (!ctx) throw std::runtime_error("sealed: EVP_CIPHER_CTX_new failed");
    return ctx;
}

const unsigned char* bytes(std::string_view s) {
    return reinterpret_cast<const unsigned char*>(s.data());
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string_view trim_space(std::string_view s) {
    auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
    while (!s.empty() && space(s.front())) s.remove_prefix(1);
    while (!s.empty() && space(s.back())) s.remove_suffix(1);
    return s;
}

std::optional<std::array<unsigned char, 32>> from_hex(std::string_view s) {
    if (s.size() != 64) return std::nullopt;
    std::array<unsigned char, 32> out{};
    for (std::size_t i = 0; i < 32; ++i) {
        const int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out[i] = static_cast<unsigned char>(hi * 16 + lo);
    }
    return out;
}

std::optional<std::array<unsigned char, 32>> from_base64(std::string_view s) {
    std::string padded(s);
    while (padded.size() % 4 != 0) padded.push_back('=');
    if (padded.size() != 44) return std::nullopt;
    std::size_t pads = 0;
    while (pads < padded.size() && padded[padded.size() - 1 - pads] == '=') ++pads;
    if (pads != 1) return std::nullopt;  // 32 bytes encode to 43 characters and one '='
    for (std::size_t i = 0; i + pads < padded.size(); ++i) {
        const char c = padded[i];
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                        c == '+' || c == '/';
        if (!ok) return std::nullopt;
    }
    unsigned char buf[33];
    const int n = EVP_DecodeBlock(buf, bytes(padded), static_cast<int>(padded.size()));
    if (n != 33) return std::nullopt;  // EVP_DecodeBlock counts the padding as a zero byte
    std::array<unsigned char, 32> out{};
    std::memcpy(out.data(), buf, 32);
    return out;
}

void put_u16(std::string& out, std::uint16_t v) {
    out.push_back(static_cast<char>(v & 0xff));
    out.push_back(static_cast<char>(v >> 8));
}

void put_u32(std::string& out, std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

void put_i64(std::string& out, std::int64_t v) {
    const auto u = static_cast<std::uint64_t>(v);
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
}

// A bounds-checked little-endian reader: any read past the end sets `bad` and yields zeros.
struct ByteReader {
    std::string_view in;
    bool bad = false;
    std::uint64_t uint(std::size_t n) {
        if (in.size() < n) {
            bad = true;
            in = {};
            return 0;
        }
        std::uint64_t v = 0;
        for (std::size_t i = 0; i < n; ++i) v |= std::uint64_t{static_cast<unsigned char>(in[i])} << (8 * i);
        in.remove_prefix(n);
        return v;
    }
    std::string_view str() {  // a view into the input
        const auto n = static_cast<std::size_t>(uint(4));
        if (bad || in.size() < n) {
            bad = true;
            return {};
        }
        const std::string_view s = in.substr(0, n);
        in.remove_prefix(n);
        return s;
    }
};

std::int64_t to_ms(SysClock::time_point t) {
    if (t == SysClock::time_point::max()) return std::numeric_limits<std::int64_t>::max();
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

SysClock::time_point from_ms(std::int64_t ms) {
    if (ms == std::numeric_limits<std::int64_t>::max()) return SysClock::time_point::max();
    // Clamp to what the clock's duration (nanoseconds in int64) can hold: +-292 years around 1970.
    constexpr std::int64_t kLimit = 9'000'000'000'000LL;
    ms = std::clamp(ms, -kLimit, kLimit);
    return SysClock::time_point(
        std::chrono::duration_cast<SysClock::duration>(std::chrono::milliseconds(ms)));
}

}  // namespace

std::optional<std::array<unsigned char, 32>> parse_key_material(std::string_view text) {
    text = trim_space(text);
    if (auto k = from_hex(text)) return k;
    return from_base64(text);
}

bool valid_key_id(std::string_view id) {
    if (id.empty() || id.size() > kMaxKeyId) return false;
    for (char c : id) {
        const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                        c == '.' || c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

Sealer::Sealer(std::vector<SealKey> keys) : keys_(std::move(keys)) {
    if (keys_.empty()) throw std::invalid_argument("at least one encryption key is required");
    std::set<std::string> ids;
    for (const auto& k : keys_) {
        if (!valid_key_id(k.id))
            throw std::invalid_argument("key id \"" + k.id.substr(0, kMaxKeyId) +
                                        "\" must be 1..32 of [A-Za-z0-9._-]");
        if (!ids.insert(k.id).second) throw std::invalid_argument("key id \"" + k.id + "\" is used twice");
    }
}

Sealer::~Sealer() {
    for (auto& k : keys_) OPENSSL_cleanse(k.key.data(), k.key.size());
}
Sealer::Sealer(Sealer&&) noexcept = default;
Sealer& Sealer::operator=(Sealer&&) noexcept = default;

const std::string& Sealer::sealing_key_id() const {
    return keys_.front().id;
}

std::string Sealer::seal(std::string_view plaintext, std::string_view aad) const {
    const SealKey& k = keys_.front();
    std::string out;
    out.reserve(2 + k.id.size() + kNonce + plaintext.size() + kTag);
    out.push_back(static_cast<char>(kVersion));
    out.push_back(static_cast<char>(k.id.size()));
    out.append(k.id);
    const std::size_t nonce_at = out.size();
    out.resize(nonce_at + kNonce + plaintext.size() + kTag);
    auto* p = reinterpret_cast<unsigned char*>(out.data());
    if (RAND_bytes(p + nonce_at, static_cast<int>(kNonce)) != 1)
        throw std::runtime_error("sealed: RAND_bytes failed");
    CipherCtx ctx = new_ctx();
    int len = 0, fin = 0;
    if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, k.key.data(), p + nonce_at) != 1 ||
        EVP_EncryptUpdate(ctx.get(), nullptr, &len, bytes(aad), static_cast<int>(aad.size())) != 1 ||
        EVP_EncryptUpdate(ctx.get(), p + nonce_at + kNonce, &len, bytes(plaintext),
                          static_cast<int>(plaintext.size())) != 1 ||
        EVP_EncryptFinal_ex(ctx.get(), p + nonce_at + kNonce + len, &fin) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTag),
                            p + nonce_at + kNonce + plaintext.size()) != 1) {
        throw std::runtime_error("sealed: encryption failed");
    }
    return out;
}

std::optional<std::string> Sealer::open(std::string_view sealed, std::string_view aad) const {
    if (sealed.size() < 2 || static_cast<unsigned char>(sealed[0]) != kVersion) return std::nullopt;
    const std::size_t id_len = static_cast<unsigned char>(sealed[1]);
    if (id_len == 0 || id_len > kMaxKeyId || sealed.size() < 2 + id_len + kNonce + kTag) return std::nullopt;
    const std::string_view id = sealed.substr(2, id_len);
    const SealKey* key = nullptr;
    for (const auto& k : keys_)
        if (k.id == id) key = &k;
    if (!key) return std::nullopt;
    const auto* nonce = bytes(sealed.substr(2 + id_len, kNonce));
    const std::string_view ct =
        sealed.substr(2 + id_len + kNonce, sealed.size() - 2 - id_len - kNonce - kTag);
    unsigned char tag[kTag];
    std::memcpy(tag, sealed.data() + sealed.size() - kTag, kTag);
    if (ct.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) return std::nullopt;

    std::string out(ct.size(), '\0');
    CipherCtx ctx = new_ctx();
    int len = 0, fin = 0;
    if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key->key.data(), nonce) != 1 ||
        EVP_DecryptUpdate(ctx.get(), nullptr, &len, bytes(aad), static_cast<int>(aad.size())) != 1 ||
        EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len, bytes(ct),
                          static_cast<int>(ct.size())) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTag), tag) != 1 ||
        EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + len, &fin) != 1) {
        OPENSSL_cleanse(out.data(), out.size());
        return std::nullopt;
    }
    return out;
}

std::string serialize_answer(const CachedAnswer& a) {
    const std::string_view id = a.upstream_request_id(), body = a.body();
    std::string out;
    out.reserve(1 + 2 + 8 + 8 + 4 + id.size() + 4 + body.size());
    out.push_back(static_cast<char>(kFormat));
    put_u16(out, static_cast<std::uint16_t>(a.status()));
    put_i64(out, to_ms(a.earliest_expiry()));
    put_i64(out, to_ms(a.stored_at()));
    put_u32(out, static_cast<std::uint32_t>(id.size()));
    out.append(id);
    put_u32(out, static_cast<std::uint32_t>(body.size()));
    out.append(body);
    return out;
}

AnswerPtr parse_answer(std::string_view in) {
    ByteReader r{in};
    if (r.uint(1) != kFormat || r.bad) return nullptr;
    AnswerFields a;
    a.status = static_cast<unsigned>(r.uint(2));
    a.earliest_expiry = from_ms(static_cast<std::int64_t>(r.uint(8)));
    a.stored_at = from_ms(static_cast<std::int64_t>(r.uint(8)));
    a.upstream_request_id = r.str();
    a.body = r.str();
    if (r.bad || !r.in.empty() || (a.status != 200 && a.status != 404)) return nullptr;
    return CachedAnswer::make(a);
}

}  // namespace rdsgw
