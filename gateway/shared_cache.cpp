// The shared cache tier (see include/rdsgw/shared_cache.hpp for the contract and the key layout).
//
// Decisions worth knowing:
// - Every multi-step change is one Lua script (EVALSHA), so it is atomic and costs one round trip:
//   acquire = "value? else SET NX PX lock, else PTTL lock"; store = "SET PX value, DEL lock if ours,
//   PUBLISH landed"; release = "DEL lock if ours, PUBLISH released"; GCRA for rate limits.
// - A waiter registers with the subscriber's dispatch before it runs the acquire script, so a landing
//   published after the script ran cannot be missed; one published before it is seen by the script itself.
//   A waiter sleeps until the landing message or the lock's remaining TTL, whichever is first; at lock
//   expiry it runs the script again, so of all the waiters exactly one SET NX wins. After the subscriber
//   reconnects every waiter re-checks (messages may have been lost while it was down).
// - Decryption and parsing run on the caller's thread after the client hands the reply back.
#include "rdsgw/shared_cache.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/this_coro.hpp>
#include <cmath>
#include <cstdio>

#include "rdsgw/async_util.hpp"
#include "rdsgw/config.hpp"
#include "rdsgw/log.hpp"
#include "rdsgw/signer.hpp"
#include "rdsgw/text.hpp"

namespace rdsgw {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;

namespace {

// KEYS: value, lock. ARGV: token, lock ttl ms, "1" to ignore an existing value (it did not open).
// -> {2, value, pttl} | {1} (lock taken) | {0, lock pttl}
const RedisScript& acquire_script() {
    static const RedisScript s(R"lua(
if ARGV[3] ~= '1' then
  local v = redis.call('GET', KEYS[1])
  if v then return {2, v, redis.call('PTTL', KEYS[1])} end
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {1} end
return {0, redis.call('PTTL', KEYS[2])}
)lua");
    return s;
}

// KEYS: value, lock. ARGV: sealed value, ttl ms, lock token ("" = none), channel, message.
const RedisScript& store_script() {
    static const RedisScript s(R"lua(
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '' and redis.call('GET', KEYS[2]) == ARGV[3] then redis.call('DEL', KEYS[2]) end
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
)lua");
    return s;
}

// KEYS: lock. ARGV: token, channel, message.
const RedisScript& release_script() {
    static const RedisScript s(R"lua(
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
)lua");
    return s;
}

// KEYS: purge counter. ARGV: channel, kind ("P"/"A"), tail (" <cache key>" or ""). -> the new count.
const RedisScript& purge_script() {
    static const RedisScript s(R"lua(
local g = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. ' ' .. g .. ARGV[3])
return g
)lua");
    return s;
}

// GCRA on Redis's clock (microseconds). KEYS: state. ARGV: emission interval us, burst (requests).
// -> 0 (allowed) or microseconds until the next request would be allowed.
const RedisScript& gcra_script() {
    static const RedisScript s(R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tonumber(ARGV[2]) * interval
if allow_at > now then return math.max(1, math.ceil(allow_at - now)) end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return 0
)lua");
    return s;
}

std::string random_token() {
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1) throw std::runtime_error("RAND_bytes failed");
    return hex_lower(b, sizeof b);
}

std::string ms_text(SysClock::duration d) {
    return std::to_string(
        std::max<long long>(1, std::chrono::duration_cast<std::chrono::milliseconds>(d).count()));
}

// Glob-escapes a key prefix for SCAN MATCH.
std::string glob_escape(std::string_view s) {
    std::string out;
    for (char c : s) {
        if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out.push_back('\\');
        out.push_back(c);
    }
    return out;
}

RedisClient::Args args(std::initializer_list<std::string_view> parts) {
    RedisClient::Args a;
    a.reserve(parts.size());
    for (auto p : parts) a.emplace_back(p);
    return a;
}

}  // namespace

struct SharedCache::Waiter {
    explicit Waiter(asio::any_io_executor ex) : waker(std::make_shared<Waker>(std::move(ex))) {}
    std::shared_ptr<Waker> waker;
    std::atomic<char> why{0};  // 'L' landed, 'R' released, 'S' re-subscribed
};

