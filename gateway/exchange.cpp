#include "rdsgw/exchange.hpp"

#include <charconv>
#include <cstring>

#include "rdsgw/caller_auth.hpp"
#include "rdsgw/log.hpp"
#include "rdsgw/timefmt.hpp"

namespace rdsgw {

std::string_view cache_state_name(CacheState s) {
    switch (s) {
        case CacheState::hit:
            return "HIT";
        case CacheState::miss:
            return "MISS";
        case CacheState::coalesced:
            return "COALESCED";
        case CacheState::stale:
            return "STALE";
        case CacheState::bypass:
            return "BYPASS";
        case CacheState::none:
            break;
    }
    return "none";
}

std::string_view Exchange::caller_name() const {
    return caller ? std::string_view(caller->name()) : std::string_view();
}

void Response::reset() {
    status = 200;
    content_type = "application/json";
    shared_body.reset();
    body.clear();
    headers.clear();
    close = false;
}

// Every member of Exchange is reset below: when this fails, a member was added or changed; reset it too.
static_assert(sizeof(Exchange) == 856, "Exchange changed: update Exchange::reset()");

void Exchange::reset() {
    method = boost::beast::http::verb::unknown;
    method_string = {};
    target = {};
    version = 11;
    route = Route::not_found;
    fields = nullptr;
    client_addr = {};
    tls_subject = {};
    admin_listener = false;
    request_id.clear();
    started = {};
    wall_started = {};
    found_at = {};
    user_agent = {};
    tls_version = {};
    client.clear();
    trace.trace_id.clear();
    trace.parent_id.clear();
    trace.span_id.clear();
    trace.flags.assign("00");
    trace.tracestate.clear();
    registry.reset();
    caller = nullptr;
    project_id.clear();
    backup_id.clear();
    cache_key.clear();
    language = {};
    no_cache = false;
    pending = PendingStep::none;
    cache = CacheState::none;
    region = {};
    stale.reset();
    upstream_status = 0;
    attempts = 0;
    upstream_ms = -1;
    upstream_request_id.clear();
    upstream_retry_after.clear();
    answer.reset();
    error.reset();
    response.reset();
    bytes_sent = 0;
    client_gone = false;
}

std::string make_error_body(unsigned status, std::string_view message, std::string_view request_id) {
    std::string out;
    out.reserve(64 + message.size() + request_id.size());
    out += "{\"error_code\":\"RDSGW.";
    out += std::to_string(status);
    out += "\",\"error_msg\":";
    json_escape_append(out, message);
    out += ",\"request_id\":";
    json_escape_append(out, request_id);
    out += "}";
    return out;
}

namespace {

// The access line is written into raw storage sized up front (RawOut, text.hpp): one bounds computation
// instead of a capacity check, a call and a copy for each of its forty-odd pieces. Every request writes
// one, hits included, so this is on the path that is compared with a static answer.
class LineOut : public RawOut {
  public:
    using RawOut::RawOut;
    // v rounded to `decimals` (1 or 2) places, without the cost of floating-point formatting.
    void fixed(double v, int decimals) {
        const double scale = decimals == 1 ? 10.0 : 100.0;
        if (!(v >= 0) || v > 1e12) v = 0;  // negative or absurd durations never come from a steady clock
        const auto scaled = static_cast<std::uint64_t>(v * scale + 0.5);
        const std::uint64_t whole = scaled / static_cast<std::uint64_t>(scale);
        const auto frac = static_cast<unsigned>(scaled % static_cast<std::uint64_t>(scale));
        uint(whole);
        ch('.');
        if (decimals == 2) ch(static_cast<char>('0' + frac / 10));
        ch(static_cast<char>('0' + frac % 10));
    }
    void time(std::chrono::system_clock::time_point t) { advance(put_log_time(end(), t)); }
    void json(std::string_view s) { advance(json_escape_to(end(), s)); }
};

// The room every fixed piece of a line can take: the keys and punctuation (324 bytes with every optional
// field), the time (at most 32), four integers (20 each), two fixed-point numbers (24 each). The escaped
// fields' quotes are counted with them (kEscapedFields), the route and the trace ids by their size.
constexpr std::size_t kLineFixed = 512;
constexpr std::size_t kEscapedFields = 13;

}  // namespace

std::string access_line(const Exchange& x, double total_ms) {
    std::string s;
    append_access_line(s, x, total_ms);
    return s;
}

void append_access_line(std::string& s, const Exchange& x, double total_ms) {
    const std::string_view client = x.client.empty() ? x.client_addr : std::string_view(x.client);
    const bool peer = !x.client.empty() && x.client != x.client_addr;
    const std::string_view method =
        x.method_string.size() <= 16 ? x.method_string : std::string_view("other");
    const std::string_view cache =
        x.cache == CacheState::none ? std::string_view() : cache_state_name(x.cache);
    const std::string_view urid =
        x.answer ? x.answer->upstream_request_id() : std::string_view(x.upstream_request_id);
    const std::string_view agent = x.user_agent.size() <= 256 ? x.user_agent : x.user_agent.substr(0, 256);
    const std::string_view error = x.error ? std::string_view(x.error->message) : std::string_view();
    const std::string_view route =
        x.route == Route::backup_files ? "/{version_id}/{project_id}/backup-files" : route_name(x.route);

    const std::size_t escaped = x.request_id.size() + client.size() + (peer ? x.client_addr.size() : 0) +
                                x.caller_name().size() + x.tls_version.size() + method.size() +
                                x.project_id.size() + x.backup_id.size() + cache.size() + x.region.size() +
                                urid.size() + agent.size() + error.size();
    const std::size_t bound = kLineFixed + route.size() + json_escaped_bound(escaped) + 2 * kEscapedFields +
                              x.trace.trace_id.size() + x.trace.span_id.size() + x.trace.parent_id.size();
    const std::size_t at = s.size();
    s.resize(at + bound);
    LineOut o(s.data() + at);

    o.lit("{\"time\":\"");
    // The time the line is written, from the request's start and its duration (no clock read); an
    // exchange that never started (no request line read) takes the clock.
    const double elapsed_ms = total_ms >= 0 && total_ms <= 1e12 ? total_ms : 0;  // as fixed() reads it
    o.time(x.wall_started == std::chrono::system_clock::time_point{}
               ? std::chrono::system_clock::now()
               : x.wall_started + std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                      std::chrono::duration<double, std::milli>(elapsed_ms)));
    o.lit("\",\"request_id\":");
    o.json(x.request_id);
    o.lit(",\"client\":");
    o.json(client);
    if (peer) {
        o.lit(",\"peer\":");
        o.json(x.client_addr);
    }
    o.lit(",\"caller\":");
    o.json(x.caller_name());
    if (x.version == 10)
        o.lit(",\"protocol\":\"HTTP/1.0\"");
    else
        o.lit(",\"protocol\":\"HTTP/1.1\"");
    if (!x.tls_version.empty()) {
        o.lit(",\"tls\":");
        o.json(x.tls_version);
    }
    o.lit(",\"method\":");
    o.json(method);
    o.lit(",\"route\":\"");
    o.raw(route);
    o.lit("\",\"project_id\":");
    o.json(x.project_id);
    o.lit(",\"backup_id\":");
    o.json(x.backup_id);
    o.lit(",\"status\":");
    o.uint(x.logged_status());
    o.lit(",\"cache\":");
    o.json(cache);
    if (!x.region.empty()) {  // multi-region misses
        o.lit(",\"region\":");
        o.json(x.region);
    }
    o.lit(",\"upstream_status\":");
    if (x.upstream_status)
        o.uint(x.upstream_status);
    else
        o.lit("null");
    o.lit(",\"attempts\":");
    o.uint(x.attempts);
    o.lit(",\"upstream_ms\":");
    if (x.upstream_ms >= 0)
        o.fixed(x.upstream_ms, 1);
    else
        o.lit("null");
    o.lit(",\"total_ms\":");
    o.fixed(total_ms, 2);
    o.lit(",\"bytes_sent\":");
    o.uint(x.bytes_sent);
    if (!urid.empty()) {
        o.lit(",\"upstream_request_id\":");
        o.json(urid);
    }
    if (!x.user_agent.empty()) {
        o.lit(",\"user_agent\":");
        o.json(agent);
    }
    if (!x.trace.trace_id.empty()) {
        o.lit(",\"trace_id\":\"");
        o.raw(x.trace.trace_id);
        o.lit("\",\"span_id\":\"");
        o.raw(x.trace.span_id);
        o.lit("\"");
        if (!x.trace.parent_id.empty()) {
            o.lit(",\"parent_span_id\":\"");
            o.raw(x.trace.parent_id);
            o.lit("\"");
        }
    }
    if (x.error) {
        o.lit(",\"error\":");
        o.json(error);
    }
    o.lit("}");
    RDSGW_INVARIANT(o.end() <= s.data() + at + bound);  // the bound above counts every piece
    s.resize(static_cast<std::size_t>(o.end() - s.data()));
}

}  // namespace rdsgw
