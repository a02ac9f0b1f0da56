#define BOOST_TEST_MODULE singleflight
#include <boost/test/unit_test.hpp>

#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/system/system_error.hpp>
#include <chrono>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "rdsgw/cache.hpp"

namespace rdsgw {
std::ostream& operator<<(std::ostream& os, SingleFlight::Role r) {
    return os << (r == SingleFlight::Role::leader ? "leader" : "waiter");
}
}  // namespace rdsgw

using namespace rdsgw;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

// Holds fetches open until release(). Each arriving coroutine waits on a timer of its own executor; the
// timer is only ever started and cancelled under the gate's mutex, so the gate works from any thread and
// with any executor (one-thread io_contexts or a thread pool).
class Gate {
  public:
    asio::awaitable<void> wait() {
        const asio::any_io_executor ex = co_await asio::this_coro::executor;
        auto timer = std::make_shared<asio::steady_timer>(ex, asio::steady_timer::time_point::max());
        auto start = [this, timer](auto handler) {  // named: see the GCC 12 note in gateway/cache.cpp
            std::lock_guard lk(mu_);
            ++arrived_;
            if (!open_) {
                timers_.push_back(timer);
                timer->async_wait(std::move(handler));
                return;
            }
            auto hex = asio::get_associated_executor(handler, timer->get_executor());
            asio::post(hex,
                       [h = std::move(handler)]() mutable { std::move(h)(boost::system::error_code{}); });
        };
        const auto token = asio::as_tuple(asio::use_awaitable);
        co_await asio::async_initiate<decltype(token), void(boost::system::error_code)>(start, token);
    }
    void release() {
        std::lock_guard lk(mu_);
        open_ = true;
        for (auto& t : timers_) t->cancel();
        timers_.clear();
    }
    int arrived() const {
        std::lock_guard lk(mu_);
        return arrived_;
    }

  private:
    mutable std::mutex mu_;
    bool open_ = false;
    int arrived_ = 0;
    std::vector<std::shared_ptr<asio::steady_timer>> timers_;
};

FetchPtr outcome(std::string body) {
    auto o = std::make_shared<FetchOutcome>();
    o->answer = CachedAnswer::make({.body = body});
    return o;
}

// A fetch that counts its executions, waits for the gate, then returns `result` (or throws when it is null).
std::function<asio::awaitable<FetchPtr>()> gated_fetch(std::atomic<int>& count, Gate& gate, FetchPtr result) {
    return [&count, &gate, result]() -> asio::awaitable<FetchPtr> {
        ++count;
        co_await gate.wait();
        if (!result) throw std::runtime_error("upstream exploded");
        co_return result;
    };
}

// Waits (bounded) for a condition that other threads make true.
template <class Pred>
bool eventually(Pred pred) {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

struct Record {
    SingleFlight::Result result;
    bool done = false;
};

// Spawns a caller of sf.run(key) on `ex` that stores what it got into `rec`.
// With `fetch_within`, a leader may fetch in its own coroutine (see SingleFlight::run).
void spawn_caller(asio::any_io_executor ex, SingleFlight& sf, std::string key,
                  std::function<asio::awaitable<FetchPtr>()> fetch, Record& rec,
                  std::optional<std::chrono::steady_clock::duration> fetch_within = {}) {
    asio::co_spawn(
        ex,
        [&sf, &rec, key = std::move(key), fetch = std::move(fetch), fetch_within]() -> asio::awaitable<void> {
            rec.result = co_await sf.run(key, fetch, {}, fetch_within);
            rec.done = true;
        },
        asio::detached);
}

// A leader of key "k" run on `ctx` whose caller can hang up (a cancellation signal), and what became of it.
struct CancellableLeader {
    asio::cancellation_signal hang_up;
    std::exception_ptr error;
    bool finished = false;
    bool returned = false;
    void spawn(asio::io_context& ctx, SingleFlight& sf, std::function<asio::awaitable<FetchPtr>()> fetch,
               std::optional<std::chrono::steady_clock::duration> fetch_within = {}) {
        asio::co_spawn(
            ctx,
            [this, &sf, fetch = std::move(fetch), fetch_within]() -> asio::awaitable<void> {
                co_await sf.run("k", fetch, {}, fetch_within);
                returned = true;
            },
            asio::bind_cancellation_slot(hang_up.slot(), [this](std::exception_ptr e) {
                error = e;
                finished = true;
            }));
    }
    // It stopped with operation_aborted instead of returning.
    void expect_aborted() const {
        BOOST_TEST(finished);
        BOOST_TEST(!returned);
        BOOST_TEST_REQUIRE(static_cast<bool>(error));
        try {
            std::rethrow_exception(error);
        } catch (const boost::system::system_error& e) {
            BOOST_TEST((e.code() == asio::error::operation_aborted));
        }
    }
};

}  // namespace