SharedCache::SharedCache(std::unique_ptr<RedisClient> client, Sealer sealer, SharedCacheOptions opts,
                         std::function<void(std::string_view)> on_event)
    : sealer_(std::move(sealer)),
      opts_(std::move(opts)),
      on_event_(std::move(on_event)),
      channel_(opts_.key_prefix + "events"),
      gen_key_(opts_.key_prefix + "purge_gen"),
      client_(std::move(client)) {
    client_->subscribe(channel_, [this](std::string_view payload) { on_message(payload); });
    client_->on_subscribed([this] { on_resubscribed(); });
}

SharedCache::~SharedCache() {
    client_.reset();  // stops the client thread before anything its handlers use goes away
}

std::string SharedCache::hash_tag(std::string_view s) const {
    return sha256_hex(s).substr(0, 32);
}

std::string SharedCache::value_key(std::string_view cache_key) const {
    return opts_.key_prefix + "{" + hash_tag(cache_key) + "}:v";
}

std::string SharedCache::lock_key(std::string_view cache_key) const {
    return opts_.key_prefix + "{" + hash_tag(cache_key) + "}:lock";
}

void SharedCache::event(std::string_view e) const {
    if (on_event_) on_event_(e);
}

AnswerPtr SharedCache::open_value(std::string_view cache_key, std::string_view sealed) {
    auto plain = sealer_.open(sealed, cache_key);
    AnswerPtr a;
    if (plain) a = parse_answer(*plain);
    if (!a) event("l2_decrypt_error");
    return a;
}

bool SharedCache::fresh_enough(const CachedAnswer& a, SysClock::time_point now) const {
    if (a.status() != 200) return true;
    return a.earliest_expiry() == SysClock::time_point::max() ||
           a.earliest_expiry() - opts_.expiry_margin > now;
}

asio::awaitable<L2Lookup> SharedCache::get(std::string cache_key, SysClock::time_point now) {
    const std::string key = value_key(cache_key);
    std::vector<RedisClient::Args> batch{args({"GET", key}), args({"PTTL", key})};
    auto r = co_await client_->pipeline(std::move(batch), client_->deadline(), "l2_get");
    L2Lookup out;
    if (!r[0].ok() || !r[1].ok()) {
        out.kind = L2Lookup::Kind::unavailable;
        co_return out;
    }
    out.kind = L2Lookup::Kind::miss;
    AnswerPtr a;
    if (r[0].kind == RedisReply::Kind::string && r[1].integer > 0) a = open_value(cache_key, r[0].str);
    if (!a || !fresh_enough(*a, now)) {
        event("l2_miss");
        co_return out;
    }
    SysClock::duration left = std::chrono::milliseconds(r[1].integer);
    if (a->status() == 200 && a->earliest_expiry() != SysClock::time_point::max())
        left = std::min(left, a->earliest_expiry() - opts_.expiry_margin - now);
    out.kind = L2Lookup::Kind::hit;
    out.remaining = left;
    out.answer = std::move(a);
    event("l2_hit");
    co_return out;
}

asio::awaitable<bool> SharedCache::put(std::string cache_key, AnswerPtr answer, SysClock::duration ttl) {
    std::string token = take_token(cache_key);
    if (!answer || (answer->status() != 200 && answer->status() != 404) ||
        ttl <= SysClock::duration::zero()) {
        if (!token.empty()) co_await release_lock(cache_key, std::move(token));
        co_return false;
    }
    std::string sealed = sealer_.seal(serialize_answer(*answer), cache_key);
    auto keys = args({value_key(cache_key), lock_key(cache_key)});
    auto argv = args({sealed, ms_text(ttl), token, channel_, "L " + hash_tag(cache_key)});
    auto r = co_await client_->eval(store_script(), std::move(keys), std::move(argv), client_->deadline(),
                                    "l2_put");
    // Not stored (an error answer such as OOM, or no answer in time): the lock must not outlive the fetch,
    // or the other instances would wait for it until their deadline. Deleting it is safe even when the
    // store did run after all: the script deletes only a lock that still carries this token.
    if (!r.ok() && !token.empty()) co_await release_lock(cache_key, std::move(token));
    co_return r.ok();
}

asio::awaitable<void> SharedCache::release(std::string cache_key) {
    std::string token = take_token(cache_key);
    if (!token.empty()) co_await release_lock(cache_key, std::move(token));
}

