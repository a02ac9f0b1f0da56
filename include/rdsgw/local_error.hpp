// The one error type of the pipeline: every answer the gateway makes itself instead of passing on an upstream
// answer (Pingora's Error, Envoy's sendLocalReply). Each phase that ends an exchange early sets one; it is
// mapped to a response in one place (Gateway::respond) and its message is both the body's error_msg and the
// access log's "error" field, so it never holds a secret, a token or a download link.
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rdsgw {

// Where the cause lies: the caller's request, the upstream, or the gateway itself.
enum class ErrorSource { caller, upstream, internal };

struct LocalError {
    unsigned status = 500;
    std::string message;
    ErrorSource source = ErrorSource::internal;
    // rdsgw_rejected_requests_total{reason}: "limit", "auth", "forbidden", "validation", "rate", "overload",
    // "breaker", "credentials", "unknown_project"; empty when the refusal is not counted there (a 404 route,
    // an upstream failure or refusal: those have their own metrics).
    std::string_view reject_reason;
    std::vector<std::pair<std::string_view, std::string>> headers;  // Retry-After, Allow, WWW-Authenticate
    bool close = false;                                             // close the connection after it

    LocalError() = default;
    LocalError(unsigned st, std::string msg, ErrorSource src, std::string_view reason = {})
        : status(st), message(std::move(msg)), source(src), reject_reason(reason) {}
    LocalError&& with(std::string_view name, std::string value) && {
        headers.emplace_back(name, std::move(value));
        return std::move(*this);
    }
};

}  // namespace rdsgw
