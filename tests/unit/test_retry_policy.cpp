// The retry policy (retry_policy.hpp), table by table: no processes, no sleeps, no clocks but the values in
// each row (Envoy's retry_state_impl_test.cc does the same for RetryState).
#define BOOST_TEST_MODULE retry_policy
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <ostream>

#include "rdsgw/retry_policy.hpp"

using namespace rdsgw;
using namespace std::chrono_literals;
using E = UpstreamResponse::Error;
using steady = std::chrono::steady_clock;

namespace rdsgw {
std::ostream& operator<<(std::ostream& os, Next n) {
    return os << (n == Next::stop ? "stop" : n == Next::retry ? "retry" : "renew_and_retry");
}
std::ostream& operator<<(std::ostream& os, BreakerSignal b) {
    return os << (b == BreakerSignal::none ? "none" : b == BreakerSignal::success ? "success" : "failure");
}
}  // namespace rdsgw

namespace {

const steady::time_point t0 = steady::time_point() + 1000s;

AttemptResult http(unsigned status) {
    AttemptResult a;
    a.status = status;
    return a;
}
AttemptResult transport(E e, bool got_bytes = false) {
    AttemptResult a;
    a.error = e;
    a.got_response_bytes = got_bytes;
    return a;
}
RetryState state(unsigned attempt = 1, unsigned max = 3) {
    RetryState s;
    s.attempt = attempt;
    s.max_attempts = max;
    s.now = t0;
    s.deadline = t0 + 10s;
    s.backoff = 40ms;
    return s;
}

struct Row {
    const char* name;
    AttemptResult a;
    Next next;
    BreakerSignal breaker;
};
std::ostream& operator<<(std::ostream& os, const Row& r) {
    return os << r.name;
}

// What each kind of first attempt leads to, with attempts, time and budget to spare.
const Row kFirstAttempt[] = {
    {"200 is delivered", http(200), Next::stop, BreakerSignal::success},
    {"404 is delivered", http(404), Next::stop, BreakerSignal::success},
    {"400 is delivered", http(400), Next::stop, BreakerSignal::success},
    {"403 is delivered", http(403), Next::stop, BreakerSignal::success},
    {"401 without a credential code is delivered", http(401), Next::stop, BreakerSignal::success},
    {"429 is retried, not an outage", http(429), Next::retry, BreakerSignal::success},
    {"500 is delivered, an outage", http(500), Next::stop, BreakerSignal::failure},
    {"501 is delivered, an outage", http(501), Next::stop, BreakerSignal::failure},
    {"502 is retried", http(502), Next::retry, BreakerSignal::failure},
    {"503 is retried", http(503), Next::retry, BreakerSignal::failure},
    {"504 is retried", http(504), Next::retry, BreakerSignal::failure},
    {"connect failure is retried", transport(E::connect), Next::retry, BreakerSignal::failure},
    {"reset before any byte is retried", transport(E::reset, false), Next::retry, BreakerSignal::failure},
    {"reset after answer bytes is not", transport(E::reset, true), Next::stop, BreakerSignal::failure},
    {"timeout is not retried", transport(E::timeout), Next::stop, BreakerSignal::failure},
    {"TLS failure is not retried", transport(E::tls), Next::stop, BreakerSignal::failure},
    {"protocol error is not retried", transport(E::protocol), Next::stop, BreakerSignal::failure},
    {"too large is not retried", transport(E::too_large), Next::stop, BreakerSignal::failure},
};

}  // namespace

BOOST_DATA_TEST_CASE(first_attempt_outcomes, boost::unit_test::data::make(kFirstAttempt), row) {
    const RetryDecision d = decide_retry(row.a, state());
    BOOST_TEST(d.next == row.next);
    BOOST_TEST(d.breaker == row.breaker);
    if (d.next == Next::retry) BOOST_TEST(d.delay.count() == 40);  // the backoff, no Retry-After
}

BOOST_AUTO_TEST_CASE(a_rejected_credential_is_renewed_once_at_once) {
    AttemptResult a = http(401);
    a.credential_rejected = true;
    RetryState s = state(3, 3);  // even with the attempts used up: the renewal's attempt is extra
    s.budget_available = false;  // and without budget: it is not a retry of a failure
    RetryDecision d = decide_retry(a, s);
    BOOST_TEST(d.next == Next::renew_and_retry);
    BOOST_TEST(d.breaker == BreakerSignal::success);
    s.renewed = true;  // a second rejection in the same fetch passes through
    d = decide_retry(a, s);
    BOOST_TEST(d.next == Next::stop);
    s.renewed = false;  // nor is there a renewal past the deadline
    s.now = s.deadline;
    BOOST_TEST(decide_retry(a, s).next == Next::stop);
}