BOOST_AUTO_TEST_CASE(thousand_callers_on_four_io_contexts_share_one_fetch) {
    std::array<asio::io_context, 4> ctx{asio::io_context{1}, asio::io_context{1}, asio::io_context{1},
                                        asio::io_context{1}};
    SingleFlight sf({.max_waiters = 2000, .wait_timeout = 120s});
    std::atomic<int> fetches{0};
    Gate gate;
    const FetchPtr expected = outcome("the answer");
    constexpr int kCallers = 1000;
    std::vector<Record> recs(kCallers);
    for (int i = 0; i < kCallers; ++i)
        spawn_caller(ctx[i % 4].get_executor(), sf, "k", gated_fetch(fetches, gate, expected), recs[i]);
    std::vector<std::thread> threads;
    for (auto& c : ctx) threads.emplace_back([&c] { c.run(); });

    BOOST_TEST(eventually([&] { return sf.waiting() == kCallers && gate.arrived() == 1; }));
    BOOST_TEST(fetches == 1);
    gate.release();
    for (auto& t : threads) t.join();

    BOOST_TEST(fetches == 1);
    BOOST_TEST(sf.waiting() == 0u);
    int leaders = 0;
    int same = 0;
    for (const auto& r : recs) {
        BOOST_TEST_REQUIRE(r.done);
        leaders += r.result.role == SingleFlight::Role::leader ? 1 : 0;
        same += r.result.outcome == expected ? 1 : 0;
        BOOST_TEST(!r.result.timed_out);
        BOOST_TEST(!r.result.overflow);
    }
    BOOST_TEST(leaders == 1);
    BOOST_TEST(same == kCallers);
}

BOOST_AUTO_TEST_CASE(thousand_callers_on_a_thread_pool_share_one_fetch) {
    // The same on one multi-threaded executor: wake-ups and timeouts must not race there either.
    asio::thread_pool pool(4);
    SingleFlight sf({.max_waiters = 2000, .wait_timeout = 120s});
    std::atomic<int> fetches{0};
    Gate gate;
    const FetchPtr expected = outcome("pooled");
    constexpr int kCallers = 1000;
    std::vector<Record> recs(kCallers);
    for (auto& r : recs) spawn_caller(pool.get_executor(), sf, "k", gated_fetch(fetches, gate, expected), r);
    BOOST_TEST(eventually([&] { return sf.waiting() == kCallers && gate.arrived() == 1; }));
    gate.release();
    pool.join();
    BOOST_TEST(fetches == 1);
    BOOST_TEST(sf.waiting() == 0u);
    int same = 0;
    for (const auto& r : recs) same += r.done && r.result.outcome == expected ? 1 : 0;
    BOOST_TEST(same == kCallers);
}

BOOST_AUTO_TEST_CASE(different_keys_run_independently) {
    std::array<asio::io_context, 2> ctx{asio::io_context{1}, asio::io_context{1}};
    SingleFlight sf({.max_waiters = 1000, .wait_timeout = 120s});
    std::atomic<int> fetches_a{0}, fetches_b{0};
    Gate gate_a, gate_b;
    const FetchPtr out_a = outcome("a"), out_b = outcome("b");
    constexpr int kPerKey = 100;
    std::vector<Record> recs_a(kPerKey), recs_b(kPerKey);
    for (int i = 0; i < kPerKey; ++i) {
        spawn_caller(ctx[i % 2].get_executor(), sf, "a", gated_fetch(fetches_a, gate_a, out_a), recs_a[i]);
        spawn_caller(ctx[(i + 1) % 2].get_executor(), sf, "b", gated_fetch(fetches_b, gate_b, out_b),
                     recs_b[i]);
    }
    std::vector<std::thread> threads;
    for (auto& c : ctx) threads.emplace_back([&c] { c.run(); });

    BOOST_TEST(
        eventually([&] { return sf.waiting() == 2 * kPerKey && gate_a.arrived() + gate_b.arrived() == 2; }));
    gate_b.release();  // only b lands
    BOOST_TEST(eventually([&] { return sf.waiting() == kPerKey; }));
    gate_a.release();
    for (auto& t : threads) t.join();

    BOOST_TEST(fetches_a == 1);
    BOOST_TEST(fetches_b == 1);
    for (int i = 0; i < kPerKey; ++i) {
        BOOST_TEST(recs_a[i].result.outcome == out_a);
        BOOST_TEST(recs_b[i].result.outcome == out_b);
    }
}

