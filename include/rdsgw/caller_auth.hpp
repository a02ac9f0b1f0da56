// Caller authentication (API keys, SDK-HMAC-SHA256 signatures, mTLS subjects), per-project authorization
// and per-caller token-bucket rate limits. Pure logic over values: no I/O, no Asio.
#pragma once
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rdsgw {

struct CallerDef {
    std::string name;
    std::vector<std::string> api_key_sha256;  // lower-hex SHA-256 of each accepted API key
    std::string access_key;                   // AK issued to the caller for SDK signing ("" = none)
    std::string secret_key;                   // its SK (loaded from env/file by config, never logged)
    std::vector<std::string> cert_subjects;   // mTLS: accepted client-certificate subjects (RFC 2253 form)
    std::vector<std::string> projects;        // project ids it may read; "*" = all
    double rate_per_s = 0;                    // 0 = unlimited
    double burst = 0;
};

// What the authenticator needs from a request.
struct AuthInput {
    std::string_view method;
    std::string_view target;  // raw request target ("/v3/p/backup-files?backup_id=x")
    // All request headers as received (name, value); names compared case-insensitively.
    std::span<const std::pair<std::string_view, std::string_view>> headers;
    std::string_view tls_subject;  // verified client certificate subject, "" when none
    std::chrono::system_clock::time_point now;
};

class Caller;

struct AuthOutcome {
    const Caller* caller = nullptr;  // set on success
    unsigned status = 0;             // 401 on failure
    std::string reason;              // short reason for logs/metrics; never contains the presented secret
    std::string_view method;         // "api_key" | "sdk_signature" | "mtls" | ""
};

class Caller {
  public:
    explicit Caller(CallerDef def);
    const std::string& name() const { return def_.name; }
    const CallerDef& def() const { return def_; }
    bool may_read(std::string_view project_id) const;
    // Token bucket: true when a request may proceed; otherwise retry_after_s says when one token is back.
    // A fast caller (lease_size() > 1) is served from per-thread leases: a thread takes lease_size() tokens
    // from the shared bucket at once and spends them without touching it (one lock shared by all threads
    // per request cost 8 % of a cache hit's CPU with two threads). A lease is spent within 1 ms; its rest
    // goes back to the bucket at the thread's next request for this caller. The bucket counts the tokens
    // set aside in leases against its capacity, so no window admits more than one bucket would; a caller
    // may only be refused up to one lease per thread early. Slower callers (lease_size() == 1) take every
    // token from the bucket itself.
    bool try_acquire(std::chrono::steady_clock::time_point now, double& retry_after_s) const;
    // min(64, rate / 1000, capacity / (16 x hardware threads)), 1 when that is below 2.
    std::uint32_t lease_size() const { return lease_size_; }
    // Replaces this bucket's level with `previous`'s level at `now` (refilled at previous's rate up to
    // previous's capacity, as try_acquire would), capped at this caller's capacity; from `now` on it refills
    // at this caller's rate. Nothing changes when either side is unlimited (a bucket that was not counting
    // starts full). Safe while other threads call try_acquire on either caller: each bucket is read or
    // written under its own mutex, never both mutexes at once. Const like try_acquire: only the bucket
    // state (mutable) changes.
    void adopt_rate_state(const Caller& previous, std::chrono::steady_clock::time_point now) const;

  private:
    // Takes up to `want` tokens from the shared bucket, after a lease ended (`give_back` unspent of the
    // `lease_ended` it had set aside); 0 when it is empty.
    std::uint32_t take(std::chrono::steady_clock::time_point now, std::uint32_t want, double give_back,
                       double lease_ended, double& retry_after_s) const;
    CallerDef def_;
    std::uint64_t uid_;  // process-wide unique: keys the per-thread leases (an address may be reused)
    std::uint32_t lease_size_ = 1;
    mutable std::mutex mu_;
    mutable double tokens_;
    mutable double set_aside_ = 0;  // tokens taken into live leases and not yet spent or given back
    mutable std::chrono::steady_clock::time_point last_;
};

class CallerRegistry {
  public:
    // Never throws: definitions config validation would refuse are not used (see caller_auth.cpp).
    explicit CallerRegistry(std::vector<CallerDef> defs,
                            std::chrono::seconds max_clock_skew = std::chrono::minutes(15));
    // Tries, in order: mTLS subject, SDK signature (Authorization: SDK-HMAC-SHA256 ...),
    // API key (Authorization: Bearer <key> or X-Api-Key).
    AuthOutcome authenticate(const AuthInput& in) const;
    const Caller* find(std::string_view name) const;
    std::size_t size() const { return callers_.size(); }
    // For a reload: every caller of this registry that `previous` has under the same name takes over that
    // caller's token-bucket level (Caller::adopt_rate_state), so a reload neither refills nor empties a
    // bucket. Callers new here keep their full bucket; callers only in `previous` are simply not carried.
    // Call it before this registry serves requests; `previous` may be serving requests meanwhile, and a
    // token taken from it after its caller was copied is not seen here (at most the requests in flight).
    void adopt_rate_state(const CallerRegistry& previous, std::chrono::steady_clock::time_point now) const;

  private:
    std::vector<std::unique_ptr<Caller>> callers_;
    std::chrono::seconds skew_;
    std::uint64_t id_;  // unique per registry: the per-thread cache of verified API keys belongs to one
};

namespace detail {
// Test hook: the signature and API-key-hash computations authenticate() made on this thread so far.
struct AuthWork {
    std::uint64_t signatures = 0;
    std::uint64_t api_key_hashes = 0;
};
AuthWork auth_work();
}  // namespace detail

}  // namespace rdsgw
