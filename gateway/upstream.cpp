#include "rdsgw/upstream.hpp"

#include <algorithm>
#include <charconv>

#include <openssl/ssl.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/url/parse.hpp>

#include "rdsgw/answer_parser.hpp"
#include "rdsgw/answer_wire.hpp"
#include "rdsgw/async_util.hpp"
#include "rdsgw/metrics.hpp"
#include "rdsgw/proxy.hpp"
#include "rdsgw/text.hpp"

namespace rdsgw {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
using asio::use_awaitable;

bool Endpoint::parse(std::string_view base_url, Endpoint& out, std::string& why) {
    auto u = boost::urls::parse_absolute_uri(base_url);
    if (!u) {
        why = "not an absolute URL";
        return false;
    }
    if (u->scheme() == "https")
        out.tls = true;
    else if (u->scheme() == "http")
        out.tls = false;
    else {
        why = "scheme must be http or https";
        return false;
    }
    if (u->host().empty()) {
        why = "no host";
        return false;
    }
    out.host = u->host_type() == boost::urls::host_type::ipv6 ? std::string(u->host_address())
                                                              : std::string(u->host());
    std::string default_port = out.tls ? "443" : "80";
    out.port = u->has_port() && !u->port().empty() ? std::string(u->port()) : default_port;
    std::string h = u->host_type() == boost::urls::host_type::ipv6 ? "[" + out.host + "]" : out.host;
    out.host_header = out.port == default_port ? h : h + ":" + out.port;
    return true;
}

std::string_view error_name(UpstreamResponse::Error e) {
    switch (e) {
        case UpstreamResponse::Error::none:
            return "none";
        case UpstreamResponse::Error::connect:
            return "connect";
        case UpstreamResponse::Error::tls:
            return "tls";
        case UpstreamResponse::Error::reset:
            return "reset";
        case UpstreamResponse::Error::timeout:
            return "timeout";
        case UpstreamResponse::Error::too_large:
            return "too_large";
        case UpstreamResponse::Error::protocol:
            return "protocol";
    }
    return "none";
}

std::shared_ptr<ssl::context> make_client_tls_context(const std::string& ca_file, std::string& why) {
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
    boost::system::error_code ec;
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    ctx->set_verify_mode(ssl::verify_peer, ec);
    if (ca_file.empty())
        ctx->set_default_verify_paths(ec);
    else
        ctx->load_verify_file(ca_file, ec);
    if (ec) {
        why = "cannot load CA " + (ca_file.empty() ? std::string("system store") : ca_file) + ": " +
              ec.message();
        return nullptr;
    }
    // Client-side session cache so sessions can be resumed (we keep the latest session per pool).
    SSL_CTX_set_session_cache_mode(ctx->native_handle(),
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    return ctx;
}

namespace {
// How far ahead a connection's deadline timer runs at most (LazyDeadline): exchanges' deadlines, seconds
// long, arm it once and are then only recorded.
constexpr std::chrono::seconds kDeadlineLead{60};
}  // namespace

struct ConnectionPool::Conn {
    std::optional<beast::tcp_stream> tcp;
    // OpenSSL reads the socket through a DrainingLayer (async_util.hpp), draining once the handshake is done.
    std::optional<beast::ssl_stream<DrainingLayer<beast::tcp_stream>>> tls;
    // An exchange's deadline (declared after the streams: it refers to their socket). Beast's stream
    // timeout bounds only the connect, the proxy's CONNECT and the TLS handshake.
    std::optional<LazyDeadline> deadline;
    beast::flat_buffer buf;
    steady::time_point idle_since{};
    std::uint64_t uses = 0;
    // The read kept queued on the socket while the connection idles in the pool (watch_idle); it replaces a
    // peek (one recv) per reuse.
    std::uint8_t watch_byte = 0;
    struct IdleWatch {
        std::uint64_t gen = 0;  // of the pending watch; a completion of an older one is ignored
        bool readable = false;  // the server closed, or sent bytes nobody asked for, while idle
    };
    std::shared_ptr<IdleWatch> watch = std::make_shared<IdleWatch>();

    beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *tcp; }

    // True when the server closed (or sent something unexpected on, a TLS close_notify included) the idle
    // connection, as the watch saw it.
    bool stale() { return !lowest().socket().is_open() || watch->readable; }
    // True when TLS data already sits unread in OpenSSL (decrypted, or still in its read buffer): bytes the
    // idle watch on the socket (stale()) cannot see any more.
    bool tls_pending() {
        if (!tls) return false;
        SSL* ssl = tls->native_handle();
        return SSL_pending(ssl) > 0 || BIO_ctrl_pending(SSL_get_rbio(ssl)) > 0;
    }
    void close() {
        boost::system::error_code ec;
        lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
        lowest().socket().close(ec);
    }
};

ConnectionPool::ConnectionPool(asio::any_io_executor ex, Endpoint ep, std::shared_ptr<ssl::context> tls,
                               PoolOptions opts, Metrics* metrics)
    : ex_(std::move(ex)),
      ep_(std::move(ep)),
      tls_(std::move(tls)),
      opts_(opts),
      metrics_(metrics),
      alive_(std::make_shared<bool>(true)) {
    if (opts_.proxy && opts_.proxy->applies_to(ep_.host)) proxy_ = opts_.proxy.get();
    asio::co_spawn(ex_, sweep_loop(), asio::detached);
}

ConnectionPool::~ConnectionPool() {
    *alive_ = false;
    close_idle();
}

std::size_t ConnectionPool::idle_count() const {
    return idle_.size();
}

void ConnectionPool::close_idle() {
    for (auto& c : idle_) c->close();
    if (metrics_ && !idle_.empty()) {
        int n = static_cast<int>(idle_.size());
        metrics_->upstream_connections_add(-n, -n);
    }
    idle_.clear();
}

asio::awaitable<void> ConnectionPool::sweep_loop() {
    auto alive = alive_;
    asio::steady_timer timer(ex_);
    for (;;) {
        // At least once a second, so that surplus idle connections (trim_surplus) go soon after a burst.
        timer.expires_after(std::clamp<std::chrono::milliseconds>(
            std::chrono::duration_cast<std::chrono::milliseconds>(opts_.idle_timeout / 2),
            std::chrono::milliseconds(50), std::chrono::milliseconds(1000)));
        boost::system::error_code ec;
        co_await timer.async_wait(asio::redirect_error(use_awaitable, ec));
        if (!*alive || ec) co_return;
        auto now = steady::now();
        trim_surplus(now);
        std::erase_if(idle_, [&](std::unique_ptr<Conn>& c) {
            if (now - c->idle_since < opts_.idle_timeout && !c->stale()) return false;
            c->close();
            if (metrics_) metrics_->upstream_connections_add(-1, -1);
            return true;
        });
    }
}

std::unique_ptr<ConnectionPool::Conn> ConnectionPool::take_idle() {
    auto now = steady::now();
    while (!idle_.empty()) {
        std::unique_ptr<Conn> c = std::move(idle_.back());
        idle_.pop_back();
        if (metrics_) metrics_->upstream_connections_add(0, -1);
        // Every reused connection is checked first: a server-side close, or bytes nobody asked for, which
        // would otherwise be read as this request's answer (another backup's links). What its watch saw
        // while it idled: no system call.
        if (now - c->idle_since >= opts_.idle_timeout || c->stale()) {
            c->close();
            if (metrics_) metrics_->upstream_connections_add(-1, 0);
            continue;
        }
        ++c->watch->gen;
        boost::system::error_code ec;
        c->lowest().socket().cancel(ec);  // the watch ends (its completion, aborted, is ignored)
        return c;
    }
    return nullptr;
}

void ConnectionPool::put_idle(std::unique_ptr<Conn> c) {
    if (opts_.max_idle == 0) {
        c->close();
        if (metrics_) metrics_->upstream_connections_add(-1, 0);
        return;
    }
    const auto now = steady::now();
    watch_idle(*c);
    c->idle_since = now;
    idle_.push_back(std::move(c));
    if (metrics_) metrics_->upstream_connections_add(0, 1);
    trim_surplus(now);
}

// While a connection idles, a one-byte read stays queued on its socket: whatever completes it (a byte
// nobody asked for, a TLS close_notify, the server's close, an error) marks the connection stale; take_idle
// cancels it. The answer's last read of the socket was a DrainingRead (plain, or OpenSSL's through the
// DrainingLayer), so queueing it costs no system call (a peek per reuse did, and so would an async_wait: an
// epoll_ctl); if that read filled its buffer, this one is tried at once.
void ConnectionPool::watch_idle(Conn& c) {
    const std::uint64_t gen = ++c.watch->gen;
    c.watch->readable = false;
    c.lowest().socket().async_read_some(DrainingRead(asio::buffer(&c.watch_byte, 1)),
                                        [w = c.watch, gen](const boost::system::error_code& ec, std::size_t) {
                                            if (ec != asio::error::operation_aborted && w->gen == gen)
                                                w->readable = true;
                                        });
}

// Idle connections beyond max_idle are not closed the moment they come back: closing them at once made
// every burst above max_idle concurrent requests open (and the upstream accept) new connections, a few
// percent of all misses in the benchmark. They linger kSurplusLinger, then go, oldest first (the pool hands
// out the newest). A hard bound of 8 x max_idle holds however long a burst lasts.
void ConnectionPool::trim_surplus(steady::time_point now) {
    constexpr auto kSurplusLinger = std::chrono::seconds(1);
    const std::size_t hard_max = opts_.max_idle * 8;
    std::size_t drop = 0;
    while (idle_.size() - drop > opts_.max_idle &&
           (idle_.size() - drop > hard_max || now - idle_[drop]->idle_since >= kSurplusLinger))
        ++drop;
    if (drop == 0) return;
    for (std::size_t i = 0; i < drop; ++i) idle_[i]->close();
    idle_.erase(idle_.begin(), idle_.begin() + static_cast<std::ptrdiff_t>(drop));
    if (metrics_) metrics_->upstream_connections_add(-static_cast<int>(drop), -static_cast<int>(drop));
}

asio::awaitable<bool> ConnectionPool::resolve(steady::time_point deadline, UpstreamResponse& err) {
    auto now = steady::now();
    if (!resolve_needed_ && !addrs_.empty() && now - resolved_at_ < opts_.dns_refresh) co_return true;
    tcp::resolver resolver(ex_);
    asio::steady_timer timer(ex_, deadline);
    // Bound the resolution by the deadline: cancel the resolver if the timer fires first.
    bool timed_out = false;
    timer.async_wait([&](boost::system::error_code ec) {
        if (!ec) {
            timed_out = true;
            resolver.cancel();
        }
    });
    boost::system::error_code ec;
    // Through a proxy, the proxy's name is resolved here and the endpoint's by the proxy.
    const std::string& host = proxy_ ? proxy_->host() : ep_.host;
    const std::string& port = proxy_ ? proxy_->port() : ep_.port;
    auto results = co_await resolver.async_resolve(host, port, asio::redirect_error(use_awaitable, ec));
    timer.cancel();
    if (ec) {
        if (!addrs_.empty() && !timed_out) co_return true;  // keep the last good answer
        err.error = timed_out ? UpstreamResponse::Error::timeout : UpstreamResponse::Error::connect;
        err.error_detail =
            std::string(proxy_ ? "cannot resolve proxy host " : "cannot resolve upstream host ") + host +
            ": " + (timed_out ? "timeout" : ec.message());
        co_return false;
    }
    addrs_ = std::move(results);
    resolved_at_ = now;
    resolve_needed_ = false;
    co_return true;
}

asio::awaitable<std::unique_ptr<ConnectionPool::Conn>> ConnectionPool::connect(steady::time_point deadline,
                                                                               UpstreamResponse& err) {
    if (!co_await resolve(deadline, err)) co_return nullptr;
    auto c = std::make_unique<Conn>();
    // Room for a whole answer in one read: Beast reads max(512, free capacity) bytes at a time, and a
    // typical answer (about 800 bytes) took two recvmsg calls with the default.
    c->buf.reserve(16 * 1024);
    auto connect_deadline = std::min(deadline, steady::now() + opts_.connect_timeout);
    if (ep_.tls)
        c->tls.emplace(ex_, *tls_);
    else
        c->tcp.emplace(ex_);
    auto& low = c->lowest();
    low.expires_at(connect_deadline);
    boost::system::error_code ec;
    co_await low.async_connect(addrs_, asio::redirect_error(use_awaitable, ec));
    if (ec) {
        resolve_needed_ = true;  // re-resolve on connection failure
        err.error =
            ec == beast::error::timeout ? UpstreamResponse::Error::timeout : UpstreamResponse::Error::connect;
        if (ec == beast::error::timeout && connect_deadline < deadline)
            err.error = UpstreamResponse::Error::connect;
        err.error_detail = (proxy_ ? "cannot connect to proxy " + proxy_->describe()
                                   : "cannot connect to upstream " + ep_.host_header) +
                           ": " +
                           (ec == beast::error::timeout ? std::string("connect timeout") : ec.message());
        co_return nullptr;
    }
    low.socket().set_option(tcp::no_delay(true), ec);
    if (proxy_ && !co_await open_tunnel(*c, connect_deadline, err)) {
        c->close();
        co_return nullptr;
    }
    ++opened_;
    if (metrics_) metrics_->upstream_connections_add(1, 0);
    if (ep_.tls) {
        SSL* ssl = c->tls->native_handle();
        if (!SSL_set_tlsext_host_name(ssl, ep_.host.c_str())) {
            err.error = UpstreamResponse::Error::tls;
            err.error_detail = "cannot set SNI";
            if (metrics_) metrics_->upstream_connections_add(-1, 0);
            co_return nullptr;
        }
        c->tls->set_verify_callback(ssl::host_name_verification(ep_.host));
        if (session_) SSL_set_session(ssl, static_cast<SSL_SESSION*>(session_.get()));
        low.expires_at(deadline);
        co_await c->tls->async_handshake(ssl::stream_base::client, asio::redirect_error(use_awaitable, ec));
        if (ec) {
            c->close();
            if (metrics_) metrics_->upstream_connections_add(-1, 0);
            err.error =
                ec == beast::error::timeout ? UpstreamResponse::Error::timeout : UpstreamResponse::Error::tls;
            std::string detail = ec.message();
            long vr = SSL_get_verify_result(ssl);
            if (vr != X509_V_OK)
                detail = std::string("certificate verification failed: ") + X509_verify_cert_error_string(vr);
            err.error_detail = "TLS handshake with upstream " + ep_.host_header + " failed: " + detail;
            co_return nullptr;
        }
        if (SSL_session_reused(ssl)) ++resumed_;
        // From here on reads are bounded by Conn::deadline, not Beast's timer: they may be DrainingReads.
        c->tls->next_layer().drain(true);
    }
    // From here on each exchange has one deadline (Conn::deadline), not Beast's timer per read and write.
    low.expires_never();
    // Closed when it passes: an answer takes several reads, and a read started after the moment of expiry
    // must fail too.
    c->deadline.emplace(ex_, low.socket(), kDeadlineLead, LazyDeadline::Expiry::close);
    co_return c;
}

// CONNECT host:port through the proxy; the answer must be 2xx with nothing after its header (the endpoint
// speaks only after our first bytes). Then the connection is a plain byte pipe to the endpoint.
asio::awaitable<bool> ConnectionPool::open_tunnel(Conn& c, steady::time_point deadline,
                                                  UpstreamResponse& err) {
    auto& low = c.lowest();
    low.expires_at(deadline);
    const std::string req = connect_request(ep_.host, ep_.port, proxy_->authorization());
    boost::system::error_code ec;
    co_await asio::async_write(low, asio::buffer(req), asio::redirect_error(use_awaitable, ec));
    beast::flat_buffer buf;
    http::response_parser<http::empty_body> parser;
    parser.skip(true);  // a 2xx answer to CONNECT has no body whatever its headers say
    parser.header_limit(16 * 1024);
    if (!ec) co_await http::async_read_header(low, buf, parser, asio::redirect_error(use_awaitable, ec));
    const std::string where = "proxy " + proxy_->describe();
    if (ec) {
        resolve_needed_ = true;
        err.error =
            ec == beast::error::timeout ? UpstreamResponse::Error::timeout : UpstreamResponse::Error::connect;
        err.error_detail = "CONNECT to upstream " + ep_.host_header + " through " + where + " failed: " +
                           (ec == beast::error::timeout ? std::string("timeout") : ec.message());
        co_return false;
    }
    const unsigned status = parser.get().result_int();
    if (status < 200 || status > 299 || buf.size() != 0) {
        err.error = UpstreamResponse::Error::connect;
        err.error_detail =
            "CONNECT to upstream " + ep_.host_header + " refused by " + where + ": " +
            (buf.size() != 0 ? std::string("bytes after its answer") : "HTTP " + std::to_string(status));
        co_return false;
    }
    co_return true;
}

namespace {

std::string serialize_request(const UpstreamRequest& req, const Endpoint& ep) {
    // Sized exactly first, then written piece by piece with no capacity check (RawOut).
    const bool length = !req.body.empty() || req.method == "POST" || req.method == "PUT";
    char length_text[20];
    const std::size_t length_size =
        length ? static_cast<std::size_t>(
                     std::to_chars(length_text, length_text + sizeof length_text, req.body.size()).ptr -
                     length_text)
               : 0;
    std::size_t size = req.method.size() + 1 + req.target.size() + 17 + ep.host_header.size() + 2 + 2 +
                       req.body.size() + (length ? 18 + length_size : 0);
    for (const auto& [k, v] : req.headers) size += k.size() + 2 + v.size() + 2;
    std::string out;
    out.resize(size);
    RawOut o(out.data());
    o.raw(req.method);
    o.ch(' ');
    o.raw(req.target);
    o.lit(" HTTP/1.1\r\nHost: ");
    o.raw(ep.host_header);
    o.lit("\r\n");
    for (const auto& [k, v] : req.headers) {
        o.raw(k);
        o.lit(": ");
        o.raw(v);
        o.lit("\r\n");
    }
    if (length) {
        o.lit("Content-Length: ");
        o.raw(std::string_view(length_text, length_size));
        o.lit("\r\n");
    }
    o.lit("\r\n");
    o.raw(req.body);
    RDSGW_INVARIANT(o.end() == out.data() + out.size());
    return out;
}

// Nothing of an answer that failed (or was abandoned) half-way is reported.
void clear_answer(UpstreamResponse& res) {
    res.status = 0;
    res.body.clear();
    res.request_id.clear();
    res.retry_after.clear();
    res.content_encoding.clear();
    res.transfer_encoding.clear();
    res.subject_token.clear();
}

// What a failed read means for the caller (unless the exchange already said so).
void describe_read_error(const boost::system::error_code& ec, UpstreamResponse& res) {
    if (ec == beast::error::timeout) {
        res.error = UpstreamResponse::Error::timeout;
        res.error_detail = "upstream did not answer in time";
    } else if (ec == http::error::body_limit || ec == http::error::header_limit) {
        res.error = UpstreamResponse::Error::too_large;
        res.error_detail = "upstream answer too large";
    } else if (res.got_response_bytes && ec != http::error::partial_message &&
               ec != asio::error::connection_reset && ec != asio::error::eof &&
               ec != ssl::error::stream_truncated) {
        res.error = UpstreamResponse::Error::protocol;
        res.error_detail = "malformed upstream answer: " + ec.message();
    } else {
        res.error = UpstreamResponse::Error::reset;
        res.error_detail = res.got_response_bytes ? "upstream closed the connection mid-answer"
                                                  : "upstream closed the connection without answering";
    }
}

constexpr int kMaxInterimAnswers = 4;

// http::async_read's loop (beast/http/impl/read.hpp: read_op over read_some_op, eager parsing) with the
// reads awaited by the exchange itself, over the plain socket or the TLS stream: no coroutine of its own (a
// layer costs a frame and a trip through Asio's awaitable machinery per miss) and none of the two handler
// layers, executor copies and work counting of Beast's composed operations. Same results: parse what the
// buffer holds, read when the parser needs more, end_of_stream for an EOF before any byte, put_eof() after
// some (a body delimited by the close), buffer_overflow when the buffer cannot grow.
//
// With `plain` set, the answer's first bytes go to parse_plain_answer() (answer_wire.hpp) before Beast sees
// any: a complete answer of the common shape is taken from there (into *plain); anything else, an answer
// not whole in the buffer included, goes to Beast from its first byte, as before.
class AnswerReader {
  public:
    AnswerReader(beast::flat_buffer& b, http::basic_parser<false>& p, UpstreamResponse* plain,
                 std::size_t max_body)
        : b_(b), p_(p), plain_(plain), max_body_(max_body) {
        p_.eager(true);
        need_read_ = b_.size() == 0;
    }
    // Parses what the buffer holds; returns where the next read goes, or nothing when the answer is done or
    // failed (ec).
    std::optional<asio::mutable_buffer> next(boost::system::error_code& ec) {
        for (;;) {
            if (!need_read_) {
                if (plain_) {
                    const auto* data = static_cast<const char*>(b_.data().data());
                    if (PlainAnswer a; parse_plain_answer({data, b_.size()}, max_body_, a)) {
                        take_plain_answer(a, *plain_);
                        b_.consume(a.size);
                        plain_done_ = true;
                        plain_keep_alive_ = a.keep_alive;
                        return std::nullopt;
                    }
                    plain_ = nullptr;  // declined: Beast reads this answer, from its first byte
                }
                b_.consume(p_.put(b_.data(), ec));
                if (ec == http::error::need_more) {
                    ec = {};
                } else if (ec || p_.is_done()) {
                    return std::nullopt;
                } else {
                    need_read_ =
                        b_.size() == 0;  // parsed without finishing: parse on, or read when all is used
                    continue;
                }
            }
            const std::size_t size = beast::read_size(b_, 65536);
            if (size == 0) {
                ec = http::error::buffer_overflow;
                return std::nullopt;
            }
            try {
                return b_.prepare(size);
            } catch (const std::length_error&) {
                ec = http::error::buffer_overflow;
                return std::nullopt;
            }
        }
    }
    // Takes a read's outcome: n bytes into the buffer next() gave, and its error. False: the answer is done
    // or failed (ec).
    bool read(std::size_t n, boost::system::error_code& ec) {
        b_.commit(n);
        if (ec == asio::error::eof) {
            if (!p_.got_some()) {
                ec = http::error::end_of_stream;
                return false;
            }
            ec = {};
            p_.put_eof(ec);  // done, or why the message cannot end here
            return false;
        }
        if (ec) return false;
        need_read_ = false;
        return true;
    }
    // Whether any byte of the answer was read, and whether the connection may carry another exchange, as
    // the parser that took the answer says.
    bool got_some() const { return plain_done_ || p_.got_some(); }
    bool keep_alive() const { return plain_done_ ? plain_keep_alive_ : p_.keep_alive(); }

