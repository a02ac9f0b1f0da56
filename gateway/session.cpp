#include "rdsgw/session.hpp"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <charconv>
#include <ctime>
#include <optional>
#include <type_traits>

#include "rdsgw/async_util.hpp"
#include "rdsgw/framing.hpp"
#include "rdsgw/log.hpp"
#include "rdsgw/text.hpp"

namespace rdsgw {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;
using asio::use_awaitable;
using std::chrono::milliseconds;

void SessionContext::connection_closed(ConnectionBudget& b) {
    b.open.fetch_sub(1);
    if (closing.load() && open_connections() == 0) {
        std::lock_guard lk(drained_mu);
        if (drained) drained->fire();
    }
}

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

// The status line and headers of a response, into `h` (its storage reused: the session keeps one per
// connection).
void response_head(std::string& h, const Response& r, std::size_t body_size, std::string_view request_id,
                   bool keep_alive, unsigned version) {
    // Written into storage sized up front (RawOut): every answer, hits included, has a head.
    const std::string_view reason = http::obsolete_reason(static_cast<http::status>(r.status));
    const std::string_view date = http_date();
    std::size_t bound = 160 + reason.size() + date.size() + r.content_type.size() + request_id.size();
    for (auto& [k, v] : r.headers) bound += k.size() + v.size() + 4;
    h.resize(bound);
    RawOut o(h.data());
    if (version == 10)
        o.lit("HTTP/1.0 ");
    else
        o.lit("HTTP/1.1 ");
    o.uint(r.status);
    o.ch(' ');
    o.raw(reason);
    o.lit("\r\nDate: ");
    o.raw(date);
    o.lit("\r\nContent-Type: ");
    o.raw(r.content_type);
    o.lit("\r\nContent-Length: ");
    o.uint(body_size);
    o.lit("\r\nX-Request-Id: ");
    o.raw(request_id);
    for (auto& [k, v] : r.headers) {
        o.lit("\r\n");
        o.raw(k);
        o.lit(": ");
        o.raw(v);
    }
    if (!keep_alive)
        o.lit("\r\nConnection: close");
    else if (version == 10)
        o.lit("\r\nConnection: keep-alive");
    o.lit("\r\n\r\n");
    RDSGW_INVARIANT(o.end() <= h.data() + bound);  // the bound above counts every piece
    h.resize(static_cast<std::size_t>(o.end() - h.data()));
}

enum class HeaderRead { complete, too_large, timed_out, closed, bare_line_ending };

template <class Stream>
class Session {
  public:
    Session(SessionContext& ctx, Worker& w, WorkerSessions& sessions, Stream& stream, beast::tcp_stream& low,
            bool admin, std::string client, std::string tls_subject, steady::time_point header_deadline)
        : ctx_(ctx),
          lim_(ctx.cfg.limits),
          w_(w),
          sessions_(sessions),
          stream_(stream),
          low_(low),
          admin_(admin),
          client_(std::move(client)),
          tls_subject_(std::move(tls_subject)),
          header_deadline_(header_deadline),
          // One deadline per phase (arm), not Beast's timer per operation; it runs at most the shorter of
          // the header and idle timeouts ahead, so ordinary requests' deadlines never re-set it.
          deadline_(low.get_executor(), low.socket(),
                    milliseconds(std::min(lim_.header_timeout_ms, lim_.idle_timeout_ms))) {
        low_.expires_never();
        slot_.low = &low;
        sessions_.list.push_front(&slot_);
        slot_it_ = sessions_.list.begin();
    }
    ~Session() { sessions_.list.erase(slot_it_); }
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    // Serves requests until the connection ends; then closes it gracefully.
    asio::awaitable<void> run() {
        bool keep = true;
        unsigned unread = 0;  // requests answered in a row from bytes already read
        for (bool first = true; keep; first = false) {
            if (buf_.size() == 0) {
                if (!co_await wait_for_request(first)) co_return;
                unread = 0;
            } else if (++unread % kPipelinedPerTurn == 0) {
                // Pipelined requests answered from the buffer (a hit's write completes without suspending)
                // would otherwise run back to back: let the thread's other connections have a turn.
                co_await asio::post(co_await asio::this_coro::executor, use_awaitable);
            }
            if (!first) header_deadline_ = steady::now() + milliseconds(lim_.header_timeout_ms);
            keep = co_await serve_one();
        }
        co_await linger_close();
    }

