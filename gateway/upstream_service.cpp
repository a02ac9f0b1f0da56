#include "rdsgw/upstream_service.hpp"

#include <boost/asio.hpp>

#include "rdsgw/async_util.hpp"
#include "rdsgw/log.hpp"
#include "rdsgw/metrics.hpp"
#include "rdsgw/retry_policy.hpp"
#include "rdsgw/signer.hpp"
#include "rdsgw/trace.hpp"

namespace rdsgw {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;
using sys = std::chrono::system_clock;
using std::chrono::milliseconds;

namespace {

// The retry budget's bookkeeping for one fetch: it is active from start to end, and in a retry from the
// moment a retry is granted until that retry's attempt has finished.
class BudgetScope {
  public:
    explicit BudgetScope(RetryBudget& b) : b_(b) { b_.request_started(); }
    ~BudgetScope() {
        retry_done();
        b_.request_finished();
    }
    BudgetScope(const BudgetScope&) = delete;
    BudgetScope& operator=(const BudgetScope&) = delete;
    bool start_retry() { return in_retry_ = b_.try_start_retry(); }
    void retry_done() {
        if (in_retry_) b_.retry_finished();
        in_retry_ = false;
    }

  private:
    RetryBudget& b_;
    bool in_retry_ = false;
};

}  // namespace

struct UpstreamService::Attempt {
    unsigned max_attempts = 0;
    steady::time_point started{}, deadline{};
    bool renewed = false;
    std::shared_ptr<const void> used;  // the credential the last attempt carried
};

UpstreamService::UpstreamService(const Config& cfg, Regions& regions, std::unique_ptr<CredentialSource> creds,
                                 Metrics& metrics)
    : cfg_(cfg), regions_(regions), creds_(std::move(creds)), metrics_(metrics) {}

UpstreamService::~UpstreamService() {
    creds_->stop();
}

bool UpstreamService::init_worker(Worker& w, std::string& why) {
    if (!regions_.init(why)) return false;
    for (Region* r : regions_.list()) pool(w, *r);
    return true;
}

// The worker's pool for the region, made on first use (on the worker's own thread once it runs).
ConnectionPool& UpstreamService::pool(Worker& w, Region& r) {
    if (w.pools.size() <= r.index) w.pools.resize(r.index + 1);
    auto& p = w.pools[r.index];
    if (!p) {
        PoolOptions po;
        po.connect_timeout = milliseconds(cfg_.upstream.connect_timeout_ms);
        po.idle_timeout = milliseconds(cfg_.upstream.pool_idle_timeout_ms);
        po.max_idle = cfg_.upstream.pool_size;
        // An answer above response.max_body_bytes is refused anyway: never read (or reserve) more than that.
        po.max_response_bytes =
            std::min<std::size_t>(cfg_.upstream.max_response_bytes, cfg_.response.max_body_bytes);
        po.dns_refresh = std::chrono::seconds(cfg_.upstream.dns_refresh_s);
        po.proxy = regions_.proxy();
        p = std::make_unique<ConnectionPool>(w.ioc.get_executor(), r.ep, r.tls, po, &metrics_);
    }
    return *p;
}

asio::awaitable<void> UpstreamService::call(Worker& w, const FetchJob& job, UpstreamResult& out) {
    Region& r = *job.region;
    Attempt a;
    a.max_attempts = cfg_.retry.max_attempts;
    a.started = steady::now();
    a.deadline = a.started + milliseconds(cfg_.retry.deadline_ms);
    if (job.deadline != steady::time_point{}) a.deadline = std::min(a.deadline, job.deadline);
    BudgetScope budget(r.budget);
    // The breaker decides whether a fetch may start; its retries are bounded by the budget instead, so the
    // requests in flight when the upstream fails still get their retries on fresh connections.
    if (!r.breaker.allow(a.started)) {
        out.refused = LocalError(503, "upstream circuit breaker is open", ErrorSource::upstream, "breaker");
        out.refused_as_outage = true;
        co_return;
    }
    for (;;) {
        {
            // One attempt: a concurrency slot, the request with credentials, the exchange on the worker's
            // pool (in this coroutine: a coroutine of its own cost a frame and a trip through Asio's
            // awaitable machinery per miss). The slot is given back at the end of this block, before any
            // backoff.
            ConcurrencyLimiter::Permit permit = r.limiter.try_acquire();  // a slot free at once: no coroutine
            if (!permit)
                permit = co_await r.limiter.acquire(
                    std::min(a.deadline, steady::now() + milliseconds(cfg_.upstream.queue_timeout_ms)));
            if (!permit) {
                out.refused = LocalError(503, "too many concurrent upstream requests", ErrorSource::internal,
                                         "overload")
                                  .with("Retry-After", "1");
                break;
            }
            UpstreamRequest req = build_request(job);
            const CredentialTarget target{r.name, job.project_id, &r.ep};
            if (regions_.multi()) co_await creds_->prepare(target, a.deadline);
            std::string why;
            if (!creds_->apply(req, target, sys::now(), a.used, why)) {
                out.refused = LocalError(503, std::move(why), ErrorSource::internal, "credentials");
                break;
            }
            ++out.attempts;
            const auto t0 = steady::now();
            co_await pool(w, r).exchange(
                req, std::min(a.deadline, t0 + milliseconds(cfg_.upstream.request_timeout_ms)), out.last);
            const bool answered = out.last.error == UpstreamResponse::Error::none;
            const double secs = std::chrono::duration<double>(steady::now() - t0).count();
            if (regions_.multi())
                metrics_.upstream_done(r.label, answered ? out.last.status : 0, out.attempts, secs);
            else
                metrics_.upstream_done(answered ? out.last.status : 0, out.attempts, secs);
        }
        budget.retry_done();
        const auto now = steady::now();
        RetryState st{out.attempts,
                      a.max_attempts,
                      a.renewed,
                      now,
                      a.deadline,
                      backoff_delay(out.attempts, milliseconds(cfg_.retry.base_backoff_ms),
                                    milliseconds(cfg_.retry.max_backoff_ms)),
                      r.budget.has_room()};
        const RetryDecision d = decide_retry(AttemptResult::from(out.last, sys::now()), st);
        tell_breaker(r, d.breaker, out.last);
        if (log_enabled(LogLevel::debug))
            log(LogLevel::debug,
                "upstream attempt " + std::to_string(out.attempts) + ": " +
                    (out.last.error == UpstreamResponse::Error::none
                         ? "HTTP " + std::to_string(out.last.status)
                         : std::string(error_name(out.last.error))) +
                    (out.last.reused_connection ? " (pooled connection)" : " (new connection)") +
                    "; next: " + std::string(d.why),
                job.log_ids());
        if (d.next == Next::stop) break;
        if (d.next == Next::renew_and_retry) {
            a.renewed = true;
            const CredentialTarget target{r.name, job.project_id, &r.ep};
            if (!co_await creds_->renew_after_rejection(target, a.used, a.deadline)) break;
            ++a.max_attempts;  // the attempt after a renewal is extra
            continue;
        }
        if (!budget.start_retry()) break;
        co_await sleep_until(now + d.delay);
    }
    out.ms = std::chrono::duration<double, std::milli>(steady::now() - a.started).count();
}

FetchJob::FetchJob(const Ids& ids) {
    const std::string_view parts[] = {ids.project_id, ids.backup_id, ids.cache_key, ids.request_id,
                                      ids.language,   ids.trace_id,  ids.span_id,   ids.upstream_span_id,
                                      ids.flags,      ids.tracestate};
    const bool traced = !ids.trace_id.empty();
    std::size_t size = 0;
    for (auto p : parts) size += p.size();
    if (traced) size += 5 + ids.trace_id.size() + ids.upstream_span_id.size() + ids.flags.size();
    text_.reserve(size);  // no reallocation below: the views stay valid
    auto keep = [this](std::string_view v) {
        const std::size_t at = text_.size();
        text_.append(v);
        return std::string_view(text_).substr(at, v.size());
    };
    project_id = keep(ids.project_id);
    backup_id = keep(ids.backup_id);
    cache_key = keep(ids.cache_key);
    request_id = keep(ids.request_id);
    language = keep(ids.language);
    trace_id = keep(ids.trace_id);
    span_id = keep(ids.span_id);
    upstream_span_id = keep(ids.upstream_span_id);
    flags = keep(ids.flags);
    tracestate = keep(ids.tracestate);
    if (traced) {
        const std::size_t at = text_.size();
        append_traceparent(text_, ids.trace_id, ids.upstream_span_id, ids.flags);
        traceparent = std::string_view(text_).substr(at);
    }
}

UpstreamRequest UpstreamService::build_request(const FetchJob& job) const {
    UpstreamRequest req;
    req.target.reserve(40 + 3 * (job.project_id.size() + job.backup_id.size()));
    req.target += "/v3/";
    sdk_uri_encode_to(req.target, job.project_id);
    req.target += "/backup-files?backup_id=";
    sdk_uri_encode_to(req.target, job.backup_id);
    req.headers.reserve(8);
    req.headers.emplace_back("Accept", "application/json");
    req.headers.emplace_back("Accept-Encoding", "identity");
    req.headers.emplace_back("User-Agent", "rds-gateway/" RDSGW_VERSION);
    req.headers.emplace_back("X-Request-Id", job.request_id);
    if (!job.language.empty()) req.headers.emplace_back("X-Language", job.language);
    if (!job.trace_id.empty()) {
        req.headers.emplace_back("traceparent", job.traceparent);
        if (!job.tracestate.empty()) req.headers.emplace_back("tracestate", job.tracestate);
    }
    if (creds_->kind() == "aksk") req.headers.emplace_back("X-Project-Id", job.project_id);
    return req;
}

void UpstreamService::tell_breaker(Region& r, BreakerSignal signal, const UpstreamResponse& res) {
    switch (signal) {
        case BreakerSignal::failure:
            r.breaker.on_failure(steady::now());
            break;
        case BreakerSignal::success:
            r.breaker.on_success();
            break;
        case BreakerSignal::none:
            break;
    }
    if (res.error == UpstreamResponse::Error::none && res.status < 500) {
        r.last_success_ms.store(
            std::chrono::duration_cast<milliseconds>(sys::now().time_since_epoch()).count(),
            std::memory_order_relaxed);
    }
}

}  // namespace rdsgw