std::string SharedCache::take_token(const std::string& cache_key) {
    std::lock_guard lk(mu_);
    auto it = held_.find(cache_key);
    if (it == held_.end()) return {};
    std::string token = std::move(it->second);
    held_.erase(it);
    return token;
}

asio::awaitable<void> SharedCache::release_lock(const std::string& cache_key, std::string token) {
    auto keys = args({lock_key(cache_key)});
    auto argv = args({std::move(token), channel_, "R " + hash_tag(cache_key)});
    co_await client_->eval(release_script(), std::move(keys), std::move(argv), client_->deadline(),
                           "l2_release");
}

// What one answer of the acquire script means: done (out is set), wait for the lock, or ask again (the value
// there did not open: take the lock to fetch it anew).
SharedCache::Next SharedCache::settle(const std::string& cache_key, const std::string& token,
                                      const RedisReply& r, bool waited, bool& skip_value, L2Acquire& out) {
    const long long state =
        r.kind == RedisReply::Kind::array && !r.elements.empty() ? r.elements[0].integer : -1;
    if (state == 0) return Next::wait;
    if (state == 1) {
        std::lock_guard lk(mu_);
        held_[cache_key] = token;
        out.kind = L2Acquire::Kind::leader;
        out.took_over = waited;
        return Next::done;
    }
    if (state == 2 && r.elements.size() == 3) {
        auto a = open_value(cache_key, r.elements[1].str);
        if (!a) {
            skip_value = true;
            return Next::again;
        }
        out.kind = L2Acquire::Kind::value;
        out.remaining = std::chrono::milliseconds(std::max<long long>(0, r.elements[2].integer));
        out.answer = std::move(a);
        return Next::done;
    }
    out.kind = L2Acquire::Kind::unavailable;
    return Next::done;
}

asio::awaitable<L2Acquire> SharedCache::acquire_or_wait(std::string cache_key, Deadline deadline) {
    const std::string hash = hash_tag(cache_key);
    const auto keys = args({value_key(cache_key), lock_key(cache_key)});
    const std::string lock_ms = ms_text(opts_.lock_ttl);
    const auto ex = co_await asio::this_coro::executor;
    bool skip_value = false, waited = false;
    L2Acquire out;
    while (steady::now() < deadline) {
        // Register before asking, so that a landing published after the script ran wakes this waiter.
        const bool can_wait = client_->subscribed();
        auto w = std::make_shared<Waiter>(ex);
        if (can_wait) {
            std::lock_guard lk(mu_);
            waiters_.emplace(hash, w);
        }
        const std::string token = random_token();
        auto argv = args({token, lock_ms, skip_value ? "1" : "0"});
        auto r = co_await client_->eval(acquire_script(), keys, std::move(argv),
                                        std::min(deadline, client_->deadline()), "l2_lock");
        const Next next = settle(cache_key, token, r, waited, skip_value, out);
        if (next != Next::wait || !can_wait) {  // without a subscriber to wake it, nobody waits blind
            unregister_waiter(hash, w);
            if (next == Next::again) continue;
            if (next == Next::wait) out.kind = L2Acquire::Kind::unavailable;
            co_return out;
        }
        const long long pttl = r.elements.size() > 1 && r.elements[1].integer > 0 ? r.elements[1].integer
                                                                                  : opts_.lock_ttl.count();
        const bool woken =
            co_await w->waker->wait(std::min(deadline, steady::now() + std::chrono::milliseconds(pttl + 2)));
        unregister_waiter(hash, w);
        waited = true;
        if (woken && w->why.load() == 'R') {
            out.kind = L2Acquire::Kind::released;
            co_return out;
        }
    }
    out.kind = L2Acquire::Kind::timeout;
    co_return out;
}

void SharedCache::unregister_waiter(const std::string& hash, const std::shared_ptr<Waiter>& w) {
    std::lock_guard lk(mu_);
    auto [b, e] = waiters_.equal_range(hash);
    for (auto it = b; it != e; ++it) {
        if (it->second == w) {
            waiters_.erase(it);
            return;
        }
    }
}

