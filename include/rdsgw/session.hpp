// One client connection: reads requests with exact limits and one header deadline, checks their framing,
// runs each through the pipeline (gateway.hpp) and writes the answers in order (keep-alive, pipelining,
// HTTP/1.0). The server (server.cpp) owns the listeners, the worker threads and the drain.
#pragma once
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <chrono>
#include <list>
#include <memory>
#include <mutex>

#include "rdsgw/async_util.hpp"
#include "rdsgw/client_ip.hpp"
#include "rdsgw/gateway.hpp"

namespace rdsgw {

// Open connections of one kind of listener, against its own limit (the admin listener has its own, so a
// flood on the main port never turns /metrics and /healthz into 503s).
struct ConnectionBudget {
    explicit ConnectionBudget(unsigned m) : max(m) {}
    std::atomic<unsigned> open{0};
    const unsigned max;
};

// A registered session, so that a drain can wake the idle ones (only touched on its worker's thread).
struct SessionSlot {
    boost::beast::tcp_stream* low = nullptr;
    bool idle = true;
};

// What every session of the process shares.
struct SessionContext {
    SessionContext(Gateway& g, unsigned max_main, unsigned max_admin)
        : gw(g), cfg(g.config()), main_conns(max_main), admin_conns(max_admin) {}
    Gateway& gw;
    const Config& cfg;
    std::shared_ptr<boost::asio::ssl::context> tls;  // TLS on the main listener, when configured
    TrustedProxies trusted;                          // listen.trusted_proxies
    ConnectionBudget main_conns, admin_conns;
    std::atomic<unsigned> inflight{0};
    // The drain: from `closing` on, connections idle now close at `idle_close_at` (a grace period in which
    // a request already on its way is still served, with Connection: close).
    std::atomic<bool> closing{false};
    std::atomic<std::chrono::steady_clock::rep> idle_close_at{0};
    std::shared_ptr<Waker> drained;  // fired when the last connection closes during a drain
    std::mutex drained_mu;

    unsigned open_connections() const { return main_conns.open.load() + admin_conns.open.load(); }
    void connection_closed(ConnectionBudget& b);
};

// Per-worker state the sessions of that worker register in.
struct WorkerSessions {
    std::list<SessionSlot*> list;
};

// Serves one accepted connection to the end (the budget's count was taken by the acceptor).
boost::asio::awaitable<void> run_session(SessionContext& ctx, Worker& w, WorkerSessions& sessions,
                                         boost::asio::ip::tcp::socket sock, bool admin,
                                         std::chrono::steady_clock::time_point accepted);

}  // namespace rdsgw
