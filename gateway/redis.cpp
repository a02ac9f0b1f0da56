// The Redis client (see include/rdsgw/redis.hpp for the contract).
//
// Decisions worth knowing:
// - Protocol: hiredis's redisFormatCommandArgv builds every command and its redisReader parses every reply;
//   this file only moves bytes (Debian's hiredis 0.14 has no Asio adapter, and its async context would
//   bring its own socket handling; the reader/formatter pair is its documented I/O-free interface).
// - Everything below RedisClient runs on the client's one io_context thread, so no locks but the status
//   snapshot. An operation (Op) is one or more commands whose replies arrive back to back on one
//   connection. A Session is one live socket with its write queue and its in-flight FIFO; a Slot is one
//   pooled connection's life (connect, AUTH/SELECT/PING, serve, back off, again).
// - serve() runs a read loop, a write loop and a watchdog as one `||` group: the first to end (error,
//   close, overdue answer) closes the session and the others follow. Ops written but unanswered then fail
//   ("disconnected"); ops not yet written go to another connection (they were never sent).
// - The circuit breaker is the gateway's CircuitBreaker: timeouts, lost connections and Redis's
//   LOADING/BUSY/MASTERDOWN/CLUSTERDOWN/TRYAGAIN errors count as failures; any other answer is a success.
//   While it is open, operations fail at once; a health tick PINGs through it so that recovery is seen
//   even without traffic.
#include "rdsgw/redis.hpp"

#include <hiredis/hiredis.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>

#include "rdsgw/log.hpp"
#include "rdsgw/resilience.hpp"
#include "rdsgw/text.hpp"
#include "rdsgw/upstream.hpp"

