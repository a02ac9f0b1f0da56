// Integration-test harness: starts rds-mock and rds-gateway as real processes on loopback ports they pick,
// over TLS with a CA made per test, and gives typed access to both.
#pragma once
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "rdsgw/signer.hpp"
#include "support/certs.hpp"
#include "support/http.hpp"
#include "support/process.hpp"
#include "support/tempdir.hpp"

namespace rdsgw::test {

namespace json = boost::json;

inline const std::string kProject = "97b026aa9cc4417888c14c84a1ad9860";
inline const std::string kBackup = "c0c9f155c7b7423a9d30f0175998b63bbr01";
inline const std::string kApiKey = "test-api-key-0123456789";
inline std::string backup_path(const std::string& backup = kBackup, const std::string& project = kProject) {
    return "/v3/" + project + "/backup-files?backup_id=" + backup;
}
// noinline: GCC 12 -O3 reports a false -Warray-bounds when this is inlined after an initializer list.
[[gnu::noinline]] inline Headers with_key(Headers h = {}) {
    h.emplace_back("X-Api-Key", kApiKey);
    return h;
}

// Deep merge of `patch` into `base` (objects merge, everything else replaces).
inline void merge(json::value& base, const json::value& patch) {
    if (base.is_object() && patch.is_object()) {
        for (auto& kv : patch.get_object()) {
            auto* existing = base.get_object().if_contains(kv.key());
            if (existing && existing->is_object() && kv.value().is_object())
                merge(*existing, kv.value());
            else
                base.get_object()[kv.key()] = kv.value();
        }
    } else {
        base = patch;
    }
}

class MockServer {
  public:
    // TLS when pki is given. `behaviour` is the mock's initial --config.
    explicit MockServer(const Pki* pki, const std::string& behaviour = "{}", int threads = 1) : pki_(pki) {
        std::vector<std::string> argv = {RDSGW_MOCK_BIN, "--threads", std::to_string(threads), "--config",
                                         behaviour};
        if (pki) {
            argv.insert(argv.end(), {"--tls-cert", pki->server_cert, "--tls-key", pki->server_key});
        }
        child.spawn(argv);
        port = start_and_get_port(child);
    }
    std::optional<TlsOptions> tls() const {
        if (!pki_) return std::nullopt;
        TlsOptions t;
        t.ca_file = pki_->ca_cert;
        return t;
    }
    std::string base_url() const {
        return std::string(pki_ ? "https" : "http") + "://localhost:" + std::to_string(port);
    }
    json::value stats() { return get(port, "/_mock/stats", {}, tls()).json(); }
    std::int64_t stat(const char* name) { return stats().at(name).to_number<std::int64_t>(); }
    void configure(const std::string& behaviour) {
        HttpClient c(port, tls());
        auto r = c.request("POST", "/_mock/config", {{"Content-Type", "application/json"}}, behaviour);
        BOOST_REQUIRE_MESSAGE(r.status == 200, "mock configure failed: " << r.status << " " << r.body);
    }
    void reset() {
        HttpClient c(port, tls());
        BOOST_REQUIRE(c.request("POST", "/_mock/reset").status == 200);
    }
    void revoke() {
        HttpClient c(port, tls());
        BOOST_REQUIRE(c.request("POST", "/_mock/revoke").status == 200);
    }

    Child child;
    int port = 0;

  private:
    const Pki* pki_;
};

// The default test configuration: upstream = the mock over TLS verified by the test CA, token mode with
// RDS_AUTH_TOKEN, one caller "tester" with kApiKey for all projects, admin listener on an OS-picked port.
inline json::value base_config(const MockServer& mock, const Pki* pki) {
    json::value cfg = {
        {"listen", {{"address", "127.0.0.1"}, {"port", 0}, {"threads", 2}}},
        {"admin", {{"address", "127.0.0.1"}, {"port", 0}}},
        {"upstream",
         {{"base_url", mock.base_url()},
          {"ca_file", pki ? pki->ca_cert : ""},
          {"connect_timeout_ms", 1000},
          {"request_timeout_ms", 3000}}},
        {"retry", {{"base_backoff_ms", 10}, {"max_backoff_ms", 100}, {"deadline_ms", 5000}}},
        {"auth", {{"mode", "token"}, {"token", {{"env", "RDS_AUTH_TOKEN"}}}}},
        {"callers",
         {{"list", json::array{json::object{{"name", "tester"},
                                            {"api_key_sha256", json::array{sha256_hex(kApiKey)}},
                                            {"projects", json::array{"*"}}}}}}},
        {"log", {{"access", "stdout"}, {"level", "debug"}}},
    };
    return cfg;
}

// The "auth" block for IAM mode against the mock's IAM side; the password comes from env GW_IAM_PASSWORD.
// retry_base_ms / retry_max_ms: 0 leaves that field out (the gateway's default applies).
inline json::object iam_auth(const MockServer& mock, int refresh_margin_s, int min_validity_s,
                             int retry_base_ms = 0, int retry_max_ms = 0) {
    json::object iam{{"endpoint", mock.base_url()},
                     {"domain", "acct"},
                     {"user", "gw-user"},
                     {"password", {{"env", "GW_IAM_PASSWORD"}}},
                     {"project", "cn-north-4"},
                     {"refresh_margin_s", refresh_margin_s},
                     {"min_validity_s", min_validity_s}};
    if (retry_base_ms > 0) iam["retry_base_ms"] = retry_base_ms;
    if (retry_max_ms > 0) iam["retry_max_ms"] = retry_max_ms;
    return {{"mode", "iam"}, {"iam", std::move(iam)}};
}

class GatewayProc {
  public:
    GatewayProc(const json::value& cfg, std::vector<std::pair<std::string, std::string>> env = {})
        : dir_("rdsgw-gw") {
        config_path = dir_.path() + "/gateway.json";
        write_config(cfg);
        child.spawn({RDSGW_GATEWAY_BIN, "--config", config_path}, env);
        try {
            port = start_and_get_port(child, std::chrono::seconds(20), &admin_port);
        } catch (const std::exception& e) {
            BOOST_FAIL("gateway did not start: " << e.what());
        }
    }
    void write_config(const json::value& cfg) {
        std::ofstream f(config_path);
        f << json::serialize(cfg);
    }
    Response get(const std::string& target, const Headers& h = {}) {
        return rdsgw::test::get(port, target, h);
    }
    Response admin_get(const std::string& target) { return rdsgw::test::get(admin_port, target); }
    std::string dir() const { return dir_.path(); }

    Child child;
    int port = 0, admin_port = 0;
    std::string config_path;

  private:
    TempDir dir_;
};

// Waits for a condition with a deadline, checking every 20 ms. Only for state the gateway reaches on its own
// schedule (a token arriving, a reload done), where no event can be observed from outside.
template <class F>
bool eventually(F cond, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
        if (cond()) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return cond();
}

// Milliseconds of a duration (Boost.Test cannot print chrono types).
template <class D>
long long to_ms(D d) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

// Reads a Prometheus sample value (e.g. `rdsgw_cache_events_total{event="hit"}`), 0 when absent.
inline double metric_value(const std::string& text, const std::string& series) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    }
    return 0;
}

}  // namespace rdsgw::test
