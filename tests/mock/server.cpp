// rds-mock's network side and command line. One io_context per thread; one acceptor hands connections
// round-robin to the threads; each connection is one C++20 coroutine (plain HTTP or TLS).
//
//   rds-mock [--listen 127.0.0.1] [--port 0] [--threads 1] [--tls-cert FILE --tls-key FILE] [--config
//   JSON|FILE]
//
// Control endpoints (tests): GET /_mock/stats, GET|POST /_mock/config, POST /_mock/reset, POST /_mock/revoke,
// POST /_mock/release (every request held by the "hold" behaviour goes on), and the long poll
// GET /_mock/wait?counter=NAME&at_least=N[&timeout_ms=T] (T: default 10000, at most 120000): 200 with the
// stats once the counter NAME (a number of /_mock/stats) is at least N, or 408 at the timeout; 400 for an
// unknown counter or a malformed parameter.
//
// Prints "LISTENING <port>" once the socket listens; exits 0 on SIGTERM/SIGINT.
#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include <boost/asio.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "mock.hpp"

namespace rdsgw::mock {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

struct OpenGuard {
    State& st;
    explicit OpenGuard(State& s) : st(s) { st.on_open(); }
    ~OpenGuard() { st.on_closed(); }
    OpenGuard(const OpenGuard&) = delete;
    OpenGuard& operator=(const OpenGuard&) = delete;
};

// Abortive close: RST instead of FIN.
void reset_socket(tcp::socket& s) {
    boost::system::error_code ec;
    s.set_option(asio::socket_base::linger(true, 0), ec);
    s.close(ec);
}

asio::awaitable<void> graceful_close(beast::tcp_stream& stream) {
    boost::system::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    stream.close();
    co_return;
}

asio::awaitable<void> graceful_close(beast::ssl_stream<beast::tcp_stream>& stream) {
    stream.next_layer().expires_after(2s);
    co_await stream.async_shutdown(use_nothrow);
    stream.next_layer().close();
}

template <class Stream>
asio::awaitable<void> serve(Stream& stream, State& st) {
    auto& lowest = beast::get_lowest_layer(stream);
    beast::flat_buffer buffer;
    bool control_seen = false;
    for (;;) {
        if (const int idle = st.idle_close_ms(); idle > 0)
            lowest.expires_after(std::chrono::milliseconds(idle));
        else
            lowest.expires_never();
        http::request_parser<http::string_body> parser;
        parser.header_limit(64 * 1024);
        parser.body_limit(1024 * 1024);
        auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_nothrow);
        (void)n;
        if (ec) {
            // A malformed request gets a 400 before the close; EOF, timeouts and resets just close.
            if (ec.category() == http::make_error_code(http::error::bad_target).category() &&
                ec != http::error::end_of_stream && ec != http::error::partial_message) {
                lowest.expires_after(2s);
                Response res{http::status::bad_request, 11};
                res.set(http::field::content_type, "application/json");
                res.body() = R"({"error_code":"APIGW.0101","error_msg":"malformed request"})";
                res.keep_alive(false);
                res.prepare_payload();
                co_await http::async_write(stream, res, use_nothrow);
                co_await graceful_close(stream);
            }
            co_return;
        }
        lowest.expires_never();
        const Request req = parser.release();
        Reply reply = st.handle(req, control_seen);
        if (reply.hold) {
            auto waker = std::make_shared<rdsgw::Waker>(co_await asio::this_coro::executor);
            st.on_hold(true);
            st.add_waiter(waker, *reply.hold);
            co_await waker->wait(std::chrono::steady_clock::now() + reply.hold->timeout);
            st.remove_waiter(waker);
            st.on_hold(false);
        }
        if (reply.delay.count() > 0) {
            asio::steady_timer timer(co_await asio::this_coro::executor, reply.delay);
            co_await timer.async_wait(use_nothrow);
        }
        switch (reply.kind) {
            case Reply::Kind::reset:
                reset_socket(lowest.socket());
                co_return;
            case Reply::Kind::close:
                co_await graceful_close(stream);
                co_return;
            case Reply::Kind::hang: {
                // Never answer (or only begin to: raw_answer's bytes, then nothing more); keep reading (and
                // discarding) until the client goes away.
                if (!reply.raw_answer.empty()) {
                    auto [wec, wn] =
                        co_await asio::async_write(stream, asio::buffer(reply.raw_answer), use_nothrow);
                    (void)wn;
                    if (wec) co_return;
                }
                char sink[4096];
                for (;;) {
                    auto [rec, rn] = co_await stream.async_read_some(asio::buffer(sink), use_nothrow);
                    (void)rn;
                    if (rec) co_return;
                }
            }
            case Reply::Kind::wait: {
                // A long poll: woken by the state when the counter gets there, or by the timeout.
                auto waker = std::make_shared<rdsgw::Waker>(co_await asio::this_coro::executor);
                st.add_waiter(waker, reply.wait);
                const bool reached =
                    co_await waker->wait(std::chrono::steady_clock::now() + reply.wait.timeout);
                reply.response = st.wait_answer(reply.wait, reached);
                st.remove_waiter(waker);
                break;
            }
            case Reply::Kind::respond:
                break;
        }
        Response& res = reply.response;
        res.version(req.version());
        res.keep_alive(req.keep_alive());
        if (req.method() == http::verb::head) {
            res.content_length(res.body().size());
            res.body().clear();
        } else {
            res.prepare_payload();
        }
        if (!reply.raw_answer.empty()) {
            // Arbitrary bytes as the whole answer; the close ends a body that is read until the close.
            auto [rec, rn] = co_await asio::async_write(stream, asio::buffer(reply.raw_answer), use_nothrow);
            (void)rn;
            if (!rec) co_await graceful_close(stream);
            co_return;
        }
        if (!reply.raw_before.empty() || !reply.raw_after.empty()) {
            // Raw bytes around the answer, sent in the same write so that they arrive together with it.
            std::ostringstream os;
            os << res;
            const std::string wire = reply.raw_before + os.str() + reply.raw_after;
            auto [rec, rn] = co_await asio::async_write(stream, asio::buffer(wire), use_nothrow);
            (void)rn;
            if (rec) co_return;
        } else {
            auto [wec, wn] = co_await http::async_write(stream, res, use_nothrow);
            (void)wn;
            if (wec) co_return;
        }
        if (!res.keep_alive()) {
            co_await graceful_close(stream);
            co_return;
        }
    }
}

