// The request pipeline: route -> authenticate caller -> validate -> authorize -> rate limit -> cache ->
// single-flight -> upstream (credentials, retries) -> normalize -> store -> respond. The session (server.hpp)
// does the HTTP I/O; everything a request needs to be answered is decided here.
#pragma once
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/verb.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "rdsgw/cache.hpp"
#include "rdsgw/caller_auth.hpp"
#include "rdsgw/config.hpp"
#include "rdsgw/credentials.hpp"
#include "rdsgw/log.hpp"
#include "rdsgw/metrics.hpp"
#include "rdsgw/normalize.hpp"
#include "rdsgw/request.hpp"
#include "rdsgw/resilience.hpp"
#include "rdsgw/upstream.hpp"

namespace rdsgw {

// Per-thread state: the thread's io_context and its upstream connection pool.
struct Worker {
    unsigned index = 0;
    boost::asio::io_context ioc{1};
    std::unique_ptr<ConnectionPool> pool;
};

struct RequestView {
    boost::beast::http::verb method;
    std::string_view method_string;
    std::string_view target;
    Route route = Route::not_found;  // classify(target), computed once by the session
    const boost::beast::http::fields* fields = nullptr;
    std::string_view client_addr;
    std::string_view tls_subject;  // verified client certificate subject (mTLS), "" when none
    bool admin_listener = false;
};

struct Response {
    unsigned status = 200;
    std::string_view content_type = "application/json";
    AnswerPtr shared_body;  // when set, the body is shared_body->body (cached bytes, not copied)
    std::string body;       // otherwise this
    std::vector<std::pair<std::string_view, std::string>> headers;  // extra headers (names are literals)
    bool close = false;

    // For the access log and metrics.
    std::string_view cache;  // "HIT" | "MISS" | "COALESCED" | "STALE" | "BYPASS" | ""
    std::string caller;
    std::string project_id, backup_id;
    unsigned upstream_status = 0;
    unsigned attempts = 0;
    double upstream_ms = -1;

    std::string_view body_view() const { return shared_body ? std::string_view(shared_body->body) : body; }
};

// Builds the gateway's own error body {"error_code":"RDSGW.<status>","error_msg":...,"request_id":...}.
std::string make_error_body(unsigned status, std::string_view message, std::string_view request_id);

class Gateway {
  public:
    Gateway(Config cfg, std::unique_ptr<CredentialSource> creds, Metrics& metrics, AccessLog& access_log);
    ~Gateway();

    // Builds the per-thread parts of a worker (its upstream pool) and starts background work on worker 0.
    bool init_worker(Worker& w, std::string& why);
    void start_background(Worker& w0);

    // What a cache miss still needs after the synchronous checks: the upstream part of the pipeline.
    struct Pending {
        std::string key, project_id, backup_id, language, caller;
        bool no_cache = false;
        AnswerPtr stale;  // a cached answer past its TTL, servable if the upstream fails
    };
    // The synchronous part of the pipeline (routing, caller checks, validation, cache hits): a Response, or
    // Pending when the upstream must be asked (then call backup_files_fetch on the same thread).
    std::variant<Response, Pending> prepare(const RequestView& rq, const std::string& request_id);
    boost::asio::awaitable<Response> backup_files_fetch(Worker& w, Pending& p, const std::string& request_id);
    // Both in one.
    boost::asio::awaitable<Response> handle(Worker& w, const RequestView& rq, const std::string& request_id);

    // SIGHUP: re-read secrets and the callers' list from `cfg` (other settings need a restart).
    void reload(const Config& cfg);
    void set_listening(bool v) { listening_ = v; }
    void set_draining(bool v) { draining_ = v; }
    bool draining() const { return draining_; }
    const Config& config() const { return cfg_; }
    Metrics& metrics() { return metrics_; }
    AccessLog& access_log() { return access_log_; }
    LinkCache* cache() { return cache_.get(); }
    CredentialSource& credentials() { return *creds_; }

    // Access log line for one answered request.
    std::string access_line(const RequestView& rq, const Response& r, const std::string& request_id,
                            std::size_t bytes_sent, double total_ms) const;

  private:
    struct Fetch;
    std::variant<Response, Pending> backup_files_sync(const RequestView& rq, const std::string& request_id);
    Response finish(Pending& p, Response r) const;
    Response serve_cached(Pending& p, const AnswerPtr& a, std::string_view cache_state) const;
    boost::asio::awaitable<FetchPtr> fetch_upstream(Worker& w, std::string project_id, std::string backup_id,
                                                    std::string request_id, std::string language);
    Response readiness();
    Response admin_cache(const RequestView& rq, const std::string& request_id);
    Response error(unsigned status, std::string_view msg, const std::string& request_id) const;
    Response auth_failed(const AuthOutcome& out, const std::string& request_id);
    Response from_outcome(const FetchOutcome& o, const std::string& request_id) const;
    std::shared_ptr<const CallerRegistry> callers() const;

    Config cfg_;
    RequestRules rules_;
    NormalizeOptions norm_;
    std::unique_ptr<CredentialSource> creds_;
    Metrics& metrics_;
    AccessLog& access_log_;
    Endpoint upstream_ep_;
    std::shared_ptr<boost::asio::ssl::context> upstream_tls_;
    std::unique_ptr<LinkCache> cache_;
    SingleFlight flights_;
    RetryBudget budget_;
    CircuitBreaker breaker_;
    ConcurrencyLimiter limiter_;
    mutable std::mutex callers_mu_;
    std::shared_ptr<const CallerRegistry> callers_;
    std::atomic<std::uint64_t> callers_gen_{1};
    std::atomic<bool> callers_required_{true}, metrics_require_auth_{false};  // reloadable on SIGHUP
    std::atomic<bool> listening_{false}, draining_{false};
    std::atomic<std::int64_t> last_upstream_success_ms_{0};
};

}  // namespace rdsgw
