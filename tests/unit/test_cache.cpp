#define BOOST_TEST_MODULE cache
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "rdsgw/cache.hpp"
#include "rdsgw/slab.hpp"

using namespace rdsgw;
using namespace std::chrono;
using namespace std::chrono_literals;

namespace {

const SysClock::time_point T0 = sys_days{2026y / 11 / 27} + 12h;

AnswerPtr ok(SysClock::time_point earliest_expiry, std::string body = "{\"files\":[],\"bucket\":\"b\"}",
             std::string request_id = "req-1") {
    return CachedAnswer::make({.status = 200,
                               .body = body,
                               .upstream_request_id = request_id,
                               .earliest_expiry = earliest_expiry,
                               .stored_at = T0});
}

AnswerPtr not_found() {
    return CachedAnswer::make(
        {.status = 404, .body = R"({"error_code":"DBS.200002","error_msg":"not found"})"});
}

CacheOptions options(std::size_t shards = 16) {
    CacheOptions o;
    o.ttl = 300s;
    o.expiry_margin = 60s;
    o.negative_ttl = 5s;
    o.shards = shards;
    return o;
}

struct Counters {
    std::atomic<int> evicted{0};
    std::atomic<int> expired{0};
    CacheEvents events() {
        return {[this] { ++evicted; }, [this] { ++expired; }};
    }
};

}  // namespace

BOOST_AUTO_TEST_CASE(cache_key_joins_project_and_backup_with_newline) {
    BOOST_TEST(make_cache_key("97b026aa9cc4417888c14c84a1ad9860", "c0c9f155c7b7423a9d30f0175998b63bbr01") ==
               "97b026aa9cc4417888c14c84a1ad9860\nc0c9f155c7b7423a9d30f0175998b63bbr01");
    BOOST_TEST(make_cache_key("", "") == "\n");
}

BOOST_AUTO_TEST_CASE(ttl_is_the_configured_ttl_when_links_live_long) {
    Counters c;
    LinkCache cache(options(), c.events());
    auto a = ok(T0 + 1h);
    BOOST_TEST(cache.put("k", a, T0));
    auto l = cache.get("k", T0 + 299s);
    BOOST_TEST(l.answer == a);
    BOOST_TEST(l.fresh);
    // Past the TTL, links still valid beyond the margin: stale-servable, same answer.
    l = cache.get("k", T0 + 300s);
    BOOST_TEST(l.answer == a);
    BOOST_TEST(!l.fresh);
    l = cache.get("k", T0 + 1h - 61s);
    BOOST_TEST(l.answer == a);
    BOOST_TEST(!l.fresh);
    BOOST_TEST(c.expired == 0);
    // Links within the margin: removed, reported, gone.
    l = cache.get("k", T0 + 1h - 60s);
    BOOST_TEST(!l.answer);
    BOOST_TEST(!l.fresh);
    BOOST_TEST(c.expired == 1);
    BOOST_TEST(cache.entries() == 0u);
    BOOST_TEST(cache.bytes() == 0u);
    BOOST_TEST(!cache.get("k", T0 + 1h - 60s).answer);
    BOOST_TEST(c.expired == 1);
}

BOOST_AUTO_TEST_CASE(ttl_is_capped_by_link_expiry_minus_margin) {
    Counters c;
    LinkCache cache(options(), c.events());
    auto a = ok(T0 + 200s);  // 200 - 60 = 140 s < 300 s
    BOOST_TEST(cache.put("k", a, T0));
    BOOST_TEST(cache.get("k", T0 + 139s).fresh);
    BOOST_TEST(cache.get("k", T0 + 139s + 999ms).fresh);
    auto l = cache.get("k", T0 + 140s);
    BOOST_TEST(!l.answer);
    BOOST_TEST(c.expired == 1);
    BOOST_TEST(cache.entries() == 0u);
}

BOOST_AUTO_TEST_CASE(not_stored_when_the_ttl_is_not_positive) {
    LinkCache cache(options());
    BOOST_TEST(!cache.put("k", ok(T0 + 60s), T0));  // exactly the margin: 0
    BOOST_TEST(!cache.put("k", ok(T0 + 30s), T0));  // within the margin
    BOOST_TEST(!cache.put("k", ok(T0 - 1h), T0));   // already expired
    BOOST_TEST(!cache.put("k", ok(SysClock::time_point::min()), T0));
    BOOST_TEST(cache.entries() == 0u);
    BOOST_TEST(cache.bytes() == 0u);
    BOOST_TEST(!cache.get("k", T0).answer);

    BOOST_TEST(cache.put("k", ok(T0 + 61s), T0));  // one second of freshness
    BOOST_TEST(cache.get("k", T0).fresh);
    BOOST_TEST(!cache.get("k", T0 + 1s).answer);

    auto zero_ttl = options();
    zero_ttl.ttl = 0s;
    LinkCache off(zero_ttl);
    BOOST_TEST(!off.put("k", ok(T0 + 1h), T0));
    BOOST_TEST(off.entries() == 0u);
}