BOOST_AUTO_TEST_CASE(b_lands_while_a_is_still_waiting) {
    // The same as above on one io_context, stepping it by hand: b's callers finish while a's still wait.
    asio::io_context ctx;
    SingleFlight sf({.max_waiters = 100, .wait_timeout = 120s});
    std::atomic<int> fa{0}, fb{0};
    Gate ga, gb;
    std::vector<Record> ra(5), rb(5);
    for (int i = 0; i < 5; ++i) {
        spawn_caller(ctx.get_executor(), sf, "a", gated_fetch(fa, ga, outcome("a")), ra[i]);
        spawn_caller(ctx.get_executor(), sf, "b", gated_fetch(fb, gb, outcome("b")), rb[i]);
    }
    ctx.poll();
    BOOST_TEST(sf.waiting() == 10u);
    gb.release();
    ctx.poll();
    for (int i = 0; i < 5; ++i) {
        BOOST_TEST(rb[i].done);
        BOOST_TEST(!ra[i].done);
        BOOST_TEST_REQUIRE(rb[i].result.outcome);
        BOOST_TEST(rb[i].result.outcome->answer->body() == "b");
    }
    BOOST_TEST(sf.waiting() == 5u);
    ga.release();
    ctx.run();
    for (int i = 0; i < 5; ++i) {
        BOOST_TEST_REQUIRE(ra[i].result.outcome);
        BOOST_TEST(ra[i].result.outcome->answer->body() == "a");
    }
    BOOST_TEST(fa == 1);
    BOOST_TEST(fb == 1);
}

BOOST_AUTO_TEST_CASE(a_throwing_fetch_fails_its_waiters_once_and_the_next_call_starts_anew) {
    asio::io_context ctx;
    SingleFlight sf({.max_waiters = 100, .wait_timeout = 120s});
    std::atomic<int> fetches{0};
    Gate gate;
    std::vector<Record> recs(10);
    for (auto& r : recs) spawn_caller(ctx.get_executor(), sf, "k", gated_fetch(fetches, gate, nullptr), r);
    ctx.poll();
    BOOST_TEST(sf.waiting() == 10u);
    gate.release();
    ctx.run();
    for (const auto& r : recs) {
        BOOST_TEST(r.done);
        BOOST_TEST(!r.result.outcome);
        BOOST_TEST(!r.result.timed_out);
        BOOST_TEST(!r.result.overflow);
    }
    BOOST_TEST(fetches == 1);
    BOOST_TEST(sf.waiting() == 0u);

    // The failure is not remembered: the next call fetches again.
    const FetchPtr good = outcome("good");
    Gate open;
    open.release();
    Record again;
    ctx.restart();
    spawn_caller(ctx.get_executor(), sf, "k", gated_fetch(fetches, open, good), again);
    ctx.run();
    BOOST_TEST(fetches == 2);
    BOOST_TEST(again.result.role == SingleFlight::Role::leader);
    BOOST_TEST(again.result.outcome == good);
}

BOOST_AUTO_TEST_CASE(a_fetch_that_throws_before_its_first_suspension_or_is_empty) {
    asio::io_context ctx;
    SingleFlight sf({.max_waiters = 100, .wait_timeout = 120s});
    Record thrower, empty;
    spawn_caller(
        ctx.get_executor(), sf, "t",
        []() -> asio::awaitable<FetchPtr> { throw std::logic_error("before any co_await"); }, thrower);
    spawn_caller(ctx.get_executor(), sf, "e", {}, empty);  // std::bad_function_call
    ctx.run();
    BOOST_TEST(thrower.done);
    BOOST_TEST(!thrower.result.outcome);
    BOOST_TEST(!thrower.result.timed_out);
    BOOST_TEST(empty.done);
    BOOST_TEST(!empty.result.outcome);
    BOOST_TEST(!empty.result.timed_out);
}

BOOST_AUTO_TEST_CASE(a_fetch_that_completes_immediately) {
    asio::io_context ctx;
    SingleFlight sf({.max_waiters = 100, .wait_timeout = 120s});
    const FetchPtr good = outcome("now");
    Record r;
    spawn_caller(
        ctx.get_executor(), sf, "k", [good]() -> asio::awaitable<FetchPtr> { co_return good; }, r);
    ctx.run();
    BOOST_TEST(r.done);
    BOOST_TEST(r.result.outcome == good);
    BOOST_TEST(r.result.role == SingleFlight::Role::leader);
}

