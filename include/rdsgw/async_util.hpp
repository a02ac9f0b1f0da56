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
#include <boost/version.hpp>
#include <chrono>
#include <memory>
#include <span>
#include <type_traits>
#include <utility>

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

// A read from a plain TCP socket that tells Asio's reactor when it left the socket empty:
// `socket.async_read_some(DrainingRead(buf), token)`.
//
// Why: Boost 1.81's epoll reactor tries every read at once (a speculative recv) unless the socket's last read
// saw end of file. After each answer, the read for a connection's next request, and upstream the read for the
// answer just asked for, was a recv that came back EAGAIN: about 1.2 us of system time each on the
// benchmark's machine (a tenth of a cache hit), two per miss and one per hit. Waiting instead with
// async_wait costs an epoll_ctl per wait, no cheaper. A read of this type reports a short read (fewer bytes
// than asked for, so the kernel had no more) as "done and exhausted", as a sender's short send already is:
// the reactor then queues the socket's next read without trying it, until epoll reports an edge. This is
// the reactor's own bookkeeping, so it stays right when an edge comes while no read is queued (it then
// tries the next read at once, as before). For TCP a short non-blocking recv means the receive queue was
// empty, and any byte that arrives later raises a new edge.
//
// The change is a specialization of Asio's recv operation for this buffer type (below). It is made for
// the Boost release this project builds with (Debian 12's 1.81) and its epoll reactor only; with any other
// Boost a DrainingRead is an ordinary buffer and reads behave as Asio's own.
struct DrainingRead : boost::asio::mutable_buffer {
    explicit DrainingRead(const boost::asio::mutable_buffer& b) : boost::asio::mutable_buffer(b) {}
};
#if BOOST_VERSION == 108100 && defined(BOOST_ASIO_HAS_EPOLL) && !defined(BOOST_ASIO_HAS_IO_URING_AS_DEFAULT)
#define RDSGW_DRAINING_READ 1
#endif

// The layer under a TLS stream (`beast::ssl_stream<DrainingLayer<beast::tcp_stream>>`) whose reads of the
// socket are DrainingReads once drain(true): OpenSSL's reads of a connection then wait for the epoll edge
// after a short read, as plain connections' do. Before that, reads go through the next layer (a tcp_stream
// whose own timer bounds the upstream's TLS handshake); writes always do. Only the TLS stream's own read
// (one buffer, a completion handler, no return value) is supported.
template <class NextLayer>
class DrainingLayer {
  public:
    using next_layer_type = NextLayer;
    using lowest_layer_type = typename NextLayer::socket_type;  // asio::ssl::stream asks for it
    using executor_type = typename NextLayer::executor_type;

    template <class Arg>
    requires(!std::is_same_v<std::remove_cvref_t<Arg>, DrainingLayer>) explicit DrainingLayer(Arg&& arg)
        : next_(std::forward<Arg>(arg)) {}
    DrainingLayer(DrainingLayer&&) = default;
    DrainingLayer& operator=(DrainingLayer&&) = default;

    executor_type get_executor() noexcept { return next_.get_executor(); }
    NextLayer& next_layer() noexcept { return next_; }
    const NextLayer& next_layer() const noexcept { return next_; }
    lowest_layer_type& lowest_layer() noexcept { return next_.socket(); }
    const lowest_layer_type& lowest_layer() const noexcept { return next_.socket(); }
    void drain(bool on) noexcept { drain_ = on; }

    template <class MutableBuffer, class Handler>
    void async_read_some(const MutableBuffer& buffer, Handler&& handler) {
        static_assert(std::is_convertible_v<MutableBuffer, boost::asio::mutable_buffer>, "one buffer");
        const boost::asio::mutable_buffer b(buffer);  // whatever the caller's type, one plain buffer
        if (drain_)
            next_.socket().async_read_some(DrainingRead(b), std::forward<Handler>(handler));
        else
            next_.async_read_some(b, std::forward<Handler>(handler));
    }
    template <class ConstBufferSequence, class Handler>
    void async_write_some(const ConstBufferSequence& buffers, Handler&& handler) {
        next_.async_write_some(buffers, std::forward<Handler>(handler));
    }

  private:
    NextLayer next_;
    bool drain_ = false;
};

namespace detail {
// write_now's bookkeeping after a send took `written` bytes of iov[first, n): the iovecs sent whole are
// skipped (first moves past them) and the one sent in part starts at its first unsent byte.
void advance_iovecs(iovec* iov, std::size_t n, std::size_t& first, std::size_t written) noexcept;
}  // namespace detail

// Sleeps until the deadline on the current executor.
boost::asio::awaitable<void> sleep_until(std::chrono::steady_clock::time_point t);

}  // namespace rdsgw

#ifdef RDSGW_DRAINING_READ
#include <boost/asio/detail/reactive_socket_recv_op.hpp>

namespace boost::asio::detail {

// Asio 1.81's reactive_socket_recv_op_base (boost/asio/detail/reactive_socket_recv_op.hpp) for one buffer,
// but for its last step: a short read of a stream socket is done_and_exhausted, not only end of file.
template <>
class reactive_socket_recv_op_base<rdsgw::DrainingRead> : public reactor_op {
  public:
    reactive_socket_recv_op_base(const boost::system::error_code& success_ec, socket_type socket,
                                 socket_ops::state_type state, const rdsgw::DrainingRead& buffers,
                                 socket_base::message_flags flags, func_type complete_func)
        : reactor_op(success_ec, &reactive_socket_recv_op_base::do_perform, complete_func),
          socket_(socket),
          state_(state),
          buffers_(buffers),
          flags_(flags) {}

    static status do_perform(reactor_op* base) {
        auto* o = static_cast<reactive_socket_recv_op_base*>(base);
        const bool stream = (o->state_ & socket_ops::stream_oriented) != 0;
        status result = socket_ops::non_blocking_recv1(o->socket_, o->buffers_.data(), o->buffers_.size(),
                                                       o->flags_, stream, o->ec_, o->bytes_transferred_)
                            ? done
                            : not_done;
        if (result == done && stream && o->bytes_transferred_ < o->buffers_.size())
            result = done_and_exhausted;
        return result;
    }

  private:
    socket_type socket_;
    socket_ops::state_type state_;
    rdsgw::DrainingRead buffers_;
    socket_base::message_flags flags_;
};

}  // namespace boost::asio::detail
#endif
