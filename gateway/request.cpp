#include "rdsgw/request.hpp"

#include "rdsgw/text.hpp"

#include <re2/re2.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <iterator>
#include <random>
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
// version_id with escapes: "v3" after one decoding pass.
bool decodes_to_v3(std::string_view seg) {
    std::string decoded;
    return percent_decode(seg, decoded) && decoded == "v3";
}
}  // namespace

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
    if (target.size() > 1 && target[1] == '/') return "request-target must not start with '//'";
    bool percent = false, dot = false;
    for (unsigned char c : target) {
        if (kTargetPlain(c)) continue;
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
    std::string_view path = path_of(target);
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

std::optional<RequestError> parse_backup_files(std::string_view target, const RequestRules& rules,
                                               std::string& project_id, std::string& backup_id) {
    auto fail = [](std::string field, std::string msg) {
        return RequestError{400, std::move(field), std::move(msg)};
    };
    if (auto why = check_target(target); !why.empty()) return fail("request-target", why);
    std::string_view path = path_of(target);
    std::string_view query =
        path.size() < target.size() ? target.substr(path.size() + 1) : std::string_view{};
    std::array<std::string_view, 3> segs;
    if (split_path(path, segs) != 3 || segs[2] != "backup-files")
        return RequestError{404, "request-target", "no such resource"};

    if (segs[0] != "v3" && (segs[0].find('%') == std::string_view::npos || !decodes_to_v3(segs[0])))
        return fail("version_id", "version_id must be v3");
    if (segs[1].empty()) return fail("project_id", "project_id is required");
    if (!percent_decode(segs[1], project_id) || !rules.project_id.match(project_id))
        return fail("project_id", "project_id is malformed");

    bool seen = false;
    std::size_t pos = 0;
    while (pos <= query.size() && !query.empty()) {
        auto amp = query.find('&', pos);
        if (amp == std::string_view::npos) amp = query.size();
        std::string_view part = query.substr(pos, amp - pos);
        pos = amp + 1;
        if (part.empty()) {
            if (amp == query.size()) break;
            continue;
        }
        auto eq = part.find('=');
        std::string_view raw_name = part.substr(0, eq);
        std::string_view raw_value = eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1);
        std::string name;  // decoded only when it has an escape (the common name needs no copy)
        const bool escaped = raw_name.find('%') != std::string_view::npos;
        if (escaped && !percent_decode(raw_name, name))
            return fail("request-target", "query has a malformed percent-escape");
        if ((escaped ? std::string_view(name) : raw_name) != "backup_id") {
            if (!escaped) name.assign(raw_name);
            // Name the parameter only when it is short and plain (never echo arbitrary input).
            bool plain = is_sane_request_id(name) && name.size() <= 32;
            return fail(plain ? name : "query",
                        plain ? "unknown query parameter " + name + "; only backup_id is accepted"
                              : "unknown query parameter; only backup_id is accepted");
        }
        if (seen) return fail("backup_id", "backup_id must be given exactly once");
        seen = true;
        if (!percent_decode(raw_value, backup_id))
            return fail("backup_id", "backup_id has a malformed percent-escape");
        if (backup_id.empty()) return fail("backup_id", "backup_id is required");
        if (!rules.backup_id.match(backup_id)) return fail("backup_id", "backup_id is malformed");
        if (amp == query.size()) break;
    }
    if (!seen) return fail("backup_id", "backup_id is required");
    return std::nullopt;
}

bool is_sane_request_id(std::string_view id) {
    if (id.empty() || id.size() > 64) return false;
    for (unsigned char c : id) {
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                  c == '_' || c == '-';
        if (!ok) return false;
    }
    return true;
}

void make_request_id(std::string& s) {
    // A per-thread random 64-bit prefix plus a counter: unique, cheap, not a secret.
    thread_local std::uint64_t prefix = [] {
        std::random_device rd;
        return (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    }();
    thread_local std::uint64_t counter = 0;
    std::uint64_t parts[2] = {prefix, ++counter};
    s.resize(32);
    for (int p = 0; p < 2; ++p)
        for (int i = 0; i < 16; ++i) s[p * 16 + i] = kHexLower[(parts[p] >> (60 - 4 * i)) & 0xf];
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