BOOST_AUTO_TEST_CASE(wait_timeout_gives_timed_out_and_the_fetch_goes_on) {
    asio::io_context ctx;
    SingleFlight sf({.max_waiters = 100, .wait_timeout = 1s});
    std::atomic<int> fetches{0};
    Gate gate;
    const FetchPtr late = outcome("late");
    Record leader;
    spawn_caller(ctx.get_executor(), sf, "k", gated_fetch(fetches, gate, late), leader);
    while (!leader.done) ctx.run_one();  // the 1 s wait timer is the only thing that can finish it
    BOOST_TEST(leader.result.timed_out);
    BOOST_TEST(!leader.result.outcome);
    BOOST_TEST(!leader.result.overflow);
    BOOST_TEST(leader.result.role == SingleFlight::Role::leader);
    BOOST_TEST(sf.waiting() == 0u);

    // The fetch is still in flight: a new caller joins it instead of starting another.
    Record joiner;
    spawn_caller(ctx.get_executor(), sf, "k", gated_fetch(fetches, gate, outcome("other")), joiner);
    ctx.poll();
    BOOST_TEST(sf.waiting() == 1u);
    gate.release();
    ctx.run();
    BOOST_TEST(joiner.done);
    BOOST_TEST(joiner.result.role == SingleFlight::Role::waiter);
    BOOST_TEST(joiner.result.outcome == late);
    BOOST_TEST(!joiner.result.timed_out);
    BOOST_TEST(fetches == 1);
}

BOOST_AUTO_TEST_CASE(max_waiters_overflow_is_immediate) {
    asio::io_context ctx;
    SingleFlight sf({.max_waiters = 3, .wait_timeout = 120s});
    std::atomic<int> fetches{0};
    Gate gate;
    const FetchPtr expected = outcome("x");
    std::vector<Record> recs(5);
    for (auto& r : recs) spawn_caller(ctx.get_executor(), sf, "k", gated_fetch(fetches, gate, expected), r);
    ctx.poll();  // nothing is released yet: only overflowed callers can have finished
    int overflowed = 0;
    for (const auto& r : recs) {
        if (!r.done) continue;
        ++overflowed;
        BOOST_TEST(r.result.overflow);
        BOOST_TEST(!r.result.outcome);
        BOOST_TEST(r.result.role == SingleFlight::Role::waiter);
    }
    BOOST_TEST(overflowed == 2);
    BOOST_TEST(sf.waiting() == 3u);
    gate.release();
    ctx.run();
    int served = 0;
    for (const auto& r : recs) served += r.result.outcome == expected ? 1 : 0;
    BOOST_TEST(served == 3);
    BOOST_TEST(fetches == 1);
}

BOOST_AUTO_TEST_CASE(a_cancelled_leader_does_not_cancel_the_fetch) {
    asio::io_context ctx;
    SingleFlight sf({.max_waiters = 100, .wait_timeout = 120s});
    std::atomic<int> fetches{0};
    Gate gate;
    const FetchPtr expected = outcome("survives");
    CancellableLeader leader;
    leader.spawn(ctx, sf, gated_fetch(fetches, gate, expected));
    ctx.poll();
    BOOST_TEST(gate.arrived() == 1);
    std::vector<Record> recs(3);
    for (auto& r : recs) spawn_caller(ctx.get_executor(), sf, "k", gated_fetch(fetches, gate, expected), r);
    ctx.poll();
    BOOST_TEST(sf.waiting() == 4u);

    leader.hang_up.emit(asio::cancellation_type::terminal);  // the leader's client went away
    ctx.poll();
    leader.expect_aborted();
    BOOST_TEST(sf.waiting() == 3u);
    for (const auto& r : recs) BOOST_TEST(!r.done);

    gate.release();
    ctx.run();
    for (const auto& r : recs) {
        BOOST_TEST(r.done);
        BOOST_TEST(r.result.outcome == expected);
    }
    BOOST_TEST(fetches == 1);
}

