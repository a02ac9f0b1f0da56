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

    // Multi-region (regions.hpp): the upstream metrics and the breaker/credential gauges with a `region`
    // label (a bounded set: Regions::kMaxLabels names, then "other"). enable_region_labels() drops the
    // unlabelled breaker and credential series; the one-region setup never calls any of these.
    void enable_region_labels();
    void upstream_done(std::string_view region, unsigned status, unsigned attempt, double seconds);
    void set_breaker_state(std::string_view region, int state);
    void set_credential_expiry_seconds(std::string_view region, double s);
    // Project discovery: refreshes by result ("ok" | "error") and the projects it knows.
    void discovery_refresh(std::string_view result);
    void set_projects_known(double n);

  private:
    prometheus::Counter& counter_cached(int family, std::string_view a, std::string_view b = {},
                                        std::string_view c = {}, std::string_view d = {});
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace rdsgw