BOOST_AUTO_TEST_CASE(attempts_are_bounded) {
    BOOST_TEST(decide_retry(http(503), state(1, 3)).next == Next::retry);
    BOOST_TEST(decide_retry(http(503), state(2, 3)).next == Next::retry);
    const RetryDecision d = decide_retry(http(503), state(3, 3));
    BOOST_TEST(d.next == Next::stop);
    BOOST_TEST(d.why == "attempts exhausted");
    BOOST_TEST(decide_retry(http(503), state(1, 1)).next == Next::stop);
}

BOOST_AUTO_TEST_CASE(retry_after_wins_over_the_backoff) {
    AttemptResult a = http(503);
    a.retry_after = 2s;
    RetryDecision d = decide_retry(a, state());
    BOOST_TEST(d.next == Next::retry);
    BOOST_TEST(d.delay.count() == 2000);
    a.retry_after = 0ms;  // "Retry-After: 0" means at once
    d = decide_retry(a, state());
    BOOST_TEST(d.next == Next::retry);
    BOOST_TEST(d.delay.count() == 0);
}

BOOST_AUTO_TEST_CASE(no_retry_that_would_start_at_or_after_the_deadline) {
    RetryState s = state();
    s.deadline = s.now + 40ms;  // the backoff ends exactly at the deadline
    RetryDecision d = decide_retry(http(502), s);
    BOOST_TEST(d.next == Next::stop);
    BOOST_TEST(d.why == "deadline");
    s.deadline = s.now + 41ms;
    BOOST_TEST(decide_retry(http(502), s).next == Next::retry);
    AttemptResult a = http(429);
    a.retry_after = 3600s;  // a Retry-After beyond the deadline ends the fetch instead of waiting
    BOOST_TEST(decide_retry(a, state()).next == Next::stop);
}

BOOST_AUTO_TEST_CASE(no_retry_without_budget) {
    RetryState s = state();
    s.budget_available = false;
    const RetryDecision d = decide_retry(transport(E::connect), s);
    BOOST_TEST(d.next == Next::stop);
    BOOST_TEST(d.why == "retry budget exhausted");
    BOOST_TEST(d.breaker == BreakerSignal::failure);  // the breaker still hears the failure
}

BOOST_AUTO_TEST_CASE(attempt_result_reads_the_answer) {
    const auto now = std::chrono::system_clock::now();
    UpstreamResponse r;
    r.status = 401;
    r.body = R"({"error_code":"APIGW.0307","error_msg":"The token must be updated."})";
    BOOST_TEST(AttemptResult::from(r, now).credential_rejected);
    r.body = R"({"error_code":"APIGW.0301","error_msg":"Incorrect IAM authentication information."})";
    BOOST_TEST(AttemptResult::from(r, now).credential_rejected);
    r.body = R"({"error_code":"DBS.280001","error_msg":"other"})";
    BOOST_TEST(!AttemptResult::from(r, now).credential_rejected);
    r.body = "<html>401</html>";
    BOOST_TEST(!AttemptResult::from(r, now).credential_rejected);
    r.status = 403;  // the same code on another status is not a credential rejection
    r.body = R"({"error_code":"APIGW.0307","error_msg":"x"})";
    BOOST_TEST(!AttemptResult::from(r, now).credential_rejected);

    UpstreamResponse busy;
    busy.status = 503;
    busy.retry_after = "7";
    auto a = AttemptResult::from(busy, now);
    BOOST_REQUIRE(a.retry_after.has_value());
    BOOST_TEST(a.retry_after->count() == 7000);
    busy.retry_after = "soon";
    BOOST_TEST(!AttemptResult::from(busy, now).retry_after.has_value());

    UpstreamResponse gone;
    gone.error = E::reset;
    gone.got_response_bytes = true;
    gone.status = 200;  // a status read before the reset is not an answer
    a = AttemptResult::from(gone, now);
    BOOST_TEST(a.status == 0u);
    BOOST_TEST(a.got_response_bytes);
}

BOOST_AUTO_TEST_CASE(transport_failures_map_to_gateway_answers) {
    BOOST_TEST(transport_failure(E::timeout).status == 504u);
    BOOST_TEST(transport_failure(E::connect).status == 502u);
    BOOST_TEST(transport_failure(E::tls).status == 502u);
    BOOST_TEST(transport_failure(E::reset).status == 502u);
    BOOST_TEST(transport_failure(E::protocol).status == 502u);
    BOOST_TEST(transport_failure(E::too_large).status == 502u);
    BOOST_TEST(transport_failure(E::connect).text == "upstream unreachable");
    BOOST_TEST(transport_failure(E::reset).text == "upstream connection failed");
}
