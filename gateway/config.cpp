#include "rdsgw/config.hpp"

#include <algorithm>
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

// ---------------------------------------------------------------- multi-region (regions, projects, proxy)

bool is_region_name(std::string_view s) {
    if (s.empty() || s.size() > 64 || !(s[0] >= 'a' && s[0] <= 'z') || s.back() == '-') return false;
    for (char ch : s)
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-')) return false;
    return true;
}

void read_proxy(Reader& up, ProxyConfig& p) {
    Reader r = up.sub("proxy");
    r.str("url", p.url);
    r.secret("credentials", p.credentials);
    r.strings("no_proxy", p.no_proxy);
    if (!p.url.empty()) {
        auto u = boost::urls::parse_absolute_uri(p.url);
        if (!u || u->scheme() != "http" || u->host().empty() ||
            (!u->encoded_path().empty() && u->encoded_path() != "/") || u->has_query() || u->has_userinfo())
            r.error("url",
                    "must be http://host[:port] (the proxy itself is spoken to in plain HTTP; credentials go "
                    "in \"credentials\", never in the URL)");
    } else if (!p.credentials.empty()) {
        r.error("credentials", "needs url");
    }
    for (const auto& h : p.no_proxy)
        if (h.empty() || h.find_first_of(" \t,") != std::string::npos) {
            r.error("no_proxy", "entries are host names, .suffixes, \"*\" or CIDR ranges (one per entry)");
            break;
        }
}

void read_template(Reader& up, std::string& tpl) {
    up.str("base_url_template", tpl);
    if (tpl.empty()) return;
    if (tpl.find("{region}") == std::string::npos)
        return up.error("base_url_template", "must contain {region}");
    std::string sample = tpl;
    for (auto at = sample.find("{region}"); at != std::string::npos; at = sample.find("{region}"))
        sample.replace(at, 8, "cn-north-4");
    check_url(up, "base_url_template", sample);
}

void read_regions(Reader& top, Config& c) {
    Reader r = top.sub("regions");
    if (!r.obj()) return;
    for (const auto& kv : *r.obj()) {
        const std::string name(kv.key());
        Reader g = r.sub(name);
        if (!is_region_name(name))
            r.error(name, "is not a region id (lower-case letters, digits and '-', e.g. cn-north-4)");
        if (!g.obj()) continue;
        RegionConfig rc;
        rc.name = name;
        g.str("base_url", rc.base_url);
        if (!rc.base_url.empty()) check_url(g, "base_url", rc.base_url);
        g.str("ca_file", rc.ca_file);
        g.secret("token", rc.token);
        if (rc.base_url.empty() && c.upstream.base_url_template.empty())
            g.error("base_url", "is required unless upstream.base_url_template is set");
        if (!rc.token.empty() && c.auth.mode != AuthMode::token)
            g.error("token", "is only used with auth.mode \"token\"");
        c.regions.push_back(std::move(rc));
    }
}

void read_projects(Reader& top, Config& c) {
    Reader r = top.sub("projects");
    {
        Reader s = r.sub("static");
        if (s.obj()) {
            for (const auto& kv : *s.obj()) {
                const std::string id(kv.key());
                s.get(id);
                const json::value& v = kv.value();
                if (id.empty() || id.size() > 128 || id.find_first_of("/?#% \t\r\n") != std::string::npos)
                    s.error(id, "is not a project id");
                if (!v.is_string() || !is_region_name(v.get_string())) {
                    s.error(id, "must be a region id (e.g. \"cn-north-4\")");
                    continue;
                }
                const std::string region(v.get_string());
                const bool known = std::any_of(c.regions.begin(), c.regions.end(),
                                               [&](const RegionConfig& g) { return g.name == region; });
                if (!known && c.upstream.base_url_template.empty())
                    s.error(
                        id,
                        "names region \"" + region +
                            "\", which is not in \"regions\" (and upstream.base_url_template is not set)");
                c.projects.static_map.emplace_back(id, region);
            }
        }
    }
    Reader d = r.sub("discovery");
    auto& dc = c.projects.discovery;
    d.boolean("enabled", dc.enabled);
    d.integer("refresh_s", dc.refresh_s, 10, 86400);
    d.integer("min_interval_s", dc.min_interval_s, 1, 3600);
    d.integer("wait_ms", dc.wait_ms, 0, 60000);
    d.integer("max_projects", dc.max_projects, 1, 1000000);
    d.integer("max_regions", dc.max_regions, 1, 1024);
    if (dc.enabled && c.auth.mode == AuthMode::token)
        d.error("enabled", "needs auth.mode \"iam\" or \"aksk\" (IAM lists the projects only to those)");
}

// After every block was read: the rules that span them.
void check_multi_region(Reader& top, Config& c, bool base_url_given) {
    // One region: one IAM token, scoped by project name or id. Multi-region: one token per project; project
    // (or project_id) only scopes the token that lists the projects (a domain-scoped one without).
    if (c.auth.mode == AuthMode::iam && !multi_region(c) && c.auth.iam.project.empty() &&
        c.auth.iam.project_id.empty())
        top.error("auth.iam.project", "exactly one of project (name) or project_id is required in iam mode");
    if (!multi_region(c)) return;
    if (base_url_given)
        top.error("upstream",
                  "base_url cannot be combined with regions/projects/base_url_template: give each region its "
                  "base_url, or use upstream.base_url_template");
    if (c.regions.empty() && c.projects.static_map.empty() && !c.projects.discovery.enabled)
        top.error("projects",
                  "no project is served: add projects.static entries or enable projects.discovery");
    if (c.regions.size() > c.projects.discovery.max_regions)
        top.error("regions", "has more regions than projects.discovery.max_regions");
}

}  // namespace

bool multi_region(const Config& c) {
    return !c.regions.empty() || !c.projects.static_map.empty() || c.projects.discovery.enabled ||
           !c.upstream.base_url_template.empty();
}

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
        bool base_url_given = false;
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
            r.integer("max_connections", c.admin.max_connections, 1, 100000);
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
            read_template(r, c.upstream.base_url_template);  // multi-region
            read_proxy(r, c.upstream.proxy);
            base_url_given = r.has("base_url");
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
                i.integer("max_tokens", c.auth.iam.max_tokens, 1, 100000);
                if (c.auth.mode == AuthMode::iam) {
                    if (c.auth.iam.domain.empty()) i.error("domain", "is required in iam mode");
                    if (c.auth.iam.user.empty()) i.error("user", "is required in iam mode");
                    // Both missing is an error in the one-region setup only (check_multi_region).
                    if (!c.auth.iam.project.empty() && !c.auth.iam.project_id.empty())
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
                a.str("domain_id", c.auth.aksk.domain_id);
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
        read_regions(top, c);  // multi-region: after auth (a region's token needs the mode)
        read_projects(top, c);
        check_multi_region(top, c, base_url_given);
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
