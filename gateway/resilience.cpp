#include "rdsgw/resilience.hpp"

#include <boost/asio/this_coro.hpp>
#include <cmath>
#include <ctime>
#include <random>

#include "rdsgw/async_util.hpp"
#include "rdsgw/text.hpp"

namespace rdsgw {

std::chrono::milliseconds backoff_delay(unsigned retry, std::chrono::milliseconds base,
                                        std::chrono::milliseconds max) {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    double cap = static_cast<double>(base.count()) * std::pow(2.0, retry > 0 ? retry - 1 : 0);
    cap = std::min(cap, static_cast<double>(max.count()));
    std::uniform_real_distribution<double> d(0.0, cap);
    return std::chrono::milliseconds(static_cast<long long>(d(rng)));
}

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view v,
                                                           std::chrono::system_clock::time_point now) {
    v = trim_ows(v);
    if (v.empty()) return std::nullopt;
    bool digits = true;
    for (char c : v) digits = digits && c >= '0' && c <= '9';
    if (digits) {
        if (v.size() > 6) return std::chrono::milliseconds(999999000);
        long long s = 0;
        for (char c : v) s = s * 10 + (c - '0');
        return std::chrono::milliseconds(s * 1000);
    }
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
    std::tm tm{};
    std::string s(v);
    const char* end = strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end || *end) return std::nullopt;
    auto t = std::chrono::system_clock::from_time_t(timegm(&tm));
    auto d = std::chrono::duration_cast<std::chrono::milliseconds>(t - now);
    return d.count() < 0 ? std::chrono::milliseconds(0) : d;
}

bool RetryBudget::has_room() const {
    unsigned active = active_.load(std::memory_order_relaxed);
    unsigned allowed = std::max<unsigned>(min_, static_cast<unsigned>(ratio_ * active));
    return retries_.load(std::memory_order_relaxed) < allowed;
}

bool RetryBudget::try_start_retry() {
    unsigned active = active_.load(std::memory_order_relaxed);
    unsigned allowed = std::max<unsigned>(min_, static_cast<unsigned>(ratio_ * active));
    unsigned cur = retries_.load(std::memory_order_relaxed);
    while (cur < allowed) {
        if (retries_.compare_exchange_weak(cur, cur + 1, std::memory_order_relaxed)) return true;
    }
    return false;
}

void CircuitBreaker::change(State s) {
    State old = static_cast<State>(state_.exchange(static_cast<int>(s)));
    if (old != s && listener_) listener_(old, s);
}

bool CircuitBreaker::allow(std::chrono::steady_clock::time_point now) {
    if (state_.load(std::memory_order_relaxed) == static_cast<int>(State::closed)) return true;
    std::lock_guard lk(mu_);
    State s = static_cast<State>(state_.load());
    if (s == State::closed) return true;
    if (s == State::open) {
        if (now - opened_at_ < open_for_) return false;
        change(State::half_open);
        probe_in_flight_ = true;
        return true;
    }
    // half-open: one probe at a time
    if (probe_in_flight_) return false;
    probe_in_flight_ = true;
    return true;
}

void CircuitBreaker::on_success() {
    if (state_.load(std::memory_order_relaxed) == static_cast<int>(State::closed)) {
        // Fast path: reset the failure streak only when there is one.
        std::lock_guard lk(mu_);
        failures_ = 0;
        return;
    }
    std::lock_guard lk(mu_);
    failures_ = 0;
    probe_in_flight_ = false;
    change(State::closed);
}

void CircuitBreaker::on_failure(std::chrono::steady_clock::time_point now) {
    std::lock_guard lk(mu_);
    State s = static_cast<State>(state_.load());
    if (s == State::half_open) {
        probe_in_flight_ = false;
        opened_at_ = now;
        change(State::open);
        return;
    }
    if (s == State::open) return;
    if (++failures_ >= threshold_) {
        opened_at_ = now;
        change(State::open);
    }
}

boost::asio::awaitable<ConcurrencyLimiter::Permit> ConcurrencyLimiter::acquire(
    std::chrono::steady_clock::time_point deadline) {
    unsigned cur = in_use_.load(std::memory_order_relaxed);
    while (cur < max_) {
        if (in_use_.compare_exchange_weak(cur, cur + 1)) co_return Permit(this);
    }
    std::shared_ptr<Waker> w;
    {
        std::lock_guard lk(mu_);
        // Re-check under the lock: a release may have happened.
        cur = in_use_.load();
        while (cur < max_) {
            if (in_use_.compare_exchange_weak(cur, cur + 1)) co_return Permit(this);
        }
        if (queue_.size() >= max_queue_) co_return Permit();
        w = std::make_shared<Waker>(co_await boost::asio::this_coro::executor);
        queue_.push_back(w);
    }
    bool granted = co_await w->wait(deadline);
    if (granted) co_return Permit(this);  // release() handed its slot to us
    std::lock_guard lk(mu_);
    if (w->fired()) co_return Permit(this);  // granted right at the deadline
    std::erase(queue_, w);
    co_return Permit();
}

void ConcurrencyLimiter::release() {
    std::shared_ptr<Waker> next;
    {
        std::lock_guard lk(mu_);
        while (!queue_.empty()) {
            next = std::move(queue_.front());
            queue_.pop_front();
            if (!next->fired()) break;
            next.reset();
        }
        if (next) {
            next->fire();  // the slot passes to the waiter: in_use_ stays as it is
            return;
        }
        in_use_.fetch_sub(1);
    }
}

}  // namespace rdsgw
