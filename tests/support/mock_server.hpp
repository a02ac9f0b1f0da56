// Starts rds-mock (RDSGW_MOCK_BIN) as a child process and drives its /_mock control endpoints.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

#include "support/certs.hpp"
#include "support/http.hpp"
#include "support/process.hpp"

namespace rdsgw::test {

struct MockOptions {
    const Pki* pki = nullptr;  // when set: TLS with pki->server_cert / server_key
    int threads = 1;
    std::string config;  // initial behaviour (--config), JSON text; empty for the defaults
    std::vector<std::string> extra_args;
    std::string binary;  // empty: RDSGW_MOCK_BIN

    // Chainable setters: MockServer mock(MockOptions().with_config(R"({"auth":"iam"})"));
    MockOptions& with_tls(const Pki& p) {
        pki = &p;
        return *this;
    }
    MockOptions& with_threads(int n) {
        threads = n;
        return *this;
    }
    MockOptions& with_config(std::string json) {
        config = std::move(json);
        return *this;
    }
};

// One running rds-mock. Control calls share one keep-alive connection, opened at start (so it shows in
// the mock's "connections" and "open_connections"; "control_connections" counts such connections) and
// reopened when the mock has closed it. Every call throws std::runtime_error on an unexpected answer.
class MockServer {
  public:
    explicit MockServer(MockOptions options = {});

    int port() const { return port_; }
    bool tls() const { return tls_.has_value(); }
    // "http://127.0.0.1:<port>", or "https://localhost:<port>" under TLS (the certificate's name).
    std::string base_url() const;
    // Options for an HttpClient that trusts the mock (nullopt for plain HTTP).
    std::optional<TlsOptions> client_tls() const { return tls_; }
    HttpClient client() const { return HttpClient(port_, tls_); }

    // POST /_mock/config with these keys (merged into the current behaviour).
    void configure(std::string_view json_patch);
    void configure(const boost::json::object& patch);
    // POST /_mock/reset: built-in defaults, counters zeroed, scripts cleared.
    void reset();
    // POST /_mock/revoke: every token issued so far becomes invalid.
    void revoke();
    // GET /_mock/stats.
    boost::json::object stats();
    // Any control request; returns the answer whatever its status.
    Response control(std::string_view method, std::string_view target, std::string body = {});

    Child& process() { return child_; }
    // SIGTERM, then waits: the mock's exit status (0 expected), nullopt when it did not stop in 10 s.
    // (The destructor stops a running mock too, without reporting.)
    std::optional<int> stop();

  private:
    Child child_;
    int port_ = 0;
    std::optional<TlsOptions> tls_;
    std::optional<HttpClient> control_;
};

}  // namespace rdsgw::test
