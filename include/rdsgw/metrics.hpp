// Prometheus metrics (prometheus-cpp core). Label values come from bounded sets only: never an id, a path
// or a key. Hot-path updates go to atomic counters through per-thread caches of metric pointers.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace rdsgw {

class Metrics {
  public:
    explicit Metrics(std::string_view version);
    ~Metrics();
    Metrics(const Metrics&) = delete;

    // Text exposition format 0.0.4; runs the collect hooks first.
    std::string render();
    // Hooks that refresh gauges from live state (cache size, credential expiry...) right before rendering.
    void on_collect(std::function<void(Metrics&)> hook);

    // route: route_name(); method: "GET" | "HEAD" | "other"; cache: "HIT" | "MISS" | ... | "" (none).
    void request_done(std::string_view route, std::string_view method, unsigned status,
                      std::string_view cache, double seconds);
    // reason: "limit" | "auth" | "forbidden" | "validation" | "rate" | "overload" | "credentials"
    void rejected(std::string_view reason);
    // status 0 = no HTTP answer (connect failure, reset, timeout); attempt is 1-based.
    void upstream_done(unsigned status, unsigned attempt, double seconds);
    // event: "hit" | "miss" | "coalesced" | "stale" | "evicted" | "expired" | "bypass" | "negative_hit"
    void cache_event(std::string_view event);
    // kind: "iam" | "token_file" | "aksk"; result: "ok" | "error"
    void credential_refresh(std::string_view kind, std::string_view result);
    void auth_failure(std::string_view method_reason);

    void inflight_add(int d);
    void upstream_connections_add(int open_delta, int idle_delta);

    // Set by collect hooks.
    void set_cache(double entries, double bytes);
    void set_singleflight_waiters(double n);
    void set_credential_expiry_seconds(double s);
    void set_breaker_state(int state);  // 0 closed, 1 half-open, 2 open
    void set_access_log_dropped(double n);
    void set_open_connections(double n);

  private:
    prometheus::Counter& counter_cached(int family, std::string_view a, std::string_view b = {},
                                        std::string_view c = {}, std::string_view d = {});
    struct Impl;
    std::unique_ptr<Impl> impl_;

    // ---- The shared cache tier (Redis). Its series are registered on first use, so an instance without
    // Redis shows none. L2 hits and misses go through cache_event ("l2_hit", "l2_miss", "l2_decrypt_error").
  public:
    // op: the operation's label (e.g. "l2_get", "l2_put", "l2_lock", "rate_limit"); result: "ok" | "error" |
    // "noscript" | "timeout" | "breaker_open" | "disconnected" | "overloaded" | "stopped". Bounded sets only.
    void redis_operation(std::string_view op, std::string_view result, double seconds);
    void set_redis_up(bool up);

  private:
    struct RedisMetrics;
    RedisMetrics& redis_metrics();
    std::once_flag redis_once_;
    std::shared_ptr<RedisMetrics> redis_;
};

}  // namespace rdsgw