namespace rdsgw {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using unix_socket = asio::local::stream_protocol;
using steady = std::chrono::steady_clock;
using asio::use_awaitable;
using boost::system::error_code;
using namespace asio::experimental::awaitable_operators;

namespace {

struct Address {
    bool unix_path = false;
    std::string host, port, path;
};

std::optional<Address> parse_address(std::string_view a) {
    Address out;
    if (a.rfind("unix:", 0) == 0) {
        out.unix_path = true;
        out.path = std::string(a.substr(5));
        if (out.path.empty() || out.path.front() != '/') return std::nullopt;
        return out;
    }
    const auto colon = a.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == a.size()) return std::nullopt;
    std::string_view host = a.substr(0, colon);
    if (host.front() == '[') {
        if (host.size() < 3 || host.back() != ']') return std::nullopt;
        host = host.substr(1, host.size() - 2);
    }
    out.host = std::string(host);
    out.port = std::string(a.substr(colon + 1));
    return out;
}

RedisReply convert(const redisReply* r) {
    RedisReply out;
    switch (r->type) {
        case REDIS_REPLY_STRING:
            out.kind = RedisReply::Kind::string;
            out.str.assign(r->str, r->len);
            break;
        case REDIS_REPLY_STATUS:
            out.kind = RedisReply::Kind::status;
            out.str.assign(r->str, r->len);
            break;
        case REDIS_REPLY_ERROR:
            out.kind = RedisReply::Kind::error;
            out.str.assign(r->str, r->len);
            break;
        case REDIS_REPLY_INTEGER:
            out.kind = RedisReply::Kind::integer;
            out.integer = r->integer;
            break;
        case REDIS_REPLY_ARRAY:
            out.kind = RedisReply::Kind::array;
            out.elements.reserve(r->elements);
            for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
            break;
        default:
            out.kind = RedisReply::Kind::nil;
    }
    return out;
}

std::string format_command(const RedisClient::Args& args) {
    if (args.empty()) throw std::invalid_argument("redis: empty command");
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    argv.reserve(args.size());
    lens.reserve(args.size());
    for (const auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    char* out = nullptr;
    const int n = redisFormatCommandArgv(&out, static_cast<int>(args.size()), argv.data(), lens.data());
    if (n < 0 || !out) throw std::bad_alloc();
    std::string wire(out, static_cast<std::size_t>(n));
    redisFreeCommand(out);
    return wire;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (char& c : out) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    return out;
}

bool starts_with(std::string_view s, std::string_view p) {
    return s.substr(0, p.size()) == p;
}

// Answers that say Redis cannot serve now (as opposed to "your command was wrong").
bool counts_as_failure(const RedisReply& r) {
    if (r.failed()) return r.str != "breaker_open" && r.str != "stopped";
    if (!r.error()) return false;
    for (std::string_view p : {"LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN"})
        if (starts_with(r.str, p)) return true;
    return false;
}

// Redis's own message for logs and status, shortened, with the password scrubbed should it ever appear.
std::string safe_message(std::string msg, const std::string& password) {
    if (!password.empty()) {
        for (auto at = msg.find(password); at != std::string::npos; at = msg.find(password))
            msg.replace(at, password.size(), "***");
    }
    if (msg.size() > 160) msg.resize(160);
    return msg;
}

struct ReaderFree {
    void operator()(redisReader* r) const { redisReaderFree(r); }
};

// One socket of whichever kind the address asks for.
struct Stream {
    std::optional<tcp::socket> tcp_;
    std::optional<unix_socket::socket> unix_;
    std::optional<ssl::stream<tcp::socket>> tls_;

    asio::awaitable<std::size_t> read_some(asio::mutable_buffer b, error_code& ec) {
        auto tok = asio::redirect_error(use_awaitable, ec);
        if (tls_) return tls_->async_read_some(b, tok);
        if (unix_) return unix_->async_read_some(b, tok);
        return tcp_->async_read_some(b, tok);
    }
    asio::awaitable<std::size_t> write(const std::vector<asio::const_buffer>& b, error_code& ec) {
        auto tok = asio::redirect_error(use_awaitable, ec);
        if (tls_) return asio::async_write(*tls_, b, tok);
        if (unix_) return asio::async_write(*unix_, b, tok);
        return asio::async_write(*tcp_, b, tok);
    }
    void close() {
        error_code ec;
        if (tls_) tls_->lowest_layer().close(ec);
        if (unix_) unix_->close(ec);
        if (tcp_) tcp_->close(ec);
    }
};

// The connection handshake: {command, what it is (for messages)}. (Built outside the coroutines: GCC 12
// miscompiles braced lists of string literals inside them.)
std::vector<std::pair<std::string, std::string>> handshake_steps(const RedisOptions& o) {
    std::vector<std::pair<std::string, std::string>> steps;
    if (!o.password.empty()) {
        RedisClient::Args auth{"AUTH"};
        if (!o.user.empty()) auth.push_back(o.user);
        auth.push_back(o.password);
        steps.emplace_back(format_command(auth), "authentication");
    }
    if (o.db != 0)
        steps.emplace_back(format_command({"SELECT", std::to_string(o.db)}),
                           "SELECT " + std::to_string(o.db));
    steps.emplace_back(format_command({"PING"}), "PING");
    return steps;
}

std::string ping_wire() {
    return format_command({"PING"});
}

std::string subscribe_wire(const std::vector<std::string>& channels) {
    RedisClient::Args cmd{"SUBSCRIBE"};
    cmd.insert(cmd.end(), channels.begin(), channels.end());
    return format_command(cmd);
}

std::vector<RedisClient::Args> load_then(const RedisScript& script, RedisClient::Args cmd) {
    std::vector<RedisClient::Args> v;
    v.push_back({"SCRIPT", "LOAD", script.body()});
    v.push_back(std::move(cmd));
    return v;
}

RedisClient::Args evalsha_args(const RedisScript& script, RedisClient::Args keys, RedisClient::Args argv) {
    RedisClient::Args cmd{"EVALSHA", script.sha1(), std::to_string(keys.size())};
    for (auto& k : keys) cmd.push_back(std::move(k));
    for (auto& a : argv) cmd.push_back(std::move(a));
    return cmd;
}

// Waits until the timer fires or is cancelled.
asio::awaitable<void> wait_on(asio::steady_timer& t) {
    error_code ec;
    co_await t.async_wait(asio::redirect_error(use_awaitable, ec));
}

}  // namespace

RedisReply RedisReply::failure(std::string_view why) {
    RedisReply r;
    r.kind = Kind::failed;
    r.str = std::string(why);
    return r;
}

RedisScript::RedisScript(std::string body) : body_(std::move(body)) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_Digest(body_.data(), body_.size(), md, &n, EVP_sha1(), nullptr) != 1)
        throw std::runtime_error("redis: SHA-1 failed");
    sha1_ = hex_lower(md, n);
}

// ------------------------------------------------------------------------------------------ internals

struct RedisClient::Op {
    std::string wire;
    std::size_t expected = 1;
    std::vector<RedisReply> replies;
    std::string label;
    steady::time_point started, deadline;
    std::function<void(std::vector<RedisReply>)> done;
    std::unique_ptr<asio::steady_timer> timer;
    bool finished = false;
    bool ticket = false;  // let through by the breaker: must report success or failure
};

