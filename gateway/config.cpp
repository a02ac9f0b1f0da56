#include "rdsgw/config.hpp"
#include "rdsgw/request.hpp"  // id_pattern_error

#include "rdsgw/client_ip.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>
#include <boost/url/parse.hpp>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>

namespace rdsgw {
namespace json = boost::json;

std::string SecretRef::describe() const {
    if (!env.empty()) return "env " + env;
    if (!file.empty()) return "file " + file;
    if (!credential.empty()) return "systemd credential " + credential;
    return "nothing";
}

namespace {

// The secret's content, trailing white space trimmed; false with `why` when the file cannot be read.
bool read_secret_file(const std::string& path, const std::string& what, std::string& out, std::string& why) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        why = "cannot read " + what;
        return false;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    out = ss.str();
    while (!out.empty() &&
           (out.back() == '\n' || out.back() == '\r' || out.back() == ' ' || out.back() == '\t'))
        out.pop_back();
    return true;
}

bool has_control_char(std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char ch) {
        const auto c = static_cast<unsigned char>(ch);
        return c < 0x20 || c == 0x7f;
    });
}

}  // namespace

bool load_secret(const SecretRef& ref, std::string& out, std::string& why) {
    std::string value, what;
    if (!ref.env.empty()) {
        what = "environment variable " + ref.env;
        const char* v = std::getenv(ref.env.c_str());
        if (v) value = v;
    } else if (!ref.file.empty()) {
        what = "file " + ref.file;
        if (!read_secret_file(ref.file, what, value, why)) return false;
    } else if (!ref.credential.empty()) {
        what = "systemd credential " + ref.credential;
        const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
        if (!dir || !*dir) {
            why = what + ": $CREDENTIALS_DIRECTORY is not set (the systemd unit needs LoadCredential=" +
                  ref.credential + ":/path/to/file)";
            return false;
        }
        if (!read_secret_file(std::string(dir) + "/" + ref.credential, what, value, why)) return false;
    } else {
        why = "no source configured";
        return false;
    }
    if (value.empty()) {
        why = what + " is not set or empty";
        return false;
    }
    if (has_control_char(value)) {
        why = what + " contains a control character (CR, LF, TAB, another byte below 0x20, or DEL); refused";
        return false;
    }
    out = std::move(value);
    return true;
}

namespace {

// ---------------------------------------------------------------------------------------------------------
// Syntax and duplicate keys. Boost.JSON's DOM keeps the last of duplicate keys silently, so a SAX pass over
// the text first records every key given twice in one object (by its path) and where a syntax error is.

class KeyScan {
  public:
    static constexpr std::size_t max_object_size = std::size_t(-1);
    static constexpr std::size_t max_array_size = std::size_t(-1);
    static constexpr std::size_t max_key_size = std::size_t(-1);
    static constexpr std::size_t max_string_size = std::size_t(-1);

    explicit KeyScan(std::vector<std::string>& duplicates) : duplicates_(duplicates) {}

    bool on_document_begin(boost::system::error_code&) { return true; }
    bool on_document_end(boost::system::error_code&) { return true; }
    bool on_object_begin(boost::system::error_code&) { return open(true); }
    bool on_object_end(std::size_t, boost::system::error_code&) { return close(); }
    bool on_array_begin(boost::system::error_code&) { return open(false); }
    bool on_array_end(std::size_t, boost::system::error_code&) { return close(); }
    bool on_key_part(json::string_view s, std::size_t, boost::system::error_code&) {
        key_.append(s.data(), s.size());
        return true;
    }
    bool on_key(json::string_view s, std::size_t, boost::system::error_code&) {
        key_.append(s.data(), s.size());
        Frame& f = frames_.back();
        if (!f.keys.insert(key_).second)
            duplicates_.push_back(path() + (frames_.size() > 1 ? "." : "") + key_);
        f.key = std::move(key_);
        key_.clear();
        return true;
    }
    bool on_string_part(json::string_view, std::size_t, boost::system::error_code&) { return true; }
    bool on_string(json::string_view, std::size_t, boost::system::error_code&) { return scalar(); }
    bool on_number_part(json::string_view, boost::system::error_code&) { return true; }
    bool on_int64(std::int64_t, json::string_view, boost::system::error_code&) { return scalar(); }
    bool on_uint64(std::uint64_t, json::string_view, boost::system::error_code&) { return scalar(); }
    bool on_double(double, json::string_view, boost::system::error_code&) { return scalar(); }
    bool on_bool(bool, boost::system::error_code&) { return scalar(); }
    bool on_null(boost::system::error_code&) { return scalar(); }
    bool on_comment_part(json::string_view, boost::system::error_code&) { return true; }
    bool on_comment(json::string_view, boost::system::error_code&) { return true; }

