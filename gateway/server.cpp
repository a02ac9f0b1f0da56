#include "rdsgw/server.hpp"

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <thread>

#include "rdsgw/async_util.hpp"
#include "rdsgw/log.hpp"
#include "rdsgw/resources.hpp"
#include "rdsgw/session.hpp"

namespace rdsgw {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

// Sockets bound by this process alone: no SO_REUSEPORT, so a second process on the same port (a stale
// instance, another service) gets "address already in use" instead of a silent share of the traffic. Every
// worker accepts from the one listening socket through its own descriptor (dup), in its own io_context.
bool bind_listener(const std::string& addr, unsigned short port, int& fd, unsigned short& bound_port,
                   std::string& why) {
    boost::system::error_code ec;
    auto a = asio::ip::make_address(addr, ec);
    if (ec) {
        why = "invalid listen address " + addr;
        return false;
    }
    asio::io_context scratch;
    tcp::acceptor acc(scratch);
    tcp::endpoint ep(a, port);
    acc.open(ep.protocol(), ec);
    if (!ec)
        acc.set_option(asio::socket_base::reuse_address(true), ec);  // TIME_WAIT only, never a 2nd listener
    if (!ec) acc.bind(ep, ec);
    if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        why = "cannot listen on " + addr + ":" + std::to_string(port) + ": " + ec.message();
        return false;
    }
    bound_port = acc.local_endpoint().port();
    fd = acc.release();
    return true;
}

// Logs at most once a second, whatever the thread.
void log_rate_limited(std::atomic<steady::rep>& last, const std::string& msg) {
    const auto now = steady::now().time_since_epoch().count();
    auto prev = last.load();
    if (now - prev < std::chrono::duration_cast<steady::duration>(std::chrono::seconds(1)).count()) return;
    if (last.compare_exchange_strong(prev, now)) log_warn(msg);
}

}  // namespace

// Member order matters for destruction: acceptors go first, then the worker (its pool, then its io_context,
// whose pending coroutine frames unregister themselves from `sessions`), then `sessions`.
struct WorkerState {
    WorkerSessions sessions;
    Worker w;
    std::unique_ptr<tcp::acceptor> main_acceptor, admin_acceptor;
};

struct Server::Impl {
    Gateway& gw;
    const Config& cfg;
    std::function<bool(Config&)> reload;
    SessionContext ctx;
    std::vector<std::unique_ptr<WorkerState>> workers;
    int main_fd = -1, admin_fd = -1;
    std::atomic<steady::rep> last_fd_warning{0};
    std::function<void()> on_drain;  // hook: main's systemd STOPPING=1

    Impl(Gateway& g, std::function<bool(Config&)> r)
        : gw(g),
          cfg(g.config()),
          reload(std::move(r)),
          ctx(g, g.config().limits.max_connections, g.config().admin.max_connections) {
        std::string why;
        TrustedProxies::parse(cfg.listen.trusted_proxies, ctx.trusted, why);  // validated with the config
    }
    ~Impl() {
        for (int fd : {main_fd, admin_fd})
            if (fd >= 0) ::close(fd);
    }

    static std::unique_ptr<tcp::acceptor> acceptor_for(asio::io_context& ioc, int fd, const std::string& addr,
                                                       std::string& why) {
        const int own = ::dup(fd);
        if (own < 0) {
            why = "cannot share the listening socket: " + std::string(std::strerror(errno));
            return nullptr;
        }
        auto acc = std::make_unique<tcp::acceptor>(ioc);
        boost::system::error_code ec;
        acc->assign(asio::ip::make_address(addr).is_v6() ? tcp::v6() : tcp::v4(), own, ec);
        if (ec) {
            ::close(own);
            why = "cannot share the listening socket: " + ec.message();
            return nullptr;
        }
        return acc;
    }

