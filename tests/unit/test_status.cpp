// The status board (per-second buckets, windows, series, callers, latency quantiles), status.json and the
// embedded page files.
#define BOOST_TEST_MODULE status
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <cmath>
#include <latch>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "rdsgw/exchange.hpp"
#include "rdsgw/request.hpp"
#include "rdsgw/status.hpp"

using namespace rdsgw;
using namespace std::chrono_literals;
namespace json = boost::json;
using clk = StatusBoard::clock;

namespace {
const clk::time_point T0 = clk::time_point(std::chrono::hours(1000));
clk::time_point at(double s) {
    return T0 + std::chrono::duration_cast<clk::duration>(std::chrono::duration<double>(s));
}
}  // namespace

BOOST_AUTO_TEST_CASE(latency_buckets_and_quantiles) {
    BOOST_TEST(LatencyHistogram::bucket_of(0) == 0u);
    BOOST_TEST(LatencyHistogram::bucket_of(0.25) == 0u);
    BOOST_TEST(LatencyHistogram::bucket_of(0.3) == 1u);
    BOOST_TEST(LatencyHistogram::bucket_of(LatencyHistogram::upper_bound_ms(5)) == 5u);
    BOOST_TEST(LatencyHistogram::bucket_of(LatencyHistogram::upper_bound_ms(5) * 1.01) == 6u);
    BOOST_TEST(LatencyHistogram::bucket_of(1e9) == LatencyHistogram::kBuckets - 1);
    BOOST_TEST(std::isinf(LatencyHistogram::upper_bound_ms(LatencyHistogram::kBuckets - 1)));
    BOOST_TEST(LatencyHistogram::upper_bound_ms(2) == 0.5);
    // Each bound is within sqrt(2) of the next: a quantile is off by less than that factor.
    for (std::size_t i = 1; i + 1 < LatencyHistogram::kBuckets; ++i)
        BOOST_TEST(
            LatencyHistogram::upper_bound_ms(i) / LatencyHistogram::upper_bound_ms(i - 1) == std::sqrt(2.0),
            boost::test_tools::tolerance(1e-9));

    LatencyHistogram h;
    BOOST_TEST(std::isnan(h.quantile(0.5)));
    // 100 samples of 10 ms: every quantile is inside 10 ms's bucket.
    const std::size_t b = LatencyHistogram::bucket_of(10);
    h.counts[b] = 100;
    const double lo = LatencyHistogram::upper_bound_ms(b - 1), hi = LatencyHistogram::upper_bound_ms(b);
    BOOST_TEST(lo < 10.0);
    BOOST_TEST(hi >= 10.0);
    BOOST_TEST(h.quantile(0.5) == lo + (hi - lo) * 0.5, boost::test_tools::tolerance(1e-9));
    BOOST_TEST(h.quantile(0.99) == lo + (hi - lo) * 0.99, boost::test_tools::tolerance(1e-9));
    // One slow sample in 100 moves p99 to the end of the fast bucket, not into the slow one; 2 in 100 do.
    h.counts[b] = 99;
    h.counts[LatencyHistogram::bucket_of(1000)] = 1;
    BOOST_TEST(h.quantile(0.99) == hi, boost::test_tools::tolerance(1e-9));
    h.counts[b] = 98;
    h.counts[LatencyHistogram::bucket_of(1000)] = 2;
    BOOST_TEST(h.quantile(0.99) > 700.0);
    BOOST_TEST(h.quantile(0.99) <= 1000.0 * std::sqrt(2.0));
    // The unbounded bucket reports its lower bound.
    LatencyHistogram slow;
    slow.counts[LatencyHistogram::kBuckets - 1] = 3;
    BOOST_TEST(slow.quantile(0.5) == LatencyHistogram::upper_bound_ms(LatencyHistogram::kBuckets - 2));
}

