// The upstream HTTP(S) client: endpoint parsing, verified TLS, a per-thread keep-alive connection pool with
// TLS session resumption, asynchronous DNS with periodic re-resolution. One ConnectionPool per worker
// thread and endpoint, used only from that thread's executor (no locks).
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rdsgw {

class Metrics;
class Proxy;

struct Endpoint {
    bool tls = true;
    std::string host;         // name or address, no brackets
    std::string port;         // "443"
    std::string host_header;  // "host" or "host:port" for a non-default port (also used for signing)
    // Parses "https://host[:port]"; false with `why` on error.
    static bool parse(std::string_view base_url, Endpoint& out, std::string& why);
};

// A TLS client context that verifies the peer against ca_file (or the system store when empty).
std::shared_ptr<boost::asio::ssl::context> make_client_tls_context(const std::string& ca_file,
                                                                   std::string& why);

struct UpstreamRequest {
    std::string method = "GET";
    std::string target;                                        // origin-form, already encoded
    std::vector<std::pair<std::string, std::string>> headers;  // besides Host, which the pool adds
    std::string body;
};

struct UpstreamResponse {
    enum class Error { none, connect, tls, reset, timeout, too_large, protocol };
    Error error = Error::none;
    std::string error_detail;  // for messages and logs; never a secret
    bool got_response_bytes = false;
    unsigned status = 0;
    std::string body;
    std::string request_id;   // X-Request-Id
    std::string retry_after;  // Retry-After
    // Every Content-Encoding / Transfer-Encoding line, joined with ", " (not the first line only: a second
    // line must not hide a coding; upstream_answer.hpp judges them).
    std::string content_encoding;
    std::string transfer_encoding;
    std::string subject_token;  // X-Subject-Token (IAM)
    bool reused_connection = false;
};
std::string_view error_name(UpstreamResponse::Error e);

struct PoolOptions {
    std::chrono::milliseconds connect_timeout{2000};
    std::chrono::milliseconds idle_timeout{30000};
    std::size_t max_idle = 32;
    std::size_t max_response_bytes = 4 << 20;
    std::chrono::seconds dns_refresh{60};
    // Egress proxy (proxy.hpp): when set and the endpoint's host is not in its no_proxy list, connections
    // are tunnelled through CONNECT (TLS, SNI and verification of the endpoint's host inside the tunnel).
    std::shared_ptr<const Proxy> proxy;
};

class ConnectionPool {
  public:
    ConnectionPool(boost::asio::any_io_executor ex, Endpoint ep,
                   std::shared_ptr<boost::asio::ssl::context> tls, PoolOptions opts, Metrics* metrics);
    ~ConnectionPool();
    ConnectionPool(const ConnectionPool&) = delete;

    // One HTTP exchange, finished by `deadline` (connect + write + read), into `res` (the caller's: no copy
    // of the answer passes through the coroutine's return; whatever `res` held is replaced). A pooled
    // connection that turns out to be closed by the server is replaced by a fresh one transparently (once).
    boost::asio::awaitable<void> exchange(const UpstreamRequest& req,
                                          std::chrono::steady_clock::time_point deadline,
                                          UpstreamResponse& res);

    const Endpoint& endpoint() const { return ep_; }
    std::size_t idle_count() const;
    std::uint64_t connections_opened() const { return opened_; }
    std::uint64_t sessions_resumed() const { return resumed_; }
    void close_idle();

  private:
    struct Conn;
    boost::asio::awaitable<std::unique_ptr<Conn>> connect(std::chrono::steady_clock::time_point deadline,
                                                          UpstreamResponse& err);
    boost::asio::awaitable<bool> resolve(std::chrono::steady_clock::time_point deadline,
                                         UpstreamResponse& err);
    boost::asio::awaitable<bool> open_tunnel(Conn& c, std::chrono::steady_clock::time_point deadline,
                                             UpstreamResponse& err);
    boost::asio::awaitable<void> sweep_loop();
    std::unique_ptr<Conn> take_idle();
    void put_idle(std::unique_ptr<Conn> c);
    void watch_idle(Conn& c);  // the read kept queued on an idle connection
    void trim_surplus(std::chrono::steady_clock::time_point now);

    boost::asio::any_io_executor ex_;
    Endpoint ep_;
    std::shared_ptr<boost::asio::ssl::context> tls_;
    PoolOptions opts_;
    const Proxy* proxy_ = nullptr;  // opts_.proxy when it applies to this endpoint
    Metrics* metrics_;
    std::vector<std::unique_ptr<Conn>> idle_;
    boost::asio::ip::tcp::resolver::results_type addrs_;
    std::chrono::steady_clock::time_point resolved_at_{};
    bool resolve_needed_ = true;
    std::shared_ptr<void> session_;  // SSL_SESSION for resumption
    std::uint64_t opened_ = 0, resumed_ = 0;
    std::shared_ptr<bool> alive_;
};

}  // namespace rdsgw
