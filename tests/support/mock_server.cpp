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
        tls_ = TlsOptions::trusting(options.pki->ca_cert);
    }
    if (!options.config.empty()) argv.insert(argv.end(), {"--config", options.config});
    argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
    child_.spawn(argv);
    port_ = start_and_get_port(child_);
    control_.emplace(port_, tls_);
}

std::string MockServer::base_url() const {
    return (tls_ ? "https://localhost:" : "http://127.0.0.1:") + std::to_string(port_);
}

Response MockServer::control(std::string_view method, std::string_view target, std::string body) {
    if (!control_->connected()) control_->reconnect();
    Headers headers;
    if (!body.empty()) headers.emplace_back("Content-Type", "application/json");
    return control_->request(method, target, headers, std::move(body));
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

std::optional<int> MockServer::stop() {
    if (control_) control_->close();
    child_.signal(SIGTERM);
    return child_.wait_exit(10s);
}

boost::json::object MockServer::stats() {
    const auto res = control("GET", "/_mock/stats");
    if (res.status != 200) throw std::runtime_error("rds-mock stats failed: " + res.body);
    auto v = res.json();
    if (!v.is_object()) throw std::runtime_error("rds-mock stats: not an object");
    return std::move(v.get_object());
}

}  // namespace rdsgw::test
