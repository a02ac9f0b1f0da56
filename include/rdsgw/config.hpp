// Configuration: JSON with comments, every key validated (unknown and duplicate keys rejected), defaults in
// one place. Secrets never sit in the file: a SecretRef names the environment variable, file or systemd
// credential that holds each one.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rdsgw {

struct SecretRef {
    std::string env;   // environment variable name, or
    std::string file;  // path of a file whose content (trailing white space trimmed) is the secret, or
    std::string
        credential;  // systemd credential: the file $CREDENTIALS_DIRECTORY/<credential> (LoadCredential=)

    SecretRef() = default;
    SecretRef(std::string env_name, std::string file_path, std::string credential_name = {})
        : env(std::move(env_name)), file(std::move(file_path)), credential(std::move(credential_name)) {}
    bool empty() const { return env.empty() && file.empty() && credential.empty(); }
    // "env RDS_AUTH_TOKEN" / "file /run/x" / "systemd credential rds-token": never the value.
    std::string describe() const;
    bool operator==(const SecretRef&) const = default;
};

// Reads the secret now, the one place where secrets are read (start-up, --check-config, SIGHUP). Returns
// false with `why` set (never containing the value) when it is unavailable, empty, or contains a control
// character (a byte below 0x20 or 0x7f: a CR/LF in a token would add a header upstream).
bool load_secret(const SecretRef& ref, std::string& out, std::string& why);

struct ListenConfig {
    std::string address = "0.0.0.0";
    std::uint16_t port = 8080;
    unsigned threads = 0;       // 0: one per core
    std::string tls_cert_file;  // optional TLS on the listener
    std::string tls_key_file;
    std::string client_ca_file;        // mutual TLS: verify client certificates against this CA
    bool require_client_cert = false;  // refuse the handshake without a valid client certificate
    // Load balancers whose X-Forwarded-For is believed (CIDRs or addresses); the access log's client is then
    // the right-most forwarded address that is not one of them.
    std::vector<std::string> trusted_proxies;
};

struct AdminConfig {
    bool enabled = false;  // when false, /metrics and /admin/* are served on the main listener
    std::string address = "127.0.0.1";
    std::uint16_t port = 9090;
    unsigned max_connections = 64;  // its own budget: a flood on the main port never reaches it
};

// An HTTP proxy for the gateway's outgoing connections (RDS and IAM): TLS is tunnelled through CONNECT.
struct ProxyConfig {
    std::string url;                    // "http://proxy.example:3128"; empty: connect directly
    SecretRef credentials;              // optional "user:password" for Proxy-Authorization: Basic
    std::vector<std::string> no_proxy;  // hosts reached directly: "host", ".suffix", "*", "10.0.0.0/8"
};

struct UpstreamConfig {
    std::string base_url = "https://rds.cn-north-4.myhuaweicloud.com";
    // Multi-region: the endpoint of a region without its own base_url, e.g.
    // "https://rds.{region}.myhuaweicloud.com".
    std::string base_url_template;
    ProxyConfig proxy;
    std::string ca_file;  // empty: the system trust store
    unsigned connect_timeout_ms = 2000;
    unsigned request_timeout_ms = 10000;  // one attempt, from sending to the last byte of the answer
    unsigned pool_size = 32;              // keep-alive connections per thread
    unsigned pool_idle_timeout_ms = 30000;
    unsigned max_response_bytes = 4 << 20;
    unsigned dns_refresh_s = 60;
    unsigned max_concurrent = 256;  // concurrent upstream requests per process
    unsigned max_queue = 128;       // waiting for a slot; past it: 503 at once
    unsigned queue_timeout_ms = 1000;
};

struct RetryConfig {
    unsigned max_attempts = 3;
    unsigned base_backoff_ms = 50;
    unsigned max_backoff_ms = 2000;
    unsigned deadline_ms = 15000;   // overall, for the caller's answer
    double budget_ratio = 0.2;      // retries at most this share of active upstream requests...
    unsigned budget_min = 3;        // ...but always this many concurrent retries
    unsigned breaker_failures = 5;  // consecutive failures that open the circuit breaker
    unsigned breaker_open_ms = 5000;
};

