// The status board (per-thread, per-second buckets) and status.json. See status.hpp.
#include "rdsgw/status.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <limits>
#include <thread>
#include <unordered_map>

#include "rdsgw/exchange.hpp"

// Generated at build time by cmake/embed_status_assets.cmake.
extern const unsigned char rdsgw_asset_html[], rdsgw_asset_js[], rdsgw_asset_css[], rdsgw_asset_chartjs[];
extern const std::size_t rdsgw_asset_html_size, rdsgw_asset_js_size, rdsgw_asset_css_size,
    rdsgw_asset_chartjs_size;

namespace rdsgw {

namespace json = boost::json;
using std::chrono::seconds;

namespace {

// The counters of one bucket, in StatusCounts' order.
enum Field {
    kRequests,
    k2xx,
    k3xx,
    k4xx,
    k429,
    k5xx,
    kHit,
    kMiss,
    kCoalesced,
    kStale,
    kBypass,
    kThrottled,
    kFetches,
    kAttempts,
    kRefused,
    kFields
};

std::uint64_t StatusCounts::*const kMembers[kFields] = {
    &StatusCounts::requests,  &StatusCounts::s2xx,     &StatusCounts::s3xx,   &StatusCounts::s4xx,
    &StatusCounts::s429,      &StatusCounts::s5xx,     &StatusCounts::hit,    &StatusCounts::miss,
    &StatusCounts::coalesced, &StatusCounts::stale,    &StatusCounts::bypass, &StatusCounts::throttled,
    &StatusCounts::fetches,   &StatusCounts::attempts, &StatusCounts::refused};

constexpr auto relaxed = std::memory_order_relaxed;

// Each shard has one writer (its thread): a relaxed load and store, no read-modify-write.
template <class T>
void bump(std::atomic<T>& a, T n = 1) {
    a.store(a.load(relaxed) + n, relaxed);
}

Field status_field(unsigned status) {
    if (status == 429) return k429;
    if (status >= 200 && status < 300) return k2xx;
    if (status >= 300 && status < 400) return k3xx;
    if (status >= 400 && status < 500) return k4xx;
    if (status >= 500 && status < 600) return k5xx;
    return kFields;
}

Field cache_field(CacheState c) {
    switch (c) {
        case CacheState::hit:
            return kHit;
        case CacheState::miss:
            return kMiss;
        case CacheState::coalesced:
            return kCoalesced;
        case CacheState::stale:
            return kStale;
        case CacheState::bypass:
            return kBypass;
        case CacheState::none:
            break;
    }
    return kFields;
}

// A bucket tagged with the time slot it holds. The writer retags it like a sequence lock (tag -1, zero the
// counters, tag the new slot); a reader takes the counters only when the tag is the slot it wants before and
// after reading them.
template <std::size_t N>
struct Tagged {
    std::atomic<std::int64_t> tag{-1};
    std::array<std::atomic<std::uint32_t>, N> c{};

    std::array<std::atomic<std::uint32_t>, N>& for_slot(std::int64_t slot) {
        if (tag.load(relaxed) != slot) {
            tag.store(-1, relaxed);
            std::atomic_thread_fence(std::memory_order_release);
            for (auto& x : c) x.store(0, relaxed);
            tag.store(slot, std::memory_order_release);
        }
        return c;
    }
    // Adds the counters to `out` when the bucket holds `slot`.
    template <class F>
    void read(std::int64_t slot, F&& out) const {
        if (tag.load(std::memory_order_acquire) != slot) return;
        std::array<std::uint32_t, N> v;
        for (std::size_t i = 0; i < N; ++i) v[i] = c[i].load(relaxed);
        std::atomic_thread_fence(std::memory_order_acquire);
        if (tag.load(relaxed) == slot) out(v);
    }
};

constexpr std::size_t kSecondFields = kFields + LatencyHistogram::kBuckets;
constexpr std::int64_t kCallerSlots = StatusBoard::kRingSeconds / StatusBoard::kCallerSlotSeconds;

struct CallerSlot {
    std::atomic<std::uint64_t> requests{0}, throttled{0};
    std::array<Tagged<2>, kCallerSlots> ring;  // {requests, throttled} per 10-second slot
};

struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};

std::atomic<std::uint64_t> g_board_ids{0};

}  // namespace