  private:
    struct Frame {
        bool object = true;
        std::size_t index = 0;  // arrays: elements begun so far
        std::string key;        // objects: the current member's key
        std::set<std::string> keys;
    };
    bool open(bool object) {
        scalar();
        frames_.push_back(Frame{object, 0, {}, {}});
        return true;
    }
    bool close() {
        frames_.pop_back();
        return true;
    }
    bool scalar() {
        if (!frames_.empty() && !frames_.back().object) ++frames_.back().index;
        return true;
    }
    // The path of the innermost open container, in Reader's form ("callers.list[0]").
    std::string path() const {
        std::string p;
        for (std::size_t i = 0; i + 1 < frames_.size(); ++i) {
            const Frame& f = frames_[i];
            if (f.object)
                p += (p.empty() ? "" : ".") + f.key;
            else
                p += "[" + std::to_string(f.index - 1) + "]";
        }
        return p;
    }

    std::vector<Frame> frames_;
    std::string key_;
    std::vector<std::string>& duplicates_;
};

// False (with one message naming the line and column) on a syntax error; duplicate keys are added to
// `errors` and parsing goes on, so that every problem is reported at once.
bool scan_json(std::string_view text, const json::parse_options& opts, std::vector<std::string>& errors) {
    std::vector<std::string> duplicates;
    json::basic_parser<KeyScan> p(opts, duplicates);
    boost::system::error_code ec;
    const std::size_t n = p.write_some(false, text.data(), text.size(), ec);
    if (!ec && n < text.size()) ec = json::error::extra_data;
    if (ec) {
        const std::size_t at = std::min(n, text.size());
        const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(at), '\n');
        const std::size_t nl = text.rfind('\n', at == 0 ? 0 : at - 1);
        const std::size_t column = (nl == std::string_view::npos || at == 0) ? at + 1 : at - nl;
        errors.push_back("config is not valid JSON: line " + std::to_string(line) + ", column " +
                         std::to_string(column) + ": " + ec.message());
        return false;
    }
    for (auto& d : duplicates) errors.push_back(d + ": duplicate key (each key may appear once per object)");
    return true;
}

// ---------------------------------------------------------------------------------------------------------
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
    std::vector<std::string>& errors() { return errors_; }

    const json::value* get(std::string_view key) {
        seen_.insert(std::string(key));
        if (!obj_) return nullptr;
        auto it = obj_->find(key);
        if (it == obj_->end() || it->value().is_null()) return nullptr;
        return &it->value();
    }
    bool has(std::string_view key) const { return obj_ && obj_->contains(key); }
    const json::object* obj() const { return obj_; }

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

    // {"env": "NAME"}, {"file": "/path"} or {"credential": "name"}, exactly one.
    void secret(std::string_view key, SecretRef& out) {
        const json::value* v = get(key);
        if (!v) return;
        if (v->is_string()) {
            return error(
                key,
                "must be {\"env\": \"VARIABLE\"}, {\"file\": \"/path\"} or {\"credential\": \"name\"}; "
                "secrets never sit in the config file");
        }
        Reader r = sub(key);
        SecretRef s;
        r.str("env", s.env);
        r.str("file", s.file);
        r.str("credential", s.credential);
        const int given = !s.env.empty() + !s.file.empty() + !s.credential.empty();
        if (given != 1) return error(key, "needs exactly one of \"env\", \"file\" or \"credential\"");
        const auto& c = s.credential;
        if (!c.empty() && (c == "." || c == ".." || c.find('/') != std::string::npos || has_control_char(c)))
            return error(key, "credential: must be a systemd credential name (a file name, no '/')");
        out = s;
    }

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
    if (const std::string why = id_pattern_error(pattern); !why.empty())
        r.error(key, "is not a valid RE2 regular expression: " + why);
}

void check_port(Reader& r, std::string_view key, std::uint16_t& out, bool allow_zero) {
    r.integer(key, out, allow_zero ? 0 : 1, 65535);
}

// A listen address: an IPv4 or IPv6 literal (the listeners bind to addresses, not host names).
struct IpAddress {
    bool v6 = false;
    unsigned char bytes[16] = {};
    bool wildcard() const {
        return std::all_of(bytes, bytes + (v6 ? 16 : 4), [](unsigned char b) { return b == 0; });
    }
    bool loopback() const {
        if (!v6) return bytes[0] == 127;
        return std::all_of(bytes, bytes + 15, [](unsigned char b) { return b == 0; }) && bytes[15] == 1;
    }
    bool operator==(const IpAddress& o) const { return v6 == o.v6 && std::equal(bytes, bytes + 16, o.bytes); }
};

std::optional<IpAddress> parse_ip(const std::string& s) {
    IpAddress a;
    if (::inet_pton(AF_INET, s.c_str(), a.bytes) == 1) return a;
    a.v6 = true;
    if (::inet_pton(AF_INET6, s.c_str(), a.bytes) == 1) return a;
    return std::nullopt;
}

