#include "rdsgw/resilience.hpp"

#include <algorithm>
#include <boost/asio/this_coro.hpp>
#include <random>

#include "rdsgw/async_util.hpp"
#include "rdsgw/text.hpp"
#include "rdsgw/timefmt.hpp"

namespace rdsgw {

namespace chr = std::chrono;

chr::milliseconds backoff_cap(unsigned retry, chr::milliseconds base, chr::milliseconds max) {
    const long long b = std::max<long long>(base.count(), 0);
    const long long m = std::max<long long>(max.count(), 0);
    const unsigned shift = retry > 0 ? retry - 1 : 0;
    // b << shift overflows (or passes m) exactly when b > m >> shift; shifts of 63 and more give the max.
    if (b == 0) return chr::milliseconds(0);
    if (shift >= 63 || b > (m >> shift)) return chr::milliseconds(m);
    return chr::milliseconds(b << shift);
}

chr::milliseconds backoff_delay(unsigned retry, chr::milliseconds base, chr::milliseconds max, double u) {
    const long long cap = backoff_cap(retry, base, max).count();
    if (!(u > 0)) return chr::milliseconds(0);  // also NaN
    if (u >= 1) return chr::milliseconds(cap);
    const auto d = static_cast<long long>(u * (static_cast<double>(cap) + 1.0));
    return chr::milliseconds(std::min(d, cap));
}

chr::milliseconds backoff_delay(unsigned retry, chr::milliseconds base, chr::milliseconds max) {
    thread_local std::mt19937_64 rng{os_seed()};
    return backoff_delay(retry, base, max, std::uniform_real_distribution<double>(0.0, 1.0)(rng));
}

std::optional<chr::milliseconds> parse_retry_after(std::string_view v, chr::system_clock::time_point now) {
    v = trim_ows(v);
    if (v.empty()) return std::nullopt;
    const long long max_s = chr::duration_cast<chr::seconds>(kMaxRetryAfter).count();
    if (v.find_first_not_of("0123456789") == std::string_view::npos) {
        long long s = 0;  // saturates at the cap: any number of digits
        for (char c : v) s = std::min(s * 10 + (c - '0'), max_s + 1);
        return chr::milliseconds(std::min(s, max_s) * 1000);
    }
    const auto now_s = chr::floor<chr::seconds>(now);
    const auto when = parse_http_date(v, now_s);
    if (!when) return std::nullopt;
    // Both are seconds since the epoch (years 0..9999): the difference cannot overflow.
    const long long d = (*when - now_s).count();
    return chr::milliseconds(std::clamp(d, 0LL, max_s) * 1000);
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

void CircuitBreaker::open_until(time_point t) {
    probe_in_flight_ = false;
    reopens_at_ = t;
    change(State::open);
}

CircuitBreaker::time_point CircuitBreaker::reopens_at() const {
    std::lock_guard lk(mu_);
    return reopens_at_;
}

bool CircuitBreaker::allow(time_point now) {
    if (state_.load(std::memory_order_relaxed) == static_cast<int>(State::closed)) return true;
    std::lock_guard lk(mu_);
    State s = static_cast<State>(state_.load());
    if (s == State::closed) return true;
    if (s == State::open) {
        if (now < reopens_at_) return false;
        change(State::half_open);
    } else if (probe_in_flight_ && now < probe_expires_) {
        return false;  // half-open: one probe at a time, unless the last one went silent
    }
    probe_in_flight_ = true;
    probe_expires_ = now + probe_timeout_;
    return true;
}

void CircuitBreaker::on_success() {
    if (state_.load(std::memory_order_relaxed) == static_cast<int>(State::closed)) {
        // Fast path: reset the failure streak only when there is one.
        if (failures_.load(std::memory_order_relaxed) != 0) failures_.store(0, std::memory_order_relaxed);
        return;
    }
    std::lock_guard lk(mu_);
    failures_.store(0, std::memory_order_relaxed);
    failed_probes_ = 0;
    probe_in_flight_ = false;
    change(State::closed);
}

void CircuitBreaker::on_failure(time_point now) {
    std::lock_guard lk(mu_);
    State s = static_cast<State>(state_.load());
    if (s == State::half_open) {
        // A failed probe: re-probe soon, first_reprobe_ doubling per failed probe, at most open_for_.
        auto delay = std::min(first_reprobe_, open_for_);
        for (unsigned k = 0; k < failed_probes_ && delay.count() > 0 && delay < open_for_; ++k)
            delay = std::min(delay * 2, open_for_);
        if (delay < open_for_) ++failed_probes_;  // stops counting at the cap
        open_until(now + delay);
        return;
    }
    if (s == State::open) return;
    if (failures_.fetch_add(1, std::memory_order_relaxed) + 1 >= threshold_) {
        failures_.store(0, std::memory_order_relaxed);
        failed_probes_ = 0;
        open_until(now + open_for_);
    }
}

boost::asio::awaitable<ConcurrencyLimiter::Permit> ConcurrencyLimiter::acquire(
    std::chrono::steady_clock::time_point deadline) {
    if (Permit p = try_acquire()) co_return p;
    std::shared_ptr<Waker> w;
    {
        std::lock_guard lk(mu_);
        queued_.fetch_add(1);  // before the re-check below (see queued_)
        // Re-check under the lock: a release may have happened.
        unsigned cur = in_use_.load();
        while (cur < max_) {
            if (in_use_.compare_exchange_weak(cur, cur + 1)) {
                queued_.fetch_sub(1);
                co_return Permit(this);
            }
        }
        if (queue_.size() >= max_queue_) {
            queued_.fetch_sub(1);
            co_return Permit();
        }
        w = std::make_shared<Waker>(co_await boost::asio::this_coro::executor);
        queue_.push_back(w);
    }
    bool granted = co_await w->wait(deadline);
    if (granted) co_return Permit(this);  // a slot was handed to us
    std::lock_guard lk(mu_);
    if (w->fired()) co_return Permit(this);  // granted right at the deadline
    std::erase(queue_, w);
    queued_.fetch_sub(1);
    co_return Permit();
}

void ConcurrencyLimiter::grant_locked() {
    while (!queue_.empty()) {
        if (queue_.front()->fired()) {  // cannot stay queued; counted out here
            queue_.pop_front();
            queued_.fetch_sub(1);
            continue;
        }
        unsigned cur = in_use_.load();
        if (cur >= max_) return;
        if (!in_use_.compare_exchange_weak(cur, cur + 1)) continue;
        std::shared_ptr<Waker> next = std::move(queue_.front());
        queue_.pop_front();
        queued_.fetch_sub(1);
        next->fire();  // the slot just taken is the waiter's
    }
}

void ConcurrencyLimiter::release() {
    if (queued_.load() == 0) {
        // Nobody waits: give the slot back without the lock. A waiter that registered meanwhile is either
        // seen here (then it is handed a slot) or saw the freed slot itself.
        in_use_.fetch_sub(1);
        if (queued_.load() == 0) return;
        std::lock_guard lk(mu_);
        grant_locked();
        return;
    }
    std::shared_ptr<Waker> next;
    {
        std::lock_guard lk(mu_);
        while (!queue_.empty()) {
            next = std::move(queue_.front());
            queue_.pop_front();
            queued_.fetch_sub(1);
            if (!next->fired()) break;
            next.reset();
        }
        if (next) {
            next->fire();  // the slot passes to the waiter: in_use_ stays as it is
            return;
        }
        in_use_.fetch_sub(1);
        grant_locked();  // a waiter may have queued between our pop and now (nothing to do then)
    }
}

}  // namespace rdsgw
