// LinkCache::get() hits: one hot key, and 100k keys visited in a scattered order; 1 and 2 threads.
// Reported time is per get() (with threads: wall time per get() in each thread, UseRealTime).
#include <benchmark/benchmark.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "rdsgw/cache.hpp"

namespace {

using namespace std::chrono_literals;
using rdsgw::CachedAnswer;
using rdsgw::LinkCache;

const auto kNow = rdsgw::SysClock::time_point(std::chrono::sys_days{std::chrono::year{2026} / 11 / 27});
constexpr std::size_t kManyKeys = 100000;

std::vector<std::string> make_keys(std::size_t n) {
    std::vector<std::string> keys;
    keys.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        // Realistic shape: 32 hex project id + '\n' + 36 character backup id.
        std::string backup = std::to_string(i);
        backup.insert(0, 32 - backup.size(), '0');
        keys.push_back(rdsgw::make_cache_key("97b026aa9cc4417888c14c84a1ad9860", backup + "br01"));
    }
    return keys;
}

struct Fixture {
    std::vector<std::string> keys = make_keys(kManyKeys);
    LinkCache cache{[] {
        rdsgw::CacheOptions o;
        o.max_entries = 2 * kManyKeys;
        o.max_bytes = 1ull << 32;
        return o;
    }()};
    Fixture() {
        const std::string body(600, 'x');  // about one file's canonical JSON
        auto a = CachedAnswer::make({.body = body, .earliest_expiry = kNow + 15min});
        for (const auto& k : keys) cache.put(k, a, kNow);
    }
};

Fixture& fixture() {
    static Fixture f;
    return f;
}

void BM_GetHitOneKey(benchmark::State& state) {
    auto& f = fixture();
    const std::string& key = f.keys[42];
    for (auto _ : state) {
        auto l = f.cache.get(key, kNow);
        benchmark::DoNotOptimize(l);
    }
    state.SetItemsProcessed(state.iterations());
}

void BM_GetHit100kKeys(benchmark::State& state) {
    auto& f = fixture();
    // A fixed stride coprime with the key count visits every key in a cache-unfriendly order.
    std::size_t i = static_cast<std::size_t>(state.thread_index()) * 7919;
    for (auto _ : state) {
        i = (i + 40503) % kManyKeys;
        auto l = f.cache.get(f.keys[i], kNow);
        benchmark::DoNotOptimize(l);
    }
    state.SetItemsProcessed(state.iterations());
}

// Baseline for BM_GetHit100kKeys: the same key visits, only hashing the key (the benchmark's own misses).
void BM_Baseline100kKeysHashOnly(benchmark::State& state) {
    auto& f = fixture();
    std::size_t i = static_cast<std::size_t>(state.thread_index()) * 7919;
    for (auto _ : state) {
        i = (i + 40503) % kManyKeys;
        benchmark::DoNotOptimize(std::hash<std::string_view>{}(f.keys[i]));
    }
    state.SetItemsProcessed(state.iterations());
}

}  // namespace

BENCHMARK(BM_Baseline100kKeysHashOnly)->Threads(1)->UseRealTime();
BENCHMARK(BM_GetHitOneKey)->Threads(1)->Threads(2)->UseRealTime();
BENCHMARK(BM_GetHit100kKeys)->Threads(1)->Threads(2)->UseRealTime();

BENCHMARK_MAIN();