  private:
    beast::flat_buffer& b_;
    http::basic_parser<false>& p_;
    UpstreamResponse* plain_;
    std::size_t max_body_;
    bool need_read_;
    bool plain_done_ = false, plain_keep_alive_ = false;
};

}  // namespace

asio::awaitable<void> ConnectionPool::exchange(const UpstreamRequest& req, steady::time_point deadline,
                                               UpstreamResponse& res) {
    auto alive = alive_;
    const std::string wire = serialize_request(req, ep_);
    const bool head = req.method == "HEAD";
    const std::size_t max_body = opts_.max_response_bytes;  // read before any suspension (see alive_)
    for (int round = 0; round < 2; ++round) {
        res = UpstreamResponse{};  // the caller's object: fresh for each round
        std::unique_ptr<Conn> c = round == 0 ? take_idle() : nullptr;
        bool reused = c != nullptr;
        if (!c) {
            c = co_await connect(deadline, res);
            if (!c) co_return;
        }
        res.reused_connection = reused;
        c->deadline->arm(deadline);
        // Writes the request and reads its answer, in this coroutine (one of its own cost a frame and a trip
        // through Asio's awaitable machinery per miss). Over plain TCP straight on the socket: the
        // exchange's deadline is Conn::deadline, and Beast's stream would only add its bookkeeping to every
        // read and write. Interim answers (1xx but 101, e.g. 103 Early Hints), which Beast reads as complete
        // messages, are skipped, kMaxInterimAnswers at most: one more is a protocol error (res.error set
        // here), not an answer. `keep`: the connection may be pooled: the answer said keep-alive, was final
        // (>= 200) and left no bytes behind (they would be taken for the next request's answer).
        bool keep = false;
        boost::system::error_code ec;
        if (c->tls)
            co_await asio::async_write(*c->tls, asio::buffer(wire), asio::redirect_error(use_awaitable, ec));
        else if (const std::size_t n = write_now(c->tcp->socket(), {{asio::buffer(wire)}}); n < wire.size())
            co_await asio::async_write(c->tcp->socket(), asio::buffer(wire) + n,
                                       asio::redirect_error(use_awaitable, ec));
        for (int interim = 0; !ec; ++interim) {
            AnswerParser parser(res);
            parser.body_limit(max_body);
            parser.header_limit(64 * 1024);
            if (head) parser.skip(true);
            ec = {};  // clear already (the loop's condition): the reader starts from a clean code, as before
            // The plain reading is for final answers to requests with a body (1xx and HEAD are Beast's).
            AnswerReader reader(c->buf, parser, head ? nullptr : &res, max_body);
            for (std::optional<asio::mutable_buffer> space; (space = reader.next(ec));) {
                std::size_t n = 0;
                if (c->tls)
                    n = co_await c->tls->async_read_some(*space, asio::redirect_error(use_awaitable, ec));
                else  // DrainingRead (async_util.hpp): no speculative recv after a short one
                    n = co_await c->tcp->socket().async_read_some(DrainingRead(*space),
                                                                  asio::redirect_error(use_awaitable, ec));
                if (!reader.read(n, ec)) break;
            }
            res.got_response_bytes = res.got_response_bytes || reader.got_some();
            if (ec || !*alive) break;
            const bool is_interim = res.status >= 100 && res.status < 200 && res.status != 101;
            if (is_interim && interim >= kMaxInterimAnswers) {
                res.error = UpstreamResponse::Error::protocol;
                res.error_detail = "upstream sent too many interim (1xx) answers";
                ec = http::error::bad_status;  // ends the exchange like any other broken answer
            } else if (is_interim) {
                clear_answer(res);
                continue;
            }
            keep = !ec && res.status >= 200 && reader.keep_alive() && c->buf.size() == 0 && !c->tls_pending();
            break;
        }
        c->deadline->disarm();
        keep = keep && !c->deadline->expired();  // it closed the socket just after the answer was read
        if (ec && c->deadline->expired()) ec = beast::error::timeout;  // what the deadline's close caused
        if (!*alive) {
            clear_answer(res);
            co_return;
        }
        if (ec) {
            clear_answer(res);
            c->close();
            if (metrics_) metrics_->upstream_connections_add(-1, 0);
            // A reused connection that failed before any answer byte: the server had closed it; go again on a
            // fresh connection without the caller noticing.
            if (reused && !res.got_response_bytes && ec != beast::error::timeout && steady::now() < deadline)
                continue;
            if (res.error == UpstreamResponse::Error::none) describe_read_error(ec, res);
            co_return;
        }
        if (c->tls) {
            // Keep the newest session (TLS 1.3 tickets arrive after the handshake) for resumption.
            if (SSL_SESSION* s = SSL_get1_session(c->tls->native_handle()))
                session_ =
                    std::shared_ptr<void>(s, [](void* p) { SSL_SESSION_free(static_cast<SSL_SESSION*>(p)); });
        }
        ++c->uses;
        if (keep)
            put_idle(std::move(c));
        else {
            c->close();
            if (metrics_) metrics_->upstream_connections_add(-1, 0);
        }
        co_return;
    }
    res = UpstreamResponse{};
    res.error = UpstreamResponse::Error::reset;
    res.error_detail = "upstream closed the connection without answering";
}

}  // namespace rdsgw
