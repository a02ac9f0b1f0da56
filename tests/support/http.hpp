// A small synchronous HTTP/1.1 client for integration tests (Beast underneath), plain or TLS, on
// 127.0.0.1. Every operation has a deadline (default 10 s), so a test never hangs on a silent server.
#pragma once
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json/value.hpp>

namespace rdsgw::test {

using namespace std::chrono_literals;

// Request headers, in order; a name may repeat.
using Headers = std::vector<std::pair<std::string, std::string>>;

struct Response {
    unsigned status = 0;
    std::map<std::string, std::string> headers;  // lower-case names; repeated headers joined with ", "
    std::string body;                            // as received (not decompressed)

    // The header's value, or "" when absent (name in any case).
    std::string header(std::string_view name) const;
    bool has_header(std::string_view name) const;
    // The body parsed as JSON; throws std::runtime_error (with the status and a body excerpt) if it is not.
    boost::json::value json() const;
};

struct TlsOptions {
    // PEM file of the CA to verify the server with. Empty: the server is not verified at all.
    std::string ca_file;
    // Client certificate and key (PEM) for mutual TLS; both empty for none.
    std::string client_cert;
    std::string client_key;
    // Sent as SNI and checked against the server certificate. Empty: no SNI, and the certificate is
    // checked against 127.0.0.1.
    std::string sni = "localhost";

    // Shorthands (aggregate initialization with omitted members trips -Wmissing-field-initializers).
    static TlsOptions trusting(std::string ca_file, std::string sni = "localhost") {
        TlsOptions o;
        o.ca_file = std::move(ca_file);
        o.sni = std::move(sni);
        return o;
    }
    static TlsOptions unverified() { return TlsOptions{}; }
    TlsOptions& with_client(std::string cert, std::string key) {
        client_cert = std::move(cert);
        client_key = std::move(key);
        return *this;
    }
};

// One keep-alive connection to 127.0.0.1:port. The constructor connects (and handshakes) and throws
// std::runtime_error on failure (e.g. a certificate the CA does not vouch for). request() reuses the
// connection; it never reconnects by itself: once the server has closed the connection (or answered
// "Connection: close"), request() throws until reconnect() is called.
class HttpClient {
  public:
    explicit HttpClient(int port, std::optional<TlsOptions> tls = std::nullopt,
                        std::chrono::milliseconds timeout = 10s);
    ~HttpClient();
    HttpClient(HttpClient&&) noexcept;
    HttpClient& operator=(HttpClient&&) noexcept;

    // Sends one request and reads its response. A "Host: 127.0.0.1:<port>" header is added unless
    // `headers` has one; Content-Length is set from `body` unless `headers` sets Content-Length or
    // Transfer-Encoding. Throws std::runtime_error on a connection error or timeout (the connection is
    // then closed).
    Response request(std::string_view method, std::string_view target, const Headers& headers = {},
                     std::string body = {});

    // True when the connection is open and the server has not closed it (checked without blocking).
    bool connected();
    // Waits up to `timeout` for the server to close the connection. True when it did; false on timeout
    // (the connection is then closed by this side too, so call reconnect() to go on).
    bool wait_closed_by_peer(std::chrono::milliseconds timeout);
    // Closes the connection (if open) and opens a new one; throws like the constructor.
    void reconnect();
    void close();
    void set_timeout(std::chrono::milliseconds timeout);
    // How many TCP connections this client has opened so far.
    int connects() const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Connects to 127.0.0.1:port over plain TCP, writes `bytes`, and reads until the server closes the
// connection or `timeout` passes; returns everything read. For malformed requests and pipelining.
std::string send_raw(int port, std::string_view bytes, std::chrono::milliseconds timeout = 5s);

// A one-shot request on a fresh connection.
Response get(int port, std::string_view target, const Headers& headers = {},
             std::optional<TlsOptions> tls = std::nullopt);

// Parses JSON text; throws std::runtime_error with an excerpt on failure.
boost::json::value parse_json(std::string_view text);
// Decompresses a gzip body; throws std::runtime_error when it is not valid gzip.
std::string gunzip(std::string_view data);

}  // namespace rdsgw::test