BOOST_AUTO_TEST_CASE(an_abandoned_leader_context_fails_waiters_elsewhere_fast) {
    // The leader (and so the fetch) lives on an io_context that is destroyed without ever finishing: the
    // waiters on another io_context get a null outcome at once instead of waiting for their timeout.
    auto leader_ctx = std::make_unique<asio::io_context>(1);
    asio::io_context other(1);
    SingleFlight sf({.max_waiters = 100, .wait_timeout = 120s});
    std::atomic<int> fetches{0};
    Gate gate;
    Record leader;
    spawn_caller(leader_ctx->get_executor(), sf, "k", gated_fetch(fetches, gate, outcome("never")), leader);
    leader_ctx->poll();
    BOOST_TEST(gate.arrived() == 1);
    std::vector<Record> recs(3);
    for (auto& r : recs) spawn_caller(other.get_executor(), sf, "k", gated_fetch(fetches, gate, nullptr), r);
    other.poll();
    BOOST_TEST(sf.waiting() == 4u);

    gate.release();      // the fetch's wake-up is queued on leader_ctx, which never runs it
    leader_ctx.reset();  // destroys the leader's coroutine and the fetch's
    BOOST_TEST(sf.waiting() == 3u);
    const auto start = std::chrono::steady_clock::now();
    other.run();
    BOOST_TEST((std::chrono::steady_clock::now() - start < 60s));
    for (const auto& r : recs) {
        BOOST_TEST(r.done);
        BOOST_TEST(!r.result.outcome);
        BOOST_TEST(!r.result.timed_out);
    }
    BOOST_TEST(!leader.done);
    BOOST_TEST(fetches == 1);

    // And the key is free again.
    Record next;
    Gate open;
    open.release();
    other.restart();
    spawn_caller(other.get_executor(), sf, "k", gated_fetch(fetches, open, outcome("next")), next);
    other.run();
    BOOST_TEST_REQUIRE(next.result.outcome);
    BOOST_TEST(next.result.outcome->answer->body() == "next");
}

BOOST_AUTO_TEST_CASE(a_caller_that_arrives_after_the_flight_left_takes_the_stored_answer) {
    // The interleaving that made two upstream calls for one cold burst: B missed the cache while A's fetch
    // was in flight, A's fetch stored its answer and left the map, and only then did B reach run(). B must
    // find the stored answer (recheck) instead of starting a second fetch.
    asio::io_context ctx{1};
    SingleFlight sf({.max_waiters = 10, .wait_timeout = 60s});
    std::mutex store_mu;
    FetchPtr stored;  // stands for the cache
    auto recheck = [&]() -> FetchPtr {
        std::lock_guard lk(store_mu);
        return stored;
    };
    const FetchPtr answer = outcome("stored by A");
    std::atomic<int> fetches{0};
    auto storing_fetch = [&]() -> asio::awaitable<FetchPtr> {
        ++fetches;
        {
            std::lock_guard lk(store_mu);
            stored = answer;  // a flight stores before it completes
        }
        co_return answer;
    };
    int recheck_calls = 0;
    SingleFlight::Result a, b, c;
    asio::co_spawn(
        ctx,
        [&]() -> asio::awaitable<void> {
            a = co_await sf.run("k", storing_fetch, [&] {
                ++recheck_calls;
                return recheck();
            });
            // A's flight has left the map now; B arrives.
            b = co_await sf.run("k", storing_fetch, [&] {
                ++recheck_calls;
                return recheck();
            });
            // Without a recheck (a caller that bypasses the cache) the next call starts anew.
            c = co_await sf.run("k", storing_fetch);
        },
        asio::detached);
    ctx.run();
    BOOST_TEST(a.role == SingleFlight::Role::leader);
    BOOST_TEST(!a.rechecked);
    BOOST_TEST(a.outcome == answer);
    BOOST_TEST(b.rechecked);
    BOOST_TEST(b.role == SingleFlight::Role::waiter);
    BOOST_TEST(b.outcome == answer);
    BOOST_TEST(recheck_calls == 2);  // A found nothing, B found A's answer
    BOOST_TEST(c.role == SingleFlight::Role::leader);
    BOOST_TEST(fetches == 2);  // A and C; never B
}

BOOST_AUTO_TEST_CASE(waiters_of_a_flight_in_progress_do_not_recheck) {
    asio::io_context ctx{1};
    SingleFlight sf({.max_waiters = 10, .wait_timeout = 60s});
    std::atomic<int> fetches{0};
    Gate gate;
    const FetchPtr expected = outcome("gated");
    int rechecks = 0;
    std::vector<Record> recs(3);
    for (auto& r : recs) {
        asio::co_spawn(
            ctx,
            [&sf, &r, &rechecks, fetch = gated_fetch(fetches, gate, expected)]() -> asio::awaitable<void> {
                r.result = co_await sf.run("k", fetch, [&rechecks]() -> FetchPtr {
                    ++rechecks;
                    return nullptr;
                });
                r.done = true;
            },
            asio::detached);
    }
    asio::co_spawn(
        ctx,
        [&]() -> asio::awaitable<void> {
            gate.release();
            co_return;
        },
        asio::detached);
    ctx.run();
    BOOST_TEST(fetches == 1);
    BOOST_TEST(rechecks == 1);  // only the caller that found no flight
    for (auto& r : recs) BOOST_TEST((r.done && r.result.outcome == expected));
}