void SharedCache::wake(const std::string& hash, char why) {
    std::vector<std::shared_ptr<Waiter>> woken;
    {
        std::lock_guard lk(mu_);
        if (hash.empty()) {
            for (auto& [h, w] : waiters_) woken.push_back(w);
            waiters_.clear();
        } else {
            auto [b, e] = waiters_.equal_range(hash);
            for (auto it = b; it != e; ++it) woken.push_back(it->second);
            waiters_.erase(b, e);
        }
    }
    for (auto& w : woken) {
        w->why.store(why);
        w->waker->fire();
    }
}

void SharedCache::on_invalidate(std::function<void(std::optional<std::string>)> fn) {
    std::lock_guard lk(mu_);
    invalidators_.push_back(std::move(fn));
}

void SharedCache::invalidate(std::optional<std::string> key) {
    std::vector<std::function<void(std::optional<std::string>)>> fns;
    {
        std::lock_guard lk(mu_);
        fns = invalidators_;
    }
    for (auto& f : fns) f(key);
}

// Client thread.
void SharedCache::on_message(std::string_view payload) {
    if (payload.size() < 3 || payload[1] != ' ') return;
    const char kind = payload[0];
    std::string_view rest = payload.substr(2);
    if (kind == 'L' || kind == 'R') return wake(std::string(rest), kind);
    if (kind != 'P' && kind != 'A') return;
    const auto sp = rest.find(' ');
    const std::string gen_text(rest.substr(0, sp));
    char* end = nullptr;
    const long long gen = std::strtoll(gen_text.c_str(), &end, 10);
    if (end == gen_text.c_str()) return;
    seen_gen_ = std::max(seen_gen_.value_or(0), gen);
    if (kind == 'A') return invalidate(std::nullopt);
    if (sp != std::string_view::npos) invalidate(std::string(rest.substr(sp + 1)));
}

// Client thread: after every (re)subscription.
void SharedCache::on_resubscribed() {
    wake({}, 'S');  // anything published while the subscriber was down was lost: every waiter re-checks
    asio::co_spawn(client_->executor(), check_purge_gen(), asio::detached);
}

// Client thread. Purges made while this instance was not subscribed are caught up by dropping all of L1.
asio::awaitable<void> SharedCache::check_purge_gen() {
    auto get = args({"GET", gen_key_});
    auto r = co_await client_->command(std::move(get), client_->deadline(), "l2_purge_gen");
    if (!r.ok()) co_return;
    const long long gen = r.nil() ? 0 : std::strtoll(r.str.c_str(), nullptr, 10);
    const bool missed = seen_gen_ && gen > *seen_gen_;
    seen_gen_ = std::max(seen_gen_.value_or(0), gen);
    if (missed) {
        log_info("redis: purges were missed while unsubscribed; dropping the in-process cache");
        invalidate(std::nullopt);
    }
}

asio::awaitable<bool> SharedCache::publish_purge(std::string kind, std::string tail, Deadline deadline) {
    auto keys = args({gen_key_});
    auto argv = args({channel_, kind, tail});
    auto r = co_await client_->eval(purge_script(), std::move(keys), std::move(argv), deadline, "l2_purge");
    co_return r.ok();
}

asio::awaitable<std::optional<std::size_t>> SharedCache::purge(std::string cache_key, Deadline deadline) {
    auto unlink = args({"UNLINK", value_key(cache_key)});
    auto r = co_await client_->command(std::move(unlink), deadline, "l2_purge");
    const bool told = co_await publish_purge("P", " " + cache_key, deadline);
    if (!r.ok() || !told) co_return std::nullopt;
    co_return static_cast<std::size_t>(std::max<long long>(0, r.integer));
}

