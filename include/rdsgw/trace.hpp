// W3C Trace Context (https://www.w3.org/TR/trace-context/), pure: a caller's traceparent/tracestate are
// validated and continued, or a new trace starts; the gateway's span is the parent of its upstream request.
// The ids appear in the access log and the diagnostic log as OpenTelemetry's log data model names them
// (trace_id, span_id), so that a caller's trace joins the gateway's lines.
#pragma once
#include <array>
#include <optional>
#include <string>
#include <string_view>

namespace rdsgw {

struct TraceContext {
    std::string trace_id;   // 32 lower-hex, not all zero
    std::string parent_id;  // the caller's span (16 lower-hex), "" when the trace started here
    std::string span_id;    // the gateway's span for this request (16 lower-hex)
    std::string flags = "00";
    std::string tracestate;  // passed on unchanged when valid, else ""
};

// Appends a traceparent value naming `span` as the parent (the gateway's span, or a child span of it):
// "00-<trace_id>-<span>-<flags>".
void append_traceparent(std::string& out, std::string_view trace_id, std::string_view span,
                        std::string_view flags);

struct TraceParent {
    std::string_view trace_id, parent_id, flags;  // views into the parsed value
};

// Parses a traceparent value (version 00, or a higher version's first four fields as the spec asks);
// nullopt when invalid (then the caller's trace is not continued: a new one starts).
std::optional<TraceParent> parse_traceparent(std::string_view v);
// A tracestate is passed on when it is well-formed: at most 32 list members of key=value, 512 bytes.
bool valid_tracestate(std::string_view v);

// Continues the caller's trace (traceparent, tracestate may be empty) or starts a new one; always a new span.
TraceContext continue_trace(std::string_view traceparent, std::string_view tracestate);
// The same into `out`, reusing its strings' storage (the session's per-connection exchange: no allocation).
void continue_trace(TraceContext& out, std::string_view traceparent, std::string_view tracestate);
// A fresh random span id (16 lower-hex, not all zero) into `out`, its storage reused.
void new_span_id(std::string& out);

}  // namespace rdsgw
