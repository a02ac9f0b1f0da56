// A small Redis client for the shared cache tier: hiredis's reply reader and command formatter (no
// hand-written RESP) driven over Asio sockets (TCP, TLS via Asio/OpenSSL, or a unix socket).
//
// Threading: the client owns one io_context thread; every socket, queue and timer lives there. Callers on
// any executor co_await command()/pipeline()/eval() and resume on their own executor (the completion is
// posted to it). Redis is only asked on L1 misses, so the cross-thread hop costs little.
//
// Guarantees:
// - Every operation completes by its deadline (a `failed` reply with str "timeout" otherwise), and fails
//   at once ("breaker_open") while the circuit breaker is open, ("disconnected") when no connection is up
//   or being established, ("overloaded") past max_in_flight per connection. Never an exception.
// - Commands are pipelined: several in flight per connection, replies matched in order. A pipeline() is
//   written back to back on one connection. Ops that time out before they are written are never sent.
// - Connections (pool_size, plus one subscriber once a channel is subscribed) reconnect with exponential
//   backoff and full jitter; each connection authenticates (AUTH [user] password), selects its db and
//   PINGs before it serves. A connection whose oldest answer is overdue by more than a second is closed.
// - The subscriber connection re-subscribes after every reconnect; on_subscribed hooks run each time all
//   channels are confirmed (so that users can re-check what they may have missed while it was down).
// - Status (up / degraded + reason) for readiness, and metric callbacks; neither ever contains a secret.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace rdsgw {

struct RedisReply {
    enum class Kind { nil, string, status, integer, array, error, failed };
    Kind kind = Kind::failed;
    // string / status: the value; error: Redis's message ("WRONGTYPE ..."); failed: the client-side reason,
    // one of "timeout", "breaker_open", "disconnected", "overloaded", "stopped".
    std::string str;
    long long integer = 0;
    std::vector<RedisReply> elements;  // array

    bool failed() const { return kind == Kind::failed; }  // Redis did not answer (in time)
    bool error() const { return kind == Kind::error; }    // Redis answered with an error
    bool ok() const { return !failed() && !error(); }
    bool nil() const { return kind == Kind::nil; }
    static RedisReply failure(std::string_view why);
};

struct RedisOptions {
    std::string address = "127.0.0.1:6379";  // host:port, [v6addr]:port, or unix:/path
    std::string user;                        // ACL user; "" = AUTH with the password alone
    std::string password;                    // the secret itself; "" = no AUTH. Never logged.
    unsigned db = 0;
    unsigned pool_size = 2;
    std::chrono::milliseconds op_timeout{20};  // default deadline of one operation
    std::chrono::milliseconds connect_timeout{1000};
    unsigned breaker_failures = 5;
    std::chrono::milliseconds breaker_open{2000};
    std::chrono::milliseconds reconnect_base{50};
    std::chrono::milliseconds reconnect_max{2000};
    std::chrono::milliseconds subscriber_ping{1000};  // the subscriber PINGs this often; dead after 3 misses
    unsigned max_in_flight = 4096;                    // per connection (queued + awaiting an answer)
    bool tls = false;
    std::string tls_ca_file;      // empty: the system trust store
    std::string tls_server_name;  // SNI and certificate name; empty: the host of `address`
};

struct RedisEvents {
    // After every operation: its label (the lower-case command name unless the caller gave one), the
    // result ("ok", "error", "noscript" (EVALSHA before the script was loaded; eval() then loads it), or a
    // failure reason) and its duration. Called on the client thread.
    std::function<void(std::string_view op, std::string_view result, double seconds)> on_operation;
    // When the status changes between up and degraded. Called on the client thread.
    std::function<void(bool up)> on_state;
};

struct RedisStatus {
    bool up = false;     // a command connection is ready and the breaker is closed
    std::string reason;  // why not, e.g. "circuit open after 5 failures (last: timeout)"; empty when up
};

// A Lua script run with EVALSHA (its SHA-1 computed locally); on NOSCRIPT it is loaded with SCRIPT LOAD and
// run again, on the same connection, within the same deadline.
class RedisScript {
  public:
    explicit RedisScript(std::string body);
    const std::string& body() const { return body_; }
    const std::string& sha1() const { return sha1_; }

  private:
    std::string body_;
    std::string sha1_;
};

class RedisClient {
  public:
    using Args = std::vector<std::string>;
    using Deadline = std::chrono::steady_clock::time_point;

    // Starts the client thread and begins connecting. Throws std::invalid_argument for a malformed address
    // or an unusable TLS CA file (the message names the problem, never the password).
    explicit RedisClient(RedisOptions opts, RedisEvents events = {});
    // Fails what is pending ("stopped"), closes every connection and joins the thread. Callers must not
    // start new operations once destruction has begun.
    ~RedisClient();
    RedisClient(const RedisClient&) = delete;
    RedisClient& operator=(const RedisClient&) = delete;

    // One command; `label` names it in metrics (default: the command name in lower case).
    boost::asio::awaitable<RedisReply> command(Args args, Deadline deadline, std::string label = {});
    // Several commands written back to back on one connection; one reply per command (all `failed` with
    // the same reason when the batch could not be completed).
    boost::asio::awaitable<std::vector<RedisReply>> pipeline(std::vector<Args> commands, Deadline deadline,
                                                             std::string label = {});
    boost::asio::awaitable<RedisReply> eval(const RedisScript& script, Args keys, Args argv,
                                            Deadline deadline, std::string label = {});
    // now + op_timeout
    Deadline deadline() const;

    // Pub/sub over the one subscriber connection (created with the first subscription). Handlers run on
    // the client thread and must be quick (post work elsewhere).
    void subscribe(std::string channel, std::function<void(std::string_view payload)> handler);
    void on_subscribed(std::function<void()> hook);
    bool subscribed() const;  // every channel is confirmed on the live subscriber connection

    RedisStatus status() const;
    const RedisOptions& options() const;
    // The client thread's executor (for small tasks that belong there, e.g. reacting to a re-subscription).
    boost::asio::any_io_executor executor() const;

    struct Op;  // internal: one operation in flight

  private:
    class Impl;
    boost::asio::awaitable<std::vector<RedisReply>> run(std::string wire, std::size_t replies,
                                                        Deadline deadline, std::string label);
    std::unique_ptr<Impl> impl_;
};

}  // namespace rdsgw