void StatusCounts::add(const StatusCounts& o) {
    for (auto m : kMembers) this->*m += o.*m;
}

// ---------------------------------------------------------------------------------- LatencyHistogram

std::size_t LatencyHistogram::bucket_of(double ms) {
    if (!(ms > 0.25)) return 0;
    const double i = std::ceil(2 * std::log2(ms / 0.25) - 1e-9);
    return i >= static_cast<double>(kBuckets - 1) ? kBuckets - 1 : static_cast<std::size_t>(i);
}

double LatencyHistogram::upper_bound_ms(std::size_t i) {
    if (i + 1 >= kBuckets) return std::numeric_limits<double>::infinity();
    return 0.25 * std::exp2(static_cast<double>(i) / 2);
}

std::uint64_t LatencyHistogram::total() const {
    std::uint64_t n = 0;
    for (auto c : counts) n += c;
    return n;
}

double LatencyHistogram::quantile(double q) const {
    const std::uint64_t n = total();
    if (n == 0) return std::numeric_limits<double>::quiet_NaN();
    const double rank = std::clamp(q, 0.0, 1.0) * static_cast<double>(n);
    std::uint64_t below = 0;
    for (std::size_t i = 0; i < kBuckets; ++i) {
        if (counts[i] == 0 || static_cast<double>(below + counts[i]) < rank) {
            below += counts[i];
            continue;
        }
        const double lo = i == 0 ? 0 : upper_bound_ms(i - 1), hi = upper_bound_ms(i);
        if (std::isinf(hi)) return lo;
        return lo + (hi - lo) * (rank - static_cast<double>(below)) / static_cast<double>(counts[i]);
    }
    return upper_bound_ms(kBuckets - 2);
}

void LatencyHistogram::add(const LatencyHistogram& o) {
    for (std::size_t i = 0; i < kBuckets; ++i) counts[i] += o.counts[i];
}

// ---------------------------------------------------------------------------------------- the board

struct StatusBoard::Shard {
    std::thread::id owner;
    std::array<Tagged<kSecondFields>, kRingSeconds> ring;  // counters then latency buckets, per second
    std::array<std::atomic<std::uint64_t>, kFields> totals{};
    // Written by the owner only; the owner inserts under callers_mu, readers iterate under it.
    std::mutex callers_mu;
    std::unordered_map<std::string, std::unique_ptr<CallerSlot>, StringHash, std::equal_to<>> callers;

    std::array<std::atomic<std::uint32_t>, kSecondFields>& second(std::int64_t s) {
        return ring[static_cast<std::size_t>(s % kRingSeconds)].for_slot(s);
    }
    void count(std::array<std::atomic<std::uint32_t>, kSecondFields>& sec, Field f, std::uint64_t n = 1) {
        if (f == kFields) return;
        bump(sec[f], static_cast<std::uint32_t>(n));
        bump(totals[f], n);
    }
    CallerSlot& caller(std::string_view name) {
        // The last caller asked for and its slot (this thread's only): requests mostly repeat a caller.
        if (last_slot != nullptr && last_name == name) return *last_slot;
        CallerSlot* found = nullptr;
        if (auto it = callers.find(name); it != callers.end()) {
            found = it->second.get();
        } else {
            std::lock_guard lk(callers_mu);
            auto& slot = callers[std::string(callers.size() >= kMaxCallerNames ? "(other)" : name)];
            if (!slot) slot = std::make_unique<CallerSlot>();
            found = slot.get();
        }
        last_name.assign(name);
        last_slot = found;
        return *found;
    }
    std::string last_name;
    CallerSlot* last_slot = nullptr;
};

StatusBoard::StatusBoard(clock::time_point start) : start_(start), id_(++g_board_ids) {}
StatusBoard::~StatusBoard() = default;

std::int64_t StatusBoard::second_of(clock::time_point t) const {
    return t <= start_ ? 0 : std::chrono::duration_cast<seconds>(t - start_).count();
}

StatusBoard::Shard& StatusBoard::local() {
    thread_local std::uint64_t owner_board = 0;
    thread_local Shard* shard = nullptr;
    if (owner_board == id_) return *shard;
    std::lock_guard lk(mu_);
    const auto me = std::this_thread::get_id();
    Shard* found = nullptr;
    // A thread id is reused only after its thread ended, so a shard never has two writers at once.
    for (auto& s : shards_)
        if (s->owner == me) found = s.get();
    if (!found) {
        shards_.push_back(std::make_unique<Shard>());
        found = shards_.back().get();
        found->owner = me;
    }
    owner_board = id_;
    shard = found;
    return *found;
}

