#include "rdsgw/server.hpp"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <signal.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <ctime>
#include <list>
#include <thread>

#include "rdsgw/async_util.hpp"
#include "rdsgw/log.hpp"

namespace rdsgw {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
using asio::use_awaitable;
using std::chrono::milliseconds;

namespace {

// "Date" header value, formatted once per second per thread.
std::string_view http_date() {
    thread_local std::time_t last = 0;
    thread_local char buf[64];
    thread_local std::size_t len = 0;
    std::time_t now = std::time(nullptr);
    if (now != last) {
        std::tm tm;
        gmtime_r(&now, &tm);
        len = std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        last = now;
    }
    return {buf, len};
}

std::string peer_subject(SSL* ssl) {
    X509* cert = SSL_get_peer_certificate(ssl);
    if (!cert) return {};
    std::string out;
    if (SSL_get_verify_result(ssl) == X509_V_OK) {
        BIO* bio = BIO_new(BIO_s_mem());
        X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
        char* data = nullptr;
        long n = BIO_get_mem_data(bio, &data);
        if (n > 0) out.assign(data, static_cast<std::size_t>(n));
        BIO_free(bio);
    }
    X509_free(cert);
    return out;
}

}  // namespace

// One registered session, so that a drain can wake the idle ones.
struct SessionSlot {
    beast::tcp_stream* low = nullptr;
    bool idle = true;
};

// Member order matters for destruction: acceptors go first, then the worker (its pool, then its io_context,
// whose pending coroutine frames unregister themselves from `sessions`), then `sessions`.
struct WorkerState {
    std::list<SessionSlot*> sessions;
    Worker w;
    std::unique_ptr<tcp::acceptor> main_acceptor;
    std::unique_ptr<tcp::acceptor> admin_acceptor;
};

struct Server::Impl {
    Gateway& gw;
    const Config& cfg;
    std::function<bool(Config&)> reload;
    std::vector<std::unique_ptr<WorkerState>> workers;
    std::shared_ptr<ssl::context> server_tls;
    std::atomic<unsigned> open_conns{0};
    std::atomic<unsigned> inflight{0};
    std::atomic<bool> draining{false};
    std::shared_ptr<Waker> drained;
    std::mutex drained_mu;
    std::function<void()> on_drain;  // hook: main's systemd STOPPING=1

    Impl(Gateway& g, std::function<bool(Config&)> r) : gw(g), cfg(g.config()), reload(std::move(r)) {}

    void session_closed() {
        unsigned left = open_conns.fetch_sub(1) - 1;
        if (left == 0 && draining.load()) {
            std::lock_guard lk(drained_mu);
            if (drained) drained->fire();
        }
    }

    // The status line and headers of a response.
    static std::string response_head(const Response& r, std::size_t body_size, const std::string& request_id,
                                     bool keep_alive, unsigned version) {
        std::string h;
        h.reserve(256);
        h += version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
        h += std::to_string(r.status);
        h += ' ';
        h += http::obsolete_reason(static_cast<http::status>(r.status));
        h += "\r\nDate: ";
        h += http_date();
        h += "\r\nContent-Type: ";
        h += r.content_type;
        h += "\r\nContent-Length: ";
        h += std::to_string(body_size);
        h += "\r\nX-Request-Id: ";
        h += request_id;
        for (auto& [k, v] : r.headers) {
            h += "\r\n";
            h += k;
            h += ": ";
            h += v;
        }
        if (!keep_alive)
            h += "\r\nConnection: close";
        else if (version == 10)
            h += "\r\nConnection: keep-alive";
        h += "\r\n\r\n";
        return h;
    }

    // Writes a complete response (head and prepared body bytes in one gathered write); returns bytes written
    // (0 on error).
    template <class Stream>
    asio::awaitable<std::size_t> write_response(Stream& stream, const Response& r,
                                                const std::string& request_id, bool keep_alive,
                                                unsigned version, bool head) {
        std::string_view body = r.body_view();
        std::string h = response_head(r, body.size(), request_id, keep_alive, version);
        std::array<asio::const_buffer, 2> bufs{asio::buffer(h),
                                               asio::buffer(body.data(), head ? 0 : body.size())};
        boost::system::error_code ec;
        std::size_t n = co_await asio::async_write(stream, bufs, asio::redirect_error(use_awaitable, ec));
        co_return ec ? 0 : n;
    }

