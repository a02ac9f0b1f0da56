#include "support/http.hpp"

#include <zlib.h>

#include <cctype>
#include <stdexcept>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/json/parse.hpp>

namespace rdsgw::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && lower(a) == lower(b);
}

tcp::endpoint loopback(int port) {
    return {asio::ip::address_v4::loopback(), static_cast<unsigned short>(port)};
}

// Runs the context until every started operation has completed.
void run(asio::io_context& ioc) {
    ioc.restart();
    ioc.run();
}

}  // namespace

std::string Response::header(std::string_view name) const {
    const auto it = headers.find(lower(name));
    return it == headers.end() ? std::string() : it->second;
}

bool Response::has_header(std::string_view name) const {
    return headers.count(lower(name)) != 0;
}

boost::json::value Response::json() const {
    try {
        return parse_json(body);
    } catch (const std::exception& e) {
        throw std::runtime_error("status " + std::to_string(status) + ": " + e.what());
    }
}

boost::json::value parse_json(std::string_view text) {
    error_code ec;
    auto v = boost::json::parse(text, ec);
    if (ec) {
        throw std::runtime_error("not JSON (" + ec.message() + "): " + std::string(text.substr(0, 200)) +
                                 (text.size() > 200 ? "..." : ""));
    }
    return v;
}

std::string gunzip(std::string_view data) {
    z_stream zs{};
    if (inflateInit2(&zs, 15 + 16) != Z_OK) throw std::runtime_error("inflateInit2 failed");
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    zs.avail_in = static_cast<uInt>(data.size());
    std::string out;
    char chunk[16384];
    int rc = Z_OK;
    while (rc == Z_OK) {
        zs.next_out = reinterpret_cast<Bytef*>(chunk);
        zs.avail_out = sizeof chunk;
        rc = inflate(&zs, Z_NO_FLUSH);
        out.append(chunk, sizeof chunk - zs.avail_out);
        if (rc == Z_BUF_ERROR && zs.avail_in == 0) break;
    }
    inflateEnd(&zs);
    if (rc != Z_STREAM_END) throw std::runtime_error("gunzip: not a complete gzip stream");
    return out;
}

struct HttpClient::Impl {
    int port;
    std::optional<TlsOptions> tls_options;
    std::chrono::milliseconds timeout;
    asio::io_context ioc{1};
    std::unique_ptr<ssl::context> tls_ctx;
    std::unique_ptr<beast::tcp_stream> plain;
    std::unique_ptr<beast::ssl_stream<beast::tcp_stream>> secure;
    beast::flat_buffer buffer;
    bool open = false;
    int connects = 0;

    beast::tcp_stream& lowest() { return secure ? secure->next_layer() : *plain; }

    template <class F>
    void with_stream(F&& f) {
        if (secure)
            f(*secure);
        else
            f(*plain);
    }

    void close() {
        if (plain || secure) {
            error_code ec;
            lowest().socket().shutdown(tcp::socket::shutdown_both, ec);
            lowest().close();
            run(ioc);  // lets cancelled operations, if any, complete
        }
        secure.reset();
        plain.reset();
        open = false;
    }

    void connect() {
        close();
        buffer.clear();
        auto stream = std::make_unique<beast::tcp_stream>(ioc);
        stream->expires_after(timeout);
        error_code ec;
        stream->async_connect(loopback(port), [&](error_code e) { ec = e; });
        run(ioc);
        if (ec)
            throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) + ": " + ec.message());
        ++connects;
        stream->socket().set_option(tcp::no_delay(true), ec);
        if (!tls_options) {
            plain = std::move(stream);
            plain->expires_never();
            open = true;
            return;
        }
        secure = std::make_unique<beast::ssl_stream<beast::tcp_stream>>(std::move(*stream), *tls_ctx);
        const auto& o = *tls_options;
        if (!o.sni.empty() && SSL_set_tlsext_host_name(secure->native_handle(), o.sni.c_str()) != 1)
            throw std::runtime_error("cannot set SNI");
        if (!o.ca_file.empty()) {
            secure->set_verify_mode(ssl::verify_peer);
            secure->set_verify_callback(ssl::host_name_verification(o.sni.empty() ? "127.0.0.1" : o.sni));
        } else {
            secure->set_verify_mode(ssl::verify_none);
        }
        secure->next_layer().expires_after(timeout);
        secure->async_handshake(ssl::stream_base::client, [&](error_code e) { ec = e; });
        run(ioc);
        if (ec) {
            secure.reset();
            throw std::runtime_error("TLS handshake with 127.0.0.1:" + std::to_string(port) + ": " +
                                     ec.message());
        }
        secure->next_layer().expires_never();
        open = true;
    }

    [[noreturn]] void fail(const char* what, const error_code& ec) {
        close();
        throw std::runtime_error(std::string("HTTP ") + what + " failed: " + ec.message());
    }
};

HttpClient::HttpClient(int port, std::optional<TlsOptions> tls, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<Impl>()) {
    impl_->port = port;
    impl_->tls_options = std::move(tls);
    impl_->timeout = timeout;
    if (impl_->tls_options) {
        const auto& o = *impl_->tls_options;
        impl_->tls_ctx = std::make_unique<ssl::context>(ssl::context::tls_client);
        SSL_CTX_set_min_proto_version(impl_->tls_ctx->native_handle(), TLS1_2_VERSION);
        error_code ec;
        if (!o.ca_file.empty()) impl_->tls_ctx->load_verify_file(o.ca_file, ec);
        if (ec) throw std::runtime_error("cannot load CA file " + o.ca_file + ": " + ec.message());
        if (!o.client_cert.empty()) {
            impl_->tls_ctx->use_certificate_chain_file(o.client_cert, ec);
            if (!ec) impl_->tls_ctx->use_private_key_file(o.client_key, ssl::context::pem, ec);
            if (ec) throw std::runtime_error("cannot load the client certificate: " + ec.message());
        }
    }
    impl_->connect();
}

