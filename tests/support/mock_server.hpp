// Starts rds-mock (RDSGW_MOCK_BIN) as a child process and drives its /_mock control endpoints.
#pragma once
#include <chrono>
#include <cstdint>
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
    std::string binary;                  // empty: RDSGW_MOCK_BIN
    std::string tls_name = "localhost";  // the DNS name of pki->server_cert (checked by the control client)

    // Chainable setters: MockServer mock(MockOptions().with_config(R"({"auth":"iam"})"));
    MockOptions& with_tls(const Pki& p) {
        pki = &p;
        return *this;
    }
    MockOptions& with_tls_name(std::string name) {
        tls_name = std::move(name);
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

// One running rds-mock: the only MockServer of the tests (the integration harness and test_mock use it).
// Control calls share one keep-alive connection, opened at start (so it shows in the mock's "connections"
// and "open_connections"; "control_connections" counts such connections) and reopened when the mock has
// closed it. Every control call throws std::runtime_error on an unexpected answer.
class MockServer {
  public:
    explicit MockServer(MockOptions options = {});
    // TLS when pki is given; `behaviour` is the mock's initial --config (JSON text).
    explicit MockServer(const Pki* pki, const std::string& behaviour = "{}", int threads = 1);

    // "http://127.0.0.1:<port>", or "https://localhost:<port>" under TLS (the certificate's name).
    std::string base_url() const;
    // Options for an HttpClient that trusts the mock (nullopt for plain HTTP).
    std::optional<TlsOptions> tls() const { return tls_; }
    std::optional<TlsOptions> client_tls() const { return tls_; }
    HttpClient client() const { return HttpClient(port, tls_); }

    // POST /_mock/config with these keys (merged into the current behaviour).
    void configure(std::string_view json_patch);
    void configure(const boost::json::object& patch);
    // POST /_mock/reset: built-in defaults, counters zeroed, scripts cleared.
    void reset();
    // POST /_mock/revoke: every token issued so far becomes invalid.
    void revoke();
    // POST /_mock/release: every request held by the "hold" behaviour (stat "held") goes on.
    void release();
    // GET /_mock/stats, and one number of it.
    boost::json::object stats();
    std::int64_t stat(std::string_view name);
    // GET /_mock/wait: blocks until the counter `name` (a number of stats(), e.g. "rds_requests") is at
    // least `at_least` (true), or `timeout` passed (false). The mock wakes the call on the event (no
    // polling).
    bool wait_for(std::string_view name, std::int64_t at_least, std::chrono::milliseconds timeout = 10s);
    // Any control request; returns the answer whatever its status.
    Response control(std::string_view method, std::string_view target, std::string body = {});

    Child& process() { return child; }
    // SIGTERM, then waits: the mock's exit status (0 expected), nullopt when it did not stop in 10 s.
    // (The destructor stops a running mock too, without reporting.)
    std::optional<int> stop();

    Child child;
    int port = 0;

  private:
    void start(std::vector<std::string> argv);
    std::optional<TlsOptions> tls_;
    std::optional<HttpClient> control_;
};

}  // namespace rdsgw::test
