#include "support/connect_proxy.hpp"

#include <strings.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>
#include <thread>

#include <boost/asio.hpp>
#include <boost/asio/as_tuple.hpp>

namespace rdsgw::test {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

struct ConnectProxy::Impl {
    Options opts;
    asio::io_context ioc{1};
    tcp::acceptor acceptor{ioc};
    std::thread thread;
    int port = 0;
    mutable std::mutex mu;
    std::vector<std::string> targets, auths;
    std::atomic<std::size_t> tunnels{0};

    static asio::awaitable<void> pipe(std::shared_ptr<tcp::socket> from, std::shared_ptr<tcp::socket> to) {
        char buf[16384];
        for (;;) {
            auto [ec, n] = co_await from->async_read_some(asio::buffer(buf), nothrow);
            if (ec) break;
            auto [wec, wn] = co_await asio::async_write(*to, asio::buffer(buf, n), nothrow);
            (void)wn;
            if (wec) break;
        }
        boost::system::error_code ignore;
        to->shutdown(tcp::socket::shutdown_send, ignore);
    }

    static std::string header_value(const std::string& head, const std::string& name) {
        std::size_t pos = 0;
        while ((pos = head.find("\r\n", pos)) != std::string::npos) {
            pos += 2;
            if (head.size() - pos > name.size() &&
                strncasecmp(head.c_str() + pos, name.c_str(), name.size()) == 0 &&
                head[pos + name.size()] == ':') {
                auto start = head.find_first_not_of(' ', pos + name.size() + 1);
                return head.substr(start, head.find("\r\n", start) - start);
            }
        }
        return "";
    }

    asio::awaitable<void> session(tcp::socket client) {
        auto c = std::make_shared<tcp::socket>(std::move(client));
        std::string head;
        auto [ec, n] =
            co_await asio::async_read_until(*c, asio::dynamic_buffer(head, 16384), "\r\n\r\n", nothrow);
        if (ec) co_return;
        const std::string extra = head.substr(n);
        head.resize(n);
        const auto sp1 = head.find(' '), sp2 = head.find(' ', sp1 + 1);
        if (head.rfind("CONNECT ", 0) != 0 || sp2 == std::string::npos) {
            co_await reply(*c, "400 Bad Request");
            co_return;
        }
        const std::string target = head.substr(sp1 + 1, sp2 - sp1 - 1);
        const std::string auth = header_value(head, "Proxy-Authorization");
        {
            std::lock_guard lk(mu);
            targets.push_back(target);
            auths.push_back(auth);
        }
        if (!opts.required_authorization.empty() && auth != opts.required_authorization) {
            co_await reply(*c,
                           "407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"");
            co_return;
        }
        int to_port = 0;
        if (auto it = opts.routes.find(target); it != opts.routes.end())
            to_port = it->second;
        else if (target.rfind("127.0.0.1:", 0) == 0 || target.rfind("localhost:", 0) == 0)
            to_port = std::atoi(target.substr(target.find(':') + 1).c_str());
        auto up = std::make_shared<tcp::socket>(ioc);
        boost::system::error_code cec = asio::error::host_not_found;
        if (to_port > 0)
            std::tie(cec) = co_await up->async_connect(
                tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(to_port)),
                nothrow);
        if (cec) {
            co_await reply(*c, "502 Bad Gateway");
            co_return;
        }
        const std::string ok = "HTTP/1.1 200 Connection Established\r\n\r\n";
        auto [wec, wn] = co_await asio::async_write(*c, asio::buffer(ok), nothrow);
        (void)wn;
        if (wec) co_return;
        if (!extra.empty()) co_await asio::async_write(*up, asio::buffer(extra), nothrow);
        ++tunnels;
        asio::co_spawn(ioc, pipe(c, up), asio::detached);
        asio::co_spawn(ioc, pipe(up, c), asio::detached);
    }

    static asio::awaitable<void> reply(tcp::socket& c, const std::string& status_and_headers) {
        const std::string r =
            "HTTP/1.1 " + status_and_headers + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        co_await asio::async_write(c, asio::buffer(r), nothrow);
        boost::system::error_code ignore;
        c.shutdown(tcp::socket::shutdown_send, ignore);
    }

    asio::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, s] = co_await acceptor.async_accept(nothrow);
            if (ec) co_return;
            asio::co_spawn(ioc, session(std::move(s)), asio::detached);
        }
    }
};

ConnectProxy::ConnectProxy(Options options) : impl_(std::make_unique<Impl>()) {
    impl_->opts = std::move(options);
    const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    impl_->acceptor.open(ep.protocol());
    impl_->acceptor.bind(ep);
    impl_->acceptor.listen();
    impl_->port = impl_->acceptor.local_endpoint().port();
    asio::co_spawn(impl_->ioc, impl_->accept_loop(), asio::detached);
    impl_->thread = std::thread([this] { impl_->ioc.run(); });
}

ConnectProxy::~ConnectProxy() {
    impl_->ioc.stop();
    impl_->thread.join();
}

int ConnectProxy::port() const {
    return impl_->port;
}

std::vector<std::string> ConnectProxy::targets() const {
    std::lock_guard lk(impl_->mu);
    return impl_->targets;
}

std::vector<std::string> ConnectProxy::authorizations() const {
    std::lock_guard lk(impl_->mu);
    return impl_->auths;
}

std::size_t ConnectProxy::tunnels() const {
    return impl_->tunnels.load();
}

std::size_t ConnectProxy::count(const std::string& target) const {
    std::lock_guard lk(impl_->mu);
    return static_cast<std::size_t>(std::count(impl_->targets.begin(), impl_->targets.end(), target));
}

}  // namespace rdsgw::test