HttpClient::~HttpClient() {
    if (impl_) impl_->close();
}
HttpClient::HttpClient(HttpClient&&) noexcept = default;
HttpClient& HttpClient::operator=(HttpClient&&) noexcept = default;

void HttpClient::reconnect() {
    impl_->connect();
}
void HttpClient::close() {
    impl_->close();
}
void HttpClient::set_timeout(std::chrono::milliseconds timeout) {
    impl_->timeout = timeout;
}
int HttpClient::connects() const {
    return impl_->connects;
}

Response HttpClient::request(std::string_view method, std::string_view target, const Headers& headers,
                             std::string body) {
    auto& d = *impl_;
    if (!d.open) throw std::runtime_error("HttpClient: the connection is closed (call reconnect())");

    http::request<http::string_body> req;
    const auto verb = http::string_to_verb(method);
    if (verb == http::verb::unknown)
        req.method_string(method);
    else
        req.method(verb);
    req.target(target);
    req.version(11);
    bool has_host = false, has_length = false;
    for (const auto& [name, value] : headers) {
        req.insert(name, value);
        has_host = has_host || iequals(name, "host");
        has_length = has_length || iequals(name, "content-length") || iequals(name, "transfer-encoding");
    }
    if (!has_host) req.set(http::field::host, "127.0.0.1:" + std::to_string(d.port));
    req.body() = std::move(body);
    if (!has_length) req.prepare_payload();

    error_code ec;
    d.lowest().expires_after(d.timeout);
    d.with_stream([&](auto& s) { http::async_write(s, req, [&](error_code e, std::size_t) { ec = e; }); });
    run(d.ioc);
    if (ec) d.fail("write", ec);

    http::response_parser<http::string_body> parser;
    parser.header_limit(1024 * 1024);
    parser.body_limit(256 * 1024 * 1024);
    if (verb == http::verb::head) parser.skip(true);
    d.lowest().expires_after(d.timeout);
    d.with_stream(
        [&](auto& s) { http::async_read(s, d.buffer, parser, [&](error_code e, std::size_t) { ec = e; }); });
    run(d.ioc);
    if (ec) d.fail("read", ec);
    d.lowest().expires_never();

    auto res = parser.release();
    Response out;
    out.status = res.result_int();
    for (const auto& f : res) {
        auto name = lower(f.name_string());
        auto [it, fresh] = out.headers.emplace(name, std::string(f.value()));
        if (!fresh) it->second += ", " + std::string(f.value());
    }
    out.body = std::move(res.body());
    if (!res.keep_alive()) d.close();
    return out;
}

bool HttpClient::connected() {
    auto& d = *impl_;
    if (!d.open) return false;
    // Start a one-byte read and let it run only as far as it can without blocking: a closed connection
    // completes it (EOF / truncated / reset); an idle open one leaves it pending, and it is cancelled.
    // (Under TLS this also consumes post-handshake messages such as session tickets.)
    bool done = false;
    error_code ec;
    char byte = 0;
    d.lowest().expires_never();
    d.with_stream([&](auto& s) {
        s.async_read_some(asio::buffer(&byte, 1), [&](error_code e, std::size_t) {
            done = true;
            ec = e;
        });
    });
    d.ioc.restart();
    while (!done && d.ioc.poll() > 0) {
    }
    if (!done) {
        d.lowest().cancel();
        run(d.ioc);
    }
    if (ec == asio::error::operation_aborted) return true;
    d.close();  // closed by the peer, or it sent bytes nobody asked for
    return false;
}

bool HttpClient::wait_closed_by_peer(std::chrono::milliseconds timeout) {
    auto& d = *impl_;
    if (!d.open) return true;
    error_code ec;
    char byte = 0;
    d.lowest().expires_after(timeout);
    d.with_stream([&](auto& s) {
        s.async_read_some(asio::buffer(&byte, 1), [&](error_code e, std::size_t) { ec = e; });
    });
    run(d.ioc);
    const bool closed = ec && ec != beast::error::timeout;
    d.close();
    return closed;
}

std::string send_raw(int port, std::string_view bytes, std::chrono::milliseconds timeout) {
    asio::io_context ioc{1};
    beast::tcp_stream stream(ioc);
    stream.expires_after(timeout);
    error_code ec;
    stream.async_connect(loopback(port), [&](error_code e) { ec = e; });
    run(ioc);
    if (ec) throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) + ": " + ec.message());
    asio::async_write(stream, asio::buffer(bytes.data(), bytes.size()),
                      [&](error_code e, std::size_t) { ec = e; });
    run(ioc);
    std::string received;
    if (ec) return received;  // the server may close before reading everything
    char chunk[16384];
    for (;;) {
        std::size_t n = 0;
        stream.async_read_some(asio::buffer(chunk), [&](error_code e, std::size_t k) {
            ec = e;
            n = k;
        });
        run(ioc);
        received.append(chunk, n);
        if (ec) break;
    }
    return received;
}

Response get(int port, std::string_view target, const Headers& headers, std::optional<TlsOptions> tls) {
    HttpClient client(port, std::move(tls));
    return client.request("GET", target, headers);
}

}  // namespace rdsgw::test