namespace {

using OpPtr = std::shared_ptr<RedisClient::Op>;

struct Session {
    explicit Session(const asio::any_io_executor& ex)
        : resolver(ex), wake(ex), watchdog(ex), reader(redisReaderCreate()) {
        if (!reader) throw std::bad_alloc();
    }
    struct Out {
        std::string raw;  // subscriber commands (no reply matching)
        OpPtr op;
    };
    Stream stream;
    tcp::resolver resolver;
    asio::steady_timer wake;      // the write loop sleeps on it
    asio::steady_timer watchdog;  // the watch loop's tick; also ends a connect attempt on stop
    std::unique_ptr<redisReader, ReaderFree> reader;
    std::deque<Out> out;
    std::deque<OpPtr> in_flight;
    std::array<char, 16 * 1024> buf{};
    bool closed = false;
    std::string error;
    // subscriber connection
    std::size_t confirms_pending = 0;
    bool ping_outstanding = false;
    steady::time_point ping_sent{};

    std::size_t load() const { return out.size() + in_flight.size(); }
    void enqueue(Out o) {
        out.push_back(std::move(o));
        wake.cancel();
    }
    void fail(std::string why) {
        if (error.empty()) error = std::move(why);
        closed = true;
        stream.close();
        resolver.cancel();
        wake.cancel();
        watchdog.cancel();
    }
    enum class Pop { reply, more, bad };
    Pop pop(RedisReply& out_reply) {
        void* r = nullptr;
        if (redisReaderGetReply(reader.get(), &r) != REDIS_OK) return Pop::bad;
        if (!r) return Pop::more;
        out_reply = convert(static_cast<redisReply*>(r));
        freeReplyObject(r);
        return Pop::reply;
    }
    // The next complete reply (handshake only); nullopt with `error` set when the connection ends first.
    asio::awaitable<std::optional<RedisReply>> next_reply() {
        for (;;) {
            RedisReply r;
            const Pop p = pop(r);
            if (p == Pop::reply) co_return r;
            if (p == Pop::bad) {
                fail(std::string("protocol error: ") + reader->errstr);
                co_return std::nullopt;
            }
            error_code ec;
            const std::size_t n = co_await stream.read_some(asio::buffer(buf), ec);
            if (ec) {
                fail(ec == asio::error::eof ? "connection closed by Redis" : "read failed: " + ec.message());
                co_return std::nullopt;
            }
            redisReaderFeed(reader.get(), buf.data(), n);
        }
    }
};

}  // namespace

class RedisClient::Impl {
  public:
    class Slot;
    Impl(RedisOptions o, RedisEvents e);
    ~Impl();
    void start();
    void stop();

    // All below: on the client thread.
    void submit(const OpPtr& op);
    void dispatch(const OpPtr& op);
    void finish(const OpPtr& op, std::vector<RedisReply> replies);
    void fail(const OpPtr& op, std::string_view why) {
        finish(op, std::vector<RedisReply>(op->expected, RedisReply::failure(why)));
    }
    void slot_changed();
    void update_status();
    void add_channel(std::string channel, std::function<void(std::string_view)> handler);
    void deliver(std::string_view channel, std::string_view payload);
    void set_subscribed(bool on);
    asio::awaitable<void> health_loop();

    RedisOptions opts;
    RedisEvents events;
    Address addr;
    asio::io_context io{1};
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
    std::thread thread;
    std::future<void> thread_done;
    CircuitBreaker breaker;
    std::shared_ptr<ssl::context> tls_ctx;
    std::vector<std::shared_ptr<Slot>> slots;
    std::shared_ptr<Slot> sub;
    std::deque<OpPtr> parked;  // waiting while a connection is being established
    std::size_t next_slot = 0;
    bool stopping = false;
    std::string last_failure = "none";
    asio::steady_timer health{io};
    std::map<std::string, std::vector<std::function<void(std::string_view)>>, std::less<>> channels;
    std::vector<std::function<void()>> sub_hooks;
    std::atomic<bool> subscribed{false};
    mutable std::mutex status_mu;
    RedisStatus status{false, "connecting"};
};

class RedisClient::Impl::Slot : public std::enable_shared_from_this<Slot> {
  public:
    enum class State { connecting, ready, down };
    Slot(Impl& c, bool subscriber) : c_(c), subscriber_(subscriber), backoff_(c.io) {}
    asio::awaitable<void> run();
    void stop() {
        backoff_.cancel();
        if (session) session->fail("stopped");
    }
    bool ready() const { return state == State::ready && session && !session->closed; }
    // Why it is not serving: the live session's end, or the last attempt's failure.
    std::string problem() const {
        if (session && session->closed && !session->error.empty()) return session->error;
        return last_error;
    }

