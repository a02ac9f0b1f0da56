// Caller authentication, per-project authorization and per-caller rate limits
// (include/rdsgw/caller_auth.hpp).
//
// Decisions worth knowing:
// - Order: mTLS subject, then the Authorization header (SDK-HMAC-SHA256 or Bearer), then X-Api-Key.
//   A verified client-certificate subject that no caller lists is not a failure by itself: the request may
//   still authenticate with a signature or an API key. If it presents nothing else, the outcome is
//   401 "invalid credentials" (something was presented and it is not accepted), not "missing credentials".
// - Authorization and X-Api-Key together are "malformed credentials" (two credentials: neither is preferred),
//   unless Authorization is "Bearer <the same key>". An Authorization header with another scheme, more than
//   one Authorization or X-Api-Key header, or an empty key is "malformed credentials" too. A verified
//   client-certificate subject that a caller lists wins over any header (the order above).
// - Timing: an unknown access key and a wrong signature take the same work (a signature with a dummy SK
//   is computed and compared), as do unknown and known API keys (one hash, compared with every hash).
// - Reasons are exactly "missing credentials", "malformed credentials" or "invalid credentials" (low
//   cardinality for metrics); they never contain what the client sent.
// - SDK signatures are verified over the method, the target's path and raw query, the signed headers' values
//   as received (duplicates joined by ',' as the signer does) and an EMPTY body: the gateway only serves GET.
//   A malformed X-Sdk-Date is "malformed credentials"; a date outside +-max_clock_skew is "invalid
//   credentials".
// - Config validation (config.cpp) is the one place that refuses bad caller definitions, with a message
//   naming the key. CallerRegistry's constructor never throws (it also runs on SIGHUP, where an exception
//   would end the process); what validation would have refused is simply not used: a caller whose name
//   repeats an earlier one is dropped, an access key, API key hash or certificate subject claimed by more
//   than one caller is removed from all of them (an ambiguous credential authenticates nobody), and an
//   access key without a secret key or an api_key_sha256 entry that is not 64 hex digits is dropped.
//   Hashes are compared lower-cased.
// - Rate limits: rate_per_s <= 0 means unlimited. On a reload, CallerRegistry::adopt_rate_state carries each
//   surviving caller's bucket level (matched by name) into the new registry: a SIGHUP neither refills nor
//   empties a bucket. The level is taken at the reload time at the OLD rate and capacity, capped at the new
//   capacity, and refilled at the new rate from then on; a caller that was unlimited before starts full.
#include "rdsgw/caller_auth.hpp"

#include <openssl/crypto.h>

#include <atomic>
#include <boost/unordered/unordered_flat_map.hpp>
#include <cstring>
#include <thread>

#include "rdsgw/text.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <optional>
#include <stdexcept>
#include <unordered_map>

#include "rdsgw/signer.hpp"

namespace rdsgw {
namespace {

constexpr std::string_view kMissing = "missing credentials";
constexpr std::string_view kMalformed = "malformed credentials";
constexpr std::string_view kInvalid = "invalid credentials";

using HeaderList = std::span<const std::pair<std::string_view, std::string_view>>;

// Stands in for the secret key of an access key no caller has (same length as Huawei Cloud's SKs).
constexpr std::string_view kDummySk = "dummy-secret-key-for-unknown-access-keys";

thread_local detail::AuthWork t_work;  // per thread: no shared cache line on the request path

// Values of every header with this name (case-insensitive), in order.
std::vector<std::string_view> header_values(HeaderList headers, std::string_view name) {
    std::vector<std::string_view> out;
    for (const auto& [n, v] : headers)
        if (ascii_iequals(n, name)) out.push_back(v);
    return out;
}

// How many headers have this name, and the first one's value (no allocation).
struct HeaderCount {
    std::size_t count = 0;
    std::string_view first;
};
HeaderCount count_header(HeaderList headers, std::string_view name) {
    HeaderCount c;
    for (const auto& [n, v] : headers)
        if (ascii_iequals(n, name) && c.count++ == 0) c.first = v;
    return c;
}

// API keys this thread has verified against one registry (README, "Performance"): such a key is found again
// without hashing it. Only successes are kept, so an unknown key always costs its one hash; a known key
// answered from here is faster, which tells the client nothing its 200 does not. The presented key is
// compared with every word of every slot (no early exit: the time does not depend on the bytes), and the
// length; longer keys are not kept. Another registry (a reload) wipes the slots first (OPENSSL_cleanse).
struct VerifiedKeys {
    static constexpr std::size_t kSlots = 8, kMaxKey = 96, kWords = kMaxKey / 8;
    struct Slot {
        std::uint64_t key[kWords] = {};
        std::size_t len = 0;
        const Caller* who = nullptr;
    };
    std::uint64_t registry = 0;
    Slot slots[kSlots];
    std::size_t next = 0;

