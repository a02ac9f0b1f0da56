// The upstream protection policies of include/rdsgw/resilience.hpp, table by table, with injected time and
// random draws: backoff, Retry-After, the retry budget, the circuit breaker (issue 14: fast re-probing and a
// probe that never reports) and the concurrency limiter (a real io_context, no network).
#define BOOST_TEST_MODULE resilience
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <climits>
#include <cmath>
#include <future>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "rdsgw/resilience.hpp"

using namespace rdsgw;
using namespace std::chrono;
using namespace std::chrono_literals;
namespace asio = boost::asio;
using State = CircuitBreaker::State;

namespace rdsgw {
std::ostream& operator<<(std::ostream& os, CircuitBreaker::State s) {
    static const char* const names[] = {"closed", "half_open", "open"};
    return os << names[static_cast<int>(s)];
}
}  // namespace rdsgw

namespace {

// Milliseconds as a plain number (Boost.Test cannot print chrono durations).
long long ms(milliseconds d) {
    return d.count();
}
// -1 stands for "no value" (malformed).
constexpr long long kNone = -1;
long long ms(std::optional<milliseconds> d) {
    return d ? d->count() : kNone;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------
// backoff

BOOST_AUTO_TEST_CASE(backoff_cap_doubles_per_retry_up_to_the_max_without_overflow) {
    struct Case {
        unsigned retry;
        long long base, max, cap;
    };
    const long long huge = std::numeric_limits<long long>::max();
    const Case cases[] = {
        {0, 100, 10000, 100},  // retry 0 reads as the first retry
        {1, 100, 10000, 100},
        {2, 100, 10000, 200},
        {3, 100, 10000, 400},
        {7, 100, 10000, 6400},
        {8, 100, 10000, 10000},  // 12800 capped
        {9, 100, 10000, 10000},
        {63, 100, 10000, 10000},
        {64, 100, 10000, 10000},
        {1000, 100, 10000, 10000},
        {UINT_MAX, 100, 10000, 10000},
        {UINT_MAX, 1, huge, huge},   // 2^(2^32) ms: capped, not wrapped
        {63, 1, huge, 1LL << 62},    // the largest shift that fits
        {64, 1, huge, huge},         // 2^63 does not fit: the max
        {2, 1LL << 62, huge, huge},  // 2^63 does not fit: the max
        {1, 500, 100, 100},          // base above max: the max
        {5, 0, 10000, 0},            // no base, no wait
        {5, -10, 10000, 0},          // negative base counts as zero
        {5, 100, -1, 0},             // negative max counts as zero
    };
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT("retry " << c.retry << " base " << c.base << " max " << c.max) {
            BOOST_TEST(ms(backoff_cap(c.retry, milliseconds(c.base), milliseconds(c.max))) == c.cap);
        }
    }
}

BOOST_AUTO_TEST_CASE(backoff_delay_maps_the_draw_onto_zero_to_cap) {
    struct Case {
        unsigned retry;
        double u;
        long long delay;
    };
    // base 100 ms, max 1000 ms: caps 100, 200, 400, 800, 1000...
    const Case cases[] = {
        {1, 0.0, 0},
        {1, 0.5, 50},        // floor(0.5 * 101)
        {1, 0.999999, 100},  // the top of the range is reachable: [0, cap], not [0, cap)
        {3, 0.25, 100},      // floor(0.25 * 401)
        {3, 0.9999999, 400},
        {4, 0.5, 400},   // floor(0.5 * 801)
        {20, 0.5, 500},  // capped at max
        {20, 0.999999999, 1000},
        {1, 1.0, 100},  // out of range: clamped
        {1, 7.0, 100},
        {1, -0.5, 0},
        {1, std::nan(""), 0},
    };
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT("retry " << c.retry << " u " << c.u) {
            BOOST_TEST(ms(backoff_delay(c.retry, 100ms, 1000ms, c.u)) == c.delay);
        }
    }
    // Huge retry numbers with the largest max: no overflow in the multiplication either.
    const milliseconds top(std::numeric_limits<long long>::max());
    BOOST_TEST(backoff_delay(UINT_MAX, 1ms, top, 0.999999999).count() >= 0);
    BOOST_TEST(backoff_delay(UINT_MAX, 1ms, top, 0.0).count() == 0);
}

