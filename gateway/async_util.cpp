#include "rdsgw/async_util.hpp"

#include <boost/asio/this_coro.hpp>

namespace rdsgw {

boost::asio::awaitable<void> sleep_until(std::chrono::steady_clock::time_point t) {
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, t);
    boost::system::error_code ec;
    co_await timer.async_wait(boost::asio::redirect_error(boost::asio::use_awaitable, ec));
}

}  // namespace rdsgw
