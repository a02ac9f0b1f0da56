// Small coroutine helpers: a cross-thread one-shot wake-up (used by the IAM token source, the upstream
// concurrency limiter and the drain), a timed sleep (retries' backoff, accept pacing) and a connection's
// lazily re-set deadline (client sessions and pooled upstream connections).
#pragma once
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <memory>
#include <span>

#include <sys/uio.h>

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

// A connection's one deadline timer. When the armed deadline passes, the socket's pending operations are
// cancelled (they complete with operation_aborted and expired() says why), or, with Expiry::close (the
// constructor's default for every arm, or one arm's own), the socket is closed as Beast's stream timeouts do.
// Cancelling lets a client session still write its 408, but reaches only an operation pending at that moment;
// closing also fails every later operation, which a phase of several reads (a whole upstream answer) needs,
// so that none of them waits past the deadline.
//
// arm() and disarm() only record the deadline: the timer is re-set (a timer queue change under the
// reactor's lock, and a timerfd_settime system call when it is the earliest) only when a deadline comes
// earlier than the pending expiry. The pending expiry is kept at most `max_lead` ahead, so deadlines of the
// same length armed one after another never come earlier; when the timer fires before the recorded deadline
// it is set again (at most once per max_lead per connection), and when nothing is armed it stays idle.
// Beast's per-operation timer instead costs a timer start and a cancel for every read and every write.
//
// Single-threaded: arm, disarm and the socket's operations on the connection's own executor. The socket
// must outlive this object; this object must not move (the timer's handler refers to it).
class LazyDeadline {
  public:
    using clock = std::chrono::steady_clock;
    enum class Expiry { cancel, close };
    LazyDeadline(const boost::asio::any_io_executor& ex, boost::asio::ip::tcp::socket& socket,
                 clock::duration max_lead, Expiry expiry = Expiry::cancel);
    ~LazyDeadline();
    LazyDeadline(const LazyDeadline&) = delete;
    LazyDeadline& operator=(const LazyDeadline&) = delete;

    void arm(clock::time_point at) { arm(at, default_expiry_); }
    void arm(clock::time_point at, Expiry expiry);  // this phase's own action on expiry
    void disarm() { st_->want = clock::time_point::max(); }
    bool expired() const { return st_->expired; }  // the last armed deadline passed (until the next arm)

  private:
    struct State {
        bool alive = true;
        bool expired = false;
        bool pending = false;   // an async_wait is outstanding, for `pending_at`
        std::uint64_t gen = 0;  // of the outstanding wait (an older wait's completion is ignored)
        clock::time_point want = clock::time_point::max();  // the armed deadline; max(): none
        clock::time_point pending_at{};
        clock::duration max_lead{};
        Expiry expiry = Expiry::cancel;  // the armed phase's
        boost::asio::ip::tcp::socket* socket = nullptr;
        boost::asio::steady_timer* timer = nullptr;
    };
    static void schedule(const std::shared_ptr<State>& st, clock::time_point at);

    boost::asio::steady_timer timer_;
    std::shared_ptr<State> st_;
    Expiry default_expiry_;
};

// Writes `bufs` to a plain TCP socket at once, as far as the kernel takes them without waiting (sendmsg with
// MSG_DONTWAIT), and returns the bytes written. An answer of a few KB usually goes whole: the caller's
// coroutine does not suspend and no completion passes through the scheduler (async_write posts one even
// when its first send completes at once). Any error, would-block included, only ends the attempt: the
// caller writes the rest with async_write, which meets the same error and handles it as before.
std::size_t write_now(boost::asio::ip::tcp::socket& s, std::span<const boost::asio::const_buffer> bufs);

namespace detail {
// write_now's bookkeeping after a send took `written` bytes of iov[first, n): the iovecs sent whole are
// skipped (first moves past them) and the one sent in part starts at its first unsent byte.
void advance_iovecs(iovec* iov, std::size_t n, std::size_t& first, std::size_t written) noexcept;
}  // namespace detail

// Sleeps until the deadline on the current executor.
boost::asio::awaitable<void> sleep_until(std::chrono::steady_clock::time_point t);

}  // namespace rdsgw