struct IamConfig {
    std::string endpoint = "https://iam.myhuaweicloud.com";
    std::string ca_file;  // empty: upstream.ca_file
    std::string domain;
    std::string user;
    SecretRef password{"RDS_IAM_PASSWORD", ""};
    std::string project;               // project name (scope), e.g. cn-north-4
    std::string project_id;            // or project id
    unsigned refresh_margin_s = 3600;  // refresh this long before expiry
    unsigned min_validity_s = 30;      // never inject a token with less than this left
    unsigned retry_base_ms = 200;
    unsigned retry_max_ms = 30000;
    unsigned max_tokens = 64;  // multi-region: project-scoped tokens kept at once (least recently used go)
};

struct AkskConfig {
    SecretRef ak{"RDS_AK", ""};
    SecretRef sk{"RDS_SK", ""};
    SecretRef security_token;  // optional, temporary keys
    std::string domain_id;     // account (domain) id: X-Domain-Id of signed IAM calls (project discovery)
};

enum class AuthMode { token, iam, aksk };

struct AuthConfig {
    AuthMode mode = AuthMode::token;
    SecretRef token{"RDS_AUTH_TOKEN", ""};
    IamConfig iam;
    AkskConfig aksk;
};

struct CacheConfig {
    bool enabled = true;
    unsigned max_entries = 100000;
    std::uint64_t max_bytes = 256ull << 20;
    unsigned ttl_s = 300;
    unsigned expiry_margin_s = 60;
    unsigned negative_ttl_s = 5;
    bool stale_on_error = true;
    bool honor_no_cache = true;
    unsigned max_waiters = 10000;  // per key
    unsigned wait_timeout_ms = 15000;
};

// The shared cache tier (Redis), off by default: one instance without Redis keeps the in-process cache alone.
struct RedisKeyConfig {
    std::string id;  // 1..32 of [A-Za-z0-9._-]; stored in each value
    SecretRef key;   // 32 bytes as 64 hex digits or base64
};

struct RedisConfig {
    bool enabled = false;
    std::string address = "127.0.0.1:6379";  // host:port, [v6addr]:port, or unix:/path
    std::string user;                        // ACL user ("" = password-only AUTH, or none)
    SecretRef password;                      // optional
    unsigned db = 0;
    std::string key_prefix = "rdsgw:";
    unsigned pool_size = 2;              // command connections per process (plus one subscriber)
    unsigned op_timeout_ms = 20;         // one operation, from the caller's call to its answer
    unsigned connect_timeout_ms = 1000;  // TCP/TLS connect plus AUTH/SELECT
    unsigned breaker_failures = 5;       // consecutive failures or timeouts that stop asking Redis...
    unsigned breaker_open_ms = 2000;     // ...for this long, then one probe
    unsigned lock_ttl_ms = 10000;        // cross-instance fetch lock; a dead holder's lock frees after this
    std::vector<RedisKeyConfig> encryption_keys;  // required when enabled; the first encrypts
    bool shared_rate_limits = false;              // callers' rate limits enforced across instances
    bool tls = false;
    std::string tls_ca_file;      // empty: the system trust store
    std::string tls_server_name;  // empty: the host of `address`
};

struct CallerConfig {
    std::string name;
    std::vector<std::string> api_key_sha256;
    std::string access_key;
    SecretRef secret_key;
    std::vector<std::string> cert_subjects;
    std::vector<std::string> projects;
    double rate_per_s = 0;
    double burst = 0;
};

struct CallersConfig {
    bool required = true;  // false only with an explicit flag; a warning is logged
    bool metrics_require_auth = false;
    std::vector<CallerConfig> list;
};

