// The upstream as the pipeline uses it: one RDS endpoint with its TLS context, the gateway's credentials,
// and the protections shared by every thread (circuit breaker, retry budget, concurrency limiter), plus the
// loop that makes the attempts of one fetch and asks the retry policy (retry_policy.hpp) what to do next.
// The connection pools are per worker thread (Worker::pool).
#pragma once
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "rdsgw/config.hpp"
#include "rdsgw/credentials.hpp"
#include "rdsgw/local_error.hpp"
#include "rdsgw/log.hpp"
#include "rdsgw/resilience.hpp"
#include "rdsgw/retry_policy.hpp"
#include "rdsgw/upstream.hpp"

namespace rdsgw {

class Metrics;

// Per-thread state: the thread's io_context and its upstream connection pool.
struct Worker {
    unsigned index = 0;
    boost::asio::io_context ioc{1};
    std::unique_ptr<ConnectionPool> pool;
};

// What one fetch asks of the upstream. Owned by the fetch (it outlives the request that started it).
struct FetchJob {
    std::string project_id, backup_id, cache_key, request_id;
    std::string language;  // "zh-cn" | "en-us" | ""
    // The leader's trace: the upstream request is a child span of the gateway's span for that request.
    std::string trace_id, span_id, upstream_span_id, flags, tracestate;
    bool no_cache = false;  // the caller asked for a fresh answer: no cached copy (L2 included) is read
    std::string traceparent() const { return "00-" + trace_id + "-" + upstream_span_id + "-" + flags; }
    LogIds log_ids() const { return {request_id, trace_id, span_id}; }
};

// What the attempts of one fetch came to.
struct UpstreamResult {
    // Set when the gateway could not (or could no longer) ask: breaker open, no slot, no credentials.
    std::optional<LocalError> refused;
    bool refused_as_outage = false;  // the breaker refused: a stale answer may be served instead
    UpstreamResponse last;           // the last attempt's answer or transport failure (attempts > 0)
    unsigned attempts = 0;
    double ms = 0;  // from the first attempt's start to the end
};

class UpstreamService {
  public:
    UpstreamService(const Config& cfg, std::unique_ptr<CredentialSource> creds, Metrics& metrics);
    ~UpstreamService();

    // Parses the endpoint and builds the TLS context (first call), then the worker's pool.
    bool init_worker(Worker& w, std::string& why);

    // The attempts of one fetch: breaker, concurrency slot, credentials, the exchange, and retries as
    // decide_retry says (backoff, Retry-After, renewal after a rejected credential, the budget).
    boost::asio::awaitable<UpstreamResult> call(Worker& w, const FetchJob& job);

    CredentialSource& credentials() { return *creds_; }
    const CredentialSource& credentials() const { return *creds_; }
    CircuitBreaker::State breaker_state() const { return breaker_.state(); }
    // Wall-clock milliseconds since the epoch of the last answer below 500 (0: none yet).
    std::int64_t last_success_ms() const { return last_success_ms_.load(std::memory_order_relaxed); }

  private:
    struct Attempt;
    boost::asio::awaitable<bool> attempt(Worker& w, const FetchJob& job, Attempt& a, UpstreamResult& out);
    UpstreamRequest build_request(const FetchJob& job) const;
    void tell_breaker(BreakerSignal signal, const UpstreamResponse& r);

    const Config& cfg_;
    std::unique_ptr<CredentialSource> creds_;
    Metrics& metrics_;
    Endpoint ep_;
    std::shared_ptr<boost::asio::ssl::context> tls_;
    RetryBudget budget_;
    CircuitBreaker breaker_;
    ConcurrencyLimiter limiter_;
    std::atomic<std::int64_t> last_success_ms_{0};
};

}  // namespace rdsgw
