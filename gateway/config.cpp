#include "rdsgw/config.hpp"

#include <boost/json.hpp>
#include <boost/url/parse.hpp>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <regex>
#include <set>
#include <sstream>

namespace rdsgw {
namespace json = boost::json;

std::string SecretRef::describe() const {
    if (!env.empty()) return "env " + env;
    if (!file.empty()) return "file " + file;
    return "nothing";
}

bool load_secret(const SecretRef& ref, std::string& out, std::string& why) {
    if (!ref.env.empty()) {
        const char* v = std::getenv(ref.env.c_str());
        if (!v || !*v) {
            why = "environment variable " + ref.env + " is not set or empty";
            return false;
        }
        out = v;
        return true;
    }
    if (!ref.file.empty()) {
        std::ifstream in(ref.file, std::ios::binary);
        if (!in) {
            why = "cannot read file " + ref.file;
            return false;
        }
        std::ostringstream ss;
        ss << in.rdbuf();
        std::string s = ss.str();
        while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t'))
            s.pop_back();
        if (s.empty()) {
            why = "file " + ref.file + " is empty";
            return false;
        }
        out = std::move(s);
        return true;
    }
    why = "no source configured";
    return false;
}

namespace {

// Walks one JSON object, remembering which keys were read so that unknown keys can be reported.
class Reader {
  public:
    Reader(const json::object* obj, std::string path, std::vector<std::string>& errors)
        : obj_(obj), path_(std::move(path)), errors_(errors) {}

    ~Reader() {
        if (!obj_) return;
        for (const auto& kv : *obj_) {
            std::string k(kv.key());
            if (!seen_.count(k)) error(k, "unknown key (check its spelling)");
        }
    }
    Reader(const Reader&) = delete;

    std::string at(std::string_view key) const {
        return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
    }
    void error(std::string_view key, std::string_view msg) {
        errors_.push_back(at(key) + ": " + std::string(msg));
    }

    const json::value* get(std::string_view key) {
        seen_.insert(std::string(key));
        if (!obj_) return nullptr;
        auto it = obj_->find(key);
        if (it == obj_->end() || it->value().is_null()) return nullptr;
        return &it->value();
    }
    bool has(std::string_view key) const { return obj_ && obj_->contains(key); }

    Reader sub(std::string_view key) {
        const json::value* v = get(key);
        if (v && !v->is_object()) {
            error(key, "must be an object");
            return Reader(nullptr, at(key), errors_);
        }
        return Reader(v ? &v->get_object() : nullptr, at(key), errors_);
    }

    void str(std::string_view key, std::string& out, bool non_empty = false) {
        const json::value* v = get(key);
        if (!v) return;
        if (!v->is_string()) return error(key, "must be a string");
        out = std::string(v->get_string());
        if (non_empty && out.empty()) error(key, "must not be empty");
    }

