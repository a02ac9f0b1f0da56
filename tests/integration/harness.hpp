// Integration-test harness: starts rds-mock and rds-gateway as real processes on loopback ports they pick,
// over TLS with a CA made per test, and gives typed access to both.
//
//   Pki pki = make_pki();
//   MockServer mock(&pki, R"({"latency_ms":100})");          // support/mock_server.hpp
//   auto gw = GatewayConfig(mock, pki).no_cache().patch(R"({"retry":{"max_attempts":1}})").start();
//   BOOST_TEST(gw.get(backup_path(), with_key()).status == 200u);
//   BOOST_TEST(mock.wait_for("rds_requests", 1));              // blocks on the mock's event, no polling
//
// GatewayConfig is the one place that builds a test's gateway configuration (base_config() plus changes)
// and the environment it needs; GatewayProc(cfg, env) and base_config() stay usable directly.
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
#include "support/mock_server.hpp"
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

using Env = std::vector<std::pair<std::string, std::string>>;

// The token the default configuration's "auth" reads from RDS_AUTH_TOKEN (GatewayConfig sets it).
inline const std::string kUpstreamToken = "upstream-test-token-0001";

class GatewayProc;

// Builds one gateway configuration for an integration test (Envoy's ConfigHelper): base_config() with
// chainable changes, and the environment the gateway is started with (RDS_AUTH_TOKEN = kUpstreamToken
// unless token()/env() say otherwise). start() launches the gateway and waits until it listens.
class GatewayConfig {
  public:
    GatewayConfig(const MockServer& mock, const Pki& pki) : GatewayConfig(mock, &pki) {}
    GatewayConfig(const MockServer& mock, const Pki* pki) : cfg_(base_config(mock, pki)) {
        env_.emplace_back("RDS_AUTH_TOKEN", kUpstreamToken);
    }

    // Deep-merges JSON text or a value into the configuration (objects merge, anything else replaces).
    GatewayConfig& patch(std::string_view json_text) { return patch(json::parse(json_text)); }
    GatewayConfig& patch(const char* json_text) { return patch(std::string_view(json_text)); }
    GatewayConfig& patch(const json::value& v) {
        merge(cfg_, v);
        return *this;
    }
    // Sets one field by JSON pointer ("/cache/enabled"), creating the objects on the way.
    GatewayConfig& set(std::string_view pointer, json::value v) {
        json::value* at = &cfg_;
        while (!pointer.empty()) {
            BOOST_REQUIRE_MESSAGE(pointer.front() == '/', "not a JSON pointer: " << pointer);
            pointer.remove_prefix(1);
            const auto key = pointer.substr(0, pointer.find('/'));
            pointer.remove_prefix(key.size());
            if (!at->is_object()) *at = json::object();
            at = &at->as_object()[key];
        }
        *at = std::move(v);
        return *this;
    }
    GatewayConfig& threads(int n) { return set("/listen/threads", n); }
    GatewayConfig& no_cache() { return set("/cache/enabled", false); }
    // log.access: "stdout", "off" or a file path.
    GatewayConfig& access_log(std::string where) { return set("/log/access", json::string(where)); }
    // Token mode: the upstream token the gateway injects (passed as RDS_AUTH_TOKEN).
    GatewayConfig& token(std::string token) { return env("RDS_AUTH_TOKEN", std::move(token)); }
    // IAM mode against the mock's IAM side (see iam_auth()); the password goes in as GW_IAM_PASSWORD.
    GatewayConfig& iam(const MockServer& mock, std::string password, int refresh_margin_s, int min_validity_s,
                       int retry_base_ms = 0, int retry_max_ms = 0) {
        set("/auth", iam_auth(mock, refresh_margin_s, min_validity_s, retry_base_ms, retry_max_ms));
        return env("GW_IAM_PASSWORD", std::move(password));
    }
    // Replaces callers.list.
    GatewayConfig& callers(json::array list) { return set("/callers/list", std::move(list)); }
    // Adds (or replaces) one environment variable of the gateway.
    GatewayConfig& env(std::string name, std::string value) {
        std::erase_if(env_, [&](const auto& kv) { return kv.first == name; });
        env_.emplace_back(std::move(name), std::move(value));
        return *this;
    }

    json::value& cfg() { return cfg_; }
    const json::value& cfg() const { return cfg_; }
    const Env& environment() const { return env_; }
    GatewayProc start() const;

  private:
    json::value cfg_;
    Env env_;
};

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

inline GatewayProc GatewayConfig::start() const {
    return GatewayProc(cfg_, env_);
}

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

// The access-log line of request `id` in the gateway's output (diagnostic lines carry the id too; the access
// line is the one with a "route"), waiting for the writer (it flushes every 20 ms); "" when none came.
inline std::string access_log_line(const Child& gw, const std::string& id,
                                   std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    const std::string needle = "\"request_id\":\"" + id + "\"";
    std::string found;
    eventually(
        [&] {
            const std::string out = gw.output();
            for (auto at = out.find(needle); at != std::string::npos; at = out.find(needle, at + 1)) {
                const auto begin = out.rfind('\n', at) + 1, end = out.find('\n', at);
                if (end == std::string::npos) break;
                std::string line = out.substr(begin, end - begin);
                if (line.find("\"route\":") != std::string::npos) {
                    found = std::move(line);
                    return true;
                }
            }
            return false;
        },
        timeout);
    return found;
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
