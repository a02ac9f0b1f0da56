// Upstream protection: backoff with full jitter, Retry-After, a retry budget, a circuit breaker and a bounded
// concurrency limiter with a short queue. Shared by all threads (atomics; a mutex only on rare transitions).
#pragma once
#include <algorithm>
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>

namespace rdsgw {

class Waker;

// The backoff cap before jitter: min(max, base * 2^(retry-1)), without overflow for any retry number.
// retry is 1 for the first retry; 0 is read as 1. A base or max below zero counts as zero.
std::chrono::milliseconds backoff_cap(unsigned retry, std::chrono::milliseconds base,
                                      std::chrono::milliseconds max);
// Full jitter with the random draw injected: floor(u * (cap + 1)), i.e. uniform in [0, cap] for u uniform
// in [0, 1). u outside [0, 1) is clamped (u >= 1 gives the cap).
std::chrono::milliseconds backoff_delay(unsigned retry, std::chrono::milliseconds base,
                                        std::chrono::milliseconds max, double u);
// Full jitter: uniform in [0, backoff_cap(retry, base, max)], drawn from a thread-local generator.
std::chrono::milliseconds backoff_delay(unsigned retry, std::chrono::milliseconds base,
                                        std::chrono::milliseconds max);

// The longest wait a Retry-After may ask for; longer (or far-future) values are capped to it.
inline constexpr std::chrono::milliseconds kMaxRetryAfter = std::chrono::seconds(3600);
// Retry-After (RFC 9110 10.2.3) as delta-seconds or an HTTP-date (IMF-fixdate, or the obsolete RFC 850 and
// asctime forms; see parse_http_date in timefmt.hpp), optional white space around it. A date in the past
// gives 0; every result is at most kMaxRetryAfter (any number of digits, any year: no overflow).
// nullopt when absent or malformed ("", "-5", "1, 2", "120s").
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view v,
                                                           std::chrono::system_clock::time_point now);

// Envoy-style budget: concurrent retries may not exceed max(min_concurrent, ratio * active requests).
class RetryBudget {
  public:
    RetryBudget(double ratio, unsigned min_concurrent) : ratio_(ratio), min_(min_concurrent) {}
    void request_started() { active_.fetch_add(1, std::memory_order_relaxed); }
    void request_finished() { active_.fetch_sub(1, std::memory_order_relaxed); }
    bool try_start_retry();
    bool has_room() const;  // would try_start_retry succeed now (a peek; it may race)
    void retry_finished() { retries_.fetch_sub(1, std::memory_order_relaxed); }
    unsigned active() const { return active_.load(); }

  private:
    double ratio_;
    unsigned min_;
    std::atomic<unsigned> active_{0}, retries_{0};
};

// Consecutive failures open the breaker for `open_for`; then one probe goes upstream (half-open). A
// successful probe closes the breaker. A failed probe re-opens it only for a short re-probe delay: the
// first is `first_reprobe`, each further consecutive failed probe doubles it, capped at `open_for`. A probe
// that never reports (its request was cancelled) expires after `probe_timeout`, and the next allow() sends
// a new probe. Every time is passed in (no clock inside): the tests drive it with made-up time points.
class CircuitBreaker {
  public:
    enum class State { closed = 0, half_open = 1, open = 2 };
    using time_point = std::chrono::steady_clock::time_point;
    // first_reprobe = min(200 ms, open_for), probe_timeout = open_for.
    CircuitBreaker(unsigned failure_threshold, std::chrono::milliseconds open_for)
        : CircuitBreaker(failure_threshold, open_for, std::min(kDefaultFirstReprobe, open_for), open_for) {}
    CircuitBreaker(unsigned failure_threshold, std::chrono::milliseconds open_for,
                   std::chrono::milliseconds first_reprobe, std::chrono::milliseconds probe_timeout)
        : threshold_(failure_threshold),
          open_for_(open_for),
          first_reprobe_(first_reprobe),
          probe_timeout_(probe_timeout) {}
    static constexpr std::chrono::milliseconds kDefaultFirstReprobe{200};

    // May a request go upstream now? In half-open state exactly one probe is let through at a time (a new
    // one once the last has been out for probe_timeout without a report).
    bool allow(time_point now);
    void on_success();
    void on_failure(time_point now);
    State state() const { return static_cast<State>(state_.load()); }
    // When an open breaker lets the next probe through (meaningful in the open state only).
    time_point reopens_at() const;
    // Called with (old, new) on every change, under the breaker's lock; set before use.
    void set_listener(std::function<void(State, State)> fn) { listener_ = std::move(fn); }

  private:
    void change(State s);
    void open_until(time_point t);
    unsigned threshold_;
    std::chrono::milliseconds open_for_, first_reprobe_, probe_timeout_;
    mutable std::mutex mu_;
    std::atomic<int> state_{0};
    std::atomic<unsigned> failures_{0};  // consecutive failures while closed
    unsigned failed_probes_ = 0;         // consecutive failed probes since the breaker opened
    bool probe_in_flight_ = false;
    time_point probe_expires_{};
    time_point reopens_at_{};
    std::function<void(State, State)> listener_;
};

// At most `max` concurrent holders; up to `max_queue` more wait (bounded in time); the rest are refused.
class ConcurrencyLimiter {
  public:
    ConcurrencyLimiter(unsigned max, unsigned max_queue) : max_(max), max_queue_(max_queue) {}
    class Permit {
      public:
        Permit() = default;
        explicit Permit(ConcurrencyLimiter* l) : l_(l) {}
        Permit(Permit&& o) noexcept : l_(std::exchange(o.l_, nullptr)) {}
        Permit& operator=(Permit&& o) noexcept {
            if (this != &o) {
                reset();
                l_ = std::exchange(o.l_, nullptr);
            }
            return *this;
        }
        ~Permit() { reset(); }
        explicit operator bool() const { return l_ != nullptr; }
        void reset() {
            if (l_) l_->release();
            l_ = nullptr;
        }

      private:
        ConcurrencyLimiter* l_ = nullptr;
    };
    // Empty permit when the queue is full or the wait timed out.
    boost::asio::awaitable<Permit> acquire(std::chrono::steady_clock::time_point deadline);
    // acquire()'s first step without a coroutine: a permit when a slot is free at once, else an empty one
    // (then acquire() queues). The common case of an upstream attempt.
    Permit try_acquire() {
        unsigned cur = in_use_.load(std::memory_order_relaxed);
        while (cur < max_)
            if (in_use_.compare_exchange_weak(cur, cur + 1)) return Permit(this);
        return Permit();
    }
    unsigned in_use() const { return in_use_.load(); }

  private:
    void release();
    void grant_locked();  // hands free slots to queued waiters (under mu_)
    unsigned max_, max_queue_;
    std::atomic<unsigned> in_use_{0};
    // Waiters registered in queue_ (or about to be): a release with none takes no lock. A waiter counts
    // itself here before its last look at in_use_, and a release looks here after freeing its slot (both
    // sequentially consistent), so one of the two always sees the other.
    std::atomic<unsigned> queued_{0};
    std::mutex mu_;
    std::deque<std::shared_ptr<Waker>> queue_;
};

}  // namespace rdsgw