// ---- A leader whose fetch ends within its wait fetches in its own coroutine (the path every miss takes).

namespace {
// A fetch known to end well within the tests' wait_timeout.
std::chrono::steady_clock::duration soon() {
    return 10s;
}
}  // namespace

BOOST_AUTO_TEST_CASE(a_leader_that_fetches_itself_serves_waiters_on_other_io_contexts) {
    asio::io_context leader_ctx(1), other(1);
    SingleFlight sf({.max_waiters = 100, .wait_timeout = 120s});
    std::atomic<int> fetches{0};
    Gate gate;
    const FetchPtr expected = outcome("inline");
    Record leader;
    spawn_caller(leader_ctx.get_executor(), sf, "k", gated_fetch(fetches, gate, expected), leader, soon());
    leader_ctx.poll();
    BOOST_TEST(gate.arrived() == 1);
    std::vector<Record> recs(3);
    for (auto& r : recs)
        spawn_caller(other.get_executor(), sf, "k", gated_fetch(fetches, gate, nullptr), r, soon());
    other.poll();
    BOOST_TEST(sf.waiting() == 4u);  // the fetching leader counts as waiting
    gate.release();
    leader_ctx.run();
    other.run();
    BOOST_TEST(leader.done);
    BOOST_TEST(leader.result.role == SingleFlight::Role::leader);
    BOOST_TEST(leader.result.outcome == expected);
    for (const auto& r : recs) {
        BOOST_TEST(r.done);
        BOOST_TEST(r.result.role == SingleFlight::Role::waiter);
        BOOST_TEST(r.result.outcome == expected);
    }
    BOOST_TEST(fetches == 1);
    BOOST_TEST(sf.waiting() == 0u);
}

BOOST_AUTO_TEST_CASE(a_cancelled_leader_that_fetches_itself_finishes_the_fetch_then_stops) {
    asio::io_context ctx;
    SingleFlight sf({.max_waiters = 100, .wait_timeout = 120s});
    std::atomic<int> fetches{0};
    Gate gate;
    const FetchPtr expected = outcome("survives");
    CancellableLeader leader;
    leader.spawn(ctx, sf, gated_fetch(fetches, gate, expected), soon());
    ctx.poll();
    BOOST_TEST(gate.arrived() == 1);
    std::vector<Record> recs(3);
    for (auto& r : recs) spawn_caller(ctx.get_executor(), sf, "k", gated_fetch(fetches, gate, nullptr), r);
    ctx.poll();

    leader.hang_up.emit(asio::cancellation_type::terminal);  // does not reach the fetch
    ctx.poll();
    BOOST_TEST(!leader.finished);
    for (const auto& r : recs) BOOST_TEST(!r.done);

    gate.release();
    ctx.run();
    for (const auto& r : recs) {  // the fetch finished for the waiters
        BOOST_TEST(r.done);
        BOOST_TEST(r.result.outcome == expected);
    }
    BOOST_TEST(fetches == 1);
    leader.expect_aborted();  // and then the leader stopped, as it was asked to
}

BOOST_AUTO_TEST_CASE(the_leader_runs_the_fetch_in_its_own_coroutine) {
    // Run in the leader's coroutine, a miss takes fewer trips through the event loop than a spawned fetch
    // and a wait-timer wake-up: io_context::run() counts the handlers it ran.
    SingleFlight sf({.max_waiters = 100, .wait_timeout = 120s});
    std::atomic<int> fetches{0};
    Gate gate;
    gate.release();
    auto handlers_for_one_miss = [&](std::string key,
                                     std::optional<std::chrono::steady_clock::duration> ends_by) {
        asio::io_context ctx;
        Record r;
        spawn_caller(ctx.get_executor(), sf, key, gated_fetch(fetches, gate, outcome(key)), r, ends_by);
        const std::size_t n = ctx.run();
        BOOST_TEST(r.done);
        BOOST_TEST((r.result.outcome && r.result.outcome->answer->body() == key));
        return n;
    };
    const std::size_t in_own_coroutine = handlers_for_one_miss("a", soon());
    const std::size_t spawned = handlers_for_one_miss("b", {});
    BOOST_TEST(in_own_coroutine < spawned);
    BOOST_TEST(fetches == 2);
}