BOOST_AUTO_TEST_CASE(requests_totals_window_and_status_mix) {
    StatusBoard board(T0);
    // At second 10: 3 hits, 1 miss, a 404 (no cache state), a 429 from the rate limit, a 503 stale, a 302.
    for (int i = 0; i < 3; ++i) board.request(200, CacheState::hit, "a", false, at(10.2));
    board.request(200, CacheState::miss, "a", false, at(10.3));
    board.request(404, CacheState::none, "b", false, at(10.4));
    board.request(429, CacheState::none, "b", true, at(10.5));
    board.request(200, CacheState::stale, "", false, at(10.6));
    board.request(302, CacheState::none, "", false, at(10.7));
    board.request(503, CacheState::coalesced, "", false, at(10.8));
    board.request(101, CacheState::bypass, "", false, at(10.9));

    auto s = board.snapshot(at(11.5), 300s);
    BOOST_TEST(s.total.requests == 10u);
    BOOST_TEST(s.total.s2xx == 5u);
    BOOST_TEST(s.total.s3xx == 1u);
    BOOST_TEST(s.total.s4xx == 1u);  // 429 is counted apart
    BOOST_TEST(s.total.s429 == 1u);
    BOOST_TEST(s.total.s5xx == 1u);
    BOOST_TEST(s.total.hit == 3u);
    BOOST_TEST(s.total.miss == 1u);
    BOOST_TEST(s.total.stale == 1u);
    BOOST_TEST(s.total.coalesced == 1u);
    BOOST_TEST(s.total.bypass == 1u);
    BOOST_TEST(s.total.throttled == 1u);
    BOOST_TEST(s.total.saved() == 4u);
    BOOST_TEST(s.total.cache_answers() == 7u);
    BOOST_TEST(s.recent.requests == 10u);
    BOOST_TEST(s.uptime_s == 11.5, boost::test_tools::tolerance(1e-9));

    // 400 s later: still in the totals, out of a 300-s window, in a 600-s one.
    s = board.snapshot(at(410.5), 300s);
    BOOST_TEST(s.total.requests == 10u);
    BOOST_TEST(s.recent.requests == 0u);
    BOOST_TEST(board.snapshot(at(410.5), 600s).recent.requests == 10u);
    // The window's edge: second 10 is inside a window of 11 s ending in second 20, outside one of 10 s.
    BOOST_TEST(board.snapshot(at(20.5), 11s).recent.requests == 10u);
    BOOST_TEST(board.snapshot(at(20.5), 10s).recent.requests == 0u);
}

BOOST_AUTO_TEST_CASE(ring_reuse_never_mixes_seconds) {
    StatusBoard board(T0);
    board.request(200, CacheState::hit, "", false, at(5));
    // Second 5 + 640 lands in the same bucket: the old count is dropped, not added.
    board.request(500, CacheState::miss, "", false, at(5 + StatusBoard::kRingSeconds));
    auto s = board.snapshot(at(5.5 + StatusBoard::kRingSeconds), 60s);
    BOOST_TEST(s.recent.requests == 1u);
    BOOST_TEST(s.recent.s5xx == 1u);
    BOOST_TEST(s.recent.hit == 0u);
    BOOST_TEST(s.total.requests == 2u);
    // A window reaching back to the old second does not find it either (the bucket holds the new one).
    BOOST_TEST(board.snapshot(at(5.5 + StatusBoard::kRingSeconds), 600s).recent.requests == 1u);
}

BOOST_AUTO_TEST_CASE(series_points_cover_complete_seconds) {
    StatusBoard board(T0);
    // Step 5 s over 60 s, snapshot in second 100: 12 points covering seconds 40..99, the last one 95..99.
    board.request(200, CacheState::hit, "", false, at(99.9));    // last point
    board.request(200, CacheState::hit, "", false, at(95.0));    // last point
    board.request(200, CacheState::miss, "", false, at(94.9));   // the point before
    board.request(200, CacheState::miss, "", false, at(40.0));   // first point
    board.request(200, CacheState::miss, "", false, at(39.9));   // before the series
    board.request(200, CacheState::miss, "", false, at(100.1));  // the current second: not yet
    auto s = board.snapshot(at(100.5), 300s, 60s, 5s);
    BOOST_TEST(s.step.count() == 5);
    BOOST_REQUIRE(s.series.size() == 12u);
    BOOST_TEST(s.series[11].requests == 2u);
    BOOST_TEST(s.series[11].hit == 2u);
    BOOST_TEST(s.series[10].requests == 1u);
    BOOST_TEST(s.series[0].requests == 1u);
    std::uint64_t in_series = 0;
    for (auto& p : s.series) in_series += p.requests;
    BOOST_TEST(in_series == 4u);
    BOOST_TEST(s.recent.requests == 6u);  // the window includes the current second
    // Early in the process's life, points before its start are empty.
    StatusBoard young(T0);
    young.request(200, CacheState::hit, "", false, at(1.5));
    auto y = young.snapshot(at(2.5), 300s, 600s, 5s);
    BOOST_TEST(y.series.size() == 120u);
    BOOST_TEST(y.series.back().requests == 1u);
}