void StatusBoard::request(unsigned status, CacheState cache, std::string_view caller, bool throttled,
                          clock::time_point now) {
    Shard& sh = local();
    const std::int64_t s = second_of(now);
    auto& sec = sh.second(s);
    sh.count(sec, kRequests);
    sh.count(sec, status_field(status));
    sh.count(sec, cache_field(cache));
    if (throttled) sh.count(sec, kThrottled);
    if (caller.empty()) return;
    CallerSlot& c = sh.caller(caller);
    auto& slot = c.ring[static_cast<std::size_t>((s / kCallerSlotSeconds) % kCallerSlots)].for_slot(
        s / kCallerSlotSeconds);
    bump(slot[0]);
    bump(c.requests, std::uint64_t{1});
    if (throttled) {
        bump(slot[1]);
        bump(c.throttled, std::uint64_t{1});
    }
}

void StatusBoard::fetch(unsigned attempts, double ms, clock::time_point now) {
    Shard& sh = local();
    auto& sec = sh.second(second_of(now));
    sh.count(sec, kFetches);
    sh.count(sec, kAttempts, attempts);
    if (attempts > 0) bump(sec[kFields + LatencyHistogram::bucket_of(ms)]);
}

void StatusBoard::refused(std::string_view reason, clock::time_point now) {
    Shard& sh = local();
    sh.count(sh.second(second_of(now)), kRefused);
    std::lock_guard lk(mu_);
    auto it = refused_.find(reason);
    if (it == refused_.end()) it = refused_.emplace(std::string(reason), 0).first;
    ++it->second;
}

namespace {

void add_second(StatusCounts& c, LatencyHistogram& h, const std::array<std::uint32_t, kSecondFields>& v) {
    for (std::size_t f = 0; f < kFields; ++f) c.*kMembers[f] += v[f];
    for (std::size_t i = 0; i < LatencyHistogram::kBuckets; ++i) h.counts[i] += v[kFields + i];
}

// Callers sorted by `key` (descending, then by name), those with key 0 left out, at most n.
std::vector<CallerActivity> top(std::vector<CallerActivity> all, std::uint64_t CallerActivity::*key,
                                std::size_t n) {
    std::erase_if(all, [&](const CallerActivity& a) { return a.*key == 0; });
    std::sort(all.begin(), all.end(), [&](const CallerActivity& a, const CallerActivity& b) {
        return a.*key != b.*key ? a.*key > b.*key : a.name < b.name;
    });
    if (all.size() > n) all.resize(n);
    return all;
}

}  // namespace

StatusSnapshot StatusBoard::snapshot(clock::time_point now, seconds window, seconds series_span, seconds step,
                                     std::size_t top_n) const {
    StatusSnapshot out;
    out.window = std::clamp(window, seconds(1), kMaxWindow);
    out.step = std::clamp(step, seconds(1), kMaxWindow);
    series_span = std::clamp(series_span, out.step, kMaxWindow);
    const std::int64_t cur = second_of(now);
    const std::int64_t w = out.window.count(), p = out.step.count(), points = series_span.count() / p;
    out.uptime_s = std::chrono::duration<double>(now - start_).count();
    out.series.resize(static_cast<std::size_t>(points));
    out.series_latency.resize(static_cast<std::size_t>(points));
    const std::int64_t series_first = cur - points * p;  // the series covers [series_first, cur - 1]
    const std::int64_t first = std::max<std::int64_t>(0, std::min(series_first, cur - w + 1));
    std::map<std::string, CallerActivity, std::less<>> callers;
    std::lock_guard lk(mu_);
    for (const auto& sh : shards_) {
        for (std::size_t f = 0; f < kFields; ++f) out.total.*kMembers[f] += sh->totals[f].load(relaxed);
        for (std::int64_t s = first; s <= cur; ++s) {
            sh->ring[static_cast<std::size_t>(s % kRingSeconds)].read(s, [&](const auto& v) {
                if (s > cur - w) add_second(out.recent, out.latency_recent, v);
                if (s >= series_first && s < cur) {
                    const auto k = static_cast<std::size_t>((s - series_first) / p);
                    add_second(out.series[k], out.series_latency[k], v);
                }
            });
        }
        std::lock_guard clk(sh->callers_mu);
        const std::int64_t first_slot = std::max<std::int64_t>(0, cur - w + 1) / kCallerSlotSeconds;
        for (const auto& [name, slot] : sh->callers) {
            CallerActivity& a = callers[name];
            a.name = name;
            a.requests_total += slot->requests.load(relaxed);
            a.throttled_total += slot->throttled.load(relaxed);
            for (std::int64_t i = first_slot; i <= cur / kCallerSlotSeconds; ++i)
                slot->ring[static_cast<std::size_t>(i % kCallerSlots)].read(i, [&](const auto& v) {
                    a.requests += v[0];
                    a.throttled += v[1];
                });
        }
    }
    out.refused_by_reason.insert(refused_.begin(), refused_.end());
    std::vector<CallerActivity> all;
    for (auto& kv : callers) all.push_back(std::move(kv.second));
    out.top_by_requests = top(all, &CallerActivity::requests, top_n);
    out.top_by_throttled = top(std::move(all), &CallerActivity::throttled, top_n);
    return out;
}

