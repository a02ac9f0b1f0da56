// What the status page costs a request: StatusBoard::request() as Gateway::finish calls it for every answer
// (a cache hit of a named caller), on 1 and 2 threads, and Metrics::caller_request() beside it; and the
// snapshot status.json takes (every 2 s per open page). Reported time is per call.
#include <benchmark/benchmark.h>

#include <chrono>

#include "rdsgw/exchange.hpp"
#include "rdsgw/metrics.hpp"
#include "rdsgw/status.hpp"

namespace {

rdsgw::StatusBoard& board() {
    static rdsgw::StatusBoard b;
    return b;
}

// `now` is read once per 1024 calls: Gateway::finish passes the time it already read for the access log.
void BM_StatusRequest(benchmark::State& state) {
    auto& b = board();
    auto now = std::chrono::steady_clock::now();
    unsigned n = 0;
    for (auto _ : state) {
        if ((++n & 1023) == 0) now = std::chrono::steady_clock::now();
        b.request(200, rdsgw::CacheState::hit, state.range(0) ? "restore-svc" : "", false, now);
    }
}
BENCHMARK(BM_StatusRequest)->Arg(1)->Arg(0)->Threads(1)->Threads(2)->UseRealTime();

void BM_CallerMetric(benchmark::State& state) {
    static rdsgw::Metrics m("bench");
    for (auto _ : state) m.caller_request("restore-svc", false);
}
BENCHMARK(BM_CallerMetric)->Threads(1)->Threads(2)->UseRealTime();

void BM_StatusSnapshot(benchmark::State& state) {
    rdsgw::StatusBoard b;
    for (int i = 0; i < 1000; ++i)
        b.request(200, rdsgw::CacheState::hit, "caller-" + std::to_string(i % 20), false,
                  std::chrono::steady_clock::now());
    for (auto _ : state) benchmark::DoNotOptimize(b.snapshot(std::chrono::steady_clock::now()));
}
BENCHMARK(BM_StatusSnapshot);

}  // namespace

BENCHMARK_MAIN();