    template <class Stream>
    asio::awaitable<void> simple_reply_and_close(Stream& stream, unsigned status, std::string_view msg,
                                                 const std::string& request_id) {
        Response r;
        r.status = status;
        r.body = make_error_body(status, msg, request_id);
        co_await write_response(stream, r, request_id, false, 11, false);
    }

    template <class Stream>
    asio::awaitable<void> serve(WorkerState& ws, Stream& stream, beast::tcp_stream& low, bool admin,
                                const std::string& client, const std::string& tls_subject) {
        const auto& lim = cfg.limits;
        beast::flat_buffer buf;
        SessionSlot slot;
        slot.low = &low;
        ws.sessions.push_front(&slot);
        auto slot_it = ws.sessions.begin();
        struct Unregister {
            std::list<SessionSlot*>& l;
            std::list<SessionSlot*>::iterator it;
            ~Unregister() { l.erase(it); }
        } unregister{ws.sessions, slot_it};

        bool first = true;
        for (;;) {
            // Wait for the first byte of the next request: idle timeout (header timeout on a new connection).
            if (buf.size() == 0) {
                slot.idle = true;
                auto wait = first ? milliseconds(lim.header_timeout_ms) : milliseconds(lim.idle_timeout_ms);
                if (draining.load() && !first) wait = std::min(wait, milliseconds(100));
                low.expires_after(wait);
                boost::system::error_code ec;
                std::size_t n = co_await stream.async_read_some(buf.prepare(4096),
                                                                asio::redirect_error(use_awaitable, ec));
                if (ec) {
                    // A drain cancels idle reads; serve a request already on its way, else close.
                    if (ec == asio::error::operation_aborted && draining.load() &&
                        low.socket().available() > 0)
                        continue;
                    co_return;
                }
                buf.commit(n);
            }
            slot.idle = false;
            first = false;
            low.expires_after(milliseconds(lim.header_timeout_ms));
            http::request_parser<http::empty_body> parser;
            parser.header_limit(lim.max_header_bytes);
            parser.body_limit(0);
            boost::system::error_code ec;
            co_await http::async_read_header(stream, buf, parser, asio::redirect_error(use_awaitable, ec));
            auto t0 = steady::now();
            std::string request_id;
            if (ec) {
                if (ec == http::error::header_limit) {
                    request_id = make_request_id();
                    gw.metrics().rejected("limit");
                    co_await simple_reply_and_close(stream, 431, "request header too large", request_id);
                } else if (ec == http::error::body_limit) {
                    // A Content-Length above zero: this API has no request bodies.
                    request_id = make_request_id();
                    gw.metrics().rejected("limit");
                    co_await simple_reply_and_close(stream, 413, "request body not allowed", request_id);
                } else if (ec == beast::error::timeout || ec == http::error::end_of_stream ||
                           ec == asio::error::eof || ec == asio::error::connection_reset ||
                           ec == asio::error::operation_aborted || ec == ssl::error::stream_truncated) {
                    // Timed out (a client trickling bytes) or gone: drop the connection.
                } else {
                    request_id = make_request_id();
                    gw.metrics().rejected("validation");
                    co_await simple_reply_and_close(stream, 400, "malformed HTTP request", request_id);
                }
                co_return;
            }
            auto& req = parser.get();
            if (auto it = req.find("X-Request-Id"); it != req.end() && is_sane_request_id(it->value()))
                request_id = std::string(it->value());
            else
                request_id = make_request_id();

            RequestView rv;
            rv.method = req.method();
            rv.method_string = req.method_string();
            rv.target = req.target();
            rv.route = classify(rv.target);
            rv.fields = &req.base();
            rv.client_addr = client;
            rv.tls_subject = tls_subject;
            rv.admin_listener = admin;

            Response r;
            bool body_refused = false;
            if ((parser.content_length() && *parser.content_length() > 0) || parser.chunked()) {
                // This API has no request bodies; refuse without reading one, and close the connection.
                gw.metrics().rejected("limit");
                r.status = 413;
                r.body = make_error_body(413, "request body not allowed", request_id);
                body_refused = true;
            } else if (req.version() == 11 && req.find(http::field::host) == req.end()) {
                gw.metrics().rejected("validation");
                r.status = 400;
                r.body = make_error_body(400, "missing Host header", request_id);
                r.close = true;
            } else if (inflight.fetch_add(1) >= lim.max_inflight) {
                inflight.fetch_sub(1);
                gw.metrics().rejected("limit");
                r.status = 503;
                r.body = make_error_body(503, "too many requests in flight", request_id);
                r.headers.emplace_back("Retry-After", "1");
            } else {
                gw.metrics().inflight_add(1);
                low.expires_never();
                // Cache hits and every refusal are answered synchronously; only a miss suspends.
                auto v = gw.prepare(rv, request_id);
                if (auto* ready = std::get_if<Response>(&v)) {
                    r = std::move(*ready);
                } else {
                    Gateway::Pending p = std::move(std::get<Gateway::Pending>(v));
                    r = co_await gw.backup_files_fetch(ws.w, p, request_id);
                }
                inflight.fetch_sub(1);
                gw.metrics().inflight_add(-1);
            }
            bool keep = req.keep_alive() && !r.close && !body_refused && !draining.load();
            low.expires_after(milliseconds(lim.idle_timeout_ms));
            // Written inline (not through write_response) to save a coroutine frame per request.
            std::size_t sent = 0;
            {
                std::string_view body = r.body_view();
                std::string h =
                    response_head(r, body.size(), request_id, keep, req.version() == 10 ? 10 : 11);
                std::array<asio::const_buffer, 2> bufs{
                    asio::buffer(h),
                    asio::buffer(body.data(), req.method() == http::verb::head ? 0 : body.size())};
                boost::system::error_code wec;
                std::size_t n =
                    co_await asio::async_write(stream, bufs, asio::redirect_error(use_awaitable, wec));
                sent = wec ? 0 : n;
            }
            double ms = std::chrono::duration<double, std::milli>(steady::now() - t0).count();
            std::string_view m = req.method() == http::verb::get    ? "GET"
                                 : req.method() == http::verb::head ? "HEAD"
                                                                    : "other";
            gw.metrics().request_done(route_name(rv.route), m, r.status, r.cache, ms / 1000.0);
            if (gw.access_log().enabled()) gw.access_log().write(gw.access_line(rv, r, request_id, sent, ms));
            if (sent == 0 || !keep) {
                boost::system::error_code ignored;
                low.socket().shutdown(tcp::socket::shutdown_send, ignored);
                co_return;
            }
        }
    }