BOOST_AUTO_TEST_CASE(backoff_delay_with_its_own_generator_covers_the_full_range) {
    // 20000 draws over the 101 values of [0, 100]: missing either end has probability below e^-190.
    long long lo = LLONG_MAX, hi = LLONG_MIN, sum = 0;
    const int n = 20000;
    for (int i = 0; i < n; ++i) {
        const long long d = ms(backoff_delay(1, 100ms, 1000ms));
        lo = std::min(lo, d);
        hi = std::max(hi, d);
        sum += d;
    }
    BOOST_TEST(lo == 0);
    BOOST_TEST(hi == 100);
    const double mean = static_cast<double>(sum) / n;  // 50 +- 0.2 (one standard error)
    BOOST_TEST(mean > 45.0);
    BOOST_TEST(mean < 55.0);
    for (int i = 0; i < 1000; ++i) BOOST_TEST_REQUIRE(ms(backoff_delay(UINT_MAX, 100ms, 2000ms)) <= 2000);
}

// ---------------------------------------------------------------------------------------------------------
// Retry-After

BOOST_AUTO_TEST_CASE(retry_after_delta_seconds) {
    const auto now = sys_days{2024y / 1 / 1} + 12h;
    const long long cap = ms(kMaxRetryAfter);
    BOOST_TEST(cap == 3600 * 1000);
    struct Case {
        std::string text;
        long long ms;
    };
    const Case cases[] = {
        {"0", 0},
        {"1", 1000},
        {"120", 120000},
        {" 120", 120000},
        {"120 ", 120000},
        {" \t120\t ", 120000},  // optional white space is spaces and tabs
        {"007", 7000},
        {"000000000000000000000000000000005", 5000},  // leading zeros are not "too many digits"
        {"3600", cap},
        {"3601", cap},
        {"999999", cap},
        {"99999999999999999999999999999999999999", cap},  // no overflow: capped
        {"", kNone},
        {" \t ", kNone},
        {"-5", kNone},
        {"+5", kNone},
        {"1.5", kNone},
        {"12a", kNone},
        {"120s", kNone},
        {"1, <script>", kNone},
        {"1,2", kNone},
        {"1 2", kNone},
        {"\n120", kNone},  // a line break is not optional white space
        {std::string("1\0"
                     "2",
                     3),
         kNone},
    };
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT("Retry-After [" << c.text << "]") {
            BOOST_TEST(ms(parse_retry_after(c.text, now)) == c.ms);
        }
    }
}

