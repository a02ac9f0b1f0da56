#include "rdsgw/request.hpp"

#include "rdsgw/text.hpp"

#include <re2/re2.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <iterator>
#include <stdexcept>

namespace rdsgw {

std::string_view route_name(Route r) {
    switch (r) {
        case Route::backup_files:
            return "backup_files";
        case Route::healthz:
            return "healthz";
        case Route::readyz:
            return "readyz";
        case Route::metrics:
            return "metrics";
        case Route::admin_cache:
            return "admin_cache";
        case Route::status:
            return "status";
        case Route::not_found:
            return "not_found";
    }
    return "not_found";
}

RequestRules::RequestRules(const RequestConfig& cfg)
    : project_id(cfg.project_id_pattern), backup_id(cfg.backup_id_pattern) {}

namespace {

// The fast form of an id pattern: '[' class ']' then "{n}", "{m,n}" or "+". The class holds letters, digits,
// '_', '.', ranges a-b of them, and '-' as its first or last character. Fills the byte table and the length
// range; false for anything else (RE2 decides those).
bool parse_simple_pattern(std::string_view pattern, bool (&allowed)[256], std::size_t& min,
                          std::size_t& max) {
    if (pattern.size() < 4 || pattern.front() != '[') return false;
    const std::size_t close = pattern.find(']', 2);  // a ']' right after '[' would be a literal
    if (close == std::string_view::npos) return false;
    std::string_view cls = pattern.substr(1, close - 1);
    const auto plain = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '.';
    };
    if (cls.front() == '-' || cls.back() == '-') {
        allowed[static_cast<unsigned char>('-')] = true;
        cls = cls.front() == '-' ? cls.substr(1) : cls.substr(0, cls.size() - 1);
    }
    for (std::size_t i = 0; i < cls.size(); ++i) {
        const char a = cls[i];
        if (!plain(a)) return false;
        if (i + 2 < cls.size() && cls[i + 1] == '-') {
            const char b = cls[i + 2];
            if (!plain(b) || b < a) return false;
            for (int c = a; c <= b; ++c) allowed[static_cast<unsigned char>(c)] = true;
            i += 2;
        } else {
            allowed[static_cast<unsigned char>(a)] = true;
        }
    }
    std::string_view rep = pattern.substr(close + 1);
    if (rep == "+") {
        min = 1;
        max = IdPattern::kMaxIdBytes;
        return true;
    }
    if (rep.size() < 3 || rep.front() != '{' || rep.back() != '}') return false;
    rep = rep.substr(1, rep.size() - 2);
    const auto num = [](std::string_view d, std::size_t& out) {
        if (d.empty() || d.size() > 6) return false;
        out = 0;
        for (const char c : d) {
            if (c < '0' || c > '9') return false;
            out = out * 10 + static_cast<std::size_t>(c - '0');
        }
        return true;
    };
    const std::size_t comma = rep.find(',');
    if (comma == std::string_view::npos) {
        if (!num(rep, min)) return false;
        max = min;
        return true;
    }
    return num(rep.substr(0, comma), min) && num(rep.substr(comma + 1), max) && max >= min;
}

// RE2 in UTF-8 mode, without capture groups (matching needs none) and without logging bad patterns to
// stderr (the caller reports them).
re2::RE2::Options re2_options() {
    re2::RE2::Options o;
    o.set_encoding(re2::RE2::Options::EncodingUTF8);
    o.set_never_capture(true);
    o.set_log_errors(false);
    return o;
}

}  // namespace

std::string id_pattern_error(const std::string& pattern) {
    const re2::RE2 re(pattern, re2_options());
    if (re.ok()) return {};
    return re.error().empty() ? std::string("invalid pattern") : re.error();
}

IdPattern::IdPattern(const std::string& pattern) {
    bool table[256] = {};
    std::size_t min = 0, max = 0;
    if (parse_simple_pattern(pattern, table, min, max)) {
        fast_ = true;
        std::copy(std::begin(table), std::end(table), std::begin(allowed_));
        min_ = min;
        max_ = max;
        return;
    }
    auto re = std::make_shared<const re2::RE2>(pattern, re2_options());
    if (!re->ok()) throw std::invalid_argument("invalid id pattern: " + re->error());
    re_ = std::move(re);
}