BOOST_AUTO_TEST_CASE(fetches_attempts_latency_and_refusals) {
    StatusBoard board(T0);
    for (int i = 0; i < 98; ++i) board.fetch(1, 10.0, at(3));
    board.fetch(3, 900.0, at(3));
    board.fetch(3, 900.0, at(4));
    board.fetch(0, 0.0, at(4));  // refused before any attempt: no latency sample
    board.refused("contract", at(4));
    board.refused("contract", at(4));
    board.refused("encoding", at(4));
    auto s = board.snapshot(at(5.5), 300s, 60s, 1s);
    BOOST_TEST(s.total.fetches == 101u);
    BOOST_TEST(s.total.attempts == 104u);
    BOOST_TEST(s.recent.refused == 3u);
    BOOST_TEST(s.latency_recent.total() == 100u);
    const std::size_t fast = LatencyHistogram::bucket_of(10);
    BOOST_TEST(s.latency_recent.quantile(0.5) <= LatencyHistogram::upper_bound_ms(fast));
    BOOST_TEST(s.latency_recent.quantile(0.5) > LatencyHistogram::upper_bound_ms(fast - 1));
    BOOST_TEST(s.latency_recent.quantile(0.99) > 600.0);
    BOOST_TEST(s.refused_by_reason.at("contract") == 2u);
    BOOST_TEST(s.refused_by_reason.at("encoding") == 1u);
    // Per-point latency: the last complete second (4) has one sample, second 3 has 99.
    BOOST_TEST(s.series_latency[s.series_latency.size() - 2].total() == 99u);
    BOOST_TEST(s.series_latency[s.series_latency.size() - 1].total() == 1u);
}

BOOST_AUTO_TEST_CASE(top_callers_by_requests_and_throttled) {
    StatusBoard board(T0);
    for (int i = 0; i < 5; ++i) board.request(200, CacheState::hit, "restore-svc", false, at(100));
    for (int i = 0; i < 3; ++i) board.request(200, CacheState::hit, "audit", false, at(100));
    for (int i = 0; i < 3; ++i) board.request(200, CacheState::hit, "backup-ui", false, at(100));
    for (int i = 0; i < 4; ++i) board.request(429, CacheState::none, "backup-ui", true, at(101));
    board.request(429, CacheState::none, "audit", true, at(101));
    for (const char* name : {"beta", "alpha", "beta", "alpha"})
        board.request(200, CacheState::hit, name, false, at(100));
    board.request(200, CacheState::hit, "old", false, at(10));  // outside the window below
    auto s = board.snapshot(at(102), 60s, 60s, 5s, 2);
    BOOST_REQUIRE(s.top_by_requests.size() == 2u);  // top_n
    BOOST_TEST(s.top_by_requests[0].name == "backup-ui");
    BOOST_TEST(s.top_by_requests[0].requests == 7u);
    BOOST_TEST(s.top_by_requests[0].throttled == 4u);
    BOOST_TEST(s.top_by_requests[1].name == "restore-svc");
    BOOST_REQUIRE(s.top_by_throttled.size() == 2u);
    BOOST_TEST(s.top_by_throttled[0].name == "backup-ui");
    BOOST_TEST(s.top_by_throttled[1].name == "audit");
    BOOST_TEST(s.top_by_throttled[1].throttled == 1u);
    // Ties are broken by name; callers never throttled are not in the 429 list; totals since start.
    auto all = board.snapshot(at(102), 600s);
    BOOST_REQUIRE(all.top_by_requests.size() == 6u);
    BOOST_TEST(all.top_by_requests[1].name == "restore-svc");
    BOOST_TEST(all.top_by_requests[2].name == "audit");
    BOOST_TEST(all.top_by_requests[3].name == "alpha");
    BOOST_TEST(all.top_by_requests[4].name == "beta");
    BOOST_TEST(all.top_by_requests[5].name == "old");
    BOOST_TEST(all.top_by_requests[5].requests_total == 1u);
    BOOST_TEST(all.top_by_throttled.size() == 2u);
    auto later = board.snapshot(at(1000), 60s);
    BOOST_TEST(later.top_by_requests.empty());
    BOOST_TEST(later.total.requests == 21u);
    BOOST_TEST(later.total.throttled == 5u);
}