    const Caller* find(std::uint64_t reg, std::string_view key) {
        if (reg != registry) {
            OPENSSL_cleanse(slots, sizeof slots);
            for (auto& sl : slots) sl = Slot{};
            registry = reg;
        }
        if (key.size() > kMaxKey) return nullptr;
        std::uint64_t padded[kWords] = {};
        std::memcpy(padded, key.data(), key.size());
        const Caller* found = nullptr;
        for (const auto& sl : slots) {
            // Every word of every slot is compared (OR of XORs, no early exit), whatever matches.
            std::uint64_t diff = sl.len ^ key.size();
            for (std::size_t i = 0; i < kWords; ++i) diff |= sl.key[i] ^ padded[i];
            if (diff == 0 && sl.who != nullptr && found == nullptr) found = sl.who;
        }
        OPENSSL_cleanse(padded, sizeof padded);
        return found;
    }
    void add(std::string_view key, const Caller* who) {
        if (key.size() > kMaxKey) return;
        Slot& sl = slots[next++ % kSlots];
        OPENSSL_cleanse(sl.key, sizeof sl.key);
        std::memcpy(sl.key, key.data(), key.size());
        sl.len = key.size();
        sl.who = who;
    }
};
thread_local VerifiedKeys t_keys;

std::atomic<std::uint64_t> g_registry_ids{0};

AuthOutcome fail(std::string_view reason) {
    AuthOutcome o;
    o.status = 401;
    o.reason = std::string(reason);
    return o;
}

AuthOutcome succeed(const Caller* c, std::string_view method) {
    AuthOutcome o;
    o.caller = c;
    o.method = method;
    return o;
}

double capacity_of(const CallerDef& d) {
    return d.burst >= 1 ? d.burst : std::max(1.0, d.rate_per_s);
}

bool is_hex64(std::string_view s) {
    return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
               return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
           });
}

}  // namespace

namespace {
std::atomic<std::uint64_t> g_caller_uids{0};

// min(64, a millisecond of the rate, capacity / (16 x CPUs)): with a worker thread per CPU, the leases set
// aside at most a sixteenth of the capacity.
std::uint32_t lease_size_of(const CallerDef& d) {
    if (!(d.rate_per_s > 0)) return 1;
    const double cpus = std::max(1u, std::thread::hardware_concurrency());
    const double n = std::min({64.0, d.rate_per_s / 1000, capacity_of(d) / (16 * cpus)});
    return n >= 2 ? static_cast<std::uint32_t>(n) : 1;
}

// This thread's leases, by caller uid. Callers dropped by a reload leave their entry behind; the map is
// emptied when it grows past any plausible caller list. A live caller whose lease is dropped that way (or
// held by a thread that ended) keeps that lease counted as set aside, at most lease_size() - 1 tokens less
// room, until a reload gives it a fresh bucket: the error is on the side of refusing, never of admitting.
struct Lease {
    double tokens = 0;     // left to spend
    double set_aside = 0;  // what the bucket counts as set aside for this lease (tokens taken - 1)
    std::chrono::steady_clock::time_point taken{};
};
constexpr auto kLeaseLife = std::chrono::milliseconds(1);
constexpr std::size_t kMaxLeases = 4096;
boost::unordered_flat_map<std::uint64_t, Lease>& thread_leases() {
    thread_local boost::unordered_flat_map<std::uint64_t, Lease> leases;
    return leases;
}
}  // namespace