    // The TLS handshake, within the first request's header deadline. A failed handshake is counted as
    // rejected_requests{reason="auth"}, unless the client sent not one byte (a port check that connects and
    // closes, or a silent connection at the deadline): that is no attempt at all, and is not counted.
    asio::awaitable<bool> handshake() {
        if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
            co_return true;
        } else {
            arm_closing(header_deadline_);
            boost::system::error_code ec;
            co_await stream_.async_handshake(ssl::stream_base::server,
                                             asio::redirect_error(use_awaitable, ec));
            disarm();
            if (ec) {
                if (BIO_number_read(SSL_get_rbio(stream_.native_handle())) > 0)
                    ctx_.gw.metrics().rejected("auth");
                co_return false;
            }
            tls_subject_ = peer_subject(stream_.native_handle());
            tls_version_ = SSL_get_version(stream_.native_handle());
            co_return true;
        }
    }

    // Answers a connection over its listener's budget at once, without reading a request.
    asio::awaitable<void> refuse_connection(LocalError e) {
        Exchange& x = new_exchange();
        make_request_id(x.request_id);
        co_await refuse(x, std::move(e));
        co_await linger_close();
    }

  private:
    static constexpr unsigned kPipelinedPerTurn = 16;

    // Waits for the first byte of the next request: by the connection's header deadline for the first
    // request, within the idle timeout for later ones; during a drain, within the drain's grace period.
    asio::awaitable<bool> wait_for_request(bool first) {
        for (;;) {
            auto deadline = first ? header_deadline_ : steady::now() + milliseconds(lim_.idle_timeout_ms);
            if (ctx_.closing.load())
                deadline =
                    std::min(deadline, steady::time_point(steady::duration(ctx_.idle_close_at.load())));
            arm(deadline);
            slot_.idle = true;
            boost::system::error_code ec;
            // DrainingRead (async_util.hpp): after a short read, no speculative recv for the next request.
            std::size_t n = co_await io().async_read_some(DrainingRead(buf_.prepare(4096)),
                                                          asio::redirect_error(use_awaitable, ec));
            slot_.idle = false;
            disarm();
            if (!ec) {
                buf_.commit(n);
                co_return true;
            }
            // The drain cancelled this read: wait out the grace period, then close.
            if (ec == asio::error::operation_aborted && !deadline_.expired() && ctx_.closing.load()) continue;
            co_return false;
        }
    }

    // Reads the header block (request line, fields, empty line) into buf_: at most max_header_bytes in all,
    // all of it by header_deadline_. `len` is the block's length.
    asio::awaitable<HeaderRead> read_header(std::size_t& len) {
        const std::size_t limit = lim_.max_header_bytes;
        std::size_t scanned = 0;
        for (;;) {
            // RFC 9112 2.2: empty lines before a request line are ignored.
            while (buf_.size() >= 2 &&
                   std::string_view(static_cast<const char*>(buf_.data().data()), 2) == "\r\n")
                buf_.consume(2);
            const std::string_view data(static_cast<const char*>(buf_.data().data()), buf_.size());
            if (auto pos = data.find("\r\n\r\n", scanned > 3 ? scanned - 3 : 0);
                pos != std::string_view::npos) {
                len = pos + 4;
                if (len > limit) co_return HeaderRead::too_large;
                co_return has_bare_line_ending(data.substr(0, len), scanned > 0 ? scanned - 1 : 0)
                    ? HeaderRead::bare_line_ending
                    : HeaderRead::complete;
            }
            if (has_bare_line_ending(data.substr(0, std::min(data.size(), limit)),
                                     scanned > 0 ? scanned - 1 : 0))
                co_return HeaderRead::bare_line_ending;
            if (data.size() >= limit) co_return HeaderRead::too_large;
            scanned = data.size();
            arm(header_deadline_);
            boost::system::error_code ec;
            std::size_t n = co_await io().async_read_some(
                DrainingRead(buf_.prepare(std::min<std::size_t>(4096, limit + 4 - data.size()))),
                asio::redirect_error(use_awaitable, ec));
            disarm();
            if (ec == asio::error::operation_aborted && deadline_.expired())
                co_return buf_.size() ? HeaderRead::timed_out : HeaderRead::closed;
            if (ec) co_return HeaderRead::closed;
            buf_.commit(n);
        }
    }