// ------------------------------------------------------------------------------------- status.json

namespace {

json::value number_or_null(double v) {
    if (!std::isfinite(v)) return nullptr;
    return std::round(v * 1e6) / 1e6;
}

json::value ratio(std::uint64_t num, std::uint64_t den) {
    if (den == 0) return nullptr;
    return number_or_null(static_cast<double>(num) / static_cast<double>(den));
}

json::object counts_json(const StatusCounts& c) {
    return {{"requests", c.requests},
            {"status", {{"2xx", c.s2xx}, {"3xx", c.s3xx}, {"4xx", c.s4xx}, {"429", c.s429}, {"5xx", c.s5xx}}},
            {"cache",
             {{"HIT", c.hit},
              {"MISS", c.miss},
              {"COALESCED", c.coalesced},
              {"STALE", c.stale},
              {"BYPASS", c.bypass}}},
            {"throttled", c.throttled},
            {"upstream_fetches", c.fetches},
            {"upstream_attempts", c.attempts},
            {"answers_refused", c.refused}};
}

json::array callers_json(const std::vector<CallerActivity>& list) {
    json::array a;
    for (const auto& c : list)
        a.push_back({{"name", c.name},
                     {"requests", c.requests},
                     {"throttled", c.throttled},
                     {"requests_total", c.requests_total},
                     {"throttled_total", c.throttled_total}});
    return a;
}

json::object series_json(const StatusSnapshot& s, std::int64_t end_ms) {
    json::object o{{"step_s", s.step.count()}, {"end_ms", end_ms}};
    const std::pair<const char*, std::uint64_t StatusCounts::*> fields[] = {
        {"requests", &StatusCounts::requests},
        {"2xx", &StatusCounts::s2xx},
        {"3xx", &StatusCounts::s3xx},
        {"4xx", &StatusCounts::s4xx},
        {"429", &StatusCounts::s429},
        {"5xx", &StatusCounts::s5xx},
        {"hit", &StatusCounts::hit},
        {"miss", &StatusCounts::miss},
        {"coalesced", &StatusCounts::coalesced},
        {"stale", &StatusCounts::stale},
        {"bypass", &StatusCounts::bypass},
        {"throttled", &StatusCounts::throttled},
        {"fetches", &StatusCounts::fetches},
        {"attempts", &StatusCounts::attempts},
        {"refused", &StatusCounts::refused}};
    for (auto [name, member] : fields) {
        json::array a;
        for (const auto& c : s.series) a.push_back(c.*member);
        o[name] = std::move(a);
    }
    json::array hit_ratio, p50, p99;
    for (std::size_t i = 0; i < s.series.size(); ++i) {
        hit_ratio.push_back(ratio(s.series[i].saved(), s.series[i].cache_answers()));
        p50.push_back(number_or_null(s.series_latency[i].quantile(0.5)));
        p99.push_back(number_or_null(s.series_latency[i].quantile(0.99)));
    }
    o["hit_ratio"] = std::move(hit_ratio);
    o["p50_ms"] = std::move(p50);
    o["p99_ms"] = std::move(p99);
    return o;
}

json::object credential_json(const LiveStatus& l) {
    json::object c{{"kind", l.credential_kind}, {"ready", l.credential_ready}};
    if (!l.credential_reason.empty()) c["reason"] = l.credential_reason;
    const double s = l.credential_seconds_to_expiry;
    c["expiry"] = std::isinf(s) ? "never" : s < 0 ? "none" : "at";
    c["seconds_to_expiry"] = std::isfinite(s) && s >= 0 ? json::value(std::floor(s)) : json::value(nullptr);
    return c;
}

json::object upstream_json(const StatusSnapshot& s, const LiveStatus& l) {
    json::array breakers;
    for (const auto& [region, state] : l.breakers) breakers.push_back({{"region", region}, {"state", state}});
    json::object refused;
    for (const auto& [reason, n] : s.refused_by_reason) refused[reason] = n;
    return {{"latency_ms",
             {{"p50", number_or_null(s.latency_recent.quantile(0.5))},
              {"p99", number_or_null(s.latency_recent.quantile(0.99))},
              {"samples", s.latency_recent.total()}}},
            {"attempts_per_fetch", ratio(s.recent.attempts, s.recent.fetches)},
            {"breakers", std::move(breakers)},
            {"answers_refused_total", std::move(refused)}};
}

}  // namespace