bool IdPattern::match(std::string_view s) const {
    if (s.size() > kMaxIdBytes) return false;  // before any matching: bounds the work per request
    if (!fast_) return re2::RE2::FullMatch(re2::StringPiece(s.data(), s.size()), *re_);
    if (s.size() < min_ || s.size() > max_) return false;
    for (const unsigned char c : s)
        if (!allowed_[c]) return false;
    return true;
}

namespace {

std::string_view path_of(std::string_view target) {
    auto q = target.find('?');
    return q == std::string_view::npos ? target : target.substr(0, q);
}

// Splits "/a/b/c" into segments; returns the count (up to N) or N+1 when there are more.
template <std::size_t N>
std::size_t split_path(std::string_view path, std::array<std::string_view, N>& segs) {
    std::size_t n = 0;
    std::size_t pos = 1;  // skip leading '/'
    while (pos <= path.size()) {
        auto next = path.find('/', pos);
        if (next == std::string_view::npos) next = path.size();
        if (n == N) return N + 1;
        segs[n++] = path.substr(pos, next - pos);
        pos = next + 1;
    }
    return n;
}

}  // namespace

namespace {

// Whether `seg` is `want` after one percent-decoding pass (RFC 3986 §6.2.2.2: an encoded unreserved character
// is the character), compared as it is decoded: no copy. check_target has refused encoded slashes, dots and
// controls before this is asked, so only unreserved escapes can make a fixed segment match.
bool decodes_to(std::string_view seg, std::string_view want) {
    std::size_t j = 0;
    for (std::size_t i = 0; i < seg.size(); ++i, ++j) {
        char c = seg[i];
        if (c == '%') {
            if (i + 2 >= seg.size()) return false;
            const int h = hex_value(seg[i + 1]), l = hex_value(seg[i + 2]);
            if (h < 0 || l < 0) return false;
            c = static_cast<char>(h * 16 + l);
            i += 2;
        }
        if (j >= want.size() || want[j] != c) return false;
    }
    return j == want.size();
}

// RFC 3986 unreserved characters but '.', whose escape the gateway refuses instead (dot segments).
bool unreserved_not_dot(int c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '~';
}

// The next "name[=value]" of a query (empty parts skipped); false at the end.
struct QueryParam {
    std::string_view name, value;
    bool has_value = false;
};
bool next_param(std::string_view& query, QueryParam& p) {
    while (!query.empty()) {
        const auto amp = query.find('&');
        const std::string_view part = query.substr(0, amp);
        query.remove_prefix(amp == std::string_view::npos ? query.size() : amp + 1);
        if (part.empty()) continue;
        const auto eq = part.find('=');
        p.name = part.substr(0, eq);
        p.has_value = eq != std::string_view::npos;
        p.value = p.has_value ? part.substr(eq + 1) : std::string_view{};
        return true;
    }
    return false;
}

// The parameter's name after one decoding pass, into `buf` only when it has an escape; nullopt when
// malformed.
std::optional<std::string_view> param_name(std::string_view raw, std::string& buf) {
    if (raw.find('%') == std::string_view::npos) return raw;
    if (!percent_decode(raw, buf)) return std::nullopt;
    return std::string_view(buf);
}

// 400 for an unknown query parameter, naming it only when it is short and plain (never echo arbitrary input).
RequestError unknown_param(std::string_view name, std::string_view accepted) {
    const bool plain = is_sane_request_id(name) && name.size() <= 32;
    RequestError e{400, plain ? std::string(name) : std::string("query"), "unknown query parameter"};
    if (plain) e.message.append(" ").append(name);
    e.message.append("; only ").append(accepted).append(" accepted");
    return e;
}

}  // namespace

std::string_view normalize_path(std::string_view path, std::string& buf) {
    if (path.find('%') == std::string_view::npos) return path;
    buf.clear();
    for (std::size_t i = 0; i < path.size(); ++i) {
        const int h = path[i] == '%' && i + 2 < path.size() ? hex_value(path[i + 1]) : -1;
        const int l = h >= 0 ? hex_value(path[i + 2]) : -1;
        if (l >= 0 && unreserved_not_dot(h * 16 + l)) {
            buf.push_back(static_cast<char>(h * 16 + l));
            i += 2;
        } else {
            buf.push_back(path[i]);
        }
    }
    return buf;
}