BOOST_AUTO_TEST_CASE(caller_names_are_bounded) {
    StatusBoard board(T0);
    const std::size_t n = StatusBoard::kMaxCallerNames + 10;
    for (std::size_t i = 0; i < n; ++i)
        board.request(200, CacheState::hit, "caller-" + std::to_string(i), false, at(5));
    auto s = board.snapshot(at(6), 60s, 60s, 5s, n + 1);
    BOOST_TEST(s.top_by_requests.size() == StatusBoard::kMaxCallerNames + 1);
    BOOST_TEST(s.top_by_requests.front().name == "(other)");
    BOOST_TEST(s.top_by_requests.front().requests == 10u);
}

// Every thread writes its own shard; the totals are exact once the writers are done, and a reader running
// alongside sees counts that only grow.
BOOST_AUTO_TEST_CASE(threads_write_without_losing_counts) {
    StatusBoard board;
    constexpr int kThreads = 4, kEach = 20000;
    std::latch go(kThreads + 1);
    std::atomic<bool> done{false};
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t)
        ts.emplace_back([&, t] {
            go.arrive_and_wait();
            for (int i = 0; i < kEach; ++i) {
                board.request(i % 10 ? 200 : 429, i % 10 ? CacheState::hit : CacheState::none,
                              t % 2 ? "odd" : "even", i % 10 == 0, clk::now());
                if (i % 100 == 0) board.fetch(1, 5.0, clk::now());
            }
        });
    std::uint64_t last = 0;
    bool monotonic = true;
    std::thread reader([&] {
        go.arrive_and_wait();
        while (!done.load()) {
            auto s = board.snapshot(clk::now());
            monotonic = monotonic && s.total.requests >= last;
            last = s.total.requests;
        }
    });
    for (auto& t : ts) t.join();
    done = true;
    reader.join();
    BOOST_TEST(monotonic);
    auto s = board.snapshot(clk::now(), 600s);
    BOOST_TEST(s.total.requests == std::uint64_t{kThreads} * kEach);
    BOOST_TEST(s.total.throttled == std::uint64_t{kThreads} * kEach / 10);
    BOOST_TEST(s.total.hit == std::uint64_t{kThreads} * kEach * 9 / 10);
    BOOST_TEST(s.total.fetches == std::uint64_t{kThreads} * kEach / 100);
    // The test ran within the 600-s window, so the window holds everything too.
    BOOST_TEST(s.recent.requests == s.total.requests);
    BOOST_REQUIRE(s.top_by_requests.size() == 2u);
    BOOST_TEST(s.top_by_requests[0].requests_total + s.top_by_requests[1].requests_total == s.total.requests);
}

