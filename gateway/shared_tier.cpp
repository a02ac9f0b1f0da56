// The pipeline's use of the shared cache tier (L2, Redis; shared_cache.hpp), when redis.enabled: the
// leader's fetch asks L2 before the upstream and stores what it fetched there too; rate limits and purges
// reach every instance. Redis failing never fails a caller: each step falls back to what one instance
// does alone.
#include <boost/asio.hpp>
#include <cmath>

#include "rdsgw/gateway.hpp"

namespace rdsgw {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;
using sys = std::chrono::system_clock;
using std::chrono::milliseconds;

bool Gateway::start_shared_tier(std::string& why) {
    if (!cfg_.redis.enabled || l2_) return true;
    RedisEvents events;
    events.on_operation = [this](std::string_view op, std::string_view result, double s) {
        metrics_.redis_operation(op, result, s);
    };
    events.on_state = [this](bool up) {
        metrics_.set_redis_up(up);
        log_warn(up ? "redis: up" : "redis: degraded; serving with the local cache alone");
    };
    l2_ = make_shared_cache(
        cfg_, std::move(events), [this](std::string_view e) { metrics_.cache_event(e); }, why);
    if (!l2_) return false;
    // A purge on any instance drops this instance's L1 copy (nullopt: all of it).
    l2_->on_invalidate([this](std::optional<std::string> key) {
        if (!cache_) return;
        if (key)
            cache_->erase(*key);
        else
            cache_->clear();
    });
    return true;
}

namespace {
FetchPtr shared_outcome(AnswerPtr answer) {
    auto o = std::make_shared<FetchOutcome>();
    o->upstream_request_id = answer->upstream_request_id();
    o->answer = std::move(answer);
    o->from_shared_tier = true;
    return o;
}
}  // namespace

// L2 before the upstream: a stored answer (fills L1 for its remaining lifetime), another instance's fetch
// landing while we wait, or the lock that makes this instance the one to fetch (lock_held).
asio::awaitable<FetchPtr> Gateway::shared_lookup(const FetchJob& job, bool& lock_held) {
    const std::string key(job.cache_key);
    std::string get_key = key;
    const auto now = sys::now();
    const L2Lookup found = co_await l2_->get(std::move(get_key), now);
    if (found.kind == L2Lookup::Kind::hit) {
        if (cache_) cache_->put(key, found.answer, sys::now(), found.remaining);
        co_return shared_outcome(found.answer);
    }
    if (found.kind == L2Lookup::Kind::unavailable) {
        if (log_enabled(LogLevel::debug))
            log(LogLevel::debug, "shared tier unavailable; fetching without it", job.log_ids());
        co_return nullptr;
    }
    // Wait at most half of what is left of the fetch's deadline for another instance: a local fetch (bounded
    // by the same deadline) still has the other half.
    const auto now_steady = steady::now();
    const auto wait_until = now_steady + (std::max(job.deadline, now_steady) - now_steady) / 2;
    std::string lock_key = key;
    const L2Acquire acq = co_await l2_->acquire_or_wait(std::move(lock_key), wait_until);
    if (acq.kind == L2Acquire::Kind::value && acq.answer) {
        if (cache_) cache_->put(key, acq.answer, sys::now(), acq.remaining);
        co_return shared_outcome(acq.answer);
    }
    lock_held = acq.kind == L2Acquire::Kind::leader;
    if (log_enabled(LogLevel::debug))
        log(LogLevel::debug,
            std::string("shared tier: ") +
                (lock_held ? (acq.took_over ? "took over the fetch lock" : "holds the fetch lock")
                           : "no shared answer; fetching without the lock"),
            job.log_ids());
    co_return nullptr;
}

// After the fetch: the answer goes to L2 with the same link-bounded lifetime as in L1 (a 404 for the
// negative TTL), which also releases the lock and wakes the other instances; a failed fetch releases the
// lock so they fetch themselves. Detached: callers need not wait for Redis.
void Gateway::shared_store(const FetchJob& job, const FetchPtr& out, bool lock_held,
                           asio::any_io_executor ex) {
    const bool storable =
        out->answer && !out->error && (out->answer->status() == 200 || out->answer->status() == 404);
    const auto ttl = storable ? fresh_lifetime(*out->answer, sys::now(), cache_opts_) : sys::duration::zero();
    if (log_enabled(LogLevel::debug))
        log(LogLevel::debug,
            "shared tier: store " +
                std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(ttl).count()) + " ms" +
                (lock_held ? " (lock held)" : ""),
            job.log_ids());
    if (ttl > sys::duration::zero())
        asio::co_spawn(ex, l2_->put(std::string(job.cache_key), out->answer, ttl), asio::detached);
    else if (lock_held)
        asio::co_spawn(ex, l2_->release(std::string(job.cache_key)), asio::detached);
}

// A caller's rate limit across instances (GCRA in Redis); the local bucket when Redis does not answer.
asio::awaitable<bool> Gateway::shared_rate_limit(Exchange& x) {
    x.pending = PendingStep::none;
    const CallerDef& d = x.caller->def();
    std::string name = x.caller->name();
    const std::optional<double> shared = co_await l2_->rate_acquire(std::move(name), d.rate_per_s, d.burst);
    double retry_after = shared.value_or(0);
    if (!shared && x.caller->try_acquire(steady::now(), retry_after)) co_return true;
    if (shared && *shared <= 0) co_return true;
    co_return fail(x,
                   LocalError(429, "rate limit exceeded for this caller", ErrorSource::caller, "rate")
                       .with("Retry-After", std::to_string(static_cast<long long>(std::ceil(retry_after)))));
}

// DELETE /admin/cache with the shared tier: L2 and every instance's L1 (this one's too, through the
// invalidation message, and directly in case Redis is down).
asio::awaitable<bool> Gateway::purge_everywhere(Exchange& x) {
    x.pending = PendingStep::none;
    const auto deadline = steady::now() + milliseconds(2000);
    std::optional<std::size_t> shared;
    std::size_t local = 0;
    if (x.project_id.empty()) {
        shared = co_await l2_->purge_all(deadline);
        local = cache_->clear();
    } else {
        std::string key = make_cache_key(x.project_id, x.backup_id);
        local = cache_->erase(key) ? 1 : 0;
        shared = co_await l2_->purge(std::move(key), deadline);
    }
    x.response.body = "{\"purged\":" + std::to_string(local) +
                      ",\"shared\":" + (shared ? std::to_string(*shared) : std::string("null")) + "}";
    if (!shared) log_warn("admin: cache purged locally; Redis did not confirm the shared purge");
    co_return false;
}

}  // namespace rdsgw
