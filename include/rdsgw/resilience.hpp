// Upstream protection: backoff with full jitter, Retry-After, a retry budget, a circuit breaker and a bounded
// concurrency limiter with a short queue. Shared by all threads (atomics; a mutex only on rare transitions).
#pragma once
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

// Full jitter: uniform in [0, min(max, base * 2^(retry-1))]. retry is 1 for the first retry.
std::chrono::milliseconds backoff_delay(unsigned retry, std::chrono::milliseconds base,
                                        std::chrono::milliseconds max);
// Retry-After as delta-seconds or an HTTP-date; nullopt when absent or malformed.
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

class CircuitBreaker {
  public:
    enum class State { closed = 0, half_open = 1, open = 2 };
    CircuitBreaker(unsigned failure_threshold, std::chrono::milliseconds open_for)
        : threshold_(failure_threshold), open_for_(open_for) {}
    // May a request go upstream now? In half-open state exactly one probe is let through at a time.
    bool allow(std::chrono::steady_clock::time_point now);
    void on_success();
    void on_failure(std::chrono::steady_clock::time_point now);
    State state() const { return static_cast<State>(state_.load()); }
    // Called with (old, new) on every change; set before use.
    void set_listener(std::function<void(State, State)> fn) { listener_ = std::move(fn); }

  private:
    void change(State s);
    unsigned threshold_;
    std::chrono::milliseconds open_for_;
    std::mutex mu_;
    std::atomic<int> state_{0};
    unsigned failures_ = 0;
    bool probe_in_flight_ = false;
    std::chrono::steady_clock::time_point opened_at_{};
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
    unsigned in_use() const { return in_use_.load(); }

  private:
    void release();
    unsigned max_, max_queue_;
    std::atomic<unsigned> in_use_{0};
    std::mutex mu_;
    std::deque<std::shared_ptr<Waker>> queue_;
};

}  // namespace rdsgw