asio::awaitable<void> session(tcp::socket socket, ssl::context* tls, State& st) {
    OpenGuard guard(st);
    boost::system::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    beast::tcp_stream stream(std::move(socket));
    if (tls == nullptr) {
        co_await serve(stream, st);
        co_return;
    }
    beast::ssl_stream<beast::tcp_stream> tls_stream(std::move(stream), *tls);
    tls_stream.next_layer().expires_after(10s);
    auto [hec] = co_await tls_stream.async_handshake(ssl::stream_base::server, use_nothrow);
    if (hec) co_return;
    st.on_tls_handshake();
    co_await serve(tls_stream, st);
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor,
                                  std::vector<std::unique_ptr<asio::io_context>>& ctxs, ssl::context* tls,
                                  State& st) {
    std::size_t next = 0;
    for (;;) {
        auto& ctx = *ctxs[next++ % ctxs.size()];
        auto [ec, socket] =
            co_await acceptor.async_accept(asio::any_io_executor(ctx.get_executor()), use_nothrow);
        if (ec == asio::error::operation_aborted) co_return;
        if (ec) {
            // Out of descriptors or similar: back off a little instead of spinning.
            asio::steady_timer timer(co_await asio::this_coro::executor, 10ms);
            co_await timer.async_wait(use_nothrow);
            continue;
        }
        st.on_accept();
        asio::co_spawn(ctx, session(std::move(socket), tls, st), asio::detached);
    }
}

struct Options {
    std::string listen = "127.0.0.1";
    unsigned short port = 0;
    int threads = 1;
    std::string tls_cert;
    std::string tls_key;
    std::string config;
};

[[noreturn]] void usage(const std::string& why) {
    std::cerr << "rds-mock: " << why << "\n"
              << "usage: rds-mock [--listen ADDR] [--port N] [--threads N] [--tls-cert FILE --tls-key FILE]"
                 " [--config JSON|FILE]\n";
    std::exit(2);
}