BOOST_AUTO_TEST_CASE(an_answer_without_links_is_bounded_by_the_ttl) {
    LinkCache cache(options());
    auto a = ok(SysClock::time_point::max());  // no links: earliest_expiry stays max()
    BOOST_TEST(cache.put("k", a, T0));
    BOOST_TEST(cache.get("k", T0 + 299s).fresh);
    auto l = cache.get("k", T0 + 301s);
    BOOST_TEST(l.answer == a);
    BOOST_TEST(!l.fresh);
}

BOOST_AUTO_TEST_CASE(never_returns_an_answer_whose_links_are_within_the_margin) {
    // Every combination of link lifetime and lookup time (whole seconds, plus just-before instants).
    for (int life = 0; life <= 420; life += 7) {
        for (int at = 0; at <= 480; at += 3) {
            for (auto jitter : {SysClock::duration::zero(), SysClock::duration(-1)}) {
                Counters c;
                LinkCache cache(options(1), c.events());
                const auto expiry = T0 + seconds(life);
                const bool stored = cache.put("k", ok(expiry), T0);
                BOOST_TEST(stored == (life > 60));
                const auto now = T0 + seconds(at) + jitter;
                const auto l = cache.get("k", now);
                if (l.answer) {
                    BOOST_TEST_CONTEXT("life=" << life << " at=" << at) {
                        BOOST_TEST((l.answer->earliest_expiry() - 60s > now));
                        BOOST_TEST(l.fresh == (now < T0 + 300s));
                    }
                } else if (stored) {
                    BOOST_TEST((now >= expiry - 60s));
                    BOOST_TEST(c.expired == 1);
                }
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(negative_entries_expire_after_negative_ttl) {
    Counters c;
    LinkCache cache(options(), c.events());
    auto nf = not_found();
    BOOST_TEST(cache.put("k", nf, T0));
    auto l = cache.get("k", T0 + 4s);
    BOOST_TEST(l.answer == nf);
    BOOST_TEST(l.fresh);
    BOOST_TEST(l.answer->status() == 404u);
    l = cache.get("k", T0 + 5s);  // past the negative TTL: not stale-servable
    BOOST_TEST(!l.answer);
    BOOST_TEST(cache.entries() == 0u);
    BOOST_TEST(cache.bytes() == 0u);
    BOOST_TEST(c.expired == 0);  // on_expired is about links, not negative entries

    auto no_negative = options();
    no_negative.negative_ttl = 0s;
    LinkCache off(no_negative);
    BOOST_TEST(!off.put("k", nf, T0));
    BOOST_TEST(off.entries() == 0u);
}

BOOST_AUTO_TEST_CASE(other_statuses_and_null_answers_are_not_stored) {
    LinkCache cache(options());
    auto a = ok(T0 + 1h);
    BOOST_TEST(cache.put("k", a, T0));
    auto err_fields = a->fields();
    err_fields.status = 500;
    auto err = CachedAnswer::make(err_fields);
    BOOST_TEST(!cache.put("k", err, T0));
    BOOST_TEST(!cache.put("k", nullptr, T0));
    BOOST_TEST(cache.get("k", T0).answer == a);  // unchanged
    BOOST_TEST(cache.entries() == 1u);
}

BOOST_AUTO_TEST_CASE(an_answer_owns_a_copy_of_its_bytes_in_one_block) {
    std::string body = R"({"files":[],"bucket":"b"})";
    std::string id = "a-request-id-longer-than-fifteen-bytes";
    const auto at = T0 + 1h;
    AnswerPtr a = CachedAnswer::make(
        {.status = 200, .body = body, .upstream_request_id = id, .earliest_expiry = at, .stored_at = T0});
    body.assign(body.size(), 'x');  // the caller's buffers may change or go: the answer has its own bytes
    id.assign(id.size(), 'y');
    BOOST_TEST(a->status() == 200u);
    BOOST_TEST(a->body() == R"({"files":[],"bucket":"b"})");
    BOOST_TEST(a->upstream_request_id() == "a-request-id-longer-than-fifteen-bytes");
    BOOST_TEST((a->earliest_expiry() == at));
    BOOST_TEST((a->stored_at() == T0));
    // The id and the body follow the header in the same block.
    const char* header = reinterpret_cast<const char*>(a.get());
    BOOST_TEST((static_cast<const void*>(a->upstream_request_id().data()) ==
                static_cast<const void*>(header + sizeof(CachedAnswer))));
    BOOST_TEST((static_cast<const void*>(a->body().data()) ==
                static_cast<const void*>(a->upstream_request_id().data() + a->upstream_request_id().size())));
    // A copy with one field changed; the original is untouched; the last reference frees it (ASan: no leak).
    auto f = a->fields();
    f.status = 404;
    AnswerPtr b = CachedAnswer::make(f);
    AnswerPtr a2 = a;
    a.reset();
    BOOST_TEST(a2->status() == 200u);
    BOOST_TEST(b->status() == 404u);
    BOOST_TEST(b->body() == a2->body());
    BOOST_TEST((static_cast<const void*>(b->body().data()) != static_cast<const void*>(a2->body().data())));
    // An empty answer is valid.
    AnswerPtr e = CachedAnswer::make({});
    BOOST_TEST(e->body().empty());
    BOOST_TEST(e->upstream_request_id().empty());
    BOOST_TEST(e->footprint(3) == 3 + CachedAnswer::kEntryOverhead);
}

BOOST_AUTO_TEST_CASE(replace_adjusts_the_accounting) {
    LinkCache cache(options());
    auto small = ok(T0 + 1h, std::string(100, 'a'));
    auto big = ok(T0 + 1h, std::string(1000, 'b'), "another-request-id");
    BOOST_TEST(small->footprint(1) == 100 + 5 + 1 + CachedAnswer::kEntryOverhead);
    BOOST_TEST(cache.put("k", small, T0));
    BOOST_TEST(cache.bytes() == small->footprint(1));
    BOOST_TEST(cache.put("k", big, T0 + 10s));
    BOOST_TEST(cache.entries() == 1u);
    BOOST_TEST(cache.bytes() == big->footprint(1));
    auto l = cache.get("k", T0 + 10s);
    BOOST_TEST(l.answer == big);
    BOOST_TEST(l.fresh);
    BOOST_TEST(cache.get("k", T0 + 309s).fresh);  // the TTL restarted at the replacement
    BOOST_TEST(cache.put("k", small, T0));
    BOOST_TEST(cache.bytes() == small->footprint(1));

    // A 200 or 404 that cannot be stored supersedes the old entry: it is removed.
    BOOST_TEST(!cache.put("k", ok(T0 + 10s), T0));
    BOOST_TEST(cache.entries() == 0u);
    BOOST_TEST(cache.bytes() == 0u);
    BOOST_TEST(!cache.get("k", T0).answer);

    // A 404 replaces a 200 and vice versa.
    BOOST_TEST(cache.put("k", small, T0));
    auto nf = not_found();
    BOOST_TEST(cache.put("k", nf, T0));
    BOOST_TEST(cache.get("k", T0).answer == nf);
    BOOST_TEST(cache.bytes() == nf->footprint(1));
}

BOOST_AUTO_TEST_CASE(erase_and_clear) {
    LinkCache cache(options(4));
    for (int i = 0; i < 10; ++i) BOOST_TEST(cache.put("k" + std::to_string(i), ok(T0 + 1h), T0));
    BOOST_TEST(cache.entries() == 10u);
    BOOST_TEST(cache.erase("k3"));
    BOOST_TEST(!cache.erase("k3"));
    BOOST_TEST(!cache.erase("missing"));
    BOOST_TEST(!cache.get("k3", T0).answer);
    BOOST_TEST(cache.entries() == 9u);
    BOOST_TEST(cache.bytes() == 9 * ok(T0)->footprint(2));
    BOOST_TEST(cache.clear() == 9u);
    BOOST_TEST(cache.entries() == 0u);
    BOOST_TEST(cache.bytes() == 0u);
    BOOST_TEST(!cache.get("k4", T0).answer);
    BOOST_TEST(cache.clear() == 0u);
    BOOST_TEST(cache.put("k4", ok(T0 + 1h), T0));  // usable after clear
    BOOST_TEST(cache.get("k4", T0).fresh);
}

BOOST_AUTO_TEST_CASE(evicts_least_recently_used_by_entries) {
    Counters c;
    auto o = options(1);
    o.max_entries = 3;
    LinkCache cache(o, c.events());
    BOOST_TEST(cache.put("a", ok(T0 + 1h), T0));
    BOOST_TEST(cache.put("b", ok(T0 + 1h), T0));
    BOOST_TEST(cache.put("c", ok(T0 + 1h), T0));
    BOOST_TEST(cache.get("a", T0).answer);  // touched: now the most recently used
    BOOST_TEST(cache.put("d", ok(T0 + 1h), T0));
    BOOST_TEST(c.evicted == 1);
    BOOST_TEST(cache.entries() == 3u);
    BOOST_TEST(!cache.get("b", T0).answer);
    BOOST_TEST(cache.get("a", T0).answer);
    BOOST_TEST(cache.get("c", T0).answer);
    BOOST_TEST(cache.get("d", T0).answer);
    // A stale hit counts as a use too: "a" is the least recently used now, then touched stale.
    BOOST_TEST(!cache.get("a", T0 + 400s).fresh);
    BOOST_TEST(cache.put("e", ok(T0 + 1h), T0));
    BOOST_TEST(!cache.get("c", T0).answer);
    BOOST_TEST(cache.get("a", T0).answer);
    BOOST_TEST(c.evicted == 2);
    // Replacing does not evict.
    BOOST_TEST(cache.put("e", ok(T0 + 2h), T0));
    BOOST_TEST(c.evicted == 2);
    BOOST_TEST(cache.entries() == 3u);
}

// With many shards the order is still global: whichever shard holds the least recently used entry loses it,
// and a hit anywhere makes its entry young again.
BOOST_AUTO_TEST_CASE(evicts_in_global_lru_order_across_shards) {
    Counters c;
    auto o = options(16);
    const int n = 64;
    o.max_entries = n;
    LinkCache cache(o, c.events());
    auto key = [](int i) { return "k" + std::to_string(i); };
    for (int i = 0; i < n; ++i) BOOST_TEST(cache.put(key(i), ok(T0 + 1h), T0));
    // Touch the even keys (oldest first), so the odd ones are now the least recently used, in order.
    for (int i = 0; i < n; i += 2) BOOST_TEST(cache.get(key(i), T0).answer);
    for (int j = 0; j < n / 2; ++j) {
        BOOST_TEST_CONTEXT("new entry " << j) {
            BOOST_TEST(cache.put("new" + std::to_string(j), ok(T0 + 1h), T0));
            BOOST_TEST(cache.entries() == static_cast<std::size_t>(n));
            BOOST_TEST(
                !cache.get(key(2 * j + 1), T0).answer);  // the oldest odd key went (a miss touches nothing)
        }
    }
    BOOST_TEST(c.evicted == n / 2);
    for (int i = 0; i < n; i += 2) BOOST_TEST(cache.get(key(i), T0).answer);  // every even key survived
}

BOOST_AUTO_TEST_CASE(evicts_least_recently_used_by_bytes) {
    Counters c;
    auto o = options(1);
    const auto fp = ok(T0, std::string(500, 'x'))->footprint(1);
    o.max_bytes = 3 * fp;
    LinkCache cache(o, c.events());
    for (const char* k : {"a", "b", "c"}) BOOST_TEST(cache.put(k, ok(T0 + 1h, std::string(500, 'x')), T0));
    BOOST_TEST(cache.bytes() == 3 * fp);
    BOOST_TEST(c.evicted == 0);
    BOOST_TEST(cache.get("a", T0).answer);
    // A bigger answer needs two slots' worth: "b" and "c" go, "a" (touched) stays.
    const auto big = ok(T0 + 1h, std::string(500 + fp, 'y'));
    BOOST_TEST(cache.put("d", big, T0));
    BOOST_TEST(c.evicted == 2);
    BOOST_TEST(cache.get("a", T0).answer);
    BOOST_TEST(cache.get("d", T0).answer == big);
    BOOST_TEST(cache.bytes() == fp + big->footprint(1));
    BOOST_TEST(cache.bytes() <= o.max_bytes);
    // Larger than the whole budget: refused, nothing evicted.
    BOOST_TEST(!cache.put("e", ok(T0 + 1h, std::string(3 * fp, 'z')), T0));
    BOOST_TEST(c.evicted == 2);
    BOOST_TEST(cache.entries() == 2u);
}

BOOST_AUTO_TEST_CASE(bounds_are_global_across_shards) {
    Counters c;
    auto o = options(8);
    o.max_entries = 10;
    o.max_bytes = 1ull << 30;
    LinkCache by_entries(o, c.events());
    for (int i = 0; i < 100; ++i) {
        const auto key = "key-" + std::to_string(i);
        BOOST_TEST(by_entries.put(key, ok(T0 + 1h), T0));
        BOOST_TEST(by_entries.entries() <= 10u);
        BOOST_TEST(by_entries.get(key, T0).answer);  // the entry just stored is never the victim
    }
    BOOST_TEST(by_entries.entries() == 10u);
    BOOST_TEST(c.evicted == 90);

    Counters cb;
    auto ob = options(8);
    const auto fp = ok(T0)->footprint(7);  // keys "key-100".."key-199"
    ob.max_bytes = 7 * fp + fp / 2;
    LinkCache by_bytes(ob, cb.events());
    for (int i = 0; i < 100; ++i) {
        const auto key = "key-" + std::to_string(100 + i);
        BOOST_TEST(by_bytes.put(key, ok(T0 + 1h), T0));
        BOOST_TEST(by_bytes.bytes() <= ob.max_bytes);
        BOOST_TEST(by_bytes.get(key, T0).answer);
    }
    BOOST_TEST(by_bytes.entries() == 7u);
    BOOST_TEST(cb.evicted == 93);
}

// Four threads mix puts, gets and erases on 256 keys in a 64-entry cache (consistency under concurrency,
// evictions racing lookups); between rounds, at a barrier, each puts 4 probe keys into the emptied cache and
// then all look up all 16 concurrently: those lookups must all hit on any schedule (no sleeps, no luck:
// whether the mixed lookups hit depends on how the threads interleave, so only their answers are checked).
BOOST_AUTO_TEST_CASE(concurrent_put_and_get_stay_consistent) {
    auto o = options(4);
    o.max_entries = 64;
    Counters c;
    LinkCache cache(o, c.events());
    constexpr int kThreads = 4, kKeys = 256, kRounds = 10, kOpsPerRound = 2000, kProbesPerThread = 4;
    constexpr int kProbes = kThreads * kProbesPerThread;
    std::vector<std::string> keys, probes;
    for (int i = 0; i < kKeys; ++i)
        keys.push_back(make_cache_key("project", "backup-" + std::to_string(1000 + i)));
    for (int i = 0; i < kProbes; ++i)
        probes.push_back(make_cache_key("project", "backup-" + std::to_string(2000 + i)));
    std::atomic<int> wrong{0}, hits{0}, probe_hits{0};
    // Three barrier phases per round; the first one's completion empties the cache, so the 16 probe
    // entries fit without evicting each other.
    int phase = 0;
    std::barrier sync(kThreads, [&]() noexcept {
        if (phase++ % 3 == 0) cache.clear();
    });
    auto check = [&](const std::string& key, const AnswerPtr& a, std::atomic<int>& counter) {
        if (!a) return;
        ++counter;
        if (a->body() != key) ++wrong;
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            for (int r = 0; r < kRounds; ++r) {
                for (int n = 0; n < kOpsPerRound; ++n) {
                    const int i = r * kOpsPerRound + n;
                    const auto& key = keys[(i * 7 + t * 13) % kKeys];
                    const auto now = T0 + seconds(i % 50);
                    if (i % 3 == 0) {
                        // Body = key, so every answer says which key it belongs to.
                        cache.put(key, ok(T0 + 1h, key), now);
                    } else if (i % 97 == 0) {
                        cache.erase(key);
                    } else {
                        check(key, cache.get(key, now).answer, hits);
                    }
                }
                if (r + 1 == kRounds) break;  // ends with the mix: the checks below see its state
                sync.arrive_and_wait();       // the cache is emptied
                for (int j = 0; j < kProbesPerThread; ++j) {
                    const auto& key = probes[t * kProbesPerThread + j];
                    cache.put(key, ok(T0 + 1h, key), T0);
                }
                sync.arrive_and_wait();  // every probe is stored
                for (const auto& key : probes) check(key, cache.get(key, T0).answer, probe_hits);
                sync.arrive_and_wait();
            }
        });
    }
    for (auto& th : threads) th.join();
    BOOST_TEST_MESSAGE("hits while mixing: " << hits.load());
    BOOST_TEST(wrong == 0);
    BOOST_TEST(probe_hits == (kRounds - 1) * kThreads * kProbes);
    BOOST_TEST(cache.entries() <= 64u);
    BOOST_TEST(c.evicted > 0);
    // Every key and body have the same length, so the byte total must be exactly entries * footprint.
    BOOST_TEST(cache.bytes() == cache.entries() * ok(T0, keys[0])->footprint(keys[0].size()));
    std::size_t found = 0;
    for (const auto& key : keys) found += cache.get(key, T0).answer ? 1 : 0;
    for (const auto& key : probes) found += cache.get(key, T0).answer ? 1 : 0;
    BOOST_TEST(found == cache.entries());
}

BOOST_AUTO_TEST_CASE(fresh_lifetime_is_the_put_rule_for_both_tiers) {
    const CacheOptions o = options();
    BOOST_TEST(duration_cast<seconds>(fresh_lifetime(*ok(T0 + 1h), T0, o)).count() == 300);   // ttl
    BOOST_TEST(duration_cast<seconds>(fresh_lifetime(*ok(T0 + 100s), T0, o)).count() == 40);  // link - margin
    BOOST_TEST(fresh_lifetime(*ok(T0 + 60s), T0, o).count() == 0);                            // within margin
    BOOST_TEST(duration_cast<seconds>(fresh_lifetime(*not_found(), T0, o)).count() == 5);     // negative_ttl
    const AnswerPtr nf = not_found();  // fields() views its bytes: keep it alive
    auto other_fields = nf->fields();
    other_fields.status = 500;
    auto other = CachedAnswer::make(other_fields);
    BOOST_TEST(fresh_lifetime(*other, T0, o).count() == 0);
}

BOOST_AUTO_TEST_CASE(put_with_max_fresh_keeps_only_the_remaining_lifetime) {
    // An answer taken from the shared tier with 10 s left there is fresh in L1 for 10 s, not the full TTL;
    // it stays servable stale afterwards while its links remain valid.
    LinkCache cache(options());
    BOOST_TEST(cache.put("k", ok(T0 + 1h), T0, 10s));
    BOOST_TEST(cache.get("k", T0 + 9s).fresh);
    auto later = cache.get("k", T0 + 11s);
    BOOST_TEST(static_cast<bool>(later.answer));
    BOOST_TEST(!later.fresh);
    BOOST_TEST(!cache.put("n", not_found(), T0, 0s));  // nothing left: not stored
    BOOST_TEST(cache.entries() == 1u);
    BOOST_TEST(cache.put("n", not_found(), T0, 2s));
    BOOST_TEST(cache.get("n", T0 + 1s).fresh);
    BOOST_TEST(!cache.get("n", T0 + 3s).answer);  // 404s are never served stale
}

// FineSlab: the answers' allocator (rdsgw/slab.hpp).
BOOST_AUTO_TEST_CASE(slab_classes_are_fine_and_cover_the_range) {
    // 32 classes per doubling: 16 bytes apart up to 1 KiB, 32 up to 2 KiB, 64 up to 4 KiB; outside: n itself.
    BOOST_TEST(FineSlab::class_size(100) == 100u);
    BOOST_TEST(FineSlab::class_size(512) == 512u);
    BOOST_TEST(FineSlab::class_size(513) == 528u);
    BOOST_TEST(FineSlab::class_size(700) == 704u);
    BOOST_TEST(FineSlab::class_size(712) == 720u);  // jemalloc: 768
    BOOST_TEST(FineSlab::class_size(1024) == 1024u);
    BOOST_TEST(FineSlab::class_size(1025) == 1056u);
    BOOST_TEST(FineSlab::class_size(2049) == 2112u);
    BOOST_TEST(FineSlab::class_size(4096) == 4096u);
    BOOST_TEST(FineSlab::class_size(4097) == 4097u);
    std::size_t prev = 512, classes = 0;
    for (std::size_t n = 513; n <= 4096; ++n) {
        const std::size_t c = FineSlab::class_size(n);
        BOOST_TEST_REQUIRE(c >= n);
        BOOST_TEST_REQUIRE(c % 16 == 0u);
        BOOST_TEST_REQUIRE((c - n) * 32 < n);  // loses under 1/32 of the block
        BOOST_TEST_REQUIRE(c >= prev);
        if (c != prev) ++classes;
        prev = c;
    }
    BOOST_TEST(classes == FineSlab::kClasses);
}

BOOST_AUTO_TEST_CASE(slab_blocks_are_distinct_aligned_and_keep_their_bytes) {
    FineSlab slab;
    std::mt19937 rng(7);
    std::uniform_int_distribution<std::size_t> size(1, 6000);
    struct Block {
        char* p;
        std::size_t n;
        unsigned char fill;
    };
    std::vector<Block> live;
    std::map<std::uintptr_t, std::size_t> spans;  // start -> class size: no two blocks overlap
    const auto check_and_free = [&](std::size_t i) {
        Block b = live[i];
        bool intact = true;
        for (std::size_t k = 0; k < b.n; ++k) intact = intact && static_cast<unsigned char>(b.p[k]) == b.fill;
        BOOST_TEST_REQUIRE(intact);
        spans.erase(reinterpret_cast<std::uintptr_t>(b.p));
        slab.deallocate(b.p, b.n);
        live[i] = live.back();
        live.pop_back();
    };
    for (int round = 0; round < 20000; ++round) {
        if (!live.empty() && rng() % 3 == 0) {
            check_and_free(rng() % live.size());
            continue;
        }
        const std::size_t n = size(rng);
        char* p = static_cast<char*>(slab.allocate(n));
        BOOST_TEST_REQUIRE(reinterpret_cast<std::uintptr_t>(p) % 16 == 0u);
        const auto at = reinterpret_cast<std::uintptr_t>(p);
        auto next = spans.lower_bound(at);
        BOOST_TEST_REQUIRE((next == spans.end() || next->first >= at + FineSlab::class_size(n)));
        if (next != spans.begin()) {
            auto before = std::prev(next);
            BOOST_TEST_REQUIRE(before->first + before->second <= at);
        }
        spans.emplace(at, FineSlab::class_size(n));
        const auto fill = static_cast<unsigned char>(rng());
        std::memset(p, fill, n);
        live.push_back({p, n, fill});
    }
    BOOST_TEST(slab.stats().blocks > 0u);
    while (!live.empty()) check_and_free(live.size() - 1);
    BOOST_TEST(slab.stats().blocks == 0u);
    // Empty runs went back: at most one kept per class.
    BOOST_TEST(slab.stats().runs <= FineSlab::kClasses);
}

BOOST_AUTO_TEST_CASE(slab_packs_blocks_into_runs_and_returns_empty_runs) {
    FineSlab slab;
    const std::size_t n = 712, per_run = (FineSlab::kRunBytes - 64) / FineSlab::class_size(n);
    std::vector<void*> blocks;
    for (std::size_t i = 0; i < 10 * per_run; ++i) blocks.push_back(slab.allocate(n));
    BOOST_TEST(slab.stats().runs == 10u);  // exactly full runs: 720 bytes a block, not 768
    BOOST_TEST(slab.stats().blocks == 10 * per_run);
    // Free every other block: the runs stay (each still holds blocks); the freed blocks are reused first.
    for (std::size_t i = 0; i < blocks.size(); i += 2) slab.deallocate(blocks[i], n);
    BOOST_TEST(slab.stats().runs == 10u);
    for (std::size_t i = 0; i < blocks.size(); i += 2) blocks[i] = slab.allocate(n);
    BOOST_TEST(slab.stats().runs == 10u);
    // Free all: one empty run is kept for the class, the other nine are returned.
    for (void* p : blocks) slab.deallocate(p, n);
    BOOST_TEST(slab.stats().blocks == 0u);
    BOOST_TEST(slab.stats().runs == 1u);
    // Outside the range, the general allocator: no run.
    void* small = slab.allocate(100);
    void* large = slab.allocate(10000);
    BOOST_TEST(slab.stats().runs == 1u);
    BOOST_TEST(slab.stats().blocks == 0u);
    slab.deallocate(small, 100);
    slab.deallocate(large, 10000);
}

BOOST_AUTO_TEST_CASE(slab_runs_come_from_aligned_chunks_that_are_given_back) {
    FineSlab slab;
    constexpr std::size_t kRunsPerChunk = FineSlab::kChunkBytes / FineSlab::kRunBytes;
    const std::size_t n = 712, per_run = (FineSlab::kRunBytes - 64) / FineSlab::class_size(n);
    BOOST_TEST(slab.stats().chunks == 0u);  // nothing mapped before the first block
    // Three chunks' worth of runs and a bit: four chunks, and the blocks lie in four aligned 2 MiB ranges.
    std::vector<void*> blocks;
    for (std::size_t i = 0; i < (3 * kRunsPerChunk + 1) * per_run; ++i) blocks.push_back(slab.allocate(n));
    BOOST_TEST(slab.stats().runs == 3 * kRunsPerChunk + 1);
    BOOST_TEST(slab.stats().chunks == 4u);
    std::set<std::uintptr_t> chunks;
    for (void* p : blocks) chunks.insert(reinterpret_cast<std::uintptr_t>(p) & ~(FineSlab::kChunkBytes - 1));
    BOOST_TEST(chunks.size() == 4u);
    // Free them all: the class keeps one run (its chunk stays), one empty chunk is kept, the others go.
    for (void* p : blocks) slab.deallocate(p, n);
    BOOST_TEST(slab.stats().runs == 1u);
    BOOST_TEST(slab.stats().chunks == 2u);
    // And they are reused: the same again maps only what is missing.
    blocks.clear();
    for (std::size_t i = 0; i < (3 * kRunsPerChunk + 1) * per_run; ++i) blocks.push_back(slab.allocate(n));
    BOOST_TEST(slab.stats().chunks == 4u);
    for (void* p : blocks) slab.deallocate(p, n);
    BOOST_TEST(slab.stats().chunks == 2u);
}

BOOST_AUTO_TEST_CASE(slab_is_safe_across_threads) {
    // Blocks allocated on one thread and freed on another (an answer evicted by another worker).
    FineSlab slab;
    constexpr int kThreads = 4, kPerThread = 20000;
    std::atomic<int> damaged{0};
    std::vector<std::vector<void*>> made(kThreads);
    std::barrier start(kThreads);
    {
        std::vector<std::jthread> ts;
        for (int t = 0; t < kThreads; ++t)
            ts.emplace_back([&, t] {
                start.arrive_and_wait();
                for (int i = 0; i < kPerThread; ++i) {
                    const std::size_t n = 600 + static_cast<std::size_t>((i * 7 + t) % 64);
                    auto* p = static_cast<unsigned char*>(slab.allocate(n));
                    p[0] = static_cast<unsigned char>(t);
                    p[n - 1] = static_cast<unsigned char>(i);
                    made[t].push_back(p);
                }
            });
    }
    BOOST_TEST(slab.stats().blocks == std::size_t{kThreads} * kPerThread);
    {
        std::vector<std::jthread> ts;
        for (int t = 0; t < kThreads; ++t)
            ts.emplace_back([&, t] {
                start.arrive_and_wait();
                const int owner = (t + 1) % kThreads;  // free another thread's blocks
                for (int i = 0; i < kPerThread; ++i) {
                    const std::size_t n = 600 + static_cast<std::size_t>((i * 7 + owner) % 64);
                    auto* p = static_cast<unsigned char*>(made[owner][i]);
                    // Boost.Test's assertions are not for other threads: damage is counted, checked below.
                    if (p[0] != static_cast<unsigned char>(owner) ||
                        p[n - 1] != static_cast<unsigned char>(i))
                        ++damaged;
                    slab.deallocate(p, n);
                }
            });
    }
    BOOST_TEST(damaged.load() == 0);
    BOOST_TEST(slab.stats().blocks == 0u);
}

BOOST_AUTO_TEST_CASE(answers_come_from_the_slab) {
    const auto before = FineSlab::answers().stats().blocks;
    const std::string body(650, 'b');
    AnswerPtr a =
        CachedAnswer::make({.status = 200, .body = body, .upstream_request_id = "mock-0123456789ab-1"});
    BOOST_TEST(FineSlab::answers().stats().blocks == before + 1);
    BOOST_TEST(a->body() == body);
    a.reset();
    BOOST_TEST(FineSlab::answers().stats().blocks == before);
}

BOOST_AUTO_TEST_CASE(keys_up_to_64_kib_are_stored_longer_ones_are_not) {
    LinkCache cache(options());
    const std::string longest(65535, 'k'), too_long(65536, 'k');
    BOOST_TEST(cache.put(longest, ok(T0 + 1h), T0));
    BOOST_TEST(cache.get(longest, T0).fresh);
    BOOST_TEST(cache.get(longest, T0).answer->body() == R"({"files":[],"bucket":"b"})");
    BOOST_TEST(!cache.put(too_long, ok(T0 + 1h), T0));
    BOOST_TEST(!cache.get(too_long, T0).answer);
    BOOST_TEST(cache.entries() == 1u);
    BOOST_TEST(cache.bytes() == ok(T0 + 1h)->footprint(longest.size()));
}

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
BOOST_AUTO_TEST_CASE(slab_poisons_free_blocks_and_rounding_for_asan) {
    // Under AddressSanitizer a slab block is as guarded as a malloc'ed one: its class's rounding and a freed
    // block are poisoned, so an overflow or a use after free is reported.
    FineSlab slab;
    auto* p = static_cast<char*>(slab.allocate(700));  // class 704
    BOOST_TEST(!__asan_address_is_poisoned(p));
    BOOST_TEST(!__asan_address_is_poisoned(p + 699));
    BOOST_TEST(__asan_address_is_poisoned(p + 700));
    BOOST_TEST(__asan_address_is_poisoned(p + 703));
    auto* q = static_cast<char*>(slab.allocate(700));
    BOOST_TEST(__asan_address_is_poisoned(p + 703));
    slab.deallocate(p, 700);
    BOOST_TEST(__asan_address_is_poisoned(p));
    BOOST_TEST(__asan_address_is_poisoned(p + 350));
    auto* r = static_cast<char*>(slab.allocate(700));  // reuses p's block
    BOOST_TEST((r == p));
    BOOST_TEST(!__asan_address_is_poisoned(r + 699));
    slab.deallocate(q, 700);
    slab.deallocate(r, 700);
}
#endif