struct LimitsConfig {
    unsigned max_header_bytes = 8192;
    unsigned max_connections = 10000;  // per process
    unsigned header_timeout_ms = 10000;
    unsigned idle_timeout_ms = 60000;
    unsigned max_inflight = 4096;  // requests being handled at once, per process
    unsigned drain_timeout_ms = 10000;
    // On SIGTERM, keep serving (and accepting) this long with /readyz answering 503 so that load balancers
    // take the instance out before it stops accepting. 0: stop accepting at once.
    unsigned drain_delay_ms = 0;
};

struct RequestConfig {
    std::string project_id_pattern = "[A-Za-z0-9]{1,64}";
    std::string backup_id_pattern = "[A-Za-z0-9]{1,64}";
};

struct ResponseConfig {
    bool allow_http_links = false;
    std::vector<std::string> link_host_suffixes;
    bool drop_unknown_fields = false;
    bool emit_legacy_expiry_field = false;
    unsigned max_body_bytes = 1 << 20;
};

struct LogConfig {
    std::string access = "stdout";  // "stdout" | "off" | a file path (reopened on SIGHUP)
    std::string level = "info";     // diagnostic log (stderr): debug | info | warn | error
    unsigned access_queue = 65536;  // lines buffered per writing thread before dropping
};

// Multi-region routing (regions.hpp): project_id -> region -> endpoint, pool, breaker, limiter, credential.
struct RegionConfig {
    std::string name;      // region id, e.g. "cn-north-4"
    std::string base_url;  // empty: upstream.base_url_template with {region} = name
    std::string ca_file;   // empty: upstream.ca_file
    SecretRef token;       // token mode: this region's static token; empty: auth.token
};

struct DiscoveryConfig {
    bool enabled = false;          // learn project -> region from IAM (GET /v3/auth/projects)
    unsigned refresh_s = 300;      // periodic refresh
    unsigned min_interval_s = 10;  // a refresh for an unknown project: at most this often
    unsigned wait_ms = 3000;       // how long a request for an unknown project waits for that refresh
    unsigned max_projects = 1000;  // discovered projects kept (static entries do not count)
    unsigned max_regions = 64;     // regions the gateway creates (configured and discovered)
};

struct ProjectsConfig {
    std::vector<std::pair<std::string, std::string>> static_map;  // project id -> region id
    DiscoveryConfig discovery;
};

struct Config {
    ListenConfig listen;
    AdminConfig admin;
    UpstreamConfig upstream;
    RetryConfig retry;
    AuthConfig auth;
    CacheConfig cache;
    RedisConfig redis;
    CallersConfig callers;
    LimitsConfig limits;
    RequestConfig request;
    ResponseConfig response;
    LogConfig log;
    std::vector<RegionConfig> regions;  // multi-region; empty with no projects: one region, upstream.base_url
    ProjectsConfig projects;
};

// True when the config routes by project (regions, a base-URL template, static projects or discovery);
// false for the one-region setup (upstream.base_url serves every project).
bool multi_region(const Config& c);

// Parses and validates. On failure returns false and fills `errors` with one message per problem, each
// naming the key by its path (e.g. "upstream.connect_timeout_ms: must be an integer in [1, 600000]"). A
// syntax error names its line and column; a key given twice in one object is an error naming its path.
// Pure: reads no file, environment variable or secret (resources.hpp checks those).
bool parse_config(std::string_view text, Config& out, std::vector<std::string>& errors);
bool load_config_file(const std::string& path, Config& out, std::vector<std::string>& errors);

// Things a valid config may still get wrong (e.g. the admin listener on a public address with /metrics open
// to anyone): one message per warning, naming the keys.
std::vector<std::string> config_warnings(const Config& c);

// The effective configuration as JSON text (every key, defaults included; secrets as their references,
// never their values). parse_config() accepts it back and yields the same Config.
std::string print_config(const Config& c);

// The key paths, sorted (e.g. "auth.token", "upstream.pool_size"), whose values differ between the running
// config and a freshly read one and that a SIGHUP does not apply (everything but the callers and log.level).
std::vector<std::string> changed_restart_settings(const Config& running, const Config& fresh);

}  // namespace rdsgw