BOOST_AUTO_TEST_CASE(after_fetching_itself_the_leader_can_be_cancelled_again) {
    // run() holds cancellation back only during the fetch: a later wait of the same coroutine is cancelled.
    asio::io_context ctx;
    SingleFlight sf({.max_waiters = 100, .wait_timeout = 120s});
    std::atomic<int> fetches{0};
    Gate gate;
    gate.release();
    asio::cancellation_signal hang_up;
    bool got_outcome = false, finished = false;
    boost::system::error_code later_wait;
    asio::co_spawn(
        ctx,
        [&]() -> asio::awaitable<void> {
            const auto r = co_await sf.run("k", gated_fetch(fetches, gate, outcome("x")), {}, soon());
            got_outcome = static_cast<bool>(r.outcome);
            asio::steady_timer t(co_await asio::this_coro::executor, asio::steady_timer::time_point::max());
            co_await t.async_wait(asio::redirect_error(asio::use_awaitable, later_wait));
        },
        asio::bind_cancellation_slot(hang_up.slot(), [&](std::exception_ptr) { finished = true; }));
    ctx.poll();
    BOOST_TEST(got_outcome);
    BOOST_TEST(!finished);
    hang_up.emit(asio::cancellation_type::terminal);
    ctx.poll();
    BOOST_TEST(finished);
    BOOST_TEST((later_wait == asio::error::operation_aborted));
}

BOOST_AUTO_TEST_CASE(an_abandoned_leader_that_fetches_itself_fails_waiters_elsewhere_fast) {
    auto leader_ctx = std::make_unique<asio::io_context>(1);
    asio::io_context other(1);
    SingleFlight sf({.max_waiters = 100, .wait_timeout = 120s});
    std::atomic<int> fetches{0};
    Gate gate;
    Record leader;
    spawn_caller(leader_ctx->get_executor(), sf, "k", gated_fetch(fetches, gate, outcome("never")), leader,
                 soon());
    leader_ctx->poll();
    BOOST_TEST(gate.arrived() == 1);
    std::vector<Record> recs(2);
    for (auto& r : recs) spawn_caller(other.get_executor(), sf, "k", gated_fetch(fetches, gate, nullptr), r);
    other.poll();
    BOOST_TEST(sf.waiting() == 3u);

    gate.release();      // the fetch's wake-up is queued on leader_ctx, which never runs it
    leader_ctx.reset();  // destroys the leader's coroutine, and the fetch inside it
    BOOST_TEST(sf.waiting() == 2u);
    other.run();
    for (const auto& r : recs) {
        BOOST_TEST(r.done);
        BOOST_TEST(!r.result.outcome);
        BOOST_TEST(!r.result.timed_out);
    }
    BOOST_TEST(!leader.done);
}

BOOST_AUTO_TEST_CASE(a_leader_whose_fetch_may_outlast_its_wait_keeps_the_wait_timeout) {
    asio::io_context ctx;
    SingleFlight sf({.max_waiters = 100, .wait_timeout = 1s});
    std::atomic<int> fetches{0};
    Gate gate;
    Record leader;
    spawn_caller(ctx.get_executor(), sf, "k", gated_fetch(fetches, gate, outcome("late")), leader,
                 std::chrono::steady_clock::duration(1h));
    while (!leader.done) ctx.run_one();  // the 1 s wait timer is the only thing that can finish it
    BOOST_TEST(leader.result.timed_out);
    BOOST_TEST(!leader.result.outcome);
    gate.release();
    ctx.run();
    BOOST_TEST(fetches == 1);
}

BOOST_AUTO_TEST_CASE(max_waiters_counts_a_leader_that_fetches_itself) {
    asio::io_context ctx;
    SingleFlight sf({.max_waiters = 3, .wait_timeout = 120s});
    std::atomic<int> fetches{0};
    Gate gate;
    const FetchPtr expected = outcome("x");
    std::vector<Record> recs(4);
    spawn_caller(ctx.get_executor(), sf, "k", gated_fetch(fetches, gate, expected), recs[0], soon());
    ctx.poll();
    for (std::size_t i = 1; i < recs.size(); ++i)
        spawn_caller(ctx.get_executor(), sf, "k", gated_fetch(fetches, gate, expected), recs[i]);
    ctx.poll();
    BOOST_TEST(recs[3].done);  // the fourth caller: the leader and two waiters are three
    BOOST_TEST(recs[3].result.overflow);
    gate.release();
    ctx.run();
    for (std::size_t i = 0; i < 3; ++i) BOOST_TEST(recs[i].result.outcome == expected);
    BOOST_TEST(fetches == 1);
}

