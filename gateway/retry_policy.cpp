#include "rdsgw/retry_policy.hpp"

#include <boost/json.hpp>

#include "rdsgw/resilience.hpp"

namespace rdsgw {

using std::chrono::milliseconds;
using E = UpstreamResponse::Error;

namespace {

bool rejects_credential(const UpstreamResponse& r) {
    if (r.status != 401) return false;
    boost::system::error_code ec;
    auto v = boost::json::parse(r.body, ec);
    if (ec || !v.is_object()) return false;
    const auto* c = v.get_object().if_contains("error_code");
    if (!c || !c->is_string()) return false;
    return c->get_string() == "APIGW.0307" || c->get_string() == "APIGW.0301";
}

bool retryable(const AttemptResult& a) {
    if (a.error != E::none) return a.error == E::connect || (a.error == E::reset && !a.got_response_bytes);
    return a.status == 429 || a.status == 502 || a.status == 503 || a.status == 504;
}

BreakerSignal breaker_signal(const AttemptResult& a) {
    if (a.error != E::none || a.status >= 500) return BreakerSignal::failure;
    return BreakerSignal::success;
}

}  // namespace

AttemptResult AttemptResult::from(const UpstreamResponse& r, std::chrono::system_clock::time_point now) {
    AttemptResult a;
    a.error = r.error;
    a.got_response_bytes = r.got_response_bytes;
    if (r.error != E::none) return a;
    a.status = r.status;
    a.credential_rejected = rejects_credential(r);
    if (!r.retry_after.empty()) a.retry_after = parse_retry_after(r.retry_after, now);
    return a;
}

RetryDecision decide_retry(const AttemptResult& a, const RetryState& s) {
    RetryDecision d;
    d.breaker = breaker_signal(a);
    if (a.credential_rejected && !s.renewed && s.now < s.deadline) {
        d.next = Next::renew_and_retry;
        d.why = "credential rejected";
        return d;
    }
    if (!retryable(a)) {
        d.why = a.error == E::none ? "answered" : "not retryable";
        return d;
    }
    if (s.attempt >= s.max_attempts) {
        d.why = "attempts exhausted";
        return d;
    }
    const milliseconds delay = a.retry_after ? *a.retry_after : s.backoff;
    if (s.now + delay >= s.deadline) {
        d.why = "deadline";
        return d;
    }
    if (!s.budget_available) {
        d.why = "retry budget exhausted";
        return d;
    }
    d.next = Next::retry;
    d.delay = delay;
    d.why = "retryable";
    return d;
}

TransportFailure transport_failure(UpstreamResponse::Error e) {
    switch (e) {
        case E::timeout:
            return {504, "upstream did not answer in time"};
        case E::connect:
        case E::tls:
            return {502, "upstream unreachable"};
        case E::too_large:
            return {502, "upstream answer too large"};
        case E::none:
        case E::reset:
        case E::protocol:
            break;
    }
    return {502, "upstream connection failed"};
}

}  // namespace rdsgw