    State state = State::connecting;
    std::shared_ptr<Session> session;  // the current attempt or live connection
    std::string last_error;

  private:
    asio::awaitable<std::string> connect(Session& s);
    static asio::awaitable<void> expire(Session& s);
    asio::awaitable<void> open(Session& s, std::string& err);
    asio::awaitable<void> open_tcp(Session& s, std::string& err);
    asio::awaitable<void> handshake(Session& s, std::string& err);
    asio::awaitable<void> serve(Session& s);
    asio::awaitable<void> read_loop(Session& s);
    asio::awaitable<void> write_loop(Session& s);
    asio::awaitable<void> watch_loop(Session& s);
    bool on_reply(Session& s, RedisReply r);
    bool on_push(Session& s, RedisReply r);
    void teardown(Session& s);

    Impl& c_;
    bool subscriber_;
    asio::steady_timer backoff_;
};

// ------------------------------------------------------------------------------------------ Slot

asio::awaitable<void> RedisClient::Impl::Slot::run() {
    auto self = shared_from_this();
    unsigned failures = 0;
    while (!c_.stopping) {
        state = State::connecting;
        c_.slot_changed();
        session = std::make_shared<Session>(c_.io.get_executor());
        auto s = session;
        std::string err = co_await connect(*s);
        if (c_.stopping) break;
        if (err.empty()) {
            failures = 0;
            last_error.clear();
            state = State::ready;
            c_.slot_changed();
            co_await serve(*s);
            err = s->error;
        }
        s->fail(err);
        state = State::down;
        last_error = err;
        teardown(*s);
        c_.slot_changed();
        if (c_.stopping) break;
        backoff_.expires_after(backoff_delay(++failures, c_.opts.reconnect_base, c_.opts.reconnect_max));
        co_await wait_on(backoff_);
    }
    state = State::down;
    if (session) {
        session->fail("stopped");
        teardown(*session);
    }
}

asio::awaitable<std::string> RedisClient::Impl::Slot::connect(Session& s) {
    std::string err;
    s.watchdog.expires_after(c_.opts.connect_timeout);
    auto r = co_await (open(s, err) || expire(s));
    if (c_.stopping) co_return "stopped";
    if (r.index() == 1)
        co_return "no connection within connect_timeout_ms (" +
            std::to_string(c_.opts.connect_timeout.count()) + " ms)" + (err.empty() ? "" : ": " + err);
    co_return err;
}

// Ends a connect attempt at its deadline (or on stop): closing the socket and cancelling the resolver make
// whatever step is pending complete at once.
asio::awaitable<void> RedisClient::Impl::Slot::expire(Session& s) {
    error_code ec;
    co_await s.watchdog.async_wait(asio::redirect_error(use_awaitable, ec));
    if (!ec || s.closed) {
        s.stream.close();
        s.resolver.cancel();
    }
}

asio::awaitable<void> RedisClient::Impl::Slot::open(Session& s, std::string& err) {
    error_code ec;
    if (c_.addr.unix_path) {
        s.stream.unix_.emplace(c_.io.get_executor());
        co_await s.stream.unix_->async_connect(unix_socket::endpoint(c_.addr.path),
                                               asio::redirect_error(use_awaitable, ec));
        if (ec) err = "cannot connect to " + c_.opts.address + ": " + ec.message();
    } else {
        co_await open_tcp(s, err);
    }
    if (err.empty()) co_await handshake(s, err);
}

asio::awaitable<void> RedisClient::Impl::Slot::open_tcp(Session& s, std::string& err) {
    error_code ec;
    auto endpoints = co_await s.resolver.async_resolve(c_.addr.host, c_.addr.port,
                                                       asio::redirect_error(use_awaitable, ec));
    if (ec) {
        err = "cannot resolve " + c_.addr.host + ": " + ec.message();
        co_return;
    }
    auto& sock = s.stream.tcp_.emplace(c_.io.get_executor());  // in the stream: expire() can close it
    co_await asio::async_connect(sock, endpoints, asio::redirect_error(use_awaitable, ec));
    if (ec) {
        err = "cannot connect to " + c_.opts.address + ": " + ec.message();
        co_return;
    }
    sock.set_option(tcp::no_delay(true), ec);
    if (!c_.opts.tls) co_return;
    auto& tls = s.stream.tls_.emplace(std::move(sock), *c_.tls_ctx);
    s.stream.tcp_.reset();
    const std::string& name = c_.opts.tls_server_name.empty() ? c_.addr.host : c_.opts.tls_server_name;
    SSL_set_tlsext_host_name(tls.native_handle(), name.c_str());
    tls.set_verify_callback(ssl::host_name_verification(name));
    co_await tls.async_handshake(ssl::stream_base::client, asio::redirect_error(use_awaitable, ec));
    if (ec) {
        const long vr = SSL_get_verify_result(tls.native_handle());
        err = "TLS handshake with " + c_.opts.address +
              " failed: " + (vr != X509_V_OK ? std::string(X509_verify_cert_error_string(vr)) : ec.message());
    }
}