void check_address(Reader& r, std::string_view key, const std::string& address) {
    if (!address.empty() && !parse_ip(address))
        r.error(key, "must be an IPv4 or IPv6 address (e.g. 0.0.0.0, 127.0.0.1 or ::)");
}

// ---------------------------------------------------------------------------------------------------------
// One function per top-level block.

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

void parse_listen(Reader& top, ListenConfig& l) {
    Reader r = top.sub("listen");
    r.str("address", l.address, true);
    check_address(r, "address", l.address);
    check_port(r, "port", l.port, true);
    r.integer("threads", l.threads, 0, 256);
    r.str("tls_cert_file", l.tls_cert_file);
    r.str("tls_key_file", l.tls_key_file);
    r.str("client_ca_file", l.client_ca_file);
    r.boolean("require_client_cert", l.require_client_cert);
    if (l.tls_cert_file.empty() != l.tls_key_file.empty())
        r.error("tls_cert_file", "tls_cert_file and tls_key_file go together");
    if (!l.client_ca_file.empty() && l.tls_cert_file.empty())
        r.error("client_ca_file", "needs tls_cert_file and tls_key_file");
    if (l.require_client_cert && l.client_ca_file.empty())
        r.error("require_client_cert", "needs client_ca_file");
    r.strings("trusted_proxies", l.trusted_proxies);
    TrustedProxies tp;
    if (std::string why; !TrustedProxies::parse(l.trusted_proxies, tp, why)) r.error("trusted_proxies", why);
}

void parse_admin(Reader& top, AdminConfig& a) {
    Reader r = top.sub("admin");
    if (top.has("admin")) a.enabled = true;
    r.boolean("enabled", a.enabled);
    r.str("address", a.address, true);
    check_address(r, "address", a.address);
    check_port(r, "port", a.port, true);
    r.integer("max_connections", a.max_connections, 1, 100000);
}

void parse_upstream(Reader& top, UpstreamConfig& u) {
    Reader r = top.sub("upstream");
    r.str("base_url", u.base_url, true);
    check_url(r, "base_url", u.base_url);
    r.str("ca_file", u.ca_file);
    r.integer("connect_timeout_ms", u.connect_timeout_ms, 1, 600000);
    r.integer("request_timeout_ms", u.request_timeout_ms, 1, 600000);
    r.integer("pool_size", u.pool_size, 0, 10000);
    r.integer("pool_idle_timeout_ms", u.pool_idle_timeout_ms, 1, 3600000);
    r.integer("max_response_bytes", u.max_response_bytes, 1024, 1u << 30);
    r.integer("dns_refresh_s", u.dns_refresh_s, 1, 86400);
    r.integer("max_concurrent", u.max_concurrent, 1, 1000000);
    r.integer("max_queue", u.max_queue, 0, 1000000);
    r.integer("queue_timeout_ms", u.queue_timeout_ms, 1, 600000);
    read_template(r, u.base_url_template);  // multi-region
    read_proxy(r, u.proxy);
}

void parse_retry(Reader& top, RetryConfig& c) {
    Reader r = top.sub("retry");
    r.integer("max_attempts", c.max_attempts, 1, 10);
    r.integer("base_backoff_ms", c.base_backoff_ms, 1, 60000);
    r.integer("max_backoff_ms", c.max_backoff_ms, 1, 600000);
    r.integer("deadline_ms", c.deadline_ms, 1, 600000);
    r.number("budget_ratio", c.budget_ratio, 0.0, 1.0);
    r.integer("budget_min", c.budget_min, 0, 1000000);
    r.integer("breaker_failures", c.breaker_failures, 1, 1000000);
    r.integer("breaker_open_ms", c.breaker_open_ms, 1, 3600000);
    if (c.max_backoff_ms < c.base_backoff_ms) r.error("max_backoff_ms", "must be at least base_backoff_ms");
}

void parse_iam(Reader& auth, AuthMode mode, IamConfig& c) {
    Reader i = auth.sub("iam");
    i.str("endpoint", c.endpoint, true);
    check_url(i, "endpoint", c.endpoint);
    i.str("ca_file", c.ca_file);
    i.str("domain", c.domain);
    i.str("user", c.user);
    i.secret("password", c.password);
    i.str("project", c.project);
    i.str("project_id", c.project_id);
    i.integer("refresh_margin_s", c.refresh_margin_s, 1, 86400);
    i.integer("min_validity_s", c.min_validity_s, 0, 86400);
    i.integer("retry_base_ms", c.retry_base_ms, 1, 600000);
    i.integer("retry_max_ms", c.retry_max_ms, 1, 3600000);
    i.integer("max_tokens", c.max_tokens, 1, 100000);
    if (mode != AuthMode::iam) return;
    if (c.domain.empty()) i.error("domain", "is required in iam mode");
    if (c.user.empty()) i.error("user", "is required in iam mode");
    // Both missing is an error in the one-region setup only (check_multi_region).
    if (!c.project.empty() && !c.project_id.empty())
        i.error("project", "exactly one of project (name) or project_id is required in iam mode");
    if (c.min_validity_s >= c.refresh_margin_s)
        i.error("min_validity_s", "must be smaller than refresh_margin_s");
}