std::string render_status_json(const StatusSnapshot& s, const LiveStatus& l) {
    const double span = std::max(1.0, std::min(static_cast<double>(s.window.count()), s.uptime_s));
    const auto end_age_ms = static_cast<std::int64_t>(std::fmod(s.uptime_s, 1.0) * 1000);
    json::object o{{"version", l.version},
                   {"now_ms", l.now_unix_ms},
                   {"uptime_s", std::floor(s.uptime_s)},
                   {"draining", l.draining},
                   {"window_s", s.window.count()},
                   {"total", counts_json(s.total)},
                   {"recent", counts_json(s.recent)},
                   {"rates",
                    {{"requests_per_s", number_or_null(static_cast<double>(s.recent.requests) / span)},
                     {"hit_ratio", ratio(s.recent.saved(), s.recent.cache_answers())},
                     {"hit_ratio_total", ratio(s.total.saved(), s.total.cache_answers())},
                     {"upstream_calls_saved", s.recent.saved()},
                     {"upstream_calls_saved_total", s.total.saved()},
                     {"error_ratio_5xx", ratio(s.recent.s5xx, s.recent.requests)}}},
                   {"upstream", upstream_json(s, l)},
                   {"cache",
                    {{"enabled", l.cache_enabled},
                     {"entries", l.cache_entries},
                     {"bytes", l.cache_bytes},
                     {"max_entries", l.cache_max_entries},
                     {"max_bytes", l.cache_max_bytes},
                     {"singleflight_waiters", l.singleflight_waiters}}},
                   {"credential", credential_json(l)},
                   {"callers",
                    {{"top_by_requests", callers_json(s.top_by_requests)},
                     {"top_by_throttled", callers_json(s.top_by_throttled)}}},
                   {"access_log", {{"dropped_lines_total", l.access_log_dropped}}},
                   {"series", series_json(s, l.now_unix_ms - end_age_ms)}};
    return json::serialize(o);
}

namespace {

std::string_view asset_bytes(const unsigned char* data, std::size_t size) {
    return {reinterpret_cast<const char*>(data), size};
}

}  // namespace

const StatusAsset* find_status_asset(std::string_view name) {
    static const StatusAsset page{"text/html; charset=utf-8",
                                  asset_bytes(rdsgw_asset_html, rdsgw_asset_html_size)};
    static const StatusAsset js{"text/javascript; charset=utf-8",
                                asset_bytes(rdsgw_asset_js, rdsgw_asset_js_size)};
    static const StatusAsset css{"text/css; charset=utf-8",
                                 asset_bytes(rdsgw_asset_css, rdsgw_asset_css_size)};
    static const StatusAsset chart{"text/javascript; charset=utf-8",
                                   asset_bytes(rdsgw_asset_chartjs, rdsgw_asset_chartjs_size)};
    if (name.empty()) return &page;
    if (name == "/app.js") return &js;
    if (name == "/app.css") return &css;
    if (name == "/chart.js") return &chart;
    return nullptr;
}

}  // namespace rdsgw