// AUTH [user] password, SELECT db, PING: pipelined, each answer checked.
asio::awaitable<void> RedisClient::Impl::Slot::handshake(Session& s, std::string& err) {
    const RedisOptions& o = c_.opts;
    const auto steps = handshake_steps(o);
    std::string wire;
    for (auto& st : steps) wire += st.first;
    error_code ec;
    const std::vector<asio::const_buffer> bufs(1, asio::buffer(wire));
    co_await s.stream.write(bufs, ec);
    if (ec) {
        err = "write failed: " + ec.message();
        co_return;
    }
    for (auto& st : steps) {
        auto r = co_await s.next_reply();
        if (!r) {
            err = s.error;
            co_return;
        }
        if (r->error()) {
            err = st.second + " refused by Redis: " + safe_message(r->str, o.password);
            co_return;
        }
    }
}

asio::awaitable<void> RedisClient::Impl::Slot::serve(Session& s) {
    if (subscriber_) {
        std::vector<std::string> names;
        for (auto& [ch, handlers] : c_.channels) names.push_back(ch);
        s.confirms_pending = names.size();
        if (!names.empty()) s.enqueue({subscribe_wire(names), nullptr});
    }
    co_await (read_loop(s) || write_loop(s) || watch_loop(s));
}

asio::awaitable<void> RedisClient::Impl::Slot::read_loop(Session& s) {
    while (!s.closed) {
        error_code ec;
        const std::size_t n = co_await s.stream.read_some(asio::buffer(s.buf), ec);
        if (ec) {
            s.fail(ec == asio::error::eof ? "connection closed by Redis" : "read failed: " + ec.message());
            co_return;
        }
        redisReaderFeed(s.reader.get(), s.buf.data(), n);
        for (;;) {
            RedisReply r;
            const Session::Pop p = s.pop(r);
            if (p == Session::Pop::more) break;
            if (p == Session::Pop::bad) {
                s.fail(std::string("protocol error: ") + s.reader->errstr);
                co_return;
            }
            if (!(subscriber_ ? on_push(s, std::move(r)) : on_reply(s, std::move(r)))) co_return;
        }
    }
}

asio::awaitable<void> RedisClient::Impl::Slot::write_loop(Session& s) {
    while (!s.closed) {
        if (s.out.empty()) {
            s.wake.expires_at(steady::time_point::max());
            co_await wait_on(s.wake);
            continue;
        }
        std::vector<Session::Out> batch;
        while (!s.out.empty()) {
            Session::Out o = std::move(s.out.front());
            s.out.pop_front();
            if (o.op && o.op->finished) continue;  // timed out before it was sent: never send it
            if (o.op) s.in_flight.push_back(o.op);
            batch.push_back(std::move(o));
        }
        std::vector<asio::const_buffer> bufs;
        bufs.reserve(batch.size());
        for (auto& o : batch) bufs.push_back(asio::buffer(o.op ? o.op->wire : o.raw));
        if (bufs.empty()) continue;
        error_code ec;
        co_await s.stream.write(bufs, ec);
        if (ec) {
            s.fail("write failed: " + ec.message());
            co_return;
        }
    }
}

// Command connections: closes one whose oldest answer is overdue by more than a grace period (a hung or
// unreachable Redis). The subscriber: PINGs every subscriber_ping and closes after three unanswered.
asio::awaitable<void> RedisClient::Impl::Slot::watch_loop(Session& s) {
    const auto grace = std::max<steady::duration>(std::chrono::seconds(1), 4 * c_.opts.op_timeout);
    const auto tick = subscriber_ ? c_.opts.subscriber_ping : std::chrono::milliseconds(250);
    while (!s.closed) {
        s.watchdog.expires_after(tick);
        co_await wait_on(s.watchdog);
        if (s.closed) co_return;
        const auto now = steady::now();
        if (subscriber_) {
            if (s.ping_outstanding && now - s.ping_sent > 3 * c_.opts.subscriber_ping) {
                s.fail("no answer to PING on the subscriber connection");
                co_return;
            }
            if (!s.ping_outstanding) {
                s.ping_outstanding = true;
                s.ping_sent = now;
                s.enqueue({ping_wire(), nullptr});
            }
        } else if (!s.in_flight.empty() && now > s.in_flight.front()->deadline + grace) {
            s.fail("no answer from Redis for " +
                   std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(grace).count()) +
                   " ms past an operation's deadline");
            co_return;
        }
    }
}