void parse_auth(Reader& top, AuthConfig& c) {
    Reader r = top.sub("auth");
    std::string mode = "token";
    r.str("mode", mode);
    if (mode == "token")
        c.mode = AuthMode::token;
    else if (mode == "iam")
        c.mode = AuthMode::iam;
    else if (mode == "aksk")
        c.mode = AuthMode::aksk;
    else
        r.error("mode", "must be \"token\", \"iam\" or \"aksk\"");
    r.secret("token", c.token);
    parse_iam(r, c.mode, c.iam);
    Reader a = r.sub("aksk");
    a.secret("ak", c.aksk.ak);
    a.secret("sk", c.aksk.sk);
    a.secret("security_token", c.aksk.security_token);
    a.str("domain_id", c.aksk.domain_id);
}

void parse_cache(Reader& top, CacheConfig& c) {
    Reader r = top.sub("cache");
    r.boolean("enabled", c.enabled);
    r.integer("max_entries", c.max_entries, 1, 100000000);
    r.integer("max_bytes", c.max_bytes, 1024, 1ull << 40);
    r.integer("ttl_s", c.ttl_s, 1, 86400);
    r.integer("expiry_margin_s", c.expiry_margin_s, 0, 86400);
    r.integer("negative_ttl_s", c.negative_ttl_s, 0, 3600);
    r.boolean("stale_on_error", c.stale_on_error);
    r.boolean("honor_no_cache", c.honor_no_cache);
    r.integer("max_waiters", c.max_waiters, 1, 10000000);
    r.integer("wait_timeout_ms", c.wait_timeout_ms, 1, 600000);
}

// Each credential (API key hash, access key, certificate subject) identifies exactly one caller: a value two
// callers claim would silently authenticate as the first one listed.
class CredentialOwners {
  public:
    void claim(Reader& cr, std::string_view key, std::string_view what, const std::string& value,
               const std::string& caller) {
        auto [it, fresh] = owner_[std::string(key)].emplace(value, caller);
        if (!fresh && it->second != caller)
            cr.error(key, std::string(what) + " is also listed by caller \"" + it->second +
                              "\" (each credential must identify one caller)");
    }

  private:
    std::map<std::string, std::map<std::string, std::string>> owner_;  // key -> value -> caller name
};

CallerConfig parse_caller(Reader& cr, std::set<std::string>& names, CredentialOwners& owners) {
    static const std::regex hex64("[0-9a-f]{64}");
    CallerConfig cc;
    cr.str("name", cc.name, true);
    if (cc.name.empty() && !cr.has("name")) cr.error("name", "is required");
    if (!cc.name.empty() && !names.insert(cc.name).second) cr.error("name", "is used twice");
    cr.strings("api_key_sha256", cc.api_key_sha256);
    for (auto& h : cc.api_key_sha256) {
        for (auto& ch : h) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (!std::regex_match(h, hex64))
            cr.error("api_key_sha256", "each entry must be 64 hex digits (sha256sum of the key)");
        else
            owners.claim(cr, "api_key_sha256", "an API key hash", h, cc.name);
    }
    cr.str("access_key", cc.access_key);
    cr.secret("secret_key", cc.secret_key);
    if (!cc.access_key.empty() && cc.secret_key.empty())
        cr.error("secret_key", "is required with access_key");
    if (!cc.access_key.empty()) owners.claim(cr, "access_key", "this access key", cc.access_key, cc.name);
    cr.strings("cert_subjects", cc.cert_subjects);
    for (const auto& s : cc.cert_subjects)
        owners.claim(cr, "cert_subjects", "subject \"" + s + "\"", s, cc.name);
    cr.strings("projects", cc.projects);
    if (cc.projects.empty()) cr.error("projects", "must list at least one project id, or \"*\"");
    cr.number("rate_per_s", cc.rate_per_s, 0, 1e9);
    cr.number("burst", cc.burst, 0, 1e9);
    if (cc.api_key_sha256.empty() && cc.access_key.empty() && cc.cert_subjects.empty())
        cr.error("name", "caller has no credential (api_key_sha256, access_key or cert_subjects)");
    return cc;
}