Caller::Caller(CallerDef def)
    : def_(std::move(def)),
      uid_(++g_caller_uids),
      lease_size_(lease_size_of(def_)),
      tokens_(capacity_of(def_)) {
    for (auto& h : def_.api_key_sha256)
        for (char& c : h) c = ascii_lower(c);
}

bool Caller::may_read(std::string_view project_id) const {
    return std::any_of(def_.projects.begin(), def_.projects.end(),
                       [&](const std::string& p) { return p == "*" || p == project_id; });
}

bool Caller::try_acquire(std::chrono::steady_clock::time_point now, double& retry_after_s) const {
    retry_after_s = 0;
    if (!(def_.rate_per_s > 0)) return true;  // unlimited (also for NaN)
    if (lease_size_ == 1) return take(now, 1, 0, 0, retry_after_s) == 1;
    auto& leases = thread_leases();
    if (leases.size() >= kMaxLeases && !leases.contains(uid_)) leases.clear();
    Lease& l = leases[uid_];
    const bool live = now >= l.taken && now - l.taken < kLeaseLife;
    if (live && l.tokens >= 1) {
        l.tokens -= 1;
        return true;
    }
    // The lease ends: its unspent rest goes back to the bucket, and all of it stops counting as set aside.
    const double back = l.tokens, set_aside = l.set_aside;
    l.tokens = l.set_aside = 0;
    const std::uint32_t got = take(now, lease_size_, back, set_aside, retry_after_s);
    if (got == 0) return false;
    l.tokens = l.set_aside = got - 1;
    l.taken = now;
    return true;
}

// The bucket and the tokens set aside in live leases never hold more than the capacity together, so however
// the leases are spent no window admits more than a single bucket would.
std::uint32_t Caller::take(std::chrono::steady_clock::time_point now, std::uint32_t want, double give_back,
                           double lease_ended, double& retry_after_s) const {
    const double rate = def_.rate_per_s;
    const double cap = capacity_of(def_);
    std::lock_guard lock(mu_);
    set_aside_ = std::max(0.0, set_aside_ - lease_ended);
    const double room = cap - set_aside_;
    // The bucket starts full; time only moves forward (an earlier `now` refills nothing).
    if (now > last_) {
        const double elapsed = std::chrono::duration<double>(now - last_).count();
        tokens_ = std::min(room, tokens_ + elapsed * rate);
        last_ = now;
    }
    tokens_ = std::min(room, tokens_ + give_back);
    if (tokens_ >= 1) {
        const double n = std::min<double>(want, std::floor(tokens_));
        tokens_ -= n;
        set_aside_ += n - 1;
        return static_cast<std::uint32_t>(n);
    }
    retry_after_s = std::max((1 - tokens_) / rate, 1e-6);
    return 0;
}

void Caller::adopt_rate_state(const Caller& previous, std::chrono::steady_clock::time_point now) const {
    if (&previous == this) return;
    if (!(def_.rate_per_s > 0)) return;  // unlimited now: the bucket is not used
    const double old_rate = previous.def_.rate_per_s;
    if (!(old_rate > 0)) return;  // unlimited before: nothing was counted, start full
    double level = 0;
    std::chrono::steady_clock::time_point at;
    {
        std::lock_guard lock(previous.mu_);
        level = previous.tokens_;
        at = previous.last_;
    }
    if (now > at) {  // the refill previous's own next try_acquire would make (time only moves forward)
        level = std::min(capacity_of(previous.def_),
                         level + std::chrono::duration<double>(now - at).count() * old_rate);
        at = now;
    }
    std::lock_guard lock(mu_);
    tokens_ = std::min(capacity_of(def_), level);
    last_ = at;
}

