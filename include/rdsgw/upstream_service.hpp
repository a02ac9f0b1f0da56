// The upstream as the pipeline uses it: the regions (regions.hpp: each an RDS endpoint with its TLS context
// and the protections shared by every thread: circuit breaker, retry budget, concurrency limiter), the
// gateway's credentials, and the loop that makes the attempts of one fetch in its region and asks the retry
// policy (retry_policy.hpp) what to do next. The connection pools are per worker thread and region
// (Worker::pools).
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
#include "rdsgw/regions.hpp"
#include "rdsgw/resilience.hpp"
#include "rdsgw/retry_policy.hpp"
#include "rdsgw/upstream.hpp"

namespace rdsgw {

class Metrics;

// Per-thread state: the thread's io_context and its upstream connection pools, one per region (by
// Region::index; a region's is made on this thread when it is first used).
struct Worker {
    unsigned index = 0;
    boost::asio::io_context ioc{1};
    std::vector<std::unique_ptr<ConnectionPool>> pools;
};

// What one fetch asks of the upstream. Owned by the fetch (it outlives the request that started it).
struct FetchJob {
    // The leader's request: its ids and its trace (the upstream request is a child span of the gateway's
    // span for that request).
    struct Ids {
        std::string_view project_id, backup_id, cache_key, request_id;
        std::string_view language;  // "zh-cn" | "en-us" | ""
        std::string_view trace_id, span_id, upstream_span_id, flags, tracestate;
    };
    explicit FetchJob(const Ids& ids);
    FetchJob(const FetchJob&) = delete;  // the views below point into this object's own storage
    FetchJob& operator=(const FetchJob&) = delete;

    // Views of the job's one block of storage (a miss made a string of each, most of them too long for the
    // small-string buffer): valid as long as the job.
    std::string_view project_id, backup_id, cache_key, request_id, language;
    std::string_view trace_id, span_id, upstream_span_id, flags, tracestate;
    std::string_view traceparent;  // "00-<trace_id>-<upstream_span_id>-<flags>" (empty without a trace)
    Region* region = nullptr;      // where the project is served (resolve phase)
    bool no_cache = false;  // the caller asked for a fresh answer: no cached copy (L2 included) is read
    // The fetch's end (retry.deadline_ms from its start): waiting on the shared tier and the upstream
    // attempts together never take longer.
    std::chrono::steady_clock::time_point deadline{};
    LogIds log_ids() const { return {request_id, trace_id, span_id}; }

  private:
    std::string text_;
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
    UpstreamService(const Config& cfg, Regions& regions, std::unique_ptr<CredentialSource> creds,
                    Metrics& metrics);
    ~UpstreamService();

    // Builds the regions (first call), then the worker's pools of the regions known now.
    bool init_worker(Worker& w, std::string& why);

    // The attempts of one fetch in job.region: breaker, concurrency slot, credentials, the exchange, and
    // retries as decide_retry says (backoff, Retry-After, renewal after a rejected credential, the budget).
    // Into `out`, the caller's (a fresh UpstreamResult): no copy of the result passes through the
    // coroutine's return.
    boost::asio::awaitable<void> call(Worker& w, const FetchJob& job, UpstreamResult& out);

    CredentialSource& credentials() { return *creds_; }
    const CredentialSource& credentials() const { return *creds_; }
    Regions& regions() { return regions_; }

  private:
    struct Attempt;
    ConnectionPool& pool(Worker& w, Region& r);
    UpstreamRequest build_request(const FetchJob& job) const;
    void tell_breaker(Region& r, BreakerSignal signal, const UpstreamResponse& res);

    const Config& cfg_;
    Regions& regions_;
    std::unique_ptr<CredentialSource> creds_;
    Metrics& metrics_;
};

}  // namespace rdsgw
