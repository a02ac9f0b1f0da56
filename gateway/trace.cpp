#include "rdsgw/trace.hpp"

#include <algorithm>

#include "rdsgw/text.hpp"

namespace rdsgw {

namespace {

bool lower_hex(std::string_view s, std::size_t n) {
    if (s.size() != n) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

bool all_zero(std::string_view s) {
    return s.find_first_not_of('0') == std::string_view::npos;
}

// n random lower-hex digits (n <= 32), not all zero, into `out` (its storage reused). A per-thread xorshift
// generator seeded from the OS: ids need to be unique and unpredictable enough for tracing, not secret.
void random_hex(std::string& out, std::size_t n) {
    thread_local std::uint64_t state = 0;   // constant-initialized: no guard on each use; seeded on first use
    if (state == 0) state = os_seed() | 1;  // xorshift's state must not be 0
    char buf[32];
    n = std::min<std::size_t>(n, sizeof buf);
    std::uint64_t any;
    do {
        any = 0;
        for (std::size_t at = 0; at < n; at += 16) {
            state ^= state << 13;  // xorshift64 (never 0 again once it is not)
            state ^= state >> 7;
            state ^= state << 17;
            const std::uint64_t r = state * 0x2545f4914f6cdd1dULL;  // xorshift64*: the high bits mix well
            put_hex64(buf + at, r);
            any |= n - at >= 16 ? r : r >> (4 * (16 - (n - at)));  // the digits kept of this word
        }
    } while (any == 0);
    out.assign(buf, n);
}

// tracestate key: lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" ), optionally tenant@system.
constexpr ByteSet kKey([](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' || c == '/' ||
           c == '@';
});
// value: 0*255(chr) nblk-chr, chr = %x20 / nblk-chr, nblk-chr = %x21-2B / %x2D-3C / %x3E-7E
constexpr ByteSet kValue([](unsigned char c) { return c >= 0x20 && c <= 0x7e && c != ',' && c != '='; });

}  // namespace

std::optional<TraceParent> parse_traceparent(std::string_view v) {
    v = trim_ows(v);
    // version "-" trace-id "-" parent-id "-" trace-flags
    if (v.size() < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-') return std::nullopt;
    const std::string_view version = v.substr(0, 2), trace = v.substr(3, 32), parent = v.substr(36, 16),
                           flags = v.substr(53, 2);
    if (!lower_hex(version, 2) || version == "ff") return std::nullopt;
    if (version == "00" && v.size() != 55) return std::nullopt;
    if (version != "00" && v.size() > 55 && v[55] != '-') return std::nullopt;
    if (!lower_hex(trace, 32) || all_zero(trace) || !lower_hex(parent, 16) || all_zero(parent) ||
        !lower_hex(flags, 2))
        return std::nullopt;
    return TraceParent{trace, parent, flags};
}

bool valid_tracestate(std::string_view v) {
    if (v.empty() || v.size() > 512) return false;
    int members = 0;
    while (true) {
        auto comma = v.find(',');
        std::string_view m = trim_ows(v.substr(0, comma));
        if (!m.empty()) {
            if (++members > 32) return false;
            auto eq = m.find('=');
            if (eq == std::string_view::npos || eq == 0 || eq > 256 || m.size() - eq - 1 == 0 ||
                m.size() - eq - 1 > 256)
                return false;
            for (char c : m.substr(0, eq))
                if (!kKey(static_cast<unsigned char>(c))) return false;
            if (!(m[0] >= 'a' && m[0] <= 'z') && !(m[0] >= '0' && m[0] <= '9')) return false;
            const std::string_view value = m.substr(eq + 1);
            for (char c : value)
                if (!kValue(static_cast<unsigned char>(c))) return false;
            if (value.back() == ' ') return false;
        }
        if (comma == std::string_view::npos) break;
        v.remove_prefix(comma + 1);
    }
    return members > 0;
}

void append_traceparent(std::string& out, std::string_view trace_id, std::string_view span,
                        std::string_view flags) {
    out.append("00-").append(trace_id).append("-").append(span).append("-").append(flags);
}

void new_span_id(std::string& out) {
    random_hex(out, 16);
}

void continue_trace(TraceContext& t, std::string_view traceparent, std::string_view tracestate) {
    t.parent_id.clear();
    t.tracestate.clear();
    t.flags.assign("00");
    if (auto p = traceparent.empty() ? std::nullopt : parse_traceparent(traceparent)) {
        t.trace_id.assign(p->trace_id);
        t.parent_id.assign(p->parent_id);
        t.flags.assign(p->flags);
        if (valid_tracestate(tracestate)) t.tracestate.assign(trim_ows(tracestate));
    } else {
        random_hex(t.trace_id, 32);
    }
    random_hex(t.span_id, 16);
}

TraceContext continue_trace(std::string_view traceparent, std::string_view tracestate) {
    TraceContext t;
    continue_trace(t, traceparent, tracestate);
    return t;
}

}  // namespace rdsgw