void parse_callers(Reader& top, CallersConfig& c) {
    Reader r = top.sub("callers");
    r.boolean("required", c.required);
    r.boolean("metrics_require_auth", c.metrics_require_auth);
    const json::value* list = r.get("list");
    if (list && !list->is_array()) r.error("list", "must be an array of callers");
    if (!list || !list->is_array()) return;
    std::set<std::string> names;
    CredentialOwners owners;
    std::size_t idx = 0;
    for (const auto& e : list->get_array()) {
        std::string path = r.at("list") + "[" + std::to_string(idx++) + "]";
        if (!e.is_object()) {
            r.errors().push_back(path + ": must be an object");
            continue;
        }
        Reader cr(&e.get_object(), path, r.errors());
        c.list.push_back(parse_caller(cr, names, owners));
    }
}

void parse_limits(Reader& top, LimitsConfig& c) {
    Reader r = top.sub("limits");
    r.integer("max_header_bytes", c.max_header_bytes, 256, 1 << 20);
    r.integer("max_connections", c.max_connections, 1, 10000000);
    r.integer("header_timeout_ms", c.header_timeout_ms, 1, 600000);
    r.integer("idle_timeout_ms", c.idle_timeout_ms, 1, 3600000);
    r.integer("max_inflight", c.max_inflight, 1, 10000000);
    r.integer("drain_timeout_ms", c.drain_timeout_ms, 0, 600000);
    r.integer("drain_delay_ms", c.drain_delay_ms, 0, 600000);
}

void parse_request(Reader& top, RequestConfig& c) {
    Reader r = top.sub("request");
    r.str("project_id_pattern", c.project_id_pattern, true);
    r.str("backup_id_pattern", c.backup_id_pattern, true);
    check_regex(r, "project_id_pattern", c.project_id_pattern);
    check_regex(r, "backup_id_pattern", c.backup_id_pattern);
}

void parse_response(Reader& top, ResponseConfig& c) {
    Reader r = top.sub("response");
    r.boolean("allow_http_links", c.allow_http_links);
    r.strings("link_host_suffixes", c.link_host_suffixes);
    r.boolean("drop_unknown_fields", c.drop_unknown_fields);
    r.boolean("emit_legacy_expiry_field", c.emit_legacy_expiry_field);
    r.integer("max_body_bytes", c.max_body_bytes, 64, 1u << 30);
}

void parse_log(Reader& top, LogConfig& c) {
    Reader r = top.sub("log");
    r.str("access", c.access, true);
    r.str("level", c.level);
    if (c.level != "debug" && c.level != "info" && c.level != "warn" && c.level != "error")
        r.error("level", "must be debug, info, warn or error");
    r.integer("access_queue", c.access_queue, 16, 10000000);
}

// The shared cache tier (Redis): off by default.
void parse_redis(Reader& top, RedisConfig& rc) {
    Reader r = top.sub("redis");
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
    if (keys && !keys->is_array()) r.error("encryption_keys", "must be an array of {\"id\", \"key\"}");
    if (keys && keys->is_array()) {
        static const std::regex id_re("[A-Za-z0-9._-]{1,32}");
        std::set<std::string> ids;
        std::size_t idx = 0;
        for (const auto& e : keys->get_array()) {
            const std::string path = r.at("encryption_keys") + "[" + std::to_string(idx++) + "]";
            if (!e.is_object()) {
                r.errors().push_back(path + ": must be an object {\"id\", \"key\"}");
                continue;
            }
            Reader kr(&e.get_object(), path, r.errors());
            RedisKeyConfig k;
            kr.str("id", k.id);
            if (!std::regex_match(k.id, id_re)) kr.error("id", "must be 1..32 of [A-Za-z0-9._-]");
            if (!k.id.empty() && !ids.insert(k.id).second) kr.error("id", "is used twice");
            kr.secret("key", k.key);
            if (k.key.empty() && !kr.has("key"))
                kr.error("key",
                         "is required ({\"env\": \"VARIABLE\"}, {\"file\": \"/path\"} or {\"credential\": "
                         "\"name\"})");
            rc.encryption_keys.push_back(std::move(k));
        }
    }
    if (rc.enabled && rc.encryption_keys.empty())
        r.error("encryption_keys", "is required when redis.enabled is true (values are encrypted at rest)");
}