CallerRegistry::CallerRegistry(std::vector<CallerDef> defs, std::chrono::seconds max_clock_skew)
    : skew_(max_clock_skew), id_(++g_registry_ids) {
    // Which callers claim each credential (kind-prefixed value -> distinct caller names).
    std::unordered_map<std::string, std::vector<std::string>> claims;
    const auto claim = [&](char kind, const std::string& value, const std::string& caller) {
        auto& owners = claims[kind + value];
        if (std::find(owners.begin(), owners.end(), caller) == owners.end()) owners.push_back(caller);
    };
    for (auto& d : defs) {
        for (auto& h : d.api_key_sha256)
            for (char& c : h) c = ascii_lower(c);
        std::erase_if(d.api_key_sha256, [](const std::string& h) { return !is_hex64(h); });
        if (d.secret_key.empty()) d.access_key.clear();
        for (const auto& h : d.api_key_sha256) claim('k', h, d.name);
        if (!d.access_key.empty()) claim('a', d.access_key, d.name);
        for (const auto& s : d.cert_subjects) claim('s', s, d.name);
    }
    const auto shared = [&](char kind, const std::string& value) { return claims[kind + value].size() > 1; };
    callers_.reserve(defs.size());
    for (auto& d : defs) {
        if (find(d.name) != nullptr) continue;  // a repeated name: the first definition stands
        std::erase_if(d.api_key_sha256, [&](const std::string& h) { return shared('k', h); });
        if (!d.access_key.empty() && shared('a', d.access_key)) d.access_key.clear();
        std::erase_if(d.cert_subjects, [&](const std::string& s) { return shared('s', s); });
        callers_.push_back(std::make_unique<Caller>(std::move(d)));
    }
}

const Caller* CallerRegistry::find(std::string_view name) const {
    for (const auto& c : callers_)
        if (c->name() == name) return c.get();
    return nullptr;
}

void CallerRegistry::adopt_rate_state(const CallerRegistry& previous,
                                      std::chrono::steady_clock::time_point now) const {
    if (&previous == this) return;
    std::unordered_map<std::string_view, const Caller*> old;
    old.reserve(previous.callers_.size());
    for (const auto& c : previous.callers_) old.emplace(c->name(), c.get());
    for (const auto& c : callers_)
        if (const auto it = old.find(c->name()); it != old.end()) c->adopt_rate_state(*it->second, now);
}