bool percent_decode(std::string_view in, std::string& out) {
    if (in.find('%') == std::string_view::npos) {  // the common case: nothing to decode
        out.assign(in.data(), in.size());
        return true;
    }
    out.clear();
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == '%') {
            if (i + 2 >= in.size()) return false;
            int h = hex_value(in[i + 1]), l = hex_value(in[i + 2]);
            if (h < 0 || l < 0) return false;
            out.push_back(static_cast<char>(h * 16 + l));
            i += 2;
        } else {
            out.push_back(c);
        }
    }
    return true;
}

namespace {
// Bytes of a request-target that need no further look: everything but controls, space, DEL, non-ASCII,
// '#', '\\', and '%' and '.' (which start the escape and dot-segment checks below).
constexpr ByteSet kTargetPlain([](unsigned char c) {
    return c >= 0x21 && c < 0x7f && c != '#' && c != '\\' && c != '%' && c != '.';
});
}  // namespace

std::string check_target(std::string_view target) {
    if (target.empty() || target.front() != '/') return "request-target must be a path starting with '/'";
    if (path_of(target).find("//") != std::string_view::npos)
        return "request-target must not contain an empty path segment ('//')";
    bool percent = false, dot = false;
    for (std::size_t i = kTargetPlain.span(target, 0); i < target.size();
         i = kTargetPlain.span(target, i + 1)) {
        const auto c = static_cast<unsigned char>(target[i]);
        if (c <= 0x20 || c == 0x7f) return "request-target contains a control character, space, CR or LF";
        if (c >= 0x80) return "request-target contains a non-ASCII byte";
        if (c == '#') return "request-target must not contain a fragment";
        if (c == '\\') return "request-target must not contain a backslash";
        if (c == '%') percent = true;
        if (c == '.') dot = true;
    }
    if (!percent && !dot) return {};
    std::string_view path = path_of(target);
    // Encoded slashes, backslashes, dots and NULs in the path are refused rather than interpreted.
    for (std::size_t i = 0; i < path.size(); ++i) {
        if (path[i] != '%') continue;
        if (i + 2 >= path.size()) return "request-target has a malformed percent-escape";
        int h = hex_value(path[i + 1]), l = hex_value(path[i + 2]);
        if (h < 0 || l < 0) return "request-target has a malformed percent-escape";
        int v = h * 16 + l;
        if (v == '/' || v == '\\') return "request-target must not contain an encoded slash";
        if (v == '.') return "request-target must not contain an encoded dot";
        if (v < 0x20 || v == 0x7f) return "request-target contains an encoded control character";
    }
    // Dot segments.
    std::size_t pos = 0;
    while (pos < path.size()) {
        auto next = path.find('/', pos + 1);
        if (next == std::string_view::npos) next = path.size();
        std::string_view seg = path.substr(pos + 1, next - pos - 1);
        if (seg == "." || seg == "..") return "request-target must not contain dot segments";
        pos = next;
    }
    return {};
}

Route classify(std::string_view target) {
    thread_local std::string buf;  // storage kept per thread: only targets with escapes use it
    const std::string_view path = normalize_path(path_of(target), buf);
    if (path == "/healthz") return Route::healthz;
    if (path == "/readyz") return Route::readyz;
    if (path == "/metrics") return Route::metrics;
    if (path == "/admin/cache") return Route::admin_cache;
    if (path == "/admin/status" || path == "/admin/status.json" || path.starts_with("/admin/status/"))
        return Route::status;
    std::array<std::string_view, 3> segs;
    if (split_path(path, segs) == 3 && segs[2] == "backup-files") return Route::backup_files;
    return Route::not_found;
}

std::variant<BackupFilesRequest, RequestError> parse_backup_files(std::string_view target,
                                                                  const RequestRules& rules) {
    BackupFilesRequest out;
    if (auto e = parse_backup_files(target, rules, out.project_id, out.backup_id)) return std::move(*e);
    return out;
}