// Checks across blocks.
void check_listeners(const Config& c, std::vector<std::string>& errors) {
    if (!c.admin.enabled || c.admin.port == 0 || c.admin.port != c.listen.port) return;
    const auto main = parse_ip(c.listen.address), admin = parse_ip(c.admin.address);
    if (!main || !admin) return;  // already reported
    // A wildcard overlaps every address of its family; "::" (dual stack) overlaps IPv4 addresses too.
    const auto covers = [](const IpAddress& w, const IpAddress& a) {
        return w.wildcard() && (w.v6 || !a.v6);
    };
    if (*main == *admin || covers(*main, *admin) || covers(*admin, *main))
        errors.push_back("admin.port: the admin listener " + c.admin.address + ":" +
                         std::to_string(c.admin.port) + " overlaps the main listener " + c.listen.address +
                         ":" + std::to_string(c.listen.port) +
                         " (same port on the same or a wildcard address); give it another port");
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
    if (!scan_json(text, opts, errors)) return false;
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
        parse_listen(top, c.listen);
        parse_admin(top, c.admin);
        parse_upstream(top, c.upstream);
        const json::value* up = root.get_object().if_contains("upstream");
        const bool base_url_given = up && up->is_object() && up->get_object().contains("base_url");
        parse_retry(top, c.retry);
        parse_auth(top, c.auth);
        parse_cache(top, c.cache);
        parse_callers(top, c.callers);
        parse_limits(top, c.limits);
        parse_request(top, c.request);
        parse_response(top, c.response);
        parse_log(top, c.log);
        parse_redis(top, c.redis);
        read_regions(top, c);  // multi-region: after auth (a region's token needs the mode)
        read_projects(top, c);
        check_multi_region(top, c, base_url_given);
    }
    check_listeners(c, errors);
    if (c.callers.required && c.callers.list.empty())
        errors.push_back(
            "callers.list: is empty while callers.required is true (set callers.required to false to run "
            "without caller authentication)");
    if (c.callers.metrics_require_auth && c.callers.list.empty())
        errors.push_back(
            "callers.metrics_require_auth: is true while callers.list is empty: nobody could read /metrics, "
            "the status page or purge the cache (list a caller, or set it to false)");
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

std::vector<std::string> config_warnings(const Config& c) {
    std::vector<std::string> w;
    if (!c.callers.required)
        w.push_back(
            "callers.required is false: ANY client that reaches this port can fetch backup download links");
    const auto admin = parse_ip(c.admin.address);
    if (c.admin.enabled && admin && !admin->loopback() && !c.callers.metrics_require_auth)
        w.push_back(
            "admin.address " + c.admin.address +
            " is not a loopback address and callers.metrics_require_auth is false: whoever reaches it "
            "can read /metrics and purge the cache (DELETE /admin/cache)");
    if (!c.upstream.ca_file.empty() && c.upstream.base_url.rfind("http://", 0) == 0 &&
        !(c.auth.mode == AuthMode::iam && c.auth.iam.ca_file.empty()))
        w.push_back("upstream.ca_file is set but upstream.base_url is http: the file is not used");
    return w;
}

// ---------------------------------------------------------------------------------------------------------
// The effective configuration as JSON: one function per block, in the order of parse_config.