Options parse_args(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        auto value = [&]() -> std::string {
            if (i + 1 >= argc) usage(arg + " needs a value");
            return argv[++i];
        };
        if (arg == "--listen") {
            o.listen = value();
        } else if (arg == "--port") {
            const auto v = value();
            char* end = nullptr;
            const long p = std::strtol(v.c_str(), &end, 10);
            if (v.empty() || *end != '\0' || p < 0 || p > 65535) usage("--port must be 0..65535");
            o.port = static_cast<unsigned short>(p);
        } else if (arg == "--threads") {
            const auto v = value();
            char* end = nullptr;
            const long t = std::strtol(v.c_str(), &end, 10);
            if (v.empty() || *end != '\0' || t < 1 || t > 256) usage("--threads must be 1..256");
            o.threads = static_cast<int>(t);
        } else if (arg == "--tls-cert") {
            o.tls_cert = value();
        } else if (arg == "--tls-key") {
            o.tls_key = value();
        } else if (arg == "--config") {
            o.config = value();
        } else if (arg == "--help" || arg == "-h") {
            usage("help");
        } else {
            usage("unknown argument " + arg);
        }
    }
    if (o.tls_cert.empty() != o.tls_key.empty()) usage("--tls-cert and --tls-key go together");
    return o;
}

int run(int argc, char** argv) {
    const Options opt = parse_args(argc, argv);

    State state;
    if (!opt.config.empty()) {
        std::string text = opt.config;
        if (text.find('{') == std::string::npos) {  // a file name
            std::ifstream in(opt.config);
            if (!in) usage("cannot read --config file " + opt.config);
            std::ostringstream ss;
            ss << in.rdbuf();
            text = ss.str();
        }
        boost::system::error_code ec;
        const auto v = boost::json::parse(text, ec);
        if (ec || !v.is_object()) usage("--config is not a JSON object");
        if (auto err = state.configure(v.get_object()); !err.empty()) usage("--config: " + err);
    }

    std::unique_ptr<ssl::context> tls;
    if (!opt.tls_cert.empty()) {
        tls = std::make_unique<ssl::context>(ssl::context::tls_server);
        tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                         ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
        boost::system::error_code ec;
        tls->use_certificate_chain_file(opt.tls_cert, ec);
        if (!ec) tls->use_private_key_file(opt.tls_key, ssl::context::pem, ec);
        if (ec) usage("cannot load the TLS certificate or key: " + ec.message());
    }

    std::vector<std::unique_ptr<asio::io_context>> ctxs;
    for (int i = 0; i < opt.threads; ++i) ctxs.push_back(std::make_unique<asio::io_context>(1));

    tcp::acceptor acceptor(*ctxs[0]);
    boost::system::error_code ec;
    const auto addr = asio::ip::make_address(opt.listen, ec);
    if (ec) usage("--listen is not an IP address");
    const tcp::endpoint ep(addr, opt.port);
    acceptor.open(ep.protocol(), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.bind(ep, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
        std::cerr << "rds-mock: cannot listen on " << opt.listen << ":" << opt.port << ": " << ec.message()
                  << "\n";
        return 1;
    }

    asio::signal_set signals(*ctxs[0], SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code& sec, int) {
        if (sec) return;
        for (auto& c : ctxs) c->stop();
    });

    asio::co_spawn(*ctxs[0], accept_loop(acceptor, ctxs, tls.get(), state), asio::detached);

    std::printf("LISTENING %u\n", static_cast<unsigned>(acceptor.local_endpoint().port()));
    std::fflush(stdout);

    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < ctxs.size(); ++i) {
        threads.emplace_back([&ctx = *ctxs[i]] {
            auto guard = asio::make_work_guard(ctx);
            ctx.run();
        });
    }
    ctxs[0]->run();
    for (auto& c : ctxs) c->stop();
    for (auto& t : threads) t.join();
    // On return, the acceptor goes first, then the contexts (destroying the suspended connection
    // coroutines), and only then the TLS context and the state they refer to.
    return 0;
}

}  // namespace
}  // namespace rdsgw::mock

int main(int argc, char** argv) {
    try {
        return rdsgw::mock::run(argc, argv);
    } catch (const std::exception& e) {
        std::cerr << "rds-mock: " << e.what() << "\n";
        return 1;
    }
}