namespace {

RequestError bad(std::string field, std::string msg) {
    return RequestError{400, std::move(field), std::move(msg)};
}

// The query of a backup-files request: backup_id, exactly once (its name after one decoding pass, like every
// parameter name), valid by the rules.
std::optional<RequestError> parse_backup_query(std::string_view query, const RequestRules& rules,
                                               std::string& backup_id) {
    bool seen = false;
    std::string buf;  // a decoded name; allocated only for a name with an escape
    for (QueryParam p; next_param(query, p);) {
        const auto name = param_name(p.name, buf);
        if (!name) return bad("request-target", "query has a malformed percent-escape");
        if (*name != "backup_id") return unknown_param(*name, "backup_id is");
        if (seen) return bad("backup_id", "backup_id must be given exactly once");
        seen = true;
        if (!percent_decode(p.value, backup_id))
            return bad("backup_id", "backup_id has a malformed percent-escape");
        if (backup_id.empty()) return bad("backup_id", "backup_id is required");
        if (!rules.backup_id.match(backup_id)) return bad("backup_id", "backup_id is malformed");
    }
    if (!seen) return bad("backup_id", "backup_id is required");
    return std::nullopt;
}

}  // namespace

std::optional<RequestError> parse_backup_files(std::string_view target, const RequestRules& rules,
                                               std::string& project_id, std::string& backup_id) {
    if (auto why = check_target(target); !why.empty()) return bad("request-target", why);
    const std::string_view path = path_of(target);
    const std::string_view query =
        path.size() < target.size() ? target.substr(path.size() + 1) : std::string_view{};
    std::array<std::string_view, 3> segs;
    if (split_path(path, segs) != 3 || !decodes_to(segs[2], "backup-files"))
        return RequestError{404, "request-target", "no such resource"};
    if (!decodes_to(segs[0], "v3")) return bad("version_id", "version_id must be v3");
    if (segs[1].empty()) return bad("project_id", "project_id is required");
    if (!percent_decode(segs[1], project_id) || !rules.project_id.match(project_id))
        return bad("project_id", "project_id is malformed");
    return parse_backup_query(query, rules, backup_id);
}

namespace {

// One purge parameter's value: given once, non-empty, valid by its rule.
std::optional<RequestError> purge_value(const QueryParam& p, std::string_view field, const IdPattern& rule,
                                        std::string& out, bool& seen) {
    const std::string f(field);
    if (seen) return bad(f, f + " must be given at most once");
    seen = true;
    if (!percent_decode(p.value, out)) return bad(f, f + " has a malformed percent-escape");
    if (out.empty()) return bad(f, f + " must not be empty (no query at all purges everything)");
    if (!rule.match(out)) return bad(f, f + " is malformed");
    return std::nullopt;
}

}  // namespace

std::optional<RequestError> parse_purge_query(std::string_view target, const RequestRules& rules,
                                              std::string& project_id, std::string& backup_id) {
    project_id.clear();
    backup_id.clear();
    const auto q = target.find('?');
    if (q == std::string_view::npos) return std::nullopt;  // no query at all: everything
    std::string_view query = target.substr(q + 1);
    bool have_project = false, have_backup = false;
    std::string buf;
    for (QueryParam p; next_param(query, p);) {
        const auto name = param_name(p.name, buf);
        if (!name) return bad("query", "query has a malformed percent-escape");
        std::optional<RequestError> e;
        if (*name == "project_id")
            e = purge_value(p, "project_id", rules.project_id, project_id, have_project);
        else if (*name == "backup_id")
            e = purge_value(p, "backup_id", rules.backup_id, backup_id, have_backup);
        else
            return unknown_param(*name, "project_id and backup_id are");
        if (e) return e;
    }
    if (!have_project || !have_backup)
        return bad(have_project ? "backup_id" : "project_id",
                   "give both project_id and backup_id, or no query at all (purges everything)");
    return std::nullopt;
}

bool is_sane_request_id(std::string_view id) {
    static constexpr ByteSet kIdChar([](unsigned char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
               c == '_' || c == '-';
    });
    return !id.empty() && id.size() <= 64 && kIdChar.span(id, 0) == id.size();
}

void make_request_id(std::string& s) {
    // A per-thread random 64-bit prefix plus a counter: unique, cheap, not a secret.
    thread_local std::uint64_t prefix = os_seed();
    thread_local std::uint64_t counter = 0;
    char buf[32];
    put_hex64(put_hex64(buf, prefix), ++counter);
    s.assign(buf, sizeof buf);
}

std::string make_request_id() {
    std::string s;
    make_request_id(s);
    return s;
}

std::string_view valid_language(std::string_view v) {
    if (ascii_iequals(v, "zh-cn")) return "zh-cn";
    if (ascii_iequals(v, "en-us")) return "en-us";
    return {};
}

}  // namespace rdsgw
