// Prometheus metrics (prometheus-cpp core). Label values come from bounded sets only: never an id, a path
// or a key; never empty ("none") and without spaces ('_'). Counters with a known set of label values are
// exported at 0 from the start. Hot-path updates (counters, the request and upstream duration histograms, the
// in-flight and upstream connection gauges) go to the calling thread's own cells: no lock, no read-modify-
// write, no cache line shared with another thread; render() adds what each thread counted since the last
// render to the prometheus-cpp series. Besides the rdsgw_* families: the standard process_* metrics and
// rdsgw_build_info.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "rdsgw/build_info.hpp"

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace rdsgw {

// This process's resource use, read from /proc: the standard process_* metrics.
struct ProcessStats {
    double cpu_seconds = 0;         // user + system
    double start_time_seconds = 0;  // since the Unix epoch
    double resident_bytes = 0;
    double virtual_bytes = 0;
    double open_fds = 0;
    double max_fds = 0;
};
// Parses the content of /proc/<pid>/stat. `boot_time_s` is /proc/stat's btime. False when malformed.
bool parse_proc_stat(std::string_view stat, long ticks_per_s, long page_size, double boot_time_s,
                     ProcessStats& out);
// Reads them for this process now (false when /proc is unavailable).
bool read_process_stats(ProcessStats& out);

// A label value as exported: "none" for an empty one, '_' for each space.
std::string label_value(std::string_view v);

class Metrics {
  public:
    explicit Metrics(const BuildInfo& build);
    explicit Metrics(std::string_view version);  // the other build facts "unknown"
    ~Metrics();
    Metrics(const Metrics&) = delete;

    // Text exposition format 0.0.4; runs the collect hooks and reads the process metrics first.
    std::string render();
    // Hooks that refresh gauges from live state (cache size, credential expiry...) right before rendering.
    void on_collect(std::function<void(Metrics&)> hook);

    // route: route_name(); method: "GET" | "HEAD" | "other"; cache: "HIT" | "MISS" | ... | "" (exported as
    // "none").
    void request_done(std::string_view route, std::string_view method, unsigned status,
                      std::string_view cache, double seconds);
    // reason: "limit" | "auth" | "forbidden" | "validation" | "rate" | "overload" | "credentials"
    void rejected(std::string_view reason);
    // status 0 = no HTTP answer (connect failure, reset, timeout); attempt is 1-based.
    void upstream_done(unsigned status, unsigned attempt, double seconds);
    // event: "hit" | "miss" | "coalesced" | "stale" | "evicted" | "expired" | "bypass" | "negative_hit"
    void cache_event(std::string_view event);
    // kind: "token" | "iam" | "aksk"; result: "ok" | "error"
    void credential_refresh(std::string_view kind, std::string_view result);
    // Exports this process's credential kind's refresh counters (ok, error) at 0.
    void credential_kind(std::string_view kind);
    // reason: "missing credentials" | "malformed credentials" | "invalid credentials" (exported with '_').
    void auth_failure(std::string_view method_reason);
    // An upstream answer the gateway would not serve; reason: "contract" | "expiring" | "credential_echo"
    void answer_refused(std::string_view reason);
    // A backup-files request of an identified caller (its configured name: a bounded set); throttled: refused
    // by its rate limit.
    void caller_request(std::string_view caller, bool throttled);

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
    void update_process_metrics();
    struct Cell;
    struct HistCell;
    struct Shard;
    Shard& shard();
    void fold();  // adds what every thread counted since the last render to the prometheus series
    Cell& counter_cached(int family, std::string_view a, std::string_view b = {}, std::string_view c = {},
                         std::string_view d = {});
    HistCell& histogram_cached(std::string_view route);
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
