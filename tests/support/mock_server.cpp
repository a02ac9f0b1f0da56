#include "support/mock_server.hpp"

#include <csignal>
#include <stdexcept>

#include <boost/json/serialize.hpp>

namespace rdsgw::test {

namespace {

std::string default_mock_binary() {
#ifdef RDSGW_MOCK_BIN
    return RDSGW_MOCK_BIN;
#else
    return "rds-mock";
#endif
}

}  // namespace

MockServer::MockServer(MockOptions options) {
    std::vector<std::string> argv{options.binary.empty() ? default_mock_binary() : options.binary,
                                  "--listen",
                                  "127.0.0.1",
                                  "--port",
                                  "0",
                                  "--threads",
                                  std::to_string(options.threads)};
    if (options.pki != nullptr) {
        argv.insert(argv.end(),
                    {"--tls-cert", options.pki->server_cert, "--tls-key", options.pki->server_key});
        tls_ = TlsOptions::trusting(options.pki->ca_cert, options.tls_name);
    }
    if (!options.config.empty()) argv.insert(argv.end(), {"--config", options.config});
    argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
    start(std::move(argv));
}

namespace {
MockOptions harness_options(const Pki* pki, const std::string& behaviour, int threads) {
    MockOptions o;
    o.pki = pki;
    o.threads = threads;
    o.config = behaviour;
    return o;
}
}  // namespace

MockServer::MockServer(const Pki* pki, const std::string& behaviour, int threads)
    : MockServer(harness_options(pki, behaviour, threads)) {}

void MockServer::start(std::vector<std::string> argv) {
    child.spawn(argv);
    port = start_and_get_port(child);
    control_.emplace(port, tls_);
}

std::string MockServer::base_url() const {
    return (tls_ ? "https://localhost:" : "http://127.0.0.1:") + std::to_string(port);
}

Response MockServer::control(std::string_view method, std::string_view target, std::string body) {
    Headers headers;
    if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
    if (!control_->connected()) control_->reconnect();
    try {
        return control_->request(method, target, headers, body);
    } catch (const std::runtime_error&) {
        // The mock closed the idle connection (idle_close_ms) just as the request went out: it was not
        // read, so sending it again on a new connection is safe.
        control_->reconnect();
        return control_->request(method, target, headers, std::move(body));
    }
}

bool MockServer::wait_for(std::string_view name, std::int64_t at_least, std::chrono::milliseconds timeout) {
    const std::string target = "/_mock/wait?counter=" + std::string(name) +
                               "&at_least=" + std::to_string(at_least) +
                               "&timeout_ms=" + std::to_string(timeout.count());
    control_->set_timeout(timeout + 10s);
    Response res;
    try {
        res = control("GET", target);
    } catch (...) {
        control_->set_timeout(10s);
        throw;
    }
    control_->set_timeout(10s);
    if (res.status == 408) return false;
    if (res.status != 200) throw std::runtime_error("rds-mock wait failed: " + res.body);
    return true;
}

void MockServer::configure(std::string_view json_patch) {
    const auto res = control("POST", "/_mock/config", std::string(json_patch));
    if (res.status != 200) throw std::runtime_error("rds-mock rejected the configuration: " + res.body);
}

void MockServer::configure(const boost::json::object& patch) {
    configure(boost::json::serialize(patch));
}

void MockServer::reset() {
    const auto res = control("POST", "/_mock/reset");
    if (res.status != 200) throw std::runtime_error("rds-mock reset failed: " + res.body);
}

void MockServer::revoke() {
    const auto res = control("POST", "/_mock/revoke");
    if (res.status != 200) throw std::runtime_error("rds-mock revoke failed: " + res.body);
}

void MockServer::release() {
    const auto res = control("POST", "/_mock/release");
    if (res.status != 200) throw std::runtime_error("rds-mock release failed: " + res.body);
}

std::optional<int> MockServer::stop() {
    if (control_) control_->close();
    child.signal(SIGTERM);
    return child.wait_exit(10s);
}

std::int64_t MockServer::stat(std::string_view name) {
    const auto s = stats();
    const auto* v = s.if_contains(name);
    if (v == nullptr) throw std::runtime_error("rds-mock stats: no " + std::string(name));
    return v->to_number<std::int64_t>();
}

boost::json::object MockServer::stats() {
    const auto res = control("GET", "/_mock/stats");
    if (res.status != 200) throw std::runtime_error("rds-mock stats failed: " + res.body);
    auto v = res.json();
    if (!v.is_object()) throw std::runtime_error("rds-mock stats: not an object");
    return std::move(v.get_object());
}

}  // namespace rdsgw::test
