#include "rdsgw/metrics.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <fstream>
#include <sstream>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>
#include <deque>
#include <map>
#include <unordered_map>

#include "rdsgw/request.hpp"
#include "rdsgw/text.hpp"

namespace rdsgw {

namespace {
// OpenTelemetry's default HTTP duration buckets, in seconds.
const prometheus::Histogram::BucketBoundaries kBuckets{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25,
                                                       0.5,   0.75, 1,     2.5,  5,     7.5, 10};
enum FamilyId {
    kRequests,
    kRejected,
    kUpstream,
    kCache,
    kRefresh,
    kAuthFail,
    kRefused,
    kCallerRequests,
    kCallerThrottled,
    kFamilies
};

// The known values of each bounded label: their series are exported at 0 from the start, so that a rate()
// over the first event is right and dashboards see the series before anything happens.
constexpr const char* kRejectReasons[] = {"limit",    "auth",    "forbidden",   "validation",     "rate",
                                          "overload", "breaker", "credentials", "unknown_project"};
constexpr const char* kCacheEvents[] = {"hit",   "negative_hit", "miss",    "coalesced",
                                        "stale", "bypass",       "evicted", "expired"};
constexpr const char* kRefusedAnswers[] = {"contract", "encoding", "expiring", "credential_echo"};
constexpr const char* kAuthFailures[] = {"missing credentials", "malformed credentials",
                                         "invalid credentials"};
constexpr Route kRoutes[] = {Route::backup_files, Route::healthz, Route::readyz,   Route::metrics,
                             Route::admin_cache,  Route::status,  Route::not_found};

// /proc/stat's btime: the boot time in seconds since the epoch (process start times count from it).
double boot_time_seconds() {
    std::ifstream in("/proc/stat");
    std::string key;
    double value = 0;
    while (in >> key) {
        if (key == "btime" && in >> value) return value;
        in.ignore(1 << 20, '\n');
    }
    return 0;
}

double count_open_fds() {
    DIR* d = ::opendir("/proc/self/fd");
    if (!d) return 0;
    double n = 0;
    while (const dirent* e = ::readdir(d))
        if (e->d_name[0] != '.') ++n;
    ::closedir(d);
    return n - 1;  // the descriptor opendir itself holds
}
}  // namespace

// The process_* metrics are read from /proc directly, as Prometheus's own client libraries do: Debian's
// libproc2 (procps) would do the same reads behind a much larger API, and its -dev package is not part of
// the build dependencies; prometheus-cpp has no process collector.
bool parse_proc_stat(std::string_view stat, long ticks_per_s, long page_size, double boot_time_s,
                     ProcessStats& out) {
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so fields count from the last ')'.
    const auto close = stat.rfind(')');
    if (close == std::string_view::npos || ticks_per_s <= 0) return false;
    std::istringstream in(std::string(stat.substr(close + 1)));
    std::vector<std::string> f;  // f[0] is field 3 (state)
    for (std::string t; in >> t;) f.push_back(t);
    if (f.size() < 22) return false;
    try {
        const double utime = std::stod(f[11]), stime = std::stod(f[12]), start = std::stod(f[19]);
        out.cpu_seconds = (utime + stime) / static_cast<double>(ticks_per_s);
        out.start_time_seconds = boot_time_s + start / static_cast<double>(ticks_per_s);
        out.virtual_bytes = std::stod(f[20]);
        out.resident_bytes = std::stod(f[21]) * static_cast<double>(page_size);
    } catch (const std::exception&) {
        return false;
    }
    return true;
}

bool read_process_stats(ProcessStats& out) {
    static const double boot = boot_time_seconds();
    std::ifstream in("/proc/self/stat");
    std::string stat;
    if (!std::getline(in, stat)) return false;
    if (!parse_proc_stat(stat, ::sysconf(_SC_CLK_TCK), ::sysconf(_SC_PAGESIZE), boot, out)) return false;
    out.open_fds = count_open_fds();
    rlimit rl{};
    if (::getrlimit(RLIMIT_NOFILE, &rl) == 0)
        out.max_fds = rl.rlim_cur == RLIM_INFINITY ? -1 : static_cast<double>(rl.rlim_cur);
    return true;
}

std::string label_value(std::string_view v) {
    if (v.empty()) return "none";
    std::string s(v);
    for (char& c : s)
        if (c == ' ') c = '_';
    return s;
}

// ---- Per-thread cells (see metrics.hpp). Each has one writer, its thread: a relaxed load and store, which
// other threads (render) read with a relaxed load. `folded` is what render() has already passed on; it is
// only touched under Impl::mu.
namespace {
constexpr auto relaxed = std::memory_order_relaxed;
template <class T>
void bump(std::atomic<T>& a, T n) {
    a.store(a.load(relaxed) + n, relaxed);
}
}  // namespace

struct Metrics::Cell {
    explicit Cell(prometheus::Counter* t) : target(t) {}
    std::atomic<std::uint64_t> n{0};
    std::uint64_t folded = 0;
    prometheus::Counter* target;
    void add() { bump<std::uint64_t>(n, 1); }
};

struct Metrics::HistCell {
    HistCell(prometheus::Histogram* t, const std::vector<double>& b)
        : target(t), bounds(b), counts(b.size() + 1), folded(b.size() + 1, 0) {}
    prometheus::Histogram* target;
    const std::vector<double>& bounds;
    std::vector<std::atomic<std::uint64_t>> counts;  // per bucket (not cumulative), the last one +Inf
    std::atomic<double> sum{0};
    std::vector<std::uint64_t> folded;
    double sum_folded = 0;
    void observe(double v) {
        const auto i =
            static_cast<std::size_t>(std::lower_bound(bounds.begin(), bounds.end(), v) - bounds.begin());
        bump<std::uint64_t>(counts[i], 1);
        sum.store(sum.load(relaxed) + v, relaxed);
    }
};

template <class V>
using LabelIndex = std::unordered_map<std::string, V, BytesHash, std::equal_to<>>;  // by label key

struct Metrics::Shard {
    std::mutex mu;  // guards the containers' growth (the owner) against render()'s walk over them
    std::deque<Cell> cells;
    std::deque<HistCell> hists;
    LabelIndex<Cell*> index;           // the owner's lookup: generation-free label key
    LabelIndex<HistCell*> hist_index;  // by route
    HistCell* upstream = nullptr;
    std::atomic<std::int64_t> inflight{0}, up_open{0}, up_idle{0};
    // Each family's last label key and its cell, and the last route's histogram: consecutive requests
    // nearly always repeat them, and a comparison of a few bytes costs less than the index's hash and probe.
    struct Memo {
        std::string key;
        Cell* cell = nullptr;
    };
    Memo last[kFamilies];
    std::string last_route;
    HistCell* last_hist = nullptr;
};

// Multi-region (enable_region_labels): the families of the region-labelled series.
struct RegionFamilies {
    prometheus::Family<prometheus::Gauge>* breaker = nullptr;
    prometheus::Family<prometheus::Gauge>* cred_expiry = nullptr;
    prometheus::Family<prometheus::Counter>* discovery = nullptr;
    prometheus::Gauge* projects_known = nullptr;
    std::mutex mu;
    std::map<std::string, prometheus::Gauge*, std::less<>> breaker_by_region, expiry_by_region;
};

struct Metrics::Impl {
    std::shared_ptr<prometheus::Registry> reg = std::make_shared<prometheus::Registry>();
    prometheus::Family<prometheus::Counter>* counters[kFamilies] = {};
    prometheus::Family<prometheus::Histogram>* req_duration = nullptr;
    prometheus::Family<prometheus::Histogram>* up_duration = nullptr;
    std::mutex hist_mu;
    std::unordered_map<std::string, prometheus::Histogram*> req_hist;
    prometheus::Histogram* up_hist = nullptr;
    prometheus::Gauge* inflight = nullptr;
    prometheus::Gauge* up_open = nullptr;
    prometheus::Gauge* up_idle = nullptr;
    prometheus::Gauge* cache_entries = nullptr;
    prometheus::Gauge* cache_bytes = nullptr;
    prometheus::Gauge* sf_waiters = nullptr;
    prometheus::Gauge* cred_expiry = nullptr;
    prometheus::Gauge* breaker = nullptr;
    prometheus::Counter* log_dropped = nullptr;
    double log_dropped_seen = 0;
    prometheus::Gauge* open_conns = nullptr;
    struct {
        prometheus::Counter* cpu = nullptr;
        double cpu_seen = 0;
        prometheus::Gauge *start = nullptr, *resident = nullptr, *virt = nullptr, *fds = nullptr,
                          *max_fds = nullptr;
    } process;
    std::mutex mu;  // guards counter creation, hooks, the process metrics and folding
    std::vector<std::function<void(Metrics&)>> hooks;
    std::uint64_t generation;
    std::mutex shards_mu;
    std::vector<std::unique_ptr<Shard>> shards;  // one per thread that counted something
    std::unique_ptr<RegionFamilies> regional;    // multi-region only
};

namespace {
std::atomic<std::uint64_t> g_generation{0};
}

Metrics::Metrics(std::string_view version)
    : Metrics(BuildInfo{std::string(version), "unknown", "unknown", "unknown", "unknown"}) {}

Metrics::Metrics(const BuildInfo& build) : impl_(std::make_unique<Impl>()) {
    using namespace prometheus;
    auto& r = *impl_->reg;
    impl_->generation = ++g_generation;
    impl_->counters[kRequests] =
        &BuildCounter()
             .Name("rdsgw_requests_total")
             .Help("Requests answered, by route, method, status code and cache result")
             .Register(r);
    impl_->counters[kRejected] = &BuildCounter()
                                      .Name("rdsgw_rejected_requests_total")
                                      .Help("Requests refused by the gateway itself, by reason")
                                      .Register(r);
    impl_->counters[kUpstream] =
        &BuildCounter()
             .Name("rdsgw_upstream_requests_total")
             .Help("Upstream attempts by status (0: no HTTP answer) and attempt number")
             .Register(r);
    impl_->counters[kCache] =
        &BuildCounter().Name("rdsgw_cache_events_total").Help("Cache events by kind").Register(r);
    impl_->counters[kRefresh] = &BuildCounter()
                                     .Name("rdsgw_credential_refreshes_total")
                                     .Help("Upstream credential refreshes by kind and result")
                                     .Register(r);
    impl_->counters[kAuthFail] = &BuildCounter()
                                      .Name("rdsgw_caller_auth_failures_total")
                                      .Help("Failed caller authentications by reason")
                                      .Register(r);
    impl_->counters[kRefused] = &BuildCounter()
                                     .Name("rdsgw_upstream_answers_refused_total")
                                     .Help("Upstream answers the gateway refused to serve (502), by reason")
                                     .Register(r);
    impl_->counters[kCallerRequests] =
        &BuildCounter()
             .Name("rdsgw_caller_requests_total")
             .Help("Backup-files requests of identified callers, by caller name")
             .Register(r);
    impl_->counters[kCallerThrottled] =
        &BuildCounter()
             .Name("rdsgw_caller_rate_limited_total")
             .Help("Requests refused by the caller's rate limit (429), by caller name")
             .Register(r);
    impl_->req_duration = &BuildHistogram()
                               .Name("rdsgw_request_duration_seconds")
                               .Help("Time from request read to response written, by route")
                               .Register(r);
    impl_->up_duration = &BuildHistogram()
                              .Name("rdsgw_upstream_duration_seconds")
                              .Help("Duration of one upstream attempt")
                              .Register(r);
    impl_->up_hist = &impl_->up_duration->Add({}, kBuckets);
    auto gauge = [&](const char* name, const char* help) {
        return &BuildGauge().Name(name).Help(help).Register(r).Add({});
    };
    impl_->inflight = gauge("rdsgw_requests_in_flight", "Requests being handled");
    impl_->open_conns = gauge("rdsgw_open_connections", "Open caller connections");
    impl_->up_open = gauge("rdsgw_upstream_connections_open", "Open upstream connections");
    impl_->up_idle = gauge("rdsgw_upstream_connections_idle", "Idle pooled upstream connections");
    impl_->cache_entries = gauge("rdsgw_cache_entries", "Entries in the link cache");
    impl_->cache_bytes = gauge("rdsgw_cache_bytes", "Bytes accounted to the link cache");
    impl_->sf_waiters = gauge("rdsgw_singleflight_waiters", "Callers waiting for a shared upstream fetch");
    impl_->cred_expiry =
        gauge("rdsgw_credential_expiry_seconds",
              "Seconds until the current upstream credential expires (-1: none; +Inf: no expiry)");
    impl_->breaker =
        gauge("rdsgw_circuit_breaker_state", "Upstream circuit breaker: 0 closed, 1 half-open, 2 open");
    impl_->log_dropped = &BuildCounter()
                              .Name("rdsgw_access_log_dropped_lines_total")
                              .Help("Access log lines dropped because the writer lagged")
                              .Register(r)
                              .Add({});
    BuildGauge()
        .Name("rdsgw_build_info")
        .Help("Build information: version, commit and the libraries in use")
        .Register(r)
        .Add({{"version", label_value(build.version)},
              {"commit", label_value(build.commit)},
              {"boost", label_value(build.boost)},
              {"openssl", label_value(build.openssl)},
              {"allocator", label_value(build.allocator)}})
        .Set(1);
    auto& P = impl_->process;
    P.cpu = &BuildCounter()
                 .Name("process_cpu_seconds_total")
                 .Help("Total user and system CPU time spent in seconds")
                 .Register(r)
                 .Add({});
    P.start = gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds");
    P.resident = gauge("process_resident_memory_bytes", "Resident memory size in bytes");
    P.virt = gauge("process_virtual_memory_bytes", "Virtual memory size in bytes");
    P.fds = gauge("process_open_fds", "Number of open file descriptors");
    P.max_fds = gauge("process_max_fds", "Maximum number of open file descriptors");
    for (const char* v : kRejectReasons) impl_->counters[kRejected]->Add({{"reason", v}});
    for (const char* v : kCacheEvents) impl_->counters[kCache]->Add({{"event", v}});
    for (const char* v : kAuthFailures) impl_->counters[kAuthFail]->Add({{"reason", label_value(v)}});
    for (const char* v : kRefusedAnswers) impl_->counters[kRefused]->Add({{"reason", v}});
    for (Route rt : kRoutes) impl_->req_duration->Add({{"route", label_value(route_name(rt))}}, kBuckets);
}

Metrics::~Metrics() = default;

void Metrics::on_collect(std::function<void(Metrics&)> hook) {
    std::lock_guard lk(impl_->mu);
    impl_->hooks.push_back(std::move(hook));
}

std::string Metrics::render() {
    std::vector<std::function<void(Metrics&)>> hooks;
    {
        std::lock_guard lk(impl_->mu);
        hooks = impl_->hooks;
    }
    for (auto& h : hooks) h(*this);
    update_process_metrics();
    fold();
    return prometheus::TextSerializer().Serialize(impl_->reg->Collect());
}

void Metrics::update_process_metrics() {
    ProcessStats ps;
    if (!read_process_stats(ps)) return;
    auto& P = impl_->process;
    std::lock_guard lk(impl_->mu);
    if (ps.cpu_seconds > P.cpu_seen) {  // a counter: moved by what is new since the last scrape
        P.cpu->Increment(ps.cpu_seconds - P.cpu_seen);
        P.cpu_seen = ps.cpu_seconds;
    }
    P.start->Set(ps.start_time_seconds);
    P.resident->Set(ps.resident_bytes);
    P.virt->Set(ps.virtual_bytes);
    P.fds->Set(ps.open_fds);
    P.max_fds->Set(ps.max_fds);
}

Metrics::Shard& Metrics::shard() {
    // This thread's shard of this Metrics (generations are unique, so a shard of a destroyed Metrics is never
    // taken for another's).
    thread_local std::vector<std::pair<std::uint64_t, Shard*>> mine;
    thread_local std::uint64_t last_gen = 0;
    thread_local Shard* last = nullptr;
    if (last_gen == impl_->generation) return *last;
    for (auto& [g, sh] : mine)
        if (g == impl_->generation) {
            last_gen = g;
            last = sh;
            return *sh;
        }
    auto owned = std::make_unique<Shard>();
    Shard* sh = owned.get();
    sh->upstream = &sh->hists.emplace_back(impl_->up_hist, kBuckets);  // before render() can see the shard
    {
        std::lock_guard lk(impl_->shards_mu);
        impl_->shards.push_back(std::move(owned));
    }
    mine.emplace_back(impl_->generation, sh);
    last_gen = impl_->generation;
    last = sh;
    return *sh;
}

void Metrics::fold() {
    std::vector<Shard*> shards;
    {
        std::lock_guard lk(impl_->shards_mu);
        for (auto& sh : impl_->shards) shards.push_back(sh.get());
    }
    std::int64_t inflight = 0, up_open = 0, up_idle = 0;
    std::vector<double> increments;
    std::lock_guard lk(impl_->mu);
    for (Shard* sh : shards) {
        std::lock_guard sl(sh->mu);
        for (Cell& c : sh->cells) {
            const std::uint64_t v = c.n.load(relaxed);
            if (v > c.folded) c.target->Increment(static_cast<double>(v - c.folded));
            c.folded = v;
        }
        for (HistCell& h : sh->hists) {
            increments.assign(h.counts.size(), 0);
            bool any = false;
            for (std::size_t i = 0; i < h.counts.size(); ++i) {
                const std::uint64_t v = h.counts[i].load(relaxed);
                increments[i] = static_cast<double>(v - h.folded[i]);
                any = any || v != h.folded[i];
                h.folded[i] = v;
            }
            const double sum = h.sum.load(relaxed);
            if (any && h.target) h.target->ObserveMultiple(increments, sum - h.sum_folded);
            h.sum_folded = sum;
        }
        inflight += sh->inflight.load(relaxed);
        up_open += sh->up_open.load(relaxed);
        up_idle += sh->up_idle.load(relaxed);
    }
    impl_->inflight->Set(static_cast<double>(inflight));
    impl_->up_open->Set(static_cast<double>(up_open));
    impl_->up_idle->Set(static_cast<double>(up_idle));
}

Metrics::Cell& Metrics::counter_cached(int family, std::string_view a, std::string_view b, std::string_view c,
                                       std::string_view d) {
    // Per-thread cells by family and labels. Label sets are bounded, so this stays small.
    Shard& sh = shard();
    // The key: family, then the labels separated by 0x1f, written into storage kept per thread.
    thread_local std::string key_buf;
    key_buf.resize(4 + a.size() + b.size() + c.size() + d.size());
    char* const base = key_buf.data();
    char* p = base;
    *p++ = static_cast<char>('0' + family);
    const std::string_view parts[] = {a, b, c, d};
    for (std::size_t i = 0; i < 4; ++i) {
        if (i > 0) *p++ = '\x1f';
        if (!parts[i].empty()) std::memcpy(p, parts[i].data(), parts[i].size());
        p += parts[i].size();
    }
    const std::string_view key(base, static_cast<std::size_t>(p - base));
    Shard::Memo& memo = sh.last[family];
    if (memo.cell != nullptr && memo.key == key) return *memo.cell;
    auto it = sh.index.find(key);
    if (it != sh.index.end()) {
        memo.key.assign(key);
        memo.cell = it->second;
        return *it->second;
    }
    std::map<std::string, std::string> labels;
    switch (family) {
        case kRequests:
            labels = {{"route", label_value(a)},
                      {"method", label_value(b)},
                      {"code", label_value(c)},
                      {"cache", label_value(d)}};
            break;
        case kRejected:
            labels = {{"reason", label_value(a)}};
            break;
        case kUpstream:
            labels = {{"code", label_value(a)}, {"attempt", label_value(b)}};
            break;
        case kCache:
            labels = {{"event", label_value(a)}};
            break;
        case kRefresh:
            labels = {{"kind", label_value(a)}, {"result", label_value(b)}};
            break;
        case kAuthFail:
        case kRefused:
            labels = {{"reason", label_value(a)}};
            break;
        case kCallerRequests:
        case kCallerThrottled:
            labels = {{"caller", label_value(a)}};
            break;
    }
    Cell* cell;
    {
        std::lock_guard lk(impl_->mu);  // the series exists (at 0) from here on
        prometheus::Counter* ctr = &impl_->counters[family]->Add(labels);
        std::lock_guard sl(sh.mu);
        cell = &sh.cells.emplace_back(ctr);
    }
    sh.index.emplace(std::string(key), cell);
    memo.key.assign(key);
    memo.cell = cell;
    return *cell;
}

Metrics::HistCell& Metrics::histogram_cached(std::string_view route) {
    Shard& sh = shard();
    if (sh.last_hist != nullptr && sh.last_route == route) return *sh.last_hist;
    auto it = sh.hist_index.find(route);
    if (it != sh.hist_index.end()) {
        sh.last_route.assign(route);
        sh.last_hist = it->second;
        return *it->second;
    }
    HistCell* cell;
    {
        std::lock_guard lk(impl_->mu);
        prometheus::Histogram* h = &impl_->req_duration->Add({{"route", label_value(route)}}, kBuckets);
        std::lock_guard sl(sh.mu);
        cell = &sh.hists.emplace_back(h, kBuckets);
    }
    sh.hist_index.emplace(std::string(route), cell);
    sh.last_route.assign(route);
    sh.last_hist = cell;
    return *cell;
}

void Metrics::request_done(std::string_view route, std::string_view method, unsigned status,
                           std::string_view cache, double seconds) {
    char code[16];
    const char* code_end = std::to_chars(code, code + sizeof code, status).ptr;
    counter_cached(kRequests, route, method,
                   std::string_view(code, static_cast<std::size_t>(code_end - code)), cache)
        .add();
    histogram_cached(route).observe(seconds);
}

void Metrics::rejected(std::string_view reason) {
    counter_cached(kRejected, reason).add();
}

void Metrics::upstream_done(unsigned status, unsigned attempt, double seconds) {
    char code[16];
    const char* code_end = std::to_chars(code, code + sizeof code, status).ptr;
    const char att = static_cast<char>('0' + (attempt > 9 ? 9 : attempt));
    counter_cached(kUpstream, std::string_view(code, static_cast<std::size_t>(code_end - code)),
                   std::string_view(&att, 1))
        .add();
    shard().upstream->observe(seconds);
}

void Metrics::cache_event(std::string_view event) {
    counter_cached(kCache, event).add();
}
void Metrics::credential_refresh(std::string_view kind, std::string_view result) {
    counter_cached(kRefresh, kind, result).add();
}
void Metrics::credential_kind(std::string_view kind) {
    counter_cached(kRefresh, kind, "ok");
    counter_cached(kRefresh, kind, "error");
}
void Metrics::auth_failure(std::string_view reason) {
    counter_cached(kAuthFail, reason).add();
}
void Metrics::answer_refused(std::string_view reason) {
    counter_cached(kRefused, reason).add();
}
void Metrics::caller_request(std::string_view caller, bool throttled) {
    counter_cached(kCallerRequests, caller).add();
    if (throttled) counter_cached(kCallerThrottled, caller).add();
}
void Metrics::inflight_add(int d) {
    bump<std::int64_t>(shard().inflight, d);
}
void Metrics::upstream_connections_add(int open_delta, int idle_delta) {
    Shard& sh = shard();
    if (open_delta) bump<std::int64_t>(sh.up_open, open_delta);
    if (idle_delta) bump<std::int64_t>(sh.up_idle, idle_delta);
}
void Metrics::set_cache(double entries, double bytes) {
    impl_->cache_entries->Set(entries);
    impl_->cache_bytes->Set(bytes);
}
void Metrics::set_singleflight_waiters(double n) {
    impl_->sf_waiters->Set(n);
}
void Metrics::set_credential_expiry_seconds(double s) {
    if (impl_->cred_expiry) impl_->cred_expiry->Set(s);  // null with region labels
}
void Metrics::set_breaker_state(int s) {
    if (impl_->breaker) impl_->breaker->Set(s);
}
void Metrics::set_access_log_dropped(double total) {
    // The access log counts drops itself; move the counter by what is new since the last collection.
    std::lock_guard lk(impl_->mu);
    if (total > impl_->log_dropped_seen) {
        impl_->log_dropped->Increment(total - impl_->log_dropped_seen);
        impl_->log_dropped_seen = total;
    }
}
void Metrics::set_open_connections(double n) {
    impl_->open_conns->Set(n);
}

// ---- The shared cache tier (Redis)

struct Metrics::RedisMetrics {
    prometheus::Family<prometheus::Counter>* ops = nullptr;
    prometheus::Family<prometheus::Histogram>* duration = nullptr;
    prometheus::Gauge* up = nullptr;
    std::mutex mu;  // guards the two caches below (operations are rare: L1 misses only)
    std::unordered_map<std::string, prometheus::Counter*> counters;      // "op\x1fresult"
    std::unordered_map<std::string, prometheus::Histogram*> histograms;  // by op
};

Metrics::RedisMetrics& Metrics::redis_metrics() {
    std::call_once(redis_once_, [this] {
        using namespace prometheus;
        auto m = std::make_shared<RedisMetrics>();
        auto& r = *impl_->reg;
        m->ops = &BuildCounter()
                      .Name("rdsgw_redis_operations_total")
                      .Help("Shared cache (Redis) operations by operation and result")
                      .Register(r);
        m->duration = &BuildHistogram()
                           .Name("rdsgw_redis_duration_seconds")
                           .Help("Duration of one shared cache (Redis) operation, by operation")
                           .Register(r);
        m->up = &BuildGauge()
                     .Name("rdsgw_redis_up")
                     .Help("1 while Redis answers (connected, circuit closed), else 0")
                     .Register(r)
                     .Add({});
        redis_ = std::move(m);
    });
    return *redis_;
}

void Metrics::redis_operation(std::string_view op, std::string_view result, double seconds) {
    static const prometheus::Histogram::BucketBoundaries kRedisBuckets{
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};
    RedisMetrics& m = redis_metrics();
    std::string key(op);
    key.push_back('\x1f');
    key.append(result);
    std::lock_guard lk(m.mu);
    auto c = m.counters.find(key);
    if (c == m.counters.end())
        c = m.counters.emplace(key, &m.ops->Add({{"op", std::string(op)}, {"result", std::string(result)}}))
                .first;
    c->second->Increment();
    auto h = m.histograms.find(std::string(op));
    if (h == m.histograms.end())
        h = m.histograms.emplace(std::string(op), &m.duration->Add({{"op", std::string(op)}}, kRedisBuckets))
                .first;
    h->second->Observe(seconds);
}

void Metrics::set_redis_up(bool up) {
    redis_metrics().up->Set(up ? 1 : 0);
}

// ------------------------------------------------------------------------------------ multi-region

void Metrics::enable_region_labels() {
    using namespace prometheus;
    std::lock_guard lk(impl_->mu);
    if (impl_->regional) return;
    auto& r = *impl_->reg;
    auto rf = std::make_unique<RegionFamilies>();
    // The registry hands back the families made in the constructor (same name and help).
    rf->breaker = &BuildGauge()
                       .Name("rdsgw_circuit_breaker_state")
                       .Help("Upstream circuit breaker: 0 closed, 1 half-open, 2 open")
                       .Register(r);
    rf->cred_expiry =
        &BuildGauge()
             .Name("rdsgw_credential_expiry_seconds")
             .Help("Seconds until the current upstream credential expires (-1: none; +Inf: no expiry)")
             .Register(r);
    if (impl_->breaker) rf->breaker->Remove(impl_->breaker);
    if (impl_->cred_expiry) rf->cred_expiry->Remove(impl_->cred_expiry);
    impl_->breaker = impl_->cred_expiry = nullptr;
    if (impl_->up_hist) {
        // The unlabelled upstream histogram goes; the threads' cells for it stop being folded (under mu,
        // which fold() holds while it reads targets).
        std::lock_guard sl(impl_->shards_mu);
        for (auto& sh : impl_->shards) sh->upstream->target = nullptr;
        impl_->up_duration->Remove(impl_->up_hist);
    }
    impl_->up_hist = nullptr;
    rf->discovery = &BuildCounter()
                         .Name("rdsgw_project_discovery_total")
                         .Help("Project discovery refreshes (IAM project list) by result")
                         .Register(r);
    rf->projects_known = &BuildGauge()
                              .Name("rdsgw_projects_known")
                              .Help("Projects the gateway serves (static and discovered)")
                              .Register(r)
                              .Add({});
    impl_->regional = std::move(rf);
}

void Metrics::upstream_done(std::string_view region, unsigned status, unsigned attempt, double seconds) {
    struct Pair {
        prometheus::Counter* counter;
        prometheus::Histogram* histogram;
    };
    thread_local std::unordered_map<std::string, Pair> cache;
    thread_local std::string key;
    char code[16];
    const char* code_end = std::to_chars(code, code + sizeof code, status).ptr;
    const std::string_view code_sv(code, static_cast<std::size_t>(code_end - code));
    const char att = static_cast<char>('0' + (attempt > 9 ? 9 : attempt));
    key.assign(reinterpret_cast<const char*>(&impl_->generation), sizeof(impl_->generation));
    key.append(region).push_back('\x1f');
    key.append(code_sv).push_back(att);
    auto it = cache.find(key);
    if (it == cache.end()) {
        std::lock_guard lk(impl_->mu);
        Pair p{&impl_->counters[kUpstream]->Add({{"code", std::string(code_sv)},
                                                 {"attempt", std::string(1, att)},
                                                 {"region", std::string(region)}}),
               &impl_->up_duration->Add({{"region", std::string(region)}}, kBuckets)};
        it = cache.emplace(key, p).first;
    }
    it->second.counter->Increment();
    it->second.histogram->Observe(seconds);
}

namespace {
prometheus::Gauge& region_gauge(RegionFamilies& rf, prometheus::Family<prometheus::Gauge>& fam,
                                std::map<std::string, prometheus::Gauge*, std::less<>>& by,
                                std::string_view region) {
    std::lock_guard lk(rf.mu);
    auto it = by.find(region);
    if (it == by.end())
        it = by.emplace(std::string(region), &fam.Add({{"region", std::string(region)}})).first;
    return *it->second;
}
}  // namespace

void Metrics::set_breaker_state(std::string_view region, int state) {
    if (auto* rf = impl_->regional.get())
        region_gauge(*rf, *rf->breaker, rf->breaker_by_region, region).Set(state);
}

void Metrics::set_credential_expiry_seconds(std::string_view region, double s) {
    if (auto* rf = impl_->regional.get())
        region_gauge(*rf, *rf->cred_expiry, rf->expiry_by_region, region).Set(s);
}

void Metrics::discovery_refresh(std::string_view result) {
    auto* rf = impl_->regional.get();
    if (!rf) return;
    prometheus::Counter* c;
    {
        std::lock_guard lk(impl_->mu);
        c = &rf->discovery->Add({{"result", std::string(result)}});
    }
    c->Increment();
}

void Metrics::set_projects_known(double n) {
    if (auto* rf = impl_->regional.get()) rf->projects_known->Set(n);
}

}  // namespace rdsgw