    asio::awaitable<void> session(WorkerState& ws, tcp::socket sock, bool admin) {
        std::string client;
        {
            boost::system::error_code ec;
            auto ep = sock.remote_endpoint(ec);
            if (!ec) client = ep.address().to_string();
        }
        struct Closed {
            Impl* self;
            ~Closed() { self->session_closed(); }
        } closed{this};
        if (open_conns.load() > cfg.limits.max_connections) {
            gw.metrics().rejected("limit");
            beast::tcp_stream s(std::move(sock));
            s.expires_after(std::chrono::seconds(1));
            const std::string id = make_request_id();
            co_await simple_reply_and_close(s, 503, "too many open connections", id);
            boost::system::error_code ignored;
            s.socket().shutdown(tcp::socket::shutdown_send, ignored);
            co_return;
        }
        boost::system::error_code ec;
        sock.set_option(tcp::no_delay(true), ec);
        if (server_tls && !admin) {
            beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(sock)), *server_tls);
            auto& low = beast::get_lowest_layer(stream);
            low.expires_after(milliseconds(cfg.limits.header_timeout_ms));
            co_await stream.async_handshake(ssl::stream_base::server,
                                            asio::redirect_error(use_awaitable, ec));
            if (ec) {
                gw.metrics().rejected("auth");
                co_return;
            }
            std::string subject = peer_subject(stream.native_handle());
            co_await serve(ws, stream, low, admin, client, subject);
            low.expires_after(std::chrono::seconds(1));
            co_await stream.async_shutdown(asio::redirect_error(use_awaitable, ec));
        } else {
            beast::tcp_stream stream(std::move(sock));
            const std::string no_subject;
            co_await serve(ws, stream, stream, admin, client, no_subject);
        }
    }

    asio::awaitable<void> accept_loop(WorkerState& ws, tcp::acceptor& acc, bool admin) {
        for (;;) {
            boost::system::error_code ec;
            tcp::socket sock = co_await acc.async_accept(asio::redirect_error(use_awaitable, ec));
            if (ec) {
                if (ec == asio::error::operation_aborted || !acc.is_open()) co_return;
                if (ec == asio::error::no_descriptors) {
                    log_warn("accept: out of file descriptors");
                    co_await sleep_until(steady::now() + milliseconds(50));
                }
                continue;
            }
            open_conns.fetch_add(1);
            asio::co_spawn(ws.w.ioc, session(ws, std::move(sock), admin), asio::detached);
        }
    }

    bool open_acceptor(asio::io_context& ioc, const std::string& addr, unsigned short port,
                       std::unique_ptr<tcp::acceptor>& out, std::string& why) {
        boost::system::error_code ec;
        auto a = asio::ip::make_address(addr, ec);
        if (ec) {
            why = "invalid listen address " + addr;
            return false;
        }
        auto acc = std::make_unique<tcp::acceptor>(ioc);
        tcp::endpoint ep(a, port);
        acc->open(ep.protocol(), ec);
        if (!ec) acc->set_option(asio::socket_base::reuse_address(true), ec);
        if (!ec) {
            int one = 1;
            if (::setsockopt(acc->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
                ec = boost::system::error_code(errno, boost::system::system_category());
        }
        if (!ec) acc->bind(ep, ec);
        if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
        if (ec) {
            why = "cannot listen on " + addr + ":" + std::to_string(port) + ": " + ec.message();
            return false;
        }
        out = std::move(acc);
        return true;
    }
};

Server::Server(Gateway& gw, std::function<bool(Config&)> reload)
    : impl_(std::make_unique<Impl>(gw, std::move(reload))) {}
Server::~Server() = default;

bool Server::bind(std::string& why) {
    auto& I = *impl_;
    const auto& cfg = I.cfg;
    unsigned n = cfg.listen.threads ? cfg.listen.threads : std::max(1u, std::thread::hardware_concurrency());
    if (!cfg.listen.tls_cert_file.empty()) {
        auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
        boost::system::error_code ec;
        ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                         ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
        ctx->use_certificate_chain_file(cfg.listen.tls_cert_file, ec);
        if (ec) {
            why = "listen.tls_cert_file: cannot load " + cfg.listen.tls_cert_file + ": " + ec.message();
            return false;
        }
        ctx->use_private_key_file(cfg.listen.tls_key_file, ssl::context::pem, ec);
        if (ec) {
            why = "listen.tls_key_file: cannot load " + cfg.listen.tls_key_file + ": " + ec.message();
            return false;
        }
        if (!cfg.listen.client_ca_file.empty()) {
            ctx->load_verify_file(cfg.listen.client_ca_file, ec);
            if (ec) {
                why = "listen.client_ca_file: cannot load " + cfg.listen.client_ca_file + ": " + ec.message();
                return false;
            }
            ssl::verify_mode mode = ssl::verify_peer;
            if (cfg.listen.require_client_cert) mode |= ssl::verify_fail_if_no_peer_cert;
            ctx->set_verify_mode(mode);
        }
        I.server_tls = ctx;
    }
    I.gw.metrics().on_collect(
        [&I](Metrics& m) { m.set_open_connections(static_cast<double>(I.open_conns.load())); });
    unsigned short port = cfg.listen.port;
    unsigned short admin_port = cfg.admin.port;
    for (unsigned i = 0; i < n; ++i) {
        auto ws = std::make_unique<WorkerState>();
        ws->w.index = i;
        if (!I.gw.init_worker(ws->w, why)) return false;
        if (!I.open_acceptor(ws->w.ioc, cfg.listen.address, port, ws->main_acceptor, why)) return false;
        port = ws->main_acceptor->local_endpoint().port();  // port 0: the others share the chosen port
        if (i == 0 && cfg.admin.enabled) {
            if (!I.open_acceptor(ws->w.ioc, cfg.admin.address, admin_port, ws->admin_acceptor, why))
                return false;
            admin_port = ws->admin_acceptor->local_endpoint().port();
        }
        I.workers.push_back(std::move(ws));
    }
    main_port_ = port;
    admin_port_ = cfg.admin.enabled ? admin_port : 0;
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
    std::atomic<bool> drain_requested{false};
    asio::steady_timer drain_delay(w0.w.ioc);
    auto begin_drain = [&] {
        if (I.draining.exchange(true)) return;
        log_info("draining: stopped accepting, finishing in-flight requests");
        {
            std::lock_guard lk(I.drained_mu);
            I.drained = std::make_shared<Waker>(w0.w.ioc.get_executor());
        }
        for (auto& ws : I.workers) {
            asio::post(ws->w.ioc, [&I, &ws = *ws] {
                boost::system::error_code ec;
                // Take every connection the kernel already completed (the listen backlog) before closing:
                // closing the listener would reset them, losing requests their clients already sent.
                for (auto* acc : {ws.main_acceptor.get(), ws.admin_acceptor.get()}) {
                    if (!acc) continue;
                    acc->non_blocking(true, ec);
                    for (;;) {
                        tcp::socket sock(ws.w.ioc);
                        acc->accept(sock, ec);
                        if (ec) break;
                        I.open_conns.fetch_add(1);
                        asio::co_spawn(ws.w.ioc,
                                       I.session(ws, std::move(sock), acc == ws.admin_acceptor.get()),
                                       asio::detached);
                    }
                    acc->close(ec);
                }
                for (SessionSlot* s : ws.sessions)
                    if (s->idle) s->low->socket().cancel(ec);
            });
        }
        asio::co_spawn(
            w0.w.ioc,
            [&]() -> asio::awaitable<void> {
                std::shared_ptr<Waker> d;
                {
                    std::lock_guard lk(I.drained_mu);
                    d = I.drained;
                }
                if (I.open_conns.load() > 0)
                    co_await d->wait(steady::now() + milliseconds(I.cfg.limits.drain_timeout_ms));
                if (I.open_conns.load() > 0)
                    log_warn("drain timeout: closing " + std::to_string(I.open_conns.load()) +
                             " connections");
                else
                    log_info("drained");
                I.gw.credentials().stop();
                for (auto& ws : I.workers) ws->w.ioc.stop();
            },
            asio::detached);
    };
    auto request_drain = [&] {
        if (drain_requested.exchange(true)) return;
        I.gw.set_draining(true);  // readiness turns 503 at once
        if (I.on_drain) I.on_drain();
        if (I.cfg.limits.drain_delay_ms == 0) return begin_drain();
        log_info("draining: readiness is 503; still serving for " +
                 std::to_string(I.cfg.limits.drain_delay_ms) + " ms");
        drain_delay.expires_after(milliseconds(I.cfg.limits.drain_delay_ms));
        drain_delay.async_wait([&](boost::system::error_code) { begin_drain(); });
    };
    on_signal = [&](boost::system::error_code ec, int sig) {
        if (ec) return;
        if (sig == SIGHUP) {
            Config fresh;
            if (I.reload && I.reload(fresh)) I.gw.reload(fresh);
            signals.async_wait(on_signal);
            return;
        }
        log_info(sig == SIGTERM ? "SIGTERM received" : "SIGINT received");
        if (drain_requested.load())
            begin_drain();  // a second signal skips the remaining delay
        else
            request_drain();
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
    I.gw.credentials().release_io();
    I.gw.access_log().flush();
    return 0;
}

}  // namespace rdsgw
