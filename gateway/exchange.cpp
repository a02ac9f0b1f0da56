#include "rdsgw/exchange.hpp"

#include <charconv>

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
static_assert(sizeof(Exchange) == 840, "Exchange changed: update Exchange::reset()");

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

// Appends v rounded to `decimals` (1 or 2) places, without the cost of floating-point formatting.
void append_fixed(std::string& s, double v, int decimals) {
    const double scale = decimals == 1 ? 10.0 : 100.0;
    if (!(v >= 0) || v > 1e12) v = 0;  // negative or absurd durations never come from a steady clock
    const auto scaled = static_cast<std::uint64_t>(v * scale + 0.5);
    const std::uint64_t whole = scaled / static_cast<std::uint64_t>(scale);
    const auto frac = static_cast<unsigned>(scaled % static_cast<std::uint64_t>(scale));
    char buf[32];
    char* p = std::to_chars(buf, buf + 24, whole).ptr;
    *p++ = '.';
    if (decimals == 2) *p++ = static_cast<char>('0' + frac / 10);
    *p++ = static_cast<char>('0' + frac % 10);
    s.append(buf, p);
}

void append_uint(std::string& s, std::uint64_t v) {
    char buf[24];
    s.append(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
}

}  // namespace

std::string access_line(const Exchange& x, double total_ms) {
    std::string s;
    s.reserve(384);
    append_access_line(s, x, total_ms);
    return s;
}

void append_access_line(std::string& s, const Exchange& x, double total_ms) {
    using namespace std::string_view_literals;
    s += "{\"time\":\""sv;
    append_log_time(s, std::chrono::system_clock::now());
    s += "\",\"request_id\":"sv;
    json_escape_append(s, x.request_id);
    s += ",\"client\":"sv;
    json_escape_append(s, x.client.empty() ? x.client_addr : std::string_view(x.client));
    if (!x.client.empty() && x.client != x.client_addr) {
        s += ",\"peer\":"sv;
        json_escape_append(s, x.client_addr);
    }
    s += ",\"caller\":"sv;
    json_escape_append(s, x.caller_name());
    s += ",\"protocol\":\""sv;
    s += x.version == 10 ? "HTTP/1.0"sv : "HTTP/1.1"sv;
    s += '"';
    if (!x.tls_version.empty()) {
        s += ",\"tls\":"sv;
        json_escape_append(s, x.tls_version);
    }
    s += ",\"method\":"sv;
    json_escape_append(s, x.method_string.size() <= 16 ? x.method_string : std::string_view("other"));
    s += ",\"route\":\""sv;
    s += x.route == Route::backup_files ? "/{version_id}/{project_id}/backup-files"sv : route_name(x.route);
    s += "\",\"project_id\":"sv;
    json_escape_append(s, x.project_id);
    s += ",\"backup_id\":"sv;
    json_escape_append(s, x.backup_id);
    s += ",\"status\":"sv;
    append_uint(s, x.logged_status());
    s += ",\"cache\":"sv;
    json_escape_append(s, x.cache == CacheState::none ? std::string_view() : cache_state_name(x.cache));
    if (!x.region.empty()) {  // multi-region misses
        s += ",\"region\":"sv;
        json_escape_append(s, x.region);
    }
    s += ",\"upstream_status\":"sv;
    if (x.upstream_status)
        append_uint(s, x.upstream_status);
    else
        s += "null"sv;
    s += ",\"attempts\":"sv;
    append_uint(s, x.attempts);
    s += ",\"upstream_ms\":"sv;
    if (x.upstream_ms >= 0)
        append_fixed(s, x.upstream_ms, 1);
    else
        s += "null"sv;
    s += ",\"total_ms\":"sv;
    append_fixed(s, total_ms, 2);
    s += ",\"bytes_sent\":"sv;
    append_uint(s, x.bytes_sent);
    if (const std::string_view urid =
            x.answer ? x.answer->upstream_request_id() : std::string_view(x.upstream_request_id);
        !urid.empty()) {
        s += ",\"upstream_request_id\":"sv;
        json_escape_append(s, urid);
    }
    if (!x.user_agent.empty()) {
        s += ",\"user_agent\":"sv;
        json_escape_append(s, x.user_agent.size() <= 256 ? x.user_agent : x.user_agent.substr(0, 256));
    }
    if (!x.trace.trace_id.empty()) {
        s += ",\"trace_id\":\""sv;
        s += x.trace.trace_id;
        s += "\",\"span_id\":\""sv;
        s += x.trace.span_id;
        s += '"';
        if (!x.trace.parent_id.empty()) {
            s += ",\"parent_span_id\":\""sv;
            s += x.trace.parent_id;
            s += '"';
        }
    }
    if (x.error) {
        s += ",\"error\":"sv;
        json_escape_append(s, x.error->message);
    }
    s += '}';
}

}  // namespace rdsgw