asio::awaitable<std::optional<std::size_t>> SharedCache::purge_all(Deadline deadline) {
    const std::string pattern = glob_escape(opts_.key_prefix) + "{*}:v";
    std::string cursor = "0";
    std::size_t removed = 0;
    bool ok = true;
    do {
        auto scan = args({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
        auto r = co_await client_->command(std::move(scan), deadline, "l2_purge");
        if (!r.ok() || r.elements.size() != 2) {
            ok = false;
            break;
        }
        cursor = r.elements[0].str;
        std::vector<RedisClient::Args> unlinks;  // one key per command: keys of many slots (cluster)
        for (auto& k : r.elements[1].elements) unlinks.push_back(args({"UNLINK", k.str}));
        if (unlinks.empty()) continue;
        for (auto& u : co_await client_->pipeline(std::move(unlinks), deadline, "l2_purge")) {
            ok = ok && u.ok();
            removed += u.integer > 0 ? static_cast<std::size_t>(u.integer) : 0;
        }
    } while (cursor != "0" && ok);
    const bool told = co_await publish_purge("A", "", deadline);
    if (!ok || !told) co_return std::nullopt;
    co_return removed;
}

asio::awaitable<std::optional<double>> SharedCache::rate_acquire(std::string caller, double rate_per_s,
                                                                 double burst) {
    if (!(rate_per_s > 0)) co_return 0.0;
    const double cap = burst >= 1 ? burst : std::max(1.0, rate_per_s);
    const std::string interval_us = std::to_string(std::llround(1e6 / rate_per_s));
    const std::string key = opts_.key_prefix + "rate:{" + hash_tag(caller) + "}";
    char cap_text[32];
    std::snprintf(cap_text, sizeof cap_text, "%.6f", cap);
    auto keys = args({key});
    auto argv = args({interval_us, cap_text});
    auto r = co_await client_->eval(gcra_script(), std::move(keys), std::move(argv), client_->deadline(),
                                    "rate_limit");
    if (r.kind != RedisReply::Kind::integer) co_return std::nullopt;
    co_return r.integer <= 0 ? 0.0 : static_cast<double>(r.integer) / 1e6;
}

namespace {

// config.redis.encryption_keys -> SealKeys; false with `why` naming the key.
bool load_seal_keys(const RedisConfig& rc, std::vector<SealKey>& out, std::string& why) {
    for (std::size_t i = 0; i < rc.encryption_keys.size(); ++i) {
        const auto& k = rc.encryption_keys[i];
        const std::string where = "redis.encryption_keys[" + std::to_string(i) + "].key";
        std::string text, reason;
        if (!load_secret(k.key, text, reason)) {
            why = where + ": " + reason;
            return false;
        }
        auto material = parse_key_material(text);
        OPENSSL_cleanse(text.data(), text.size());
        if (!material) {
            why = where + " (" + k.key.describe() + "): must be 32 bytes, as 64 hex digits or base64";
            return false;
        }
        out.push_back(SealKey{k.id, *material});
        OPENSSL_cleanse(material->data(), material->size());
    }
    if (out.empty()) why = "redis.encryption_keys: is required when redis.enabled is true";
    return !out.empty();
}

RedisOptions redis_options(const RedisConfig& rc) {
    RedisOptions o;
    o.address = rc.address;
    o.user = rc.user;
    o.db = rc.db;
    o.pool_size = rc.pool_size;
    o.op_timeout = std::chrono::milliseconds(rc.op_timeout_ms);
    o.connect_timeout = std::chrono::milliseconds(rc.connect_timeout_ms);
    o.breaker_failures = rc.breaker_failures;
    o.breaker_open = std::chrono::milliseconds(rc.breaker_open_ms);
    o.tls = rc.tls;
    o.tls_ca_file = rc.tls_ca_file;
    o.tls_server_name = rc.tls_server_name;
    return o;
}

}  // namespace

std::unique_ptr<SharedCache> make_shared_cache(const Config& cfg, RedisEvents events,
                                               std::function<void(std::string_view)> on_event,
                                               std::string& why) {
    const RedisConfig& rc = cfg.redis;
    RedisOptions ro = redis_options(rc);
    if (!rc.password.empty()) {
        std::string reason;
        if (!load_secret(rc.password, ro.password, reason)) {
            why = "redis.password: " + reason;
            return nullptr;
        }
    }
    std::vector<SealKey> keys;
    if (!load_seal_keys(rc, keys, why)) return nullptr;
    SharedCacheOptions so;
    so.key_prefix = rc.key_prefix;
    so.expiry_margin = std::chrono::seconds(cfg.cache.expiry_margin_s);
    so.lock_ttl = std::chrono::milliseconds(rc.lock_ttl_ms);
    try {
        Sealer sealer(std::move(keys));
        auto client = std::make_unique<RedisClient>(std::move(ro), std::move(events));
        return std::make_unique<SharedCache>(std::move(client), std::move(sealer), std::move(so),
                                             std::move(on_event));
    } catch (const std::invalid_argument& e) {
        why = e.what();
        return nullptr;
    }
}

}  // namespace rdsgw