BOOST_AUTO_TEST_CASE(retry_after_http_date_is_the_difference_capped) {
    // Half a second into 12:00:00 (the date's resolution is seconds: the whole second counts).
    const auto now = sys_days{2024y / 1 / 1} + 12h + 500ms;
    const long long cap = ms(kMaxRetryAfter);
    struct Case {
        std::string text;
        long long ms;
    };
    const Case cases[] = {
        {"Mon, 01 Jan 2024 12:00:30 GMT", 30000},
        {"Mon, 01 Jan 2024 12:10:00 GMT", 600000},
        {"  Mon, 01 Jan 2024 12:00:30 GMT\t", 30000},
        {"Mon, 01 Jan 2024 12:00:00 GMT", 0},  // now
        {"Mon, 01 Jan 2024 11:00:00 GMT", 0},  // past
        {"Thu, 01 Jan 1970 00:00:00 GMT", 0},
        {"Sat, 01 Jan 0000 00:00:00 GMT", 0},  // far past: no underflow
        {"Mon, 01 Jan 2024 13:00:00 GMT", cap},
        {"Mon, 01 Jan 2024 13:00:01 GMT", cap},
        {"Fri, 01 Jan 3000 00:00:00 GMT", cap},  // issue 15: overflowed to "retry at once"
        {"Fri, 31 Dec 9999 23:59:59 GMT", cap},
        {"Monday, 01-Jan-24 12:00:10 GMT", 10000},  // obsolete RFC 850 form
        {"Mon Jan  1 12:00:20 2024", 20000},        // obsolete asctime form
        {"Mon, 01 Jan 2024 12:00:30 UTC", kNone},
        {"Mon, 32 Jan 2024 12:00:30 GMT", kNone},
        {"Mon, 01 Jan 2024 12:00:30 GMT x", kNone},
        {"Mon, 01 Jan 99999 12:00:30 GMT", kNone},
        {"tomorrow", kNone},
    };
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT("Retry-After [" << c.text << "]") {
            BOOST_TEST(ms(parse_retry_after(c.text, now)) == c.ms);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// retry budget

BOOST_AUTO_TEST_CASE(retry_budget_floor_ratio_and_release) {
    RetryBudget b(0.2, 3);
    auto start_all = [&b] {
        int n = 0;
        while (b.try_start_retry()) ++n;
        return n;
    };
    // No active requests: the floor of 3 concurrent retries.
    BOOST_TEST(start_all() == 3);
    b.retry_finished();
    BOOST_TEST(start_all() == 1);  // one released, one more allowed
    for (int i = 0; i < 3; ++i) b.retry_finished();

    // 100 active requests: 20 % of them.
    for (int i = 0; i < 100; ++i) b.request_started();
    BOOST_TEST(b.active() == 100u);
    BOOST_TEST(start_all() == 20);
    // Below the floor of active requests again: the 20 in flight stay, none more until under 3.
    for (int i = 0; i < 100; ++i) b.request_finished();
    BOOST_TEST(b.active() == 0u);
    BOOST_TEST(!b.try_start_retry());
    for (int i = 0; i < 18; ++i) b.retry_finished();
    BOOST_TEST(start_all() == 1);  // 2 in flight: one more reaches the floor of 3

    RetryBudget none(0.0, 0);
    for (int i = 0; i < 50; ++i) none.request_started();
    BOOST_TEST(!none.try_start_retry());

    // The ratio rounds down: 9 active * 0.2 = 1.8, the floor of 1 decides.
    RetryBudget small(0.2, 1);
    for (int i = 0; i < 9; ++i) small.request_started();
    BOOST_TEST(small.try_start_retry());
    BOOST_TEST(!small.try_start_retry());
    for (int i = 0; i < 1; ++i) small.request_started();  // 10 * 0.2 = 2
    BOOST_TEST(small.try_start_retry());
    BOOST_TEST(!small.try_start_retry());
}

// ---------------------------------------------------------------------------------------------------------
// circuit breaker

namespace {

const steady_clock::time_point t0 = steady_clock::time_point{} + 10h;

// A breaker with a listener that records every transition.
struct Recorded {
    CircuitBreaker b;
    std::vector<std::string> seen;  // "closed->open", ...
    template <class... A>
    explicit Recorded(A... a) : b(a...) {
        b.set_listener([this](State from, State to) { seen.push_back(name(from) + "->" + name(to)); });
    }
    static std::string name(State s) {
        static const char* const names[] = {"closed", "half_open", "open"};
        return names[static_cast<int>(s)];
    }
    // Failures at `t` until the breaker opens.
    void open_at(steady_clock::time_point t) {
        while (b.state() == State::closed) b.on_failure(t);
    }
};

}  // namespace

BOOST_AUTO_TEST_CASE(breaker_opens_after_consecutive_failures_only) {
    CircuitBreaker b(3, 1000ms);
    BOOST_TEST(b.allow(t0));
    b.on_failure(t0);
    b.on_failure(t0);
    b.on_success();  // the streak is broken
    b.on_failure(t0);
    b.on_failure(t0);
    BOOST_TEST(b.state() == State::closed);
    BOOST_TEST(b.allow(t0));
    b.on_failure(t0 + 5ms);
    BOOST_TEST(b.state() == State::open);
    BOOST_TEST(ms(duration_cast<milliseconds>(b.reopens_at() - t0)) == 1005);
}

BOOST_AUTO_TEST_CASE(breaker_open_period_then_exactly_one_probe) {
    Recorded r(2u, 1000ms);
    r.open_at(t0);
    // Open: nothing goes through until the period is over, whoever asks.
    for (auto t : {t0, t0 + 1ms, t0 + 500ms, t0 + 999ms}) BOOST_TEST(!r.b.allow(t));
    // Half-open: one probe, and no second one while it is out.
    BOOST_TEST(r.b.allow(t0 + 1000ms));
    BOOST_TEST(r.b.state() == State::half_open);
    for (int i = 0; i < 100; ++i) BOOST_TEST_REQUIRE(!r.b.allow(t0 + 1000ms + milliseconds(i)));
    // It succeeds: closed, everything goes through again.
    r.b.on_success();
    BOOST_TEST(r.b.state() == State::closed);
    for (int i = 0; i < 10; ++i) BOOST_TEST(r.b.allow(t0 + 1100ms));
    const std::vector<std::string> expected = {"closed->open", "open->half_open", "half_open->closed"};
    BOOST_TEST(r.seen == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(breaker_failed_probes_reprobe_soon_doubling_up_to_open_for) {
    Recorded r(1u, 1000ms);  // first re-probe min(200 ms, 1000 ms)
    r.open_at(t0);
    auto t = t0 + 1000ms;
    // Each failed probe re-opens for 200, 400, 800, then the 1000 ms cap.
    for (long long delay : {200, 400, 800, 1000, 1000, 1000}) {
        BOOST_TEST_CONTEXT("re-probe delay " << delay) {
            BOOST_TEST_REQUIRE(r.b.allow(t));  // the probe
            r.b.on_failure(t);
            BOOST_TEST(r.b.state() == State::open);
            BOOST_TEST(ms(duration_cast<milliseconds>(r.b.reopens_at() - t)) == delay);
            BOOST_TEST(!r.b.allow(t + milliseconds(delay - 1)));
            t += milliseconds(delay);
        }
    }
    // The first successful probe closes it; the next outage starts over at 200 ms.
    BOOST_TEST(r.b.allow(t));
    r.b.on_success();
    BOOST_TEST(r.b.state() == State::closed);
    r.open_at(t);
    BOOST_TEST(r.b.allow(t + 1000ms));
    r.b.on_failure(t + 1000ms);
    BOOST_TEST(ms(duration_cast<milliseconds>(r.b.reopens_at() - (t + 1000ms))) == 200);
}

BOOST_AUTO_TEST_CASE(breaker_reprobe_defaults_and_explicit_settings) {
    // A short open period: the first re-probe is the open period itself.
    CircuitBreaker short_one(1, 50ms);
    short_one.on_failure(t0);
    BOOST_TEST(short_one.allow(t0 + 50ms));
    short_one.on_failure(t0 + 50ms);
    BOOST_TEST(ms(duration_cast<milliseconds>(short_one.reopens_at() - (t0 + 50ms))) == 50);
    // Explicit first re-probe and probe timeout.
    CircuitBreaker b(1, 10s, 30ms, 2s);
    b.on_failure(t0);
    BOOST_TEST(!b.allow(t0 + 9999ms));
    BOOST_TEST(b.allow(t0 + 10s));
    b.on_failure(t0 + 10s);
    BOOST_TEST(ms(duration_cast<milliseconds>(b.reopens_at() - (t0 + 10s))) == 30);
    BOOST_TEST(b.allow(t0 + 10s + 30ms));
    BOOST_TEST(!b.allow(t0 + 10s + 30ms + 1999ms));
    BOOST_TEST(b.allow(t0 + 10s + 30ms + 2s));  // that probe timed out
}

BOOST_AUTO_TEST_CASE(breaker_probe_that_never_reports_expires) {
    Recorded r(1u, 1000ms);  // probe timeout = open_for
    r.open_at(t0);
    BOOST_TEST(r.b.allow(t0 + 1000ms));  // the probe's request is then cancelled: no report ever
    BOOST_TEST(!r.b.allow(t0 + 1500ms));
    BOOST_TEST(!r.b.allow(t0 + 1999ms));
    // Not wedged: a new probe after the timeout, and only one.
    BOOST_TEST(r.b.allow(t0 + 2000ms));
    BOOST_TEST(!r.b.allow(t0 + 2000ms));
    BOOST_TEST(r.b.state() == State::half_open);
    r.b.on_success();
    BOOST_TEST(r.b.state() == State::closed);
    // The expiry is not a transition: the listener saw each change once.
    const std::vector<std::string> expected = {"closed->open", "open->half_open", "half_open->closed"};
    BOOST_TEST(r.seen == expected, boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(breaker_late_reports_while_open) {
    Recorded r(1u, 1000ms);
    r.open_at(t0);
    // A request allowed before the breaker opened fails late: the open period is not extended.
    r.b.on_failure(t0 + 900ms);
    BOOST_TEST(ms(duration_cast<milliseconds>(r.b.reopens_at() - t0)) == 1000);
    BOOST_TEST(r.b.state() == State::open);
    BOOST_TEST(r.seen.size() == 1u);
}

BOOST_AUTO_TEST_CASE(breaker_listener_sees_each_transition_once) {
    Recorded r(2u, 1000ms);
    r.b.on_success();  // closed -> closed: nothing
    r.open_at(t0);
    BOOST_TEST(!r.b.allow(t0 + 10ms));
    BOOST_TEST(r.b.allow(t0 + 1000ms));
    r.b.on_failure(t0 + 1000ms);  // half-open -> open
    BOOST_TEST(r.b.allow(t0 + 1200ms));
    BOOST_TEST(!r.b.allow(t0 + 1200ms));
    r.b.on_success();
    r.b.on_success();  // closed -> closed: nothing
    const std::vector<std::string> expected = {"closed->open", "open->half_open", "half_open->open",
                                               "open->half_open", "half_open->closed"};
    BOOST_TEST(r.seen == expected, boost::test_tools::per_element());
}

// Issue 14 as a simulation: a 5 s outage with the defaults of the config (5 failures, 5 s open). Requests
// arrive every 10 ms of simulated time; the breaker must let traffic through soon after the upstream is back.
BOOST_AUTO_TEST_CASE(breaker_recovers_soon_after_an_outage_ends) {
    // The breaker opens 40 ms in (the fifth failure) and probes at 5040 ms; each failed probe re-opens it for
    // 200, 400, 800, 1600, 3200, then 5000 ms. Recovery comes within the re-probe delay in effect when the
    // upstream came back (before issue 14: up to a full 5 s after each failed probe).
    struct Case {
        long long outage_ms, max_late_ms;
    };
    for (const Case c : {Case{5000, 40}, Case{5100, 200}, Case{5300, 400}, Case{6000, 800}, Case{9000, 3200},
                         Case{20000, 5000}}) {
        CircuitBreaker b(5, 5000ms);
        const auto up_again = t0 + milliseconds(c.outage_ms);
        std::optional<steady_clock::time_point> closed_at;
        for (auto t = t0; t < t0 + 60s && !closed_at; t += 10ms) {
            if (!b.allow(t)) continue;
            if (t < up_again) {
                b.on_failure(t);
            } else {
                b.on_success();
                if (b.state() == State::closed) closed_at = t;
            }
        }
        BOOST_TEST_CONTEXT("outage " << c.outage_ms << " ms") {
            BOOST_TEST_REQUIRE(closed_at.has_value());
            const long long late = ms(duration_cast<milliseconds>(*closed_at - up_again));
            BOOST_TEST(late <= c.max_late_ms);
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// concurrency limiter

namespace {

struct Acquired {
    ConcurrencyLimiter::Permit permit;
    bool done = false;
};

// Starts limiter.acquire(deadline) on `io`; `out` holds the result when done.
void acquire(asio::io_context& io, ConcurrencyLimiter& l, steady_clock::time_point deadline, Acquired& out) {
    asio::co_spawn(
        io,
        [&l, &out, deadline]() -> asio::awaitable<void> {
            out.permit = co_await l.acquire(deadline);
            out.done = true;
        },
        asio::detached);
}

// Runs the io_context until `a` is done (bounded: fails the test after 30 s).
void run_until_done(asio::io_context& io, const Acquired& a) {
    const auto give_up = steady_clock::now() + 30s;
    while (!a.done && steady_clock::now() < give_up) {
        io.restart();
        io.run_one_for(100ms);
    }
    BOOST_TEST_REQUIRE(a.done);
}

void poll(asio::io_context& io) {
    io.restart();
    io.poll();
}

const auto kFar = [] { return steady_clock::now() + 1h; };

}  // namespace

BOOST_AUTO_TEST_CASE(limiter_grants_up_to_max_and_refuses_at_once_when_the_queue_is_full) {
    asio::io_context io;
    ConcurrencyLimiter l(2, 1);
    Acquired a, b, c, d;
    acquire(io, l, kFar(), a);
    acquire(io, l, kFar(), b);
    poll(io);
    BOOST_TEST((a.done && b.done));
    BOOST_TEST((static_cast<bool>(a.permit) && static_cast<bool>(b.permit)));
    BOOST_TEST(l.in_use() == 2u);
    acquire(io, l, kFar(), c);  // queued
    poll(io);
    BOOST_TEST(!c.done);
    acquire(io, l, kFar(), d);  // the queue (1) is full: refused without waiting for its deadline (1 h)
    poll(io);
    BOOST_TEST(d.done);
    BOOST_TEST(!d.permit);
    // Release: the queued one gets the slot, the count stays at the max meanwhile.
    a.permit.reset();
    poll(io);
    BOOST_TEST(c.done);
    BOOST_TEST(static_cast<bool>(c.permit));
    BOOST_TEST(l.in_use() == 2u);
    b.permit.reset();
    c.permit.reset();
    BOOST_TEST(l.in_use() == 0u);
}

BOOST_AUTO_TEST_CASE(limiter_hands_over_in_fifo_order) {
    asio::io_context io;
    ConcurrencyLimiter l(1, 8);
    Acquired holder;
    acquire(io, l, kFar(), holder);
    poll(io);
    BOOST_TEST_REQUIRE(static_cast<bool>(holder.permit));
    std::vector<Acquired> w(5);
    for (auto& x : w) {
        acquire(io, l, kFar(), x);
        poll(io);  // queued in this order
        BOOST_TEST_REQUIRE(!x.done);
    }
    holder.permit.reset();
    for (std::size_t i = 0; i < w.size(); ++i) {
        poll(io);
        BOOST_TEST_CONTEXT("waiter " << i) {
            BOOST_TEST(w[i].done);
            BOOST_TEST(static_cast<bool>(w[i].permit));
            for (std::size_t k = i + 1; k < w.size(); ++k) BOOST_TEST(!w[k].done);
            BOOST_TEST(l.in_use() == 1u);
        }
        w[i].permit.reset();
    }
    BOOST_TEST(l.in_use() == 0u);
    // Moving a permit moves the slot; resetting twice releases once.
    Acquired m;
    acquire(io, l, kFar(), m);
    poll(io);
    ConcurrencyLimiter::Permit moved = std::move(m.permit);
    BOOST_TEST(!m.permit);
    BOOST_TEST(l.in_use() == 1u);
    moved.reset();
    moved.reset();
    m.permit.reset();
    BOOST_TEST(l.in_use() == 0u);
}

BOOST_AUTO_TEST_CASE(limiter_waiter_gives_up_at_its_deadline) {
    asio::io_context io;
    ConcurrencyLimiter l(1, 1);
    Acquired holder, late, next;
    acquire(io, l, kFar(), holder);
    poll(io);
    acquire(io, l, steady_clock::now() + 20ms, late);
    run_until_done(io, late);  // its timer ends it
    BOOST_TEST(!late.permit);
    BOOST_TEST(l.in_use() == 1u);  // only the holder
    // Its place in the queue is free again: the next one queues instead of being refused.
    acquire(io, l, kFar(), next);
    poll(io);
    BOOST_TEST(!next.done);
    holder.permit.reset();
    poll(io);
    BOOST_TEST(static_cast<bool>(next.permit));
    next.permit.reset();
    BOOST_TEST(l.in_use() == 0u);
}

// The slot is handed over after the waiter's deadline passed but before it ran again: it keeps the permit
// (the slot is neither lost nor counted twice).
BOOST_AUTO_TEST_CASE(limiter_permit_granted_right_at_the_deadline_is_not_lost) {
    asio::io_context io;
    ConcurrencyLimiter l(1, 1);
    Acquired holder, w;
    acquire(io, l, kFar(), holder);
    poll(io);
    acquire(io, l, steady_clock::now() - 1ms, w);  // the deadline has passed already
    io.restart();
    io.poll_one();  // w queues itself and starts waiting; its timer completion is not run yet
    BOOST_TEST_REQUIRE(!w.done);
    holder.permit.reset();  // hands the slot to w
    BOOST_TEST(l.in_use() == 1u);
    run_until_done(io, w);
    BOOST_TEST(static_cast<bool>(w.permit));
    BOOST_TEST(l.in_use() == 1u);
    w.permit.reset();
    BOOST_TEST(l.in_use() == 0u);
}

// Two threads race releases against deadlines many times; whatever each waiter got, no slot leaks.
BOOST_AUTO_TEST_CASE(limiter_no_slot_leaks_when_release_races_the_deadline) {
    asio::io_context holders(1), waiters(1);
    auto g1 = asio::make_work_guard(holders);
    auto g2 = asio::make_work_guard(waiters);
    std::thread t1([&] { holders.run(); });
    std::thread t2([&] { waiters.run(); });
    int granted = 0, timed_out = 0;
    for (int i = 0; i < 300; ++i) {
        ConcurrencyLimiter l(1, 1);
        std::promise<void> held;
        std::promise<void> holder_done;
        std::promise<bool> waiter_result;
        const auto when = steady_clock::now() + 3ms;
        asio::co_spawn(
            holders,
            [&]() -> asio::awaitable<void> {
                auto p = co_await l.acquire(kFar());
                held.set_value();
                asio::steady_timer t(holders, when);  // release about when the waiter gives up
                co_await t.async_wait(asio::use_awaitable);
                p.reset();
                holder_done.set_value();
            },
            asio::detached);
        held.get_future().wait();
        asio::co_spawn(
            waiters,
            [&]() -> asio::awaitable<void> {
                auto p = co_await l.acquire(when);
                const bool got = static_cast<bool>(p);
                p.reset();  // before reporting: the test checks in_use() right after
                waiter_result.set_value(got);
            },
            asio::detached);
        (waiter_result.get_future().get() ? granted : timed_out)++;
        holder_done.get_future().wait();
        BOOST_TEST_REQUIRE(l.in_use() == 0u);
    }
    g1.reset();
    g2.reset();
    t1.join();
    t2.join();
    BOOST_TEST_MESSAGE("granted " << granted << ", timed out " << timed_out);
    BOOST_TEST(granted + timed_out == 300);
}