// SingleFlight::lead(): the leader's half of run() without a coroutine (Gateway::continue_async's path).
BOOST_AUTO_TEST_CASE(a_lead_serves_the_waiters_that_join_through_run) {
    asio::io_context ctx(1), other(1);
    SingleFlight sf({.max_waiters = 100, .wait_timeout = 120s});
    SingleFlight::Lead lead = sf.lead("k");
    BOOST_TEST_REQUIRE(lead.leads());
    BOOST_TEST(!lead.found());
    BOOST_TEST(sf.waiting() == 1u);  // the leader counts as waiting, as run()'s does
    // A second lead() for the key neither leads nor finds: it joins through run(), whose fetch never runs.
    SingleFlight::Lead second = sf.lead("k");
    BOOST_TEST(!second.leads());
    BOOST_TEST(!second.found());
    std::atomic<int> fetches{0};
    Gate gate;
    std::vector<Record> recs(3);
    spawn_caller(ctx.get_executor(), sf, "k", gated_fetch(fetches, gate, nullptr), recs[0], soon());
    spawn_caller(other.get_executor(), sf, "k", gated_fetch(fetches, gate, nullptr), recs[1], soon());
    spawn_caller(other.get_executor(), sf, "k", gated_fetch(fetches, gate, nullptr), recs[2]);
    ctx.poll();
    other.poll();
    BOOST_TEST(sf.waiting() == 4u);
    BOOST_TEST(!recs[0].done);
    const FetchPtr expected = outcome("led");
    lead.finish(expected);
    ctx.run();
    other.run();
    for (const auto& r : recs) {
        BOOST_TEST(r.done);
        BOOST_TEST(r.result.role == SingleFlight::Role::waiter);
        BOOST_TEST(r.result.outcome == expected);
    }
    BOOST_TEST(fetches == 0);
    BOOST_TEST(sf.waiting() == 0u);
    // The flight has left: the next lead() leads anew.
    BOOST_TEST(sf.lead("k").leads());
}

BOOST_AUTO_TEST_CASE(a_lead_finds_what_the_recheck_finds_and_claims_nothing) {
    SingleFlight sf({.max_waiters = 100, .wait_timeout = 120s});
    const FetchPtr stored = outcome("stored");
    int rechecks = 0;
    SingleFlight::Lead lead = sf.lead("k", [&]() -> FetchPtr {
        ++rechecks;
        return stored;
    });
    BOOST_TEST(!lead.leads());
    BOOST_TEST(lead.found() == stored);
    BOOST_TEST(rechecks == 1);
    BOOST_TEST(sf.waiting() == 0u);
    BOOST_TEST(sf.lead("k", [] { return FetchPtr(); }).leads());  // no flight was left behind
}

BOOST_AUTO_TEST_CASE(a_lead_does_not_recheck_while_a_flight_is_in_progress) {
    asio::io_context ctx(1);
    SingleFlight sf({.max_waiters = 100, .wait_timeout = 120s});
    std::atomic<int> fetches{0};
    Gate gate;
    Record leader;
    spawn_caller(ctx.get_executor(), sf, "k", gated_fetch(fetches, gate, outcome("run")), leader, soon());
    ctx.poll();
    BOOST_TEST_REQUIRE(gate.arrived() == 1);
    int rechecks = 0;
    SingleFlight::Lead lead = sf.lead("k", [&]() -> FetchPtr {
        ++rechecks;
        return outcome("stale");
    });
    BOOST_TEST(!lead.leads());
    BOOST_TEST(!lead.found());
    BOOST_TEST(rechecks == 0);
    gate.release();
    ctx.run();
    BOOST_TEST(leader.done);
}

BOOST_AUTO_TEST_CASE(an_unfinished_lead_fails_its_waiters_once) {
    asio::io_context ctx(1);
    SingleFlight sf({.max_waiters = 100, .wait_timeout = 120s});
    std::atomic<int> fetches{0};
    Gate gate;
    std::vector<Record> recs(2);
    {
        SingleFlight::Lead lead = sf.lead("k");
        BOOST_TEST_REQUIRE(lead.leads());
        for (auto& r : recs)
            spawn_caller(ctx.get_executor(), sf, "k", gated_fetch(fetches, gate, nullptr), r);
        ctx.poll();
        BOOST_TEST(sf.waiting() == 3u);
        SingleFlight::Lead moved = std::move(lead);  // the moved-from Lead completes nothing
        BOOST_TEST(!lead.leads());
        BOOST_TEST(moved.leads());
    }  // destroyed unfinished: a fetch that threw, or a coroutine destroyed mid-fetch
    ctx.run();
    for (const auto& r : recs) {
        BOOST_TEST(r.done);
        BOOST_TEST(!r.result.outcome);
        BOOST_TEST(!r.result.timed_out);
    }
    BOOST_TEST(fetches == 0);
    BOOST_TEST(sf.waiting() == 0u);
}