    // The connection's one exchange, reset for the next request (its storage is kept: see Exchange::reset).
    Exchange& new_exchange() {
        Exchange& x = x_;
        x.reset();
        x.started = steady::now();
        x.wall_started = std::chrono::system_clock::now();
        x.client_addr = client_;
        x.tls_subject = tls_subject_;
        x.tls_version = tls_version_;
        x.admin_listener = admin_;
        return x;
    }

    // The headers the session itself reads, in one pass: the request id, the trace context, the user agent
    // and X-Forwarded-For (believed from trusted proxies only).
    void read_request_headers(Exchange& x, const RequestFields& f) const {
        std::string_view request_id, traceparent, tracestate;
        forwarded_.clear();
        for (const auto& field : f) {
            if (field.name() == http::field::user_agent) {
                x.user_agent = field.value();
                continue;
            }
            if (field.name() != http::field::unknown) continue;
            const std::string_view name = field.name_string();
            if (ascii_iequals(name, "X-Request-Id"))
                request_id = field.value();
            else if (ascii_iequals(name, "traceparent"))
                traceparent = field.value();
            else if (ascii_iequals(name, "tracestate"))
                tracestate = field.value();
            else if (ascii_iequals(name, "X-Forwarded-For"))
                forwarded_.push_back(field.value());
        }
        if (is_sane_request_id(request_id))
            x.request_id.assign(request_id);
        else
            make_request_id(x.request_id);
        continue_trace(x.trace, traceparent, tracestate);
        if (!forwarded_.empty() && !ctx_.trusted.empty())
            x.client = real_client(client_, forwarded_, ctx_.trusted);
    }

    // One request: read, check, run through the pipeline, answer. False: close the connection after it.
    asio::awaitable<bool> serve_one() {
        std::size_t len = 0;
        const HeaderRead hr = co_await read_header(len);
        Exchange& x = new_exchange();
        if (hr != HeaderRead::complete) {
            make_request_id(x.request_id);
            // A client that went away mid-header: nothing to answer, nobody to answer.
            if (hr != HeaderRead::closed) co_await refuse(x, header_refusal(hr));
            co_return false;
        }
        // The previous request's parser (and its fields in the arena) goes before the arena is reused.
        parser_.reset();
        arena_.reset();
        auto& parser = parser_.emplace(std::piecewise_construct, std::make_tuple(),
                                       std::make_tuple(ArenaAllocator<char>(&arena_)));
        parser.header_limit(static_cast<std::uint32_t>(len));
        // No body limit here: a Content-Length above 0 is refused by check_framing (413, this API has no
        // request bodies) and the body is never read; Beast's default (1 MiB) would answer a bigger one 400.
        parser.body_limit(boost::none);
        boost::system::error_code ec;
        parser.put(asio::buffer(buf_.data().data(), len), ec);
        buf_.consume(len);
        if (ec || !parser.is_header_done()) {
            make_request_id(x.request_id);
            co_await refuse(x, LocalError(400, "malformed HTTP request", ErrorSource::caller, "validation"));
            co_return false;
        }
        auto& req = parser.get();
        read_request_headers(x, req.base());
        x.method = req.method();
        x.method_string = req.method_string();
        x.target = req.target();
        x.version = req.version() == 10 ? 10 : 11;
        x.route = classify(x.target);
        x.fields = &req.base();
        Framing fr = check_framing(req.base(), req.version());
        if (fr.error) {
            co_await refuse(x, std::move(*fr.error));
            co_return false;
        }
        co_await run_pipeline(x);
        // From SIGTERM on, every answer says Connection: close, so clients move on before the listener
        // closes.
        const bool keep = fr.keep_alive && !x.response.close && !ctx_.gw.draining();
        x.bytes_sent = co_await write(x, keep);  // a failed write marks the client gone
        ctx_.gw.finish(x);
        const bool more = keep && !x.client_gone;
        x.reset();  // releases the answer and the callers' snapshot now, not at the next request
        // And the request's fields: the arena's buffer goes back to the thread's pool while the connection
        // waits for its next request (an idle keep-alive connection holds no header buffer).
        parser_.reset();
        arena_.reset();
        co_return more;
    }

    static LocalError header_refusal(HeaderRead hr) {
        switch (hr) {
            case HeaderRead::too_large:
                return LocalError(431, "request header too large", ErrorSource::caller, "limit");
            case HeaderRead::timed_out:
                return LocalError(408, "request header not received in time", ErrorSource::caller, "limit");
            default:
                return LocalError(400, "malformed HTTP request: header lines must end with CRLF",
                                  ErrorSource::caller, "validation");
        }
    }