bool RedisClient::Impl::Slot::on_reply(Session& s, RedisReply r) {
    if (s.in_flight.empty()) {
        s.fail("protocol error: an answer nobody asked for");
        return false;
    }
    OpPtr& front = s.in_flight.front();
    front->replies.push_back(std::move(r));
    if (front->replies.size() >= front->expected) {
        OpPtr op = std::move(front);
        s.in_flight.pop_front();
        if (!op->finished) c_.finish(op, std::move(op->replies));
    }
    return true;
}

bool RedisClient::Impl::Slot::on_push(Session& s, RedisReply r) {
    if (r.error()) {
        s.fail("subscriber refused: " + safe_message(r.str, c_.opts.password));
        return false;
    }
    if (r.kind != RedisReply::Kind::array || r.elements.empty()) return true;
    const std::string kind = lower(r.elements[0].str);
    if (kind == "message" && r.elements.size() == 3) {
        c_.deliver(r.elements[1].str, r.elements[2].str);
    } else if (kind == "subscribe") {
        if (s.confirms_pending > 0 && --s.confirms_pending == 0) c_.set_subscribed(true);
    } else if (kind == "pong") {
        s.ping_outstanding = false;
    }
    return true;
}

void RedisClient::Impl::Slot::teardown(Session& s) {
    const std::string_view why = c_.stopping ? "stopped" : "disconnected";
    auto in_flight = std::move(s.in_flight);
    auto out = std::move(s.out);
    s.in_flight.clear();
    s.out.clear();
    for (auto& op : in_flight)
        if (!op->finished) c_.fail(op, why);
    for (auto& o : out)
        if (o.op && !o.op->finished) c_.dispatch(o.op);  // never written: another connection may take it
    if (subscriber_) c_.set_subscribed(false);
}

// ------------------------------------------------------------------------------------------ Impl

RedisClient::Impl::Impl(RedisOptions o, RedisEvents e)
    : opts(std::move(o)),
      events(std::move(e)),
      breaker(std::max(1u, opts.breaker_failures), opts.breaker_open) {
    auto a = parse_address(opts.address);
    if (!a) throw std::invalid_argument("redis.address: must be host:port, [ipv6]:port or unix:/path");
    addr = *a;
    if (opts.tls) {
        if (addr.unix_path) throw std::invalid_argument("redis.tls: is not available over a unix socket");
        std::string why;
        tls_ctx = make_client_tls_context(opts.tls_ca_file, why);
        if (!tls_ctx) throw std::invalid_argument("redis.tls_ca_file: " + why);
    }
    opts.pool_size = std::max(1u, opts.pool_size);
}

RedisClient::Impl::~Impl() {
    if (!thread.joinable()) return;
    asio::post(io, [this] { stop(); });
    work.reset();
    // Everything ends by itself once stopped; the bound only guards against a bug keeping work alive.
    if (thread_done.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
        log_error("redis: client did not stop within 10 s; forcing");
        io.stop();
    }
    thread.join();
}

void RedisClient::Impl::start() {
    work.emplace(io.get_executor());
    for (unsigned i = 0; i < opts.pool_size; ++i) {
        slots.push_back(std::make_shared<Slot>(*this, false));
        asio::co_spawn(io, slots.back()->run(), asio::detached);
    }
    asio::co_spawn(io, health_loop(), asio::detached);
    std::promise<void> done;
    thread_done = done.get_future();
    thread = std::thread([this, done = std::move(done)]() mutable {
        for (;;) {
            try {
                io.run();
                break;
            } catch (const std::exception& e) {
                log_error(std::string("redis: client thread: ") + e.what());
            }
        }
        done.set_value();
    });
}

void RedisClient::Impl::stop() {
    stopping = true;
    health.cancel();
    for (auto& s : slots) s->stop();
    if (sub) sub->stop();
    auto parked_ops = std::move(parked);
    parked.clear();
    for (auto& op : parked_ops) fail(op, "stopped");
}

