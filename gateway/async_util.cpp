#include "rdsgw/async_util.hpp"

#include <boost/asio/this_coro.hpp>

#include <sys/socket.h>

#include <array>

namespace rdsgw {

LazyDeadline::LazyDeadline(const boost::asio::any_io_executor& ex, boost::asio::ip::tcp::socket& socket,
                           clock::duration max_lead, Expiry expiry)
    : timer_(ex), st_(std::make_shared<State>()), default_expiry_(expiry) {
    st_->socket = &socket;
    st_->timer = &timer_;
    st_->max_lead = max_lead;
}

// The pending wait (if any) completes after this object is gone: it sees `alive` false and touches nothing.
LazyDeadline::~LazyDeadline() {
    st_->alive = false;
}

void LazyDeadline::arm(clock::time_point at, Expiry expiry) {
    State& st = *st_;
    st.expired = false;
    st.want = at;
    st.expiry = expiry;
    if (!st.pending || at < st.pending_at) schedule(st_, std::min(at, clock::now() + st.max_lead));
}

void LazyDeadline::schedule(const std::shared_ptr<State>& st, clock::time_point at) {
    st->pending = true;
    st->pending_at = at;
    const std::uint64_t gen = ++st->gen;
    st->timer->expires_at(at);
    st->timer->async_wait([st, gen](boost::system::error_code ec) {
        if (!st->alive || st->gen != gen) return;
        st->pending = false;
        if (ec || st->want == clock::time_point::max()) return;
        const auto now = clock::now();
        if (now < st->want) return schedule(st, std::min(st->want, now + st->max_lead));
        st->expired = true;
        boost::system::error_code ignored;
        if (st->expiry == Expiry::close)
            st->socket->close(ignored);
        else
            st->socket->cancel(ignored);
    });
}

boost::asio::awaitable<void> sleep_until(std::chrono::steady_clock::time_point t) {
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, t);
    boost::system::error_code ec;
    co_await timer.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
}

std::size_t write_now(boost::asio::ip::tcp::socket& s, std::span<const boost::asio::const_buffer> bufs) {
    constexpr std::size_t kMaxIov = 8;  // the callers gather at most two
    std::array<iovec, kMaxIov> iov{};
    std::size_t n = 0, total = 0;
    for (const auto& b : bufs) {
        if (b.size() == 0) continue;
        if (n == kMaxIov) return 0;  // not ours to handle: async_write writes it all
        iov[n++] = iovec{const_cast<void*>(b.data()), b.size()};
        total += b.size();
    }
    if (!s.is_open() || total == 0) return 0;
    std::size_t written = 0;
    std::size_t first = 0;  // the first iovec not yet written whole
    while (written < total) {
        msghdr msg{};
        msg.msg_iov = iov.data() + first;
        msg.msg_iovlen = n - first;
        const ssize_t r = ::sendmsg(s.native_handle(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (r <= 0) break;  // would block, or an error async_write will meet again
        written += static_cast<std::size_t>(r);
        detail::advance_iovecs(iov.data(), n, first, static_cast<std::size_t>(r));
    }
    return written;
}

void detail::advance_iovecs(iovec* iov, std::size_t n, std::size_t& first, std::size_t written) noexcept {
    while (first < n && written >= iov[first].iov_len) written -= iov[first++].iov_len;
    if (first < n) {
        iov[first].iov_base = static_cast<char*>(iov[first].iov_base) + written;
        iov[first].iov_len -= written;
    }
}

}  // namespace rdsgw