    // The main port's in-flight limit (limits.max_inflight) counts its requests but /healthz: the admin
    // listener's requests and /healthz are never refused by it, so a flood on the main port never locks
    // operators out.
    asio::awaitable<void> run_pipeline(Exchange& x) {
        const bool counted = !admin_ && x.route != Route::healthz;
        if (counted && ctx_.inflight.fetch_add(1) >= lim_.max_inflight) {
            ctx_.inflight.fetch_sub(1);
            x.error = LocalError(503, "too many requests in flight", ErrorSource::internal, "limit")
                          .with("Retry-After", "1");
            ctx_.gw.respond(x);
            co_return;
        }
        ctx_.gw.metrics().inflight_add(1);
        // Cache hits and every refusal are answered inline; only a miss suspends.
        if (ctx_.gw.begin(x)) co_await ctx_.gw.continue_async(w_, x);
        if (counted) ctx_.inflight.fetch_sub(1);
        ctx_.gw.metrics().inflight_add(-1);
    }

    // A refusal the session makes itself (before or instead of the pipeline): answered, logged, counted,
    // and the connection closes.
    asio::awaitable<void> refuse(Exchange& x, LocalError e) {
        x.error = std::move(e);
        ctx_.gw.respond(x);
        x.bytes_sent = co_await write(x, false);
        ctx_.gw.finish(x);
    }

    // Head and body in one gathered write; the bytes written, 0 on error (then the client is gone).
    asio::awaitable<std::size_t> write(Exchange& x, bool keep) {
        const Response& r = x.response;
        const std::string_view body = r.body_view();
        response_head(head_, r, body.size(), x.request_id, keep, x.version);
        const std::array<asio::const_buffer, 2> bufs{
            asio::buffer(head_), asio::buffer(body.data(), x.method == http::verb::head ? 0 : body.size())};
        const std::size_t total = bufs[0].size() + bufs[1].size();
        std::size_t n = 0;
        if constexpr (std::is_same_v<Stream, beast::tcp_stream>) n = write_now(low_.socket(), bufs);
        if (n == total) co_return n;  // the usual case: written without suspending
        arm_closing(steady::now() + milliseconds(lim_.idle_timeout_ms));
        boost::system::error_code ec;
        beast::buffers_suffix<std::array<asio::const_buffer, 2>> rest(bufs);
        rest.consume(n);
        n += co_await asio::async_write(io(), rest, asio::redirect_error(use_awaitable, ec));
        disarm();
        if (ec) x.client_gone = true;  // logged as 499: the answer did not reach the client
        co_return ec ? 0 : n;
    }

    // Closes without losing the last answer: stop sending, then read and drop what the client still sends
    // for a moment (closing with unread bytes makes the kernel send a reset, which can destroy an answer the
    // client has not read yet).
    asio::awaitable<void> linger_close() {
        boost::system::error_code ec;
        if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
            low_.socket().shutdown(tcp::socket::shutdown_send, ec);
            arm_closing(steady::now() + std::chrono::seconds(1));
            std::array<char, 4096> sink;
            for (std::size_t total = 0; total < (64u << 10);) {
                std::size_t n = co_await low_.socket().async_read_some(
                    asio::buffer(sink), asio::redirect_error(use_awaitable, ec));
                if (ec) break;
                total += n;
            }
        } else {
            arm_closing(steady::now() + std::chrono::seconds(1));
            co_await stream_.async_shutdown(asio::redirect_error(use_awaitable, ec));
        }
        disarm();
    }

    // What reads and writes go through: for plain TCP the socket itself. Beast's tcp_stream would add its
    // timer check and bookkeeping to every operation, and its timer is never set here (LazyDeadline is).
    auto& io() {
        if constexpr (std::is_same_v<Stream, beast::tcp_stream>)
            return low_.socket();
        else
            return stream_;
    }

    // The connection's one deadline (LazyDeadline). A phase of one read arms with cancel (the default): the
    // read is cancelled, not the socket closed, and its caller learns of the expiry and can still
    // answer (a 408) or go on (a drain's grace period). A phase of several operations (a handshake, a
    // write, the closing reads) arms with close: an expiry between two of its operations would find none
    // to cancel, and the next one would not be bounded. Once such a phase has expired the connection is
    // over anyway (nothing more can be said to a client that does not take its answer).
    void arm(steady::time_point at) { deadline_.arm(at); }
    void arm_closing(steady::time_point at) { deadline_.arm(at, LazyDeadline::Expiry::close); }
    void disarm() { deadline_.disarm(); }

    SessionContext& ctx_;
    const LimitsConfig& lim_;
    Worker& w_;
    WorkerSessions& sessions_;
    Stream& stream_;
    beast::tcp_stream& low_;
    const bool admin_;
    const std::string client_;
    std::string tls_subject_;
    std::string_view tls_version_;  // a static string of OpenSSL's
    mutable std::vector<std::string_view> forwarded_;
    steady::time_point header_deadline_;
    LazyDeadline deadline_;
    beast::flat_buffer buf_;
    // One exchange, one header arena and one head buffer per connection, reused by each request.
    HeaderArena arena_;
    std::optional<http::request_parser<http::empty_body, ArenaAllocator<char>>> parser_;
    Exchange x_;
    std::string head_;
    SessionSlot slot_;
    std::list<SessionSlot*>::iterator slot_it_;
};

}  // namespace