    // Accepts until the acceptor closes. Out of file descriptors: pause accepting (10 ms, doubling to 1 s),
    // warn at most once a second, and resume as soon as descriptors are free again.
    asio::awaitable<void> accept_loop(WorkerState& ws, tcp::acceptor& acc, bool admin) {
        milliseconds pause{10};
        for (;;) {
            boost::system::error_code ec;
            tcp::socket sock = co_await acc.async_accept(asio::redirect_error(asio::use_awaitable, ec));
            if (ec) {
                if (ec == asio::error::operation_aborted || !acc.is_open()) co_return;
                if (ec == asio::error::no_descriptors || ec.value() == ENFILE ||
                    ec == asio::error::no_buffer_space || ec == asio::error::no_memory) {
                    log_rate_limited(last_fd_warning, "accept: " + ec.message() + "; pausing accepts");
                    co_await sleep_until(steady::now() + pause);
                    pause = std::min(pause * 2, milliseconds(1000));
                }
                continue;
            }
            pause = milliseconds(10);
            spawn_session(ws, std::move(sock), admin);
        }
    }

    void spawn_session(WorkerState& ws, tcp::socket sock, bool admin) {
        (admin ? ctx.admin_conns : ctx.main_conns).open.fetch_add(1);
        asio::co_spawn(
            ws.w.ioc, run_session(ctx, ws.w, ws.sessions, std::move(sock), admin, steady::now()),
            [](std::exception_ptr e) {
                if (!e) return;
                try {
                    std::rethrow_exception(e);
                } catch (const std::exception& ex) {
                    log_error(std::string("connection ended by an unexpected error: ") + ex.what());
                } catch (...) {
                    log_error("connection ended by an unexpected error");
                }
            });
    }

    // The drain, after SIGTERM (and limits.drain_delay_ms): take the connections the kernel already accepted,
    // close the listeners, give idle connections a grace period, wait for the rest, stop.
    void begin_drain(WorkerState& w0) {
        if (ctx.closing.load()) return;
        const auto grace = milliseconds(std::min<unsigned>(1000, cfg.limits.drain_timeout_ms / 2));
        ctx.idle_close_at.store((steady::now() + grace).time_since_epoch().count());
        {
            std::lock_guard lk(ctx.drained_mu);
            ctx.drained = std::make_shared<Waker>(w0.w.ioc.get_executor());
        }
        ctx.closing.store(true);
        log_info("draining: stopped accepting, finishing in-flight requests");
        // The listening socket closes when its last descriptor does: ours here, then each worker's, each
        // after taking what its backlog holds, so the last one to close has accepted everything queued.
        for (int* fd : {&main_fd, &admin_fd})
            if (*fd >= 0) ::close(std::exchange(*fd, -1));
        for (auto& ws : workers) asio::post(ws->w.ioc, [this, &ws = *ws] { close_listeners(ws); });
        asio::co_spawn(w0.w.ioc, wait_drained(), asio::detached);
    }

    void close_listeners(WorkerState& ws) {
        boost::system::error_code ec;
        // Take every connection the kernel already completed (the listen backlog) before closing: closing the
        // listener would reset them, losing requests their clients already sent.
        for (auto* acc : {ws.main_acceptor.get(), ws.admin_acceptor.get()}) {
            if (!acc) continue;
            acc->non_blocking(true, ec);
            for (;;) {
                tcp::socket sock(ws.w.ioc);
                acc->accept(sock, ec);
                if (ec) break;
                spawn_session(ws, std::move(sock), acc == ws.admin_acceptor.get());
            }
            acc->close(ec);
        }
        // Idle connections re-arm their wait with the grace deadline.
        for (SessionSlot* s : ws.sessions.list)
            if (s->idle) s->low->socket().cancel(ec);
    }

    asio::awaitable<void> wait_drained() {
        std::shared_ptr<Waker> d;
        {
            std::lock_guard lk(ctx.drained_mu);
            d = ctx.drained;
        }
        if (ctx.open_connections() > 0)
            co_await d->wait(steady::now() + milliseconds(cfg.limits.drain_timeout_ms));
        if (const unsigned left = ctx.open_connections(); left > 0)
            log_warn("drain timeout: closing " + std::to_string(left) + " connections");
        else
            log_info("drained");
        gw.credentials().stop();
        for (auto& ws : workers) ws->w.ioc.stop();
    }
};

Server::Server(Gateway& gw, std::function<bool(Config&)> reload)
    : impl_(std::make_unique<Impl>(gw, std::move(reload))) {}
Server::~Server() = default;