asio::awaitable<void> RedisClient::Impl::health_loop() {
    while (!stopping) {
        health.expires_after(std::chrono::milliseconds(500));
        co_await wait_on(health);
        if (stopping) break;
        bool any_ready = false;
        for (auto& s : slots) any_ready = any_ready || s->ready();
        if (!any_ready || breaker.state() == CircuitBreaker::State::closed) continue;
        // Probe through the breaker so that recovery shows without traffic.
        auto op = std::make_shared<Op>();
        op->wire = ping_wire();
        op->label = "health";
        op->started = steady::now();
        op->deadline = op->started + opts.op_timeout;
        op->done = [](std::vector<RedisReply>) {};
        submit(op);
    }
}

void RedisClient::Impl::submit(const OpPtr& op) {
    if (stopping) return fail(op, "stopped");
    const auto now = steady::now();
    if (now >= op->deadline) return fail(op, "timeout");
    if (!breaker.allow(now)) return fail(op, "breaker_open");
    op->ticket = true;
    op->timer = std::make_unique<asio::steady_timer>(io, op->deadline);
    op->timer->async_wait([this, op](error_code ec) {
        if (!ec && !op->finished) fail(op, "timeout");
    });
    dispatch(op);
}

void RedisClient::Impl::dispatch(const OpPtr& op) {
    if (op->finished) return;
    if (stopping) return fail(op, "stopped");
    Slot* best = nullptr;
    const std::size_t n = slots.size();
    for (std::size_t i = 0; i < n; ++i) {
        Slot* s = slots[(next_slot + i) % n].get();
        if (s->ready() && (!best || s->session->load() < best->session->load())) best = s;
    }
    next_slot = (next_slot + 1) % n;
    if (best) {
        if (best->session->load() >= opts.max_in_flight) return fail(op, "overloaded");
        best->session->enqueue({{}, op});
        return;
    }
    for (auto& s : slots) {
        if (s->state == Slot::State::connecting) {
            parked.push_back(op);
            return;
        }
    }
    fail(op, "disconnected");
}

void RedisClient::Impl::finish(const OpPtr& op, std::vector<RedisReply> replies) {
    if (op->finished) return;
    op->finished = true;
    if (op->timer) op->timer->cancel();
    std::string_view result = "ok";
    bool failure = false;
    for (const auto& r : replies) {
        if (r.failed() && result == "ok") result = r.str;
        if (r.error() && result == "ok") result = starts_with(r.str, "NOSCRIPT") ? "noscript" : "error";
        failure = failure || counts_as_failure(r);
    }
    if (op->ticket) {
        if (failure) {
            last_failure = result == "error" ? "an error answer" : std::string(result);
            breaker.on_failure(steady::now());
        } else {
            breaker.on_success();
        }
    }
    if (events.on_operation && !op->label.empty())  // unlabelled: the health probe
        events.on_operation(op->label, result,
                            std::chrono::duration<double>(steady::now() - op->started).count());
    update_status();
    auto done = std::move(op->done);
    if (done) done(std::move(replies));
}

void RedisClient::Impl::slot_changed() {
    bool any_ready = false, any_connecting = false;
    for (auto& s : slots) {
        any_ready = any_ready || s->ready();
        any_connecting = any_connecting || s->state == Slot::State::connecting;
    }
    if (any_ready || !any_connecting) {
        auto ops = std::move(parked);
        parked.clear();
        for (auto& op : ops) dispatch(op);  // to a ready connection, or fails ("disconnected")
    }
    update_status();
}

void RedisClient::Impl::update_status() {
    RedisStatus st;
    const Slot* ready = nullptr;
    std::string conn_error;
    for (auto& s : slots) {
        if (s->ready()) ready = s.get();
        if (conn_error.empty()) conn_error = s->problem();
    }
    const auto bs = breaker.state();
    st.up = ready && bs == CircuitBreaker::State::closed;
    if (!ready)
        st.reason = "not connected: " + (conn_error.empty() ? std::string("connecting") : conn_error);
    else if (bs != CircuitBreaker::State::closed)
        st.reason = "circuit open after " + std::to_string(opts.breaker_failures) +
                    " consecutive failures (last: " + last_failure + ")";
    bool changed;
    {
        std::lock_guard lk(status_mu);
        changed = status.up != st.up;
        status = st;
    }
    if (!changed || stopping) return;
    if (st.up)
        log_info("redis: up (" + opts.address + ")");
    else
        log_warn("redis: degraded: " + st.reason);
    if (events.on_state) events.on_state(st.up);
}

