// The retry policy of one upstream fetch, as a pure function: what the last attempt produced and where the
// fetch stands in, what happens next out (Envoy's RetryState). The I/O loop (upstream_call.hpp) only asks
// it; tests/unit/test_retry_policy.cpp checks it table by table without processes or sleeps.
#pragma once
#include <chrono>
#include <optional>
#include <string_view>

#include "rdsgw/upstream.hpp"

namespace rdsgw {

// What one attempt produced, as the policy sees it.
struct AttemptResult {
    UpstreamResponse::Error error = UpstreamResponse::Error::none;  // none: an HTTP answer with `status`
    bool got_response_bytes = false;  // some bytes of an answer arrived before the failure
    unsigned status = 0;
    bool credential_rejected = false;  // 401 whose RDS error_code is APIGW.0307 or APIGW.0301
    std::optional<std::chrono::milliseconds> retry_after;  // the upstream's Retry-After, parsed

    static AttemptResult from(const UpstreamResponse& r, std::chrono::system_clock::time_point now);
};

// Where the fetch stands.
struct RetryState {
    unsigned attempt = 1;  // attempts made so far, the one just finished included
    unsigned max_attempts = 3;
    bool renewed = false;  // the credential was already renewed once in this fetch
    std::chrono::steady_clock::time_point now{}, deadline{};
    std::chrono::milliseconds backoff{0};  // the jittered backoff the next retry would wait (backoff_delay)
    bool budget_available = true;          // the retry budget has room for one more retry
};

enum class Next {
    stop,             // deliver the last attempt's result (an HTTP answer or the transport failure)
    retry,            // wait `delay`, then try again (counts against the retry budget)
    renew_and_retry,  // renew the rejected credential, then try again at once (an extra attempt)
};
// What the circuit breaker learns from the attempt.
enum class BreakerSignal { none, success, failure };

struct RetryDecision {
    Next next = Next::stop;
    std::chrono::milliseconds delay{0};
    BreakerSignal breaker = BreakerSignal::none;
    std::string_view why;  // for the debug log: "answered", "not retryable", "attempts exhausted", ...
};

// The rules (this GET is idempotent):
// - retryable: a connect failure; a reset before any answer byte; HTTP 429, 502, 503, 504;
// - a 401 APIGW.0307/0301 renews the credential once and retries at once, beyond max_attempts;
// - a retry waits Retry-After when given, else the backoff; it is not made when the attempts are used up,
//   when it would start at or after the deadline, or when the budget has no room;
// - the breaker hears a failure for transport errors and 5xx, and a success for every other HTTP answer
//   (a 429 too: throttling is not an outage).
RetryDecision decide_retry(const AttemptResult& a, const RetryState& s);

// The gateway's own answer when a fetch ends on a transport failure: status and a fixed text.
struct TransportFailure {
    unsigned status;
    std::string_view text;
};
TransportFailure transport_failure(UpstreamResponse::Error e);

}  // namespace rdsgw
