// Small coroutine helpers: a cross-thread one-shot wake-up (used by the IAM token source, the upstream
// concurrency limiter and the drain) and a timed sleep (retries' backoff, accept pacing).
#pragma once
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <memory>

namespace rdsgw {

// A one-shot wake-up for a coroutine running on a single-threaded io_context (one per worker thread).
// Any thread may call fire(); the waiting coroutine resumes on its own executor. No polling.
class Waker : public std::enable_shared_from_this<Waker> {
  public:
    explicit Waker(boost::asio::any_io_executor ex) : timer_(std::move(ex)) {}
    void fire() {
        if (fired_.exchange(true)) return;
        boost::asio::post(timer_.get_executor(), [self = shared_from_this()] { self->timer_.cancel(); });
    }
    bool fired() const { return fired_.load(); }
    // Returns true when fired, false when the deadline passed first.
    boost::asio::awaitable<bool> wait(std::chrono::steady_clock::time_point deadline) {
        timer_.expires_at(deadline);
        if (fired_.load()) co_return true;
        boost::system::error_code ec;
        co_await timer_.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
        co_return fired_.load();
    }

  private:
    boost::asio::steady_timer timer_;
    std::atomic<bool> fired_{false};
};

// Sleeps until the deadline on the current executor.
boost::asio::awaitable<void> sleep_until(std::chrono::steady_clock::time_point t);

}  // namespace rdsgw