void RedisClient::Impl::add_channel(std::string channel, std::function<void(std::string_view)> handler) {
    const bool is_new = !channels.count(channel);
    channels[channel].push_back(std::move(handler));
    if (!sub) {
        sub = std::make_shared<Slot>(*this, true);
        asio::co_spawn(io, sub->run(), asio::detached);
        return;
    }
    if (is_new && sub->ready()) {
        set_subscribed(false);
        ++sub->session->confirms_pending;
        sub->session->enqueue({subscribe_wire({channel}), nullptr});
    }
}

void RedisClient::Impl::deliver(std::string_view channel, std::string_view payload) {
    auto it = channels.find(channel);
    if (it == channels.end()) return;
    for (auto& h : it->second) h(payload);
}

void RedisClient::Impl::set_subscribed(bool on) {
    const bool was = subscribed.exchange(on);
    if (on && !was)
        for (auto& h : sub_hooks) h();
}

// ------------------------------------------------------------------------------------------ RedisClient

RedisClient::RedisClient(RedisOptions opts, RedisEvents events)
    : impl_(std::make_unique<Impl>(std::move(opts), std::move(events))) {
    impl_->start();
}

RedisClient::~RedisClient() = default;

// Not a coroutine: GCC 12 destroys a capturing lambda twice when it is a temporary inside a co_await
// expression, so the initiation is built here and the awaitable returned.
asio::awaitable<std::vector<RedisReply>> RedisClient::run(std::string wire, std::size_t replies,
                                                          Deadline deadline, std::string label) {
    auto op = std::make_shared<Op>();
    op->wire = std::move(wire);
    op->expected = replies;
    op->label = std::move(label);
    op->started = steady::now();
    op->deadline = deadline;
    Impl* impl = impl_.get();
    auto initiation = [impl, op](auto handler) {
        auto work =
            asio::prefer(asio::get_associated_executor(handler), asio::execution::outstanding_work.tracked);
        auto h = std::make_shared<decltype(handler)>(std::move(handler));
        op->done = [h, work](std::vector<RedisReply> r) {
            asio::post(work, [h, r = std::move(r)]() mutable { (*h)(std::move(r)); });
        };
        asio::post(impl->io, [impl, op] { impl->submit(op); });
    };
    return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::vector<RedisReply>)>(
        std::move(initiation), use_awaitable);
}

asio::awaitable<RedisReply> RedisClient::command(Args args, Deadline deadline, std::string label) {
    if (label.empty()) label = lower(args.empty() ? std::string_view("none") : std::string_view(args[0]));
    auto r = co_await run(format_command(args), 1, deadline, std::move(label));
    co_return std::move(r.front());
}

asio::awaitable<std::vector<RedisReply>> RedisClient::pipeline(std::vector<Args> commands, Deadline deadline,
                                                               std::string label) {
    if (commands.empty()) co_return std::vector<RedisReply>{};
    std::string wire;
    for (const auto& c : commands) wire += format_command(c);
    if (label.empty()) label = "pipeline";
    co_return co_await run(std::move(wire), commands.size(), deadline, std::move(label));
}

asio::awaitable<RedisReply> RedisClient::eval(const RedisScript& script, Args keys, Args argv,
                                              Deadline deadline, std::string label) {
    Args cmd = evalsha_args(script, std::move(keys), std::move(argv));
    if (label.empty()) label = "evalsha";
    RedisReply r = co_await command(cmd, deadline, label);
    if (!r.error() || !starts_with(r.str, "NOSCRIPT")) co_return r;
    auto both = co_await pipeline(load_then(script, std::move(cmd)), deadline, std::move(label));
    co_return std::move(both.back());
}

RedisClient::Deadline RedisClient::deadline() const {
    return steady::now() + impl_->opts.op_timeout;
}

void RedisClient::subscribe(std::string channel, std::function<void(std::string_view)> handler) {
    asio::post(impl_->io,
               [impl = impl_.get(), channel = std::move(channel), handler = std::move(handler)]() mutable {
                   impl->add_channel(std::move(channel), std::move(handler));
               });
}

void RedisClient::on_subscribed(std::function<void()> hook) {
    asio::post(impl_->io, [impl = impl_.get(), hook = std::move(hook)]() mutable {
        impl->sub_hooks.push_back(std::move(hook));
        if (impl->subscribed.load()) impl->sub_hooks.back()();
    });
}

bool RedisClient::subscribed() const {
    return impl_->subscribed.load();
}

RedisStatus RedisClient::status() const {
    std::lock_guard lk(impl_->status_mu);
    return impl_->status;
}

asio::any_io_executor RedisClient::executor() const {
    return impl_->io.get_executor();
}

const RedisOptions& RedisClient::options() const {
    return impl_->opts;
}

}  // namespace rdsgw
