// The live status page (GET /admin/status, backed by GET /admin/status.json): a StatusBoard that aggregates
// answered requests and upstream fetches into per-second buckets (a 10-minute ring), the JSON built from a
// snapshot of it plus the gateway's live state, and the page's files embedded at build time.
//
// Hot path: StatusBoard::request() writes to the calling thread's own shard (plain relaxed loads and stores
// of atomics, no lock, no read-modify-write); readers (status.json, rare) sum the shards. Callers are named
// by their configured name only (a bounded set), never by a key.
#pragma once
#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rdsgw {

enum class CacheState;  // exchange.hpp

// Counts over some span of time (one step of a series, a window, or since start).
struct StatusCounts {
    std::uint64_t requests = 0;
    // Status mix: a partition of `requests` (s4xx excludes 429; anything below 200 or above 599 is in
    // none of them).
    std::uint64_t s2xx = 0, s3xx = 0, s4xx = 0, s429 = 0, s5xx = 0;
    // Answers by cache state (the X-Cache header): HIT, MISS, COALESCED, STALE, BYPASS.
    std::uint64_t hit = 0, miss = 0, coalesced = 0, stale = 0, bypass = 0;
    // Requests refused by the caller's rate limit (429 from the gateway itself).
    std::uint64_t throttled = 0;
    // Upstream fetches (one per single-flight leader), their attempts, and answers refused by the contract.
    std::uint64_t fetches = 0, attempts = 0, refused = 0;

    // Answers served without an upstream call of their own: HIT + COALESCED.
    std::uint64_t saved() const { return hit + coalesced; }
    // Answers with any cache state.
    std::uint64_t cache_answers() const { return hit + miss + coalesced + stale + bypass; }
    void add(const StatusCounts& o);
};

// Upstream fetch durations (all attempts of one fetch), in fixed log-spaced buckets: upper bounds
// 0.25 ms * 2^(i/2) for i < kBuckets - 1, the last bucket unbounded.
struct LatencyHistogram {
    static constexpr std::size_t kBuckets = 32;
    std::array<std::uint64_t, kBuckets> counts{};

    static std::size_t bucket_of(double ms);
    static double upper_bound_ms(std::size_t i);  // +inf for the last bucket
    std::uint64_t total() const;
    // The q-quantile (0 < q < 1), interpolated linearly inside its bucket; NaN when empty. A quantile in the
    // unbounded bucket is reported as that bucket's lower bound.
    double quantile(double q) const;
    void add(const LatencyHistogram& o);
};

struct CallerActivity {
    std::string name;
    std::uint64_t requests = 0, throttled = 0;              // in the window
    std::uint64_t requests_total = 0, throttled_total = 0;  // since start
};

struct StatusSnapshot {
    double uptime_s = 0;
    std::chrono::seconds window{0};
    StatusCounts total;   // since start
    StatusCounts recent;  // in the window
    LatencyHistogram latency_recent;
    // Series of complete seconds, oldest first, each point covering `step`; the last point ends with the
    // last complete second.
    std::chrono::seconds step{0};
    std::vector<StatusCounts> series;
    std::vector<LatencyHistogram> series_latency;
    std::vector<CallerActivity> top_by_requests;   // callers with requests in the window, most first
    std::vector<CallerActivity> top_by_throttled;  // callers throttled in the window, most first
    std::map<std::string, std::uint64_t> refused_by_reason;  // since start
};

class StatusBoard {
  public:
    static constexpr std::int64_t kRingSeconds = 640;       // per-second buckets kept
    static constexpr std::chrono::seconds kMaxWindow{600};  // windows and series reach back this far
    static constexpr std::int64_t kCallerSlotSeconds = 10;  // callers: 10-second buckets
    static constexpr std::size_t kMaxCallerNames = 1024;    // per thread; beyond: "(other)"
    using clock = std::chrono::steady_clock;

    explicit StatusBoard(clock::time_point start = clock::now());
    ~StatusBoard();
    StatusBoard(const StatusBoard&) = delete;
    StatusBoard& operator=(const StatusBoard&) = delete;

    // One answered request of the API (Gateway::finish). `caller` is the configured caller name ("" when
    // none); `throttled`: refused by the caller's rate limit.
    void request(unsigned status, CacheState cache, std::string_view caller, bool throttled,
                 clock::time_point now);
    // One upstream fetch: its attempts (0 when it was refused before any) and its duration.
    void fetch(unsigned attempts, double ms, clock::time_point now);
    // An upstream answer refused by the response contract; reason from a small set ("contract", "encoding",
    // ...). Rare: it takes a mutex for the per-reason totals.
    void refused(std::string_view reason, clock::time_point now);

    // Time since `start`.
    clock::duration age(clock::time_point now) const { return now - start_; }
    // Sums every thread's shard. `window` and `step` are clamped to [1 s, kMaxWindow]; `top_n` bounds the
    // callers' lists.
    StatusSnapshot snapshot(clock::time_point now, std::chrono::seconds window = std::chrono::seconds(300),
                            std::chrono::seconds series_span = kMaxWindow,
                            std::chrono::seconds step = std::chrono::seconds(5),
                            std::size_t top_n = 10) const;

  private:
    struct Shard;
    Shard& local();
    std::int64_t second_of(clock::time_point t) const;

    const clock::time_point start_;
    const std::uint64_t id_;
    mutable std::mutex mu_;  // guards shards_ (growth) and refused_
    std::vector<std::unique_ptr<Shard>> shards_;
    std::map<std::string, std::uint64_t, std::less<>> refused_;
};

// What the status page shows besides the board: read from the gateway when status.json is asked for.
struct LiveStatus {
    std::string version;
    std::int64_t now_unix_ms = 0;
    bool draining = false;
    bool cache_enabled = false;
    std::uint64_t cache_entries = 0, cache_bytes = 0, cache_max_entries = 0, cache_max_bytes = 0;
    std::uint64_t singleflight_waiters = 0;
    std::string credential_kind;  // "token" | "iam" | "aksk"
    bool credential_ready = false;
    std::string credential_reason;                              // why not ready (never a secret)
    double credential_seconds_to_expiry;                        // -1 none, +inf no expiry
    std::vector<std::pair<std::string, std::string>> breakers;  // (region, "closed" | "half-open" | "open")
    std::uint64_t access_log_dropped = 0;
};

// GET /admin/status.json: the snapshot and the live state as one JSON object (README, "Status page").
std::string render_status_json(const StatusSnapshot& s, const LiveStatus& live);

// The page's files, embedded at build time (gateway/web/ and Debian's libjs-chart.js): name is the part of
// the path after "/admin/status" ("" for the page itself, "/app.js", "/app.css", "/chart.js"); null when
// there is no such file.
struct StatusAsset {
    std::string_view content_type;
    std::string_view body;
};
const StatusAsset* find_status_asset(std::string_view name);

}  // namespace rdsgw