namespace {

json::value secret_json(const SecretRef& s) {
    if (!s.env.empty()) return json::object{{"env", s.env}};
    if (!s.file.empty()) return json::object{{"file", s.file}};
    if (!s.credential.empty()) return json::object{{"credential", s.credential}};
    return nullptr;
}

json::array strings_json(const std::vector<std::string>& v) {
    return json::array(v.begin(), v.end());
}

json::object listen_json(const ListenConfig& l) {
    return {{"address", l.address},
            {"port", l.port},
            {"threads", l.threads},
            {"tls_cert_file", l.tls_cert_file},
            {"tls_key_file", l.tls_key_file},
            {"client_ca_file", l.client_ca_file},
            {"require_client_cert", l.require_client_cert},
            {"trusted_proxies", strings_json(l.trusted_proxies)}};
}

json::object admin_json(const AdminConfig& a) {
    return {{"enabled", a.enabled},
            {"address", a.address},
            {"port", a.port},
            {"max_connections", a.max_connections}};
}

json::object upstream_json(const UpstreamConfig& u, bool multi) {
    json::object o{{"ca_file", u.ca_file},
                   {"connect_timeout_ms", u.connect_timeout_ms},
                   {"request_timeout_ms", u.request_timeout_ms},
                   {"pool_size", u.pool_size},
                   {"pool_idle_timeout_ms", u.pool_idle_timeout_ms},
                   {"max_response_bytes", u.max_response_bytes},
                   {"dns_refresh_s", u.dns_refresh_s},
                   {"max_concurrent", u.max_concurrent},
                   {"max_queue", u.max_queue},
                   {"queue_timeout_ms", u.queue_timeout_ms},
                   {"proxy",
                    {{"url", u.proxy.url},
                     {"credentials", secret_json(u.proxy.credentials)},
                     {"no_proxy", strings_json(u.proxy.no_proxy)}}}};
    // Multi-region: the regions' base_url or the template (upstream.base_url may not be given with them).
    if (multi)
        o["base_url_template"] = u.base_url_template;
    else
        o["base_url"] = u.base_url;
    return o;
}

json::object regions_json(const std::vector<RegionConfig>& regions) {
    json::object o;
    for (const auto& r : regions)
        o[r.name] =
            json::object{{"base_url", r.base_url}, {"ca_file", r.ca_file}, {"token", secret_json(r.token)}};
    return o;
}

json::object projects_json(const ProjectsConfig& p) {
    json::object st;
    for (const auto& [id, region] : p.static_map) st[id] = region;
    const auto& d = p.discovery;
    return {{"static", std::move(st)},
            {"discovery",
             {{"enabled", d.enabled},
              {"refresh_s", d.refresh_s},
              {"min_interval_s", d.min_interval_s},
              {"wait_ms", d.wait_ms},
              {"max_projects", d.max_projects},
              {"max_regions", d.max_regions}}}};
}

json::object retry_json(const RetryConfig& r) {
    return {{"max_attempts", r.max_attempts},         {"base_backoff_ms", r.base_backoff_ms},
            {"max_backoff_ms", r.max_backoff_ms},     {"deadline_ms", r.deadline_ms},
            {"budget_ratio", r.budget_ratio},         {"budget_min", r.budget_min},
            {"breaker_failures", r.breaker_failures}, {"breaker_open_ms", r.breaker_open_ms}};
}

json::object auth_json(const AuthConfig& a) {
    static constexpr const char* modes[] = {"token", "iam", "aksk"};
    const IamConfig& i = a.iam;
    return {{"mode", modes[static_cast<int>(a.mode)]},
            {"token", secret_json(a.token)},
            {"iam",
             {{"endpoint", i.endpoint},
              {"ca_file", i.ca_file},
              {"domain", i.domain},
              {"user", i.user},
              {"password", secret_json(i.password)},
              {"project", i.project},
              {"project_id", i.project_id},
              {"refresh_margin_s", i.refresh_margin_s},
              {"min_validity_s", i.min_validity_s},
              {"retry_base_ms", i.retry_base_ms},
              {"retry_max_ms", i.retry_max_ms},
              {"max_tokens", i.max_tokens}}},
            {"aksk",
             {{"ak", secret_json(a.aksk.ak)},
              {"sk", secret_json(a.aksk.sk)},
              {"security_token", secret_json(a.aksk.security_token)},
              {"domain_id", a.aksk.domain_id}}}};
}

json::object cache_json(const CacheConfig& c) {
    return {{"enabled", c.enabled},
            {"max_entries", c.max_entries},
            {"max_bytes", c.max_bytes},
            {"ttl_s", c.ttl_s},
            {"expiry_margin_s", c.expiry_margin_s},
            {"negative_ttl_s", c.negative_ttl_s},
            {"stale_on_error", c.stale_on_error},
            {"honor_no_cache", c.honor_no_cache},
            {"max_waiters", c.max_waiters},
            {"wait_timeout_ms", c.wait_timeout_ms}};
}

json::object callers_json(const CallersConfig& c) {
    json::array list;
    for (const auto& k : c.list) {
        json::object o{{"name", k.name}, {"projects", strings_json(k.projects)}};
        if (!k.api_key_sha256.empty()) o["api_key_sha256"] = strings_json(k.api_key_sha256);
        if (!k.access_key.empty()) o["access_key"] = k.access_key;
        if (!k.secret_key.empty()) o["secret_key"] = secret_json(k.secret_key);
        if (!k.cert_subjects.empty()) o["cert_subjects"] = strings_json(k.cert_subjects);
        o["rate_per_s"] = k.rate_per_s;
        o["burst"] = k.burst;
        list.push_back(std::move(o));
    }
    return {{"required", c.required},
            {"metrics_require_auth", c.metrics_require_auth},
            {"list", std::move(list)}};
}

json::object limits_json(const LimitsConfig& l) {
    return {{"max_header_bytes", l.max_header_bytes},   {"max_connections", l.max_connections},
            {"header_timeout_ms", l.header_timeout_ms}, {"idle_timeout_ms", l.idle_timeout_ms},
            {"max_inflight", l.max_inflight},           {"drain_timeout_ms", l.drain_timeout_ms},
            {"drain_delay_ms", l.drain_delay_ms}};
}

json::object request_json(const RequestConfig& r) {
    return {{"project_id_pattern", r.project_id_pattern}, {"backup_id_pattern", r.backup_id_pattern}};
}

json::object response_json(const ResponseConfig& r) {
    return {{"allow_http_links", r.allow_http_links},
            {"link_host_suffixes", strings_json(r.link_host_suffixes)},
            {"drop_unknown_fields", r.drop_unknown_fields},
            {"emit_legacy_expiry_field", r.emit_legacy_expiry_field},
            {"max_body_bytes", r.max_body_bytes}};
}

json::object log_json(const LogConfig& l) {
    return {{"access", l.access}, {"level", l.level}, {"access_queue", l.access_queue}};
}

json::object redis_json(const RedisConfig& r) {
    json::array keys;
    for (const auto& k : r.encryption_keys)
        keys.push_back(json::object{{"id", k.id}, {"key", secret_json(k.key)}});
    return {{"enabled", r.enabled},
            {"address", r.address},
            {"user", r.user},
            {"password", secret_json(r.password)},
            {"db", r.db},
            {"key_prefix", r.key_prefix},
            {"pool_size", r.pool_size},
            {"op_timeout_ms", r.op_timeout_ms},
            {"connect_timeout_ms", r.connect_timeout_ms},
            {"breaker_failures", r.breaker_failures},
            {"breaker_open_ms", r.breaker_open_ms},
            {"lock_ttl_ms", r.lock_ttl_ms},
            {"encryption_keys", std::move(keys)},
            {"shared_rate_limits", r.shared_rate_limits},
            {"tls", r.tls},
            {"tls_ca_file", r.tls_ca_file},
            {"tls_server_name", r.tls_server_name}};
}

json::object config_json(const Config& c) {
    json::object o;
    o["listen"] = listen_json(c.listen);
    o["admin"] = admin_json(c.admin);
    o["upstream"] = upstream_json(c.upstream, multi_region(c));
    o["retry"] = retry_json(c.retry);
    o["auth"] = auth_json(c.auth);
    o["cache"] = cache_json(c.cache);
    o["callers"] = callers_json(c.callers);
    o["limits"] = limits_json(c.limits);
    o["request"] = request_json(c.request);
    o["response"] = response_json(c.response);
    o["log"] = log_json(c.log);
    o["redis"] = redis_json(c.redis);
    if (multi_region(c)) {
        o["regions"] = regions_json(c.regions);
        o["projects"] = projects_json(c.projects);
    }
    return o;
}

// A small object of scalars ({"env": "X"}, admin) stays on one line.
bool flat(const json::object& o) {
    return o.size() <= 3 &&
           std::all_of(o.begin(), o.end(), [](const auto& kv) { return !kv.value().is_structured(); });
}

// Indented JSON (Boost.JSON 1.81 has no pretty printer); doubles in their shortest round-trip form.
void pretty(std::string& out, const json::value& v, int indent) {
    const auto nl = [&](int n) {
        out += '\n';
        out.append(static_cast<std::size_t>(n), ' ');
    };
    if (v.is_object() && !v.get_object().empty() && !flat(v.get_object())) {
        out += '{';
        bool first = true;
        for (const auto& kv : v.get_object()) {
            out += first ? "" : ",";
            first = false;
            nl(indent + 2);
            out += json::serialize(json::value(kv.key())) + ": ";
            pretty(out, kv.value(), indent + 2);
        }
        nl(indent);
        out += '}';
    } else if (v.is_array() && !v.get_array().empty() && v.get_array().front().is_object()) {
        out += '[';
        bool first = true;
        for (const auto& e : v.get_array()) {
            out += first ? "" : ",";
            first = false;
            nl(indent + 2);
            pretty(out, e, indent + 2);
        }
        nl(indent);
        out += ']';
    } else if (v.is_object() && !v.get_object().empty()) {
        out += '{';
        bool first = true;
        for (const auto& kv : v.get_object()) {
            out += first ? "" : ", ";
            first = false;
            out += json::serialize(json::value(kv.key())) + ": ";
            pretty(out, kv.value(), indent);
        }
        out += '}';
    } else if (v.is_double()) {
        char buf[64];
        auto r = std::to_chars(buf, buf + sizeof buf, v.get_double());
        std::string_view s(buf, static_cast<std::size_t>(r.ptr - buf));
        out += s;
        if (s.find_first_of(".eEni") == std::string_view::npos) out += ".0";
    } else {
        out += json::serialize(v);
    }
}

std::set<std::string> keys_of(const json::object& o) {
    std::set<std::string> keys;
    for (const auto& kv : o) keys.insert(std::string(kv.key()));
    return keys;
}

// Paths whose values differ; an object whose keys differ (a secret's env -> file) counts as one change.
void diff(const json::value& a, const json::value& b, const std::string& path,
          std::vector<std::string>& out) {
    if (a.is_object() && b.is_object() && keys_of(a.get_object()) == keys_of(b.get_object())) {
        for (const auto& kv : a.get_object()) {
            const std::string p = path.empty() ? std::string(kv.key()) : path + "." + std::string(kv.key());
            diff(kv.value(), b.get_object().at(kv.key()), p, out);
        }
    } else if (a != b) {
        out.push_back(path);
    }
}

}  // namespace

std::string print_config(const Config& c) {
    std::string out;
    pretty(out, config_json(c), 0);
    out += '\n';
    return out;
}

std::vector<std::string> changed_restart_settings(const Config& running, const Config& fresh) {
    json::object a = config_json(running), b = config_json(fresh);
    // What a SIGHUP applies: the callers (with their keys) and the log level. Secrets' values are re-read
    // too, but where they come from (their references) is part of the compared config.
    for (json::object* o : {&a, &b}) {
        o->erase("callers");
        (*o)["log"].as_object().erase("level");
    }
    std::vector<std::string> out;
    diff(a, b, "", out);
    std::sort(out.begin(), out.end());
    return out;
}

}  // namespace rdsgw