BOOST_AUTO_TEST_CASE(status_json_shape) {
    StatusBoard board(T0);
    board.request(200, CacheState::hit, "quote\"caller", false, at(3));
    board.request(200, CacheState::miss, "quote\"caller", false, at(3));
    board.fetch(1, 12.0, at(3));
    board.refused("contract", at(3));
    LiveStatus l;
    l.version = "9.9.9";
    l.now_unix_ms = 1'800'000'000'500;
    l.cache_enabled = true;
    l.cache_entries = 1;
    l.cache_bytes = 2048;
    l.credential_kind = "iam";
    l.credential_ready = false;
    l.credential_reason = "no valid IAM token: IAM answered HTTP 500";
    l.credential_seconds_to_expiry = -1;
    l.breakers = {{"default", "open"}};
    const auto snap = board.snapshot(at(4.25));
    const json::value v = json::parse(render_status_json(snap, l));
    BOOST_TEST(v.at("version").as_string() == "9.9.9");
    BOOST_TEST(v.at("uptime_s").to_number<double>() == 4.0);
    BOOST_TEST(v.at("total").at("requests").to_number<int>() == 2);
    BOOST_TEST(v.at("total").at("cache").at("HIT").to_number<int>() == 1);
    BOOST_TEST(v.at("total").at("status").at("2xx").to_number<int>() == 2);
    BOOST_TEST(v.at("rates").at("hit_ratio").to_number<double>() == 0.5);
    BOOST_TEST(v.at("rates").at("upstream_calls_saved_total").to_number<int>() == 1);
    BOOST_TEST(v.at("rates").at("error_ratio_5xx").to_number<double>() == 0.0);
    BOOST_TEST(v.at("upstream").at("latency_ms").at("samples").to_number<int>() == 1);
    BOOST_TEST(v.at("upstream").at("latency_ms").at("p50").is_number());
    BOOST_TEST(v.at("upstream").at("answers_refused_total").at("contract").to_number<int>() == 1);
    BOOST_TEST(v.at("upstream").at("breakers").at(0).at("state").as_string() == "open");
    BOOST_TEST(v.at("credential").at("expiry").as_string() == "none");
    BOOST_TEST(v.at("credential").at("seconds_to_expiry").is_null());
    BOOST_TEST(v.at("credential").at("reason").as_string() == l.credential_reason);
    BOOST_TEST(v.at("callers").at("top_by_requests").at(0).at("name").as_string() == "quote\"caller");
    BOOST_TEST(v.at("callers").at("top_by_throttled").as_array().empty());
    BOOST_TEST(v.at("cache").at("bytes").to_number<int>() == 2048);
    const auto& series = v.at("series");
    BOOST_TEST(series.at("step_s").to_number<int>() == 5);
    // The series ends with the last complete second: 250 ms before now.
    BOOST_TEST(series.at("end_ms").to_number<std::int64_t>() == l.now_unix_ms - 250);
    BOOST_TEST(series.at("requests").as_array().size() == 120u);
    BOOST_TEST(series.at("requests").as_array().back().to_number<int>() == 2);
    BOOST_TEST(series.at("hit_ratio").as_array().back().to_number<double>() == 0.5);
    BOOST_TEST(series.at("hit_ratio").as_array().front().is_null());  // no answers there
    BOOST_TEST(series.at("p50_ms").as_array().front().is_null());

    // No traffic: ratios and quantiles are null, not NaN (which is not JSON).
    l.credential_seconds_to_expiry = std::numeric_limits<double>::infinity();
    const json::value e = json::parse(render_status_json(StatusBoard(T0).snapshot(at(1)), l));
    BOOST_TEST(e.at("rates").at("hit_ratio").is_null());
    BOOST_TEST(e.at("upstream").at("latency_ms").at("p99").is_null());
    BOOST_TEST(e.at("upstream").at("attempts_per_fetch").is_null());
    BOOST_TEST(e.at("credential").at("expiry").as_string() == "never");
    l.credential_seconds_to_expiry = 3600.7;
    const json::value f = json::parse(render_status_json(StatusBoard(T0).snapshot(at(1)), l));
    BOOST_TEST(f.at("credential").at("expiry").as_string() == "at");
    BOOST_TEST(f.at("credential").at("seconds_to_expiry").to_number<double>() == 3600.0);
}

BOOST_AUTO_TEST_CASE(embedded_page_files) {
    const StatusAsset* page = find_status_asset("");
    BOOST_REQUIRE(page);
    BOOST_TEST(page->content_type.starts_with("text/html"));
    BOOST_TEST(page->body.find("data-testid=\"hit-ratio\"") != std::string_view::npos);
    const StatusAsset* chart = find_status_asset("/chart.js");
    BOOST_REQUIRE(chart);
    BOOST_TEST(chart->body.starts_with("/*!\n * Chart.js v"));
    BOOST_TEST(chart->body.size() > 100000u);
    BOOST_REQUIRE(find_status_asset("/app.js"));
    BOOST_REQUIRE(find_status_asset("/app.css"));
    BOOST_TEST(!find_status_asset("/"));
    BOOST_TEST(!find_status_asset("/../metrics"));
    // The page's own files load nothing from another origin (Chart.js's source only names its home page in
    // comments, and the Content-Security-Policy would block any such load anyway).
    for (const char* name : {"", "/app.js", "/app.css"}) {
        const std::string_view body = find_status_asset(name)->body;
        BOOST_TEST(body.find("http://") == std::string_view::npos, name);
        BOOST_TEST(body.find("https://") == std::string_view::npos, name);
        BOOST_TEST(body.find("//cdn") == std::string_view::npos, name);
    }
}

BOOST_AUTO_TEST_CASE(status_routes_are_classified) {
    BOOST_TEST((classify("/admin/status") == Route::status));
    BOOST_TEST((classify("/admin/status.json?t=1") == Route::status));
    BOOST_TEST((classify("/admin/status/chart.js") == Route::status));
    BOOST_TEST((classify("/admin/statusx") == Route::not_found));
    BOOST_TEST((classify("/admin/status.jsonx") == Route::not_found));
    BOOST_TEST(route_name(Route::status) == "status");
}