namespace {

using Callers = std::vector<std::unique_ptr<Caller>>;

// The request as the caller signed it: method, path, raw query and the signed headers' values as received.
// Nothing when SignedHeaders lacks host or x-sdk-date, names a header twice, or names one that is absent.
std::optional<SignableRequest> signed_parts(const AuthInput& in, const std::vector<std::string>& sh) {
    const auto has = [&](std::string_view n) { return std::find(sh.begin(), sh.end(), n) != sh.end(); };
    if (!has("host") || !has("x-sdk-date")) return std::nullopt;
    for (std::size_t i = 0; i < sh.size(); ++i)
        if (std::find(sh.begin(), sh.begin() + static_cast<std::ptrdiff_t>(i), sh[i]) !=
            sh.begin() + static_cast<std::ptrdiff_t>(i))
            return std::nullopt;  // duplicate name in SignedHeaders
    SignableRequest req;
    req.method = std::string(in.method);
    const std::size_t q = in.target.find('?');
    req.path = std::string(in.target.substr(0, q));
    if (q != std::string_view::npos) req.query = std::string(in.target.substr(q + 1));
    for (const auto& name : sh) {
        const auto values = header_values(in.headers, name);
        if (values.empty()) return std::nullopt;
        for (const auto v : values) req.headers.emplace_back(name, std::string(v));
    }
    return req;
}

// (2) An SDK-HMAC-SHA256 signature (`authz` is the trimmed Authorization value).
AuthOutcome verify_sdk_signature(const Callers& callers, std::chrono::seconds skew, const AuthInput& in,
                                 std::string_view authz) {
    const auto parsed = parse_sdk_authorization(authz);
    if (!parsed) return fail(kMalformed);
    const auto req = signed_parts(in, parsed->signed_headers);
    if (!req) return fail(kMalformed);
    const auto dates = header_values(in.headers, "x-sdk-date");
    if (dates.size() != 1) return fail(kMalformed);
    const auto date = parse_sdk_date(trim_ows(dates[0]));
    if (!date) return fail(kMalformed);
    if (*date > in.now + skew || *date < in.now - skew) return fail(kInvalid);

    // Find the caller by access key, comparing every candidate in constant time.
    const Caller* who = nullptr;
    for (const auto& c : callers) {
        const auto& ak = c->def().access_key;
        if (!ak.empty() && constant_time_equal(ak, parsed->access_key) && who == nullptr) who = c.get();
    }
    // An unknown access key costs what a wrong signature costs: the signature is computed (with a stand-in
    // secret key) and compared all the same, so response times do not reveal which keys exist.
    const std::string expected =
        compute_signature(*req, who != nullptr ? std::string_view(who->def().secret_key) : kDummySk);
    ++t_work.signatures;
    const bool signature_ok = constant_time_equal(expected, parsed->signature);
    if (who == nullptr || !signature_ok) return fail(kInvalid);
    return succeed(who, "sdk_signature");
}

// (3) An API key: one hash, compared with every accepted hash of every caller (no early exit), known key
// or not: the same work either way.
// A key this thread verified before against this registry is taken from t_keys (see VerifiedKeys).
AuthOutcome verify_api_key(const Callers& callers, std::uint64_t registry, std::string_view api_key) {
    if (api_key.empty()) return fail(kMalformed);
    if (const Caller* known = t_keys.find(registry, api_key)) return succeed(known, "api_key");
    const std::string h = sha256_hex(api_key);
    ++t_work.api_key_hashes;
    const Caller* who = nullptr;
    for (const auto& c : callers)
        for (const auto& accepted : c->def().api_key_sha256)
            if (constant_time_equal(h, accepted) && who == nullptr) who = c.get();
    if (who == nullptr) return fail(kInvalid);
    t_keys.add(api_key, who);
    return succeed(who, "api_key");
}

}  // namespace

AuthOutcome CallerRegistry::authenticate(const AuthInput& in) const {
    // (1) mTLS: a verified subject that some caller lists.
    if (!in.tls_subject.empty()) {
        for (const auto& c : callers_)
            for (const auto& s : c->def().cert_subjects)
                if (s == in.tls_subject) return succeed(c.get(), "mtls");
    }

    const HeaderCount authz = count_header(in.headers, "authorization");
    const HeaderCount api_keys = count_header(in.headers, "x-api-key");
    if (authz.count > 1 || api_keys.count > 1) return fail(kMalformed);

    if (authz.count == 1) {
        const std::string_view a = trim_ows(authz.first);
        constexpr std::string_view kSdk = "SDK-HMAC-SHA256 ";
        constexpr std::string_view kBearer = "bearer ";
        // Authorization and X-Api-Key together: one credential twice (the same key as Bearer) is fine, two
        // credentials are refused rather than one silently preferred.
        if (api_keys.count == 1 &&
            !(a.size() > kBearer.size() && ascii_iequals(a.substr(0, kBearer.size()), kBearer) &&
              trim_ows(a.substr(kBearer.size())) == trim_ows(api_keys.first)))
            return fail(kMalformed);
        if (a.substr(0, kSdk.size()) == kSdk) return verify_sdk_signature(callers_, skew_, in, a);
        if (a.size() > kBearer.size() && ascii_iequals(a.substr(0, kBearer.size()), kBearer))
            return verify_api_key(callers_, id_, trim_ows(a.substr(kBearer.size())));
        return fail(kMalformed);  // another scheme, or a bare "Bearer"
    }
    if (api_keys.count == 1) return verify_api_key(callers_, id_, trim_ows(api_keys.first));

    // (4) Nothing usable presented.
    return fail(in.tls_subject.empty() ? kMissing : kInvalid);
}

detail::AuthWork detail::auth_work() {
    return t_work;
}

}  // namespace rdsgw