    template <class T>
    void integer(std::string_view key, T& out, std::uint64_t lo, std::uint64_t hi) {
        const json::value* v = get(key);
        if (!v) return;
        std::uint64_t n = 0;
        bool ok = false;
        if (v->is_uint64()) {
            n = v->get_uint64();
            ok = true;
        } else if (v->is_int64() && v->get_int64() >= 0) {
            n = static_cast<std::uint64_t>(v->get_int64());
            ok = true;
        }
        if (!ok || n < lo || n > hi) {
            return error(key,
                         "must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
        }
        out = static_cast<T>(n);
    }

    void number(std::string_view key, double& out, double lo, double hi) {
        const json::value* v = get(key);
        if (!v) return;
        double d = 0;
        if (v->is_double())
            d = v->get_double();
        else if (v->is_int64())
            d = static_cast<double>(v->get_int64());
        else if (v->is_uint64())
            d = static_cast<double>(v->get_uint64());
        else
            return error(key, "must be a number");
        if (!(d >= lo && d <= hi)) {
            std::ostringstream m;
            m << "must be a number in [" << lo << ", " << hi << "]";
            return error(key, m.str());
        }
        out = d;
    }

    void boolean(std::string_view key, bool& out) {
        const json::value* v = get(key);
        if (!v) return;
        if (!v->is_bool()) return error(key, "must be true or false");
        out = v->get_bool();
    }

    void strings(std::string_view key, std::vector<std::string>& out) {
        const json::value* v = get(key);
        if (!v) return;
        if (!v->is_array()) return error(key, "must be an array of strings");
        out.clear();
        for (const auto& e : v->get_array()) {
            if (!e.is_string()) return error(key, "must be an array of strings");
            out.emplace_back(e.get_string());
        }
    }

    // {"env": "NAME"} or {"file": "/path"}, exactly one.
    void secret(std::string_view key, SecretRef& out) {
        const json::value* v = get(key);
        if (!v) return;
        if (v->is_string()) {
            return error(key,
                         "must be {\"env\": \"VARIABLE\"} or {\"file\": \"/path\"}; secrets never sit in the "
                         "config file");
        }
        Reader r = sub(key);
        SecretRef s;
        r.str("env", s.env);
        r.str("file", s.file);
        if (s.env.empty() == s.file.empty()) return error(key, "needs exactly one of \"env\" or \"file\"");
        out = s;
    }

    const json::object* obj() const { return obj_; }

  private:
    const json::object* obj_;
    std::string path_;
    std::vector<std::string>& errors_;
    std::set<std::string> seen_;
};

void check_url(Reader& r, std::string_view key, const std::string& url) {
    auto u = boost::urls::parse_absolute_uri(url);
    if (!u || (u->scheme() != "http" && u->scheme() != "https") || u->host().empty() ||
        (!u->encoded_path().empty() && u->encoded_path() != "/") || u->has_query() || u->has_userinfo()) {
        r.error(key, "must be an absolute http(s) URL with a host and no path, query or user info");
    }
}

void check_regex(Reader& r, std::string_view key, const std::string& pattern) {
    try {
        std::regex re(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error&) {
        r.error(key, "is not a valid regular expression");
    }
}

void check_port(Reader& r, std::string_view key, std::uint16_t& out, bool allow_zero) {
    r.integer(key, out, allow_zero ? 0 : 1, 65535);
}

}  // namespace

bool parse_config(std::string_view text, Config& c, std::vector<std::string>& errors) {
    json::parse_options opts;
    opts.allow_comments = true;
    opts.allow_trailing_commas = true;
    boost::system::error_code ec;
    json::value root = json::parse(text, ec, {}, opts);
    if (ec) {
        errors.push_back("config is not valid JSON: " + ec.message());
        return false;
    }
    if (!root.is_object()) {
        errors.push_back("config must be a JSON object");
        return false;
    }
    {
        Reader top(&root.get_object(), "", errors);
        {
            Reader r = top.sub("listen");
            r.str("address", c.listen.address, true);
            check_port(r, "port", c.listen.port, true);
            r.integer("threads", c.listen.threads, 0, 256);
            r.str("tls_cert_file", c.listen.tls_cert_file);
            r.str("tls_key_file", c.listen.tls_key_file);
            r.str("client_ca_file", c.listen.client_ca_file);
            r.boolean("require_client_cert", c.listen.require_client_cert);
            if (c.listen.tls_cert_file.empty() != c.listen.tls_key_file.empty())
                r.error("tls_cert_file", "tls_cert_file and tls_key_file go together");
            if (!c.listen.client_ca_file.empty() && c.listen.tls_cert_file.empty())
                r.error("client_ca_file", "needs tls_cert_file and tls_key_file");
            if (c.listen.require_client_cert && c.listen.client_ca_file.empty())
                r.error("require_client_cert", "needs client_ca_file");
        }
        {
            Reader r = top.sub("admin");
            if (top.has("admin")) c.admin.enabled = true;
            r.boolean("enabled", c.admin.enabled);
            r.str("address", c.admin.address, true);
            check_port(r, "port", c.admin.port, true);
        }
        {
            Reader r = top.sub("upstream");
            r.str("base_url", c.upstream.base_url, true);
            check_url(r, "base_url", c.upstream.base_url);
            r.str("ca_file", c.upstream.ca_file);
            r.integer("connect_timeout_ms", c.upstream.connect_timeout_ms, 1, 600000);
            r.integer("request_timeout_ms", c.upstream.request_timeout_ms, 1, 600000);
            r.integer("pool_size", c.upstream.pool_size, 0, 10000);
            r.integer("pool_idle_timeout_ms", c.upstream.pool_idle_timeout_ms, 1, 3600000);
            r.integer("max_response_bytes", c.upstream.max_response_bytes, 1024, 1u << 30);
            r.integer("dns_refresh_s", c.upstream.dns_refresh_s, 1, 86400);
            r.integer("max_concurrent", c.upstream.max_concurrent, 1, 1000000);
            r.integer("max_queue", c.upstream.max_queue, 0, 1000000);
            r.integer("queue_timeout_ms", c.upstream.queue_timeout_ms, 1, 600000);
        }
        {
            Reader r = top.sub("retry");
            r.integer("max_attempts", c.retry.max_attempts, 1, 10);
            r.integer("base_backoff_ms", c.retry.base_backoff_ms, 1, 60000);
            r.integer("max_backoff_ms", c.retry.max_backoff_ms, 1, 600000);
            r.integer("deadline_ms", c.retry.deadline_ms, 1, 600000);
            r.number("budget_ratio", c.retry.budget_ratio, 0.0, 1.0);
            r.integer("budget_min", c.retry.budget_min, 0, 1000000);
            r.integer("breaker_failures", c.retry.breaker_failures, 1, 1000000);
            r.integer("breaker_open_ms", c.retry.breaker_open_ms, 1, 3600000);
            if (c.retry.max_backoff_ms < c.retry.base_backoff_ms)
                r.error("max_backoff_ms", "must be at least base_backoff_ms");
        }
        {
            Reader r = top.sub("auth");
            std::string mode = "token";
            r.str("mode", mode);
            if (mode == "token")
                c.auth.mode = AuthMode::token;
            else if (mode == "iam")
                c.auth.mode = AuthMode::iam;
            else if (mode == "aksk")
                c.auth.mode = AuthMode::aksk;
            else
                r.error("mode", "must be \"token\", \"iam\" or \"aksk\"");
            r.secret("token", c.auth.token);
            {
                Reader i = r.sub("iam");
                i.str("endpoint", c.auth.iam.endpoint, true);
                check_url(i, "endpoint", c.auth.iam.endpoint);
                i.str("ca_file", c.auth.iam.ca_file);
                i.str("domain", c.auth.iam.domain);
                i.str("user", c.auth.iam.user);
                i.secret("password", c.auth.iam.password);
                i.str("project", c.auth.iam.project);
                i.str("project_id", c.auth.iam.project_id);
                i.integer("refresh_margin_s", c.auth.iam.refresh_margin_s, 1, 86400);
                i.integer("min_validity_s", c.auth.iam.min_validity_s, 0, 86400);
                i.integer("retry_base_ms", c.auth.iam.retry_base_ms, 1, 600000);
                i.integer("retry_max_ms", c.auth.iam.retry_max_ms, 1, 3600000);
                if (c.auth.mode == AuthMode::iam) {
                    if (c.auth.iam.domain.empty()) i.error("domain", "is required in iam mode");
                    if (c.auth.iam.user.empty()) i.error("user", "is required in iam mode");
                    if (c.auth.iam.project.empty() == c.auth.iam.project_id.empty())
                        i.error("project",
                                "exactly one of project (name) or project_id is required in iam mode");
                    if (c.auth.iam.min_validity_s >= c.auth.iam.refresh_margin_s)
                        i.error("min_validity_s", "must be smaller than refresh_margin_s");
                }
            }
            {
                Reader a = r.sub("aksk");
                a.secret("ak", c.auth.aksk.ak);
                a.secret("sk", c.auth.aksk.sk);
                a.secret("security_token", c.auth.aksk.security_token);
            }
        }
        {
            Reader r = top.sub("cache");
            r.boolean("enabled", c.cache.enabled);
            r.integer("max_entries", c.cache.max_entries, 1, 100000000);
            r.integer("max_bytes", c.cache.max_bytes, 1024, 1ull << 40);
            r.integer("ttl_s", c.cache.ttl_s, 1, 86400);
            r.integer("expiry_margin_s", c.cache.expiry_margin_s, 0, 86400);
            r.integer("negative_ttl_s", c.cache.negative_ttl_s, 0, 3600);
            r.boolean("stale_on_error", c.cache.stale_on_error);
            r.boolean("honor_no_cache", c.cache.honor_no_cache);
            r.integer("max_waiters", c.cache.max_waiters, 1, 10000000);
            r.integer("wait_timeout_ms", c.cache.wait_timeout_ms, 1, 600000);
        }
        {
            // The shared cache tier (Redis).
            Reader r = top.sub("redis");
            RedisConfig& rc = c.redis;
            r.boolean("enabled", rc.enabled);
            r.str("address", rc.address, true);
            r.str("user", rc.user);
            r.secret("password", rc.password);
            if (!rc.user.empty() && rc.password.empty()) r.error("password", "is required with user");
            r.integer("db", rc.db, 0, 255);
            r.str("key_prefix", rc.key_prefix);
            for (char ch : rc.key_prefix) {
                if (ch == '{' || ch == '}' || static_cast<unsigned char>(ch) <= ' ' || ch == 0x7f) {
                    r.error("key_prefix", "must not contain braces, spaces or control characters");
                    break;
                }
            }
            if (rc.key_prefix.size() > 64) r.error("key_prefix", "must be at most 64 characters");
            r.integer("pool_size", rc.pool_size, 1, 64);
            r.integer("op_timeout_ms", rc.op_timeout_ms, 1, 60000);
            r.integer("connect_timeout_ms", rc.connect_timeout_ms, 1, 600000);
            r.integer("breaker_failures", rc.breaker_failures, 1, 1000000);
            r.integer("breaker_open_ms", rc.breaker_open_ms, 1, 3600000);
            r.integer("lock_ttl_ms", rc.lock_ttl_ms, 10, 600000);
            r.boolean("shared_rate_limits", rc.shared_rate_limits);
            r.boolean("tls", rc.tls);
            r.str("tls_ca_file", rc.tls_ca_file);
            r.str("tls_server_name", rc.tls_server_name);
            if (rc.address.rfind("unix:", 0) == 0) {
                if (rc.address.size() < 7 || rc.address[5] != '/')
                    r.error("address", "unix: needs an absolute path (unix:/path)");
                if (rc.tls) r.error("tls", "is not available over a unix socket");
            } else {
                static const std::regex hostport(R"(([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):([0-9]{1,5}))");
                std::smatch m;
                if (!std::regex_match(rc.address, m, hostport) || std::stoul(m[2].str()) == 0 ||
                    std::stoul(m[2].str()) > 65535)
                    r.error("address", "must be host:port, [ipv6]:port or unix:/path");
            }
            // "encryption_keys": [{"id": "k1", "key": {"env": "..."}}, ...]
            const json::value* keys = r.get("encryption_keys");
            if (keys && !keys->is_array())
                r.error("encryption_keys", "must be an array of {\"id\", \"key\"}");
            if (keys && keys->is_array()) {
                static const std::regex id_re("[A-Za-z0-9._-]{1,32}");
                std::set<std::string> ids;
                std::size_t idx = 0;
                for (const auto& e : keys->get_array()) {
                    const std::string path = r.at("encryption_keys") + "[" + std::to_string(idx++) + "]";
                    if (!e.is_object()) {
                        errors.push_back(path + ": must be an object {\"id\", \"key\"}");
                        continue;
                    }
                    Reader kr(&e.get_object(), path, errors);
                    RedisKeyConfig k;
                    kr.str("id", k.id);
                    if (!std::regex_match(k.id, id_re)) kr.error("id", "must be 1..32 of [A-Za-z0-9._-]");
                    if (!k.id.empty() && !ids.insert(k.id).second) kr.error("id", "is used twice");
                    kr.secret("key", k.key);
                    if (k.key.empty() && !kr.has("key"))
                        kr.error("key", "is required ({\"env\": \"VARIABLE\"} or {\"file\": \"/path\"})");
                    rc.encryption_keys.push_back(std::move(k));
                }
            }
            if (rc.enabled && rc.encryption_keys.empty())
                r.error("encryption_keys",
                        "is required when redis.enabled is true (values are encrypted at rest)");
        }
        {
            Reader r = top.sub("callers");
            r.boolean("required", c.callers.required);
            r.boolean("metrics_require_auth", c.callers.metrics_require_auth);
            const json::value* list = r.get("list");
            if (list && !list->is_array()) r.error("list", "must be an array of callers");
            std::set<std::string> names, aks;
            if (list && list->is_array()) {
                std::size_t idx = 0;
                for (const auto& e : list->get_array()) {
                    std::string path = r.at("list") + "[" + std::to_string(idx++) + "]";
                    if (!e.is_object()) {
                        errors.push_back(path + ": must be an object");
                        continue;
                    }
                    Reader cr(&e.get_object(), path, errors);
                    CallerConfig cc;
                    cr.str("name", cc.name, true);
                    if (cc.name.empty() && !cr.has("name")) cr.error("name", "is required");
                    if (!cc.name.empty() && !names.insert(cc.name).second) cr.error("name", "is used twice");
                    cr.strings("api_key_sha256", cc.api_key_sha256);
                    static const std::regex hex64("[0-9a-f]{64}");
                    for (auto& h : cc.api_key_sha256) {
                        for (auto& ch : h)
                            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
                        if (!std::regex_match(h, hex64))
                            cr.error("api_key_sha256",
                                     "each entry must be 64 hex digits (sha256sum of the key)");
                    }
                    cr.str("access_key", cc.access_key);
                    cr.secret("secret_key", cc.secret_key);
                    if (!cc.access_key.empty() && cc.secret_key.empty())
                        cr.error("secret_key", "is required with access_key");
                    if (!cc.access_key.empty() && !aks.insert(cc.access_key).second)
                        cr.error("access_key", "is used by two callers");
                    cr.strings("cert_subjects", cc.cert_subjects);
                    cr.strings("projects", cc.projects);
                    if (cc.projects.empty())
                        cr.error("projects", "must list at least one project id, or \"*\"");
                    cr.number("rate_per_s", cc.rate_per_s, 0, 1e9);
                    cr.number("burst", cc.burst, 0, 1e9);
                    if (cc.api_key_sha256.empty() && cc.access_key.empty() && cc.cert_subjects.empty())
                        cr.error("name",
                                 "caller has no credential (api_key_sha256, access_key or cert_subjects)");
                    c.callers.list.push_back(std::move(cc));
                }
            }
        }
        {
            Reader r = top.sub("limits");
            r.integer("max_header_bytes", c.limits.max_header_bytes, 256, 1 << 20);
            r.integer("max_connections", c.limits.max_connections, 1, 10000000);
            r.integer("header_timeout_ms", c.limits.header_timeout_ms, 1, 600000);
            r.integer("idle_timeout_ms", c.limits.idle_timeout_ms, 1, 3600000);
            r.integer("max_inflight", c.limits.max_inflight, 1, 10000000);
            r.integer("drain_timeout_ms", c.limits.drain_timeout_ms, 0, 600000);
            r.integer("drain_delay_ms", c.limits.drain_delay_ms, 0, 600000);
        }
        {
            Reader r = top.sub("request");
            r.str("project_id_pattern", c.request.project_id_pattern, true);
            r.str("backup_id_pattern", c.request.backup_id_pattern, true);
            check_regex(r, "project_id_pattern", c.request.project_id_pattern);
            check_regex(r, "backup_id_pattern", c.request.backup_id_pattern);
        }
        {
            Reader r = top.sub("response");
            r.boolean("allow_http_links", c.response.allow_http_links);
            r.strings("link_host_suffixes", c.response.link_host_suffixes);
            r.boolean("drop_unknown_fields", c.response.drop_unknown_fields);
            r.boolean("emit_legacy_expiry_field", c.response.emit_legacy_expiry_field);
            r.integer("max_body_bytes", c.response.max_body_bytes, 64, 1u << 30);
        }
        {
            Reader r = top.sub("log");
            r.str("access", c.log.access, true);
            r.str("level", c.log.level);
            if (c.log.level != "debug" && c.log.level != "info" && c.log.level != "warn" &&
                c.log.level != "error")
                r.error("level", "must be debug, info, warn or error");
            r.integer("access_queue", c.log.access_queue, 16, 10000000);
        }
    }
    if (c.callers.required && c.callers.list.empty())
        errors.push_back(
            "callers.list: is empty while callers.required is true (set callers.required to false to run "
            "without "
            "caller authentication)");
    return errors.empty();
}

bool load_config_file(const std::string& path, Config& out, std::vector<std::string>& errors) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        errors.push_back("cannot read config file " + path);
        return false;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    return parse_config(ss.str(), out, errors);
}

}  // namespace rdsgw