namespace {
// Each kind of connection in its own coroutine: a coroutine frame keeps every local of every branch (GCC does
// not overlap them), so one run_session with all three Sessions took a 48 KiB frame per connection, three
// times one Session's (README, "Where the bytes go").
asio::awaitable<void> refuse_session(SessionContext& ctx, Worker& w, WorkerSessions& sessions,
                                     tcp::socket sock, bool admin, std::string client) {
    beast::tcp_stream stream(std::move(sock));
    Session<beast::tcp_stream> session(ctx, w, sessions, stream, stream, admin, std::move(client), "",
                                       steady::now() + std::chrono::seconds(1));
    co_await session.refuse_connection(
        LocalError(503, "too many open connections", ErrorSource::internal, "limit")
            .with("Retry-After", "1"));
}

asio::awaitable<void> tls_session(SessionContext& ctx, Worker& w, WorkerSessions& sessions, tcp::socket sock,
                                  bool admin, std::string client, steady::time_point header_deadline) {
    // OpenSSL reads the socket through a DrainingLayer (async_util.hpp): no speculative recv after a short
    // read. The handshake is bounded by the session's own deadline (arm_closing), not the tcp_stream's timer.
    using TlsStream = beast::ssl_stream<DrainingLayer<beast::tcp_stream>>;
    TlsStream stream(beast::tcp_stream(std::move(sock)), *ctx.tls);
    stream.next_layer().drain(true);
    Session<TlsStream> session(ctx, w, sessions, stream, beast::get_lowest_layer(stream), admin,
                               std::move(client), "", header_deadline);
    if (!co_await session.handshake()) co_return;
    co_await session.run();
}

asio::awaitable<void> plain_session(SessionContext& ctx, Worker& w, WorkerSessions& sessions,
                                    tcp::socket sock, bool admin, std::string client,
                                    steady::time_point header_deadline) {
    beast::tcp_stream stream(std::move(sock));
    Session<beast::tcp_stream> session(ctx, w, sessions, stream, stream, admin, std::move(client), "",
                                       header_deadline);
    co_await session.run();
}
}  // namespace

asio::awaitable<void> run_session(SessionContext& ctx, Worker& w, WorkerSessions& sessions, tcp::socket sock,
                                  bool admin, steady::time_point accepted) {
    ConnectionBudget& budget = admin ? ctx.admin_conns : ctx.main_conns;
    struct Closed {
        SessionContext& ctx;
        ConnectionBudget& b;
        ~Closed() { ctx.connection_closed(b); }
    } closed{ctx, budget};
    std::string client;
    {
        boost::system::error_code ec;
        auto ep = sock.remote_endpoint(ec);
        if (!ec) client = ep.address().to_string();
    }
    // One deadline for the TLS handshake, the first byte and the first request's header block.
    const auto header_deadline = accepted + milliseconds(ctx.cfg.limits.header_timeout_ms);
    boost::system::error_code ec;
    sock.set_option(tcp::no_delay(true), ec);
    if (budget.open.load() > budget.max)
        co_await refuse_session(ctx, w, sessions, std::move(sock), admin, std::move(client));
    else if (ctx.tls && !admin)
        co_await tls_session(ctx, w, sessions, std::move(sock), admin, std::move(client), header_deadline);
    else
        co_await plain_session(ctx, w, sessions, std::move(sock), admin, std::move(client), header_deadline);
}

}  // namespace rdsgw
