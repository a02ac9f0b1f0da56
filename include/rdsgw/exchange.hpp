// One request, one exchange. The session creates an Exchange when a request's header has been read, each
// phase of the pipeline (gateway.hpp) reads and fills it, the session writes its response, and the access
// log and the request metrics read it once at the end (Pingora's per-request CTX with one logging()).
#pragma once
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/verb.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rdsgw/cache.hpp"
#include "rdsgw/header_arena.hpp"
#include "rdsgw/local_error.hpp"
#include "rdsgw/log.hpp"
#include "rdsgw/request.hpp"
#include "rdsgw/trace.hpp"

namespace rdsgw {

class Caller;
class CallerRegistry;

// What goes back to the client.
struct Response {
    unsigned status = 200;
    std::string_view content_type = "application/json";
    AnswerPtr shared_body;  // when set, the body is shared_body->body (cached bytes, not copied)
    std::string body;       // otherwise this
    std::vector<std::pair<std::string_view, std::string>> headers;  // extra headers (names are literals)
    bool close = false;

    std::string_view body_view() const { return shared_body ? shared_body->body() : std::string_view(body); }
    void reset();  // back to a new Response, keeping the storage of body and headers
};

// How the answer relates to the cache (the X-Cache header and the access log's "cache" field).
enum class CacheState { none, hit, miss, coalesced, stale, bypass };
std::string_view cache_state_name(CacheState s);  // "none", "HIT", "MISS", ...

// A phase that needs Redis (the shared tier) before the exchange can go on: it is finished asynchronously.
enum class PendingStep { none, rate_limit, purge };

struct Exchange {
    // The request as read by the session (views into the session's parser, alive for the whole exchange).
    boost::beast::http::verb method = boost::beast::http::verb::unknown;
    std::string_view method_string;
    std::string_view target;
    unsigned version = 11;
    Route route = Route::not_found;
    const RequestFields* fields = nullptr;  // null for requests refused before parsing headers
    std::string_view client_addr;
    std::string_view tls_subject;  // verified client certificate subject (mTLS), "" when none
    bool admin_listener = false;
    std::string request_id;
    std::chrono::steady_clock::time_point started{};
    // The wall clock read with `started`: the request's time checks (caller signatures, freshness, Age of
    // a hit) and, advanced by the steady clock, its log time. One clock read instead of four per request.
    std::chrono::system_clock::time_point wall_started{};
    // When an L1 hit was found (its Age counts to then); unset for answers that came any other way.
    std::chrono::system_clock::time_point found_at{};
    std::string_view user_agent;
    std::string_view tls_version;  // "TLSv1.3"; "" on a plain connection
    std::string client;            // the real client behind trusted proxies (client_ip.hpp); "": client_addr
    TraceContext trace;

    // Caller (authenticate): the registry snapshot keeps `caller` alive.
    std::shared_ptr<const CallerRegistry> registry;
    const Caller* caller = nullptr;

    // The validated request (validate) and what the cache and the upstream need of it.
    std::string project_id, backup_id, cache_key;
    std::string_view language;  // "zh-cn" | "en-us" | ""
    bool no_cache = false;
    PendingStep pending = PendingStep::none;

    // Cache and upstream facts.
    CacheState cache = CacheState::none;
    std::string_view region;  // the project's region (multi-region, misses only; alive with the gateway)
    AnswerPtr stale;          // a cached answer past its TTL, servable if the upstream fails
    unsigned upstream_status = 0;
    unsigned attempts = 0;
    double upstream_ms = -1;
    std::string upstream_request_id;   // RDS's X-Request-Id (sane ones only)
    std::string upstream_retry_after;  // RDS's Retry-After, as whole seconds

    // The outcome: an answer to send (cached or fetched), or the gateway's own error; respond() turns it
    // into the response the session writes (routes such as /healthz fill the response directly).
    AnswerPtr answer;
    std::optional<LocalError> error;
    Response response;
    std::size_t bytes_sent = 0;
    // The client was gone when its answer was written (the write failed): the answer was not delivered, and
    // the access log and metrics say 499 (as nginx does).
    bool client_gone = false;

    // The status the access log, the metrics and the status board record: the response's, or 499.
    unsigned logged_status() const { return client_gone ? 499u : response.status; }

    std::string_view caller_name() const;
    LogIds log_ids() const { return {request_id, trace.trace_id, trace.span_id}; }

    // Back to a new exchange, keeping its strings' and vectors' storage: the session keeps one exchange per
    // connection, so a connection's later requests allocate nothing for their ids, keys and headers.
    // (exchange.cpp checks at compile time that a new member was added here too.)
    void reset();
};

// The gateway's own error body {"error_code":"RDSGW.<status>","error_msg":...,"request_id":...}.
std::string make_error_body(unsigned status, std::string_view message, std::string_view request_id);

// The exchange's access-log line (JSON, no trailing newline); total_ms is measured by the caller.
std::string access_line(const Exchange& x, double total_ms);
void append_access_line(std::string& out, const Exchange& x, double total_ms);  // appended to out

}  // namespace rdsgw