bool Server::bind(std::string& why) {
    auto& I = *impl_;
    const auto& cfg = I.cfg;
    const unsigned n =
        cfg.listen.threads ? cfg.listen.threads : std::max(1u, std::thread::hardware_concurrency());
    if (!cfg.listen.tls_cert_file.empty()) {
        std::vector<std::string> problems;
        if (!(I.ctx.tls = make_server_tls_context(cfg.listen, problems))) {
            why = problems.empty() ? "listen: cannot set up TLS" : problems.front();
            return false;
        }
    }
    I.gw.metrics().on_collect(
        [&I](Metrics& m) { m.set_open_connections(static_cast<double>(I.ctx.open_connections())); });
    if (!bind_listener(cfg.listen.address, cfg.listen.port, I.main_fd, main_port_, why)) return false;
    if (cfg.admin.enabled && !bind_listener(cfg.admin.address, cfg.admin.port, I.admin_fd, admin_port_, why))
        return false;
    for (unsigned i = 0; i < n; ++i) {
        auto ws = std::make_unique<WorkerState>();
        ws->w.index = i;
        if (!I.gw.init_worker(ws->w, why)) return false;
        if (!(ws->main_acceptor = I.acceptor_for(ws->w.ioc, I.main_fd, cfg.listen.address, why)))
            return false;
        if (i == 0 && cfg.admin.enabled &&
            !(ws->admin_acceptor = I.acceptor_for(ws->w.ioc, I.admin_fd, cfg.admin.address, why)))
            return false;
        I.workers.push_back(std::move(ws));
    }
    return true;
}

void Server::on_drain(std::function<void()> fn) {
    impl_->on_drain = std::move(fn);
}

void Server::each_loop(const std::function<void(asio::io_context&)>& fn) {
    for (auto& ws : impl_->workers) fn(ws->w.ioc);
}

int Server::run() {
    auto& I = *impl_;
    auto& w0 = *I.workers[0];
    for (auto& ws : I.workers) {
        asio::co_spawn(ws->w.ioc, I.accept_loop(*ws, *ws->main_acceptor, false), asio::detached);
        if (ws->admin_acceptor)
            asio::co_spawn(ws->w.ioc, I.accept_loop(*ws, *ws->admin_acceptor, true), asio::detached);
    }
    I.gw.start_background(w0.w);

    asio::signal_set signals(w0.w.ioc, SIGTERM, SIGINT, SIGHUP);
    std::function<void(boost::system::error_code, int)> on_signal;
    asio::steady_timer drain_delay(w0.w.ioc);
    on_signal = [&](boost::system::error_code ec, int sig) {
        if (ec) return;
        if (sig == SIGHUP) {
            Config fresh;
            if (I.reload && I.reload(fresh)) I.gw.reload(fresh);
        } else {
            log_info(sig == SIGTERM ? "SIGTERM received" : "SIGINT received");
            if (!I.gw.draining() && I.on_drain) I.on_drain();
            if (I.gw.draining() || I.cfg.limits.drain_delay_ms == 0) {
                I.gw.set_draining(true);
                I.begin_drain(w0);  // a second signal skips the remaining delay
            } else {
                // Readiness turns 503 and every answer says Connection: close; the listeners stay open for
                // the delay so that load balancers take the instance out first.
                I.gw.set_draining(true);
                log_info("draining: readiness is 503; still serving for " +
                         std::to_string(I.cfg.limits.drain_delay_ms) + " ms");
                drain_delay.expires_after(milliseconds(I.cfg.limits.drain_delay_ms));
                drain_delay.async_wait([&](boost::system::error_code e) {
                    if (!e) I.begin_drain(w0);
                });
            }
        }
        signals.async_wait(on_signal);
    };
    signals.async_wait(on_signal);

    I.gw.set_listening(true);
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < I.workers.size(); ++i)
        threads.emplace_back([&, i] { I.workers[i]->w.ioc.run(); });
    w0.w.ioc.run();
    for (auto& ws : I.workers) ws->w.ioc.stop();
    for (auto& t : threads) t.join();
    {
        // The drain's waker is bound to worker 0's io_context, which goes before ctx does.
        std::lock_guard lk(I.ctx.drained_mu);
        I.ctx.drained.reset();
    }
    I.gw.credentials().release_io();
    I.gw.access_log().flush();
    return 0;
}

}  // namespace rdsgw
