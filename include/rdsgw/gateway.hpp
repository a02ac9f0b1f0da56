// The request pipeline. For a backup-files request the phases run in this order (README, "The life of one
// request"); each either continues or ends the exchange with a local reply (LocalError) or an answer:
//
//   route -> authenticate -> validate -> authorize -> rate-limit -> cache lookup      (inline: begin())
//     -> resolve region -> single-flight -> [leader: upstream -> interpret/normalize -> store] -> deliver
//     (a miss, or a step that needed Redis: continue_async())
//     -> respond
//
// Regions are resolved on misses only: a hit never looks a project's region up.
//
// The session (session.cpp) does the HTTP I/O: it builds the Exchange, calls begin() and, only when that
// says the upstream is needed, co_awaits continue_async(); then it writes exchange.response and calls
// finish(), which feeds the metrics and the access log from the exchange, once.
#pragma once
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "rdsgw/cache.hpp"
#include "rdsgw/caller_auth.hpp"
#include "rdsgw/config.hpp"
#include "rdsgw/credentials.hpp"
#include "rdsgw/discovery.hpp"
#include "rdsgw/exchange.hpp"
#include "rdsgw/log.hpp"
#include "rdsgw/metrics.hpp"
#include "rdsgw/normalize.hpp"
#include "rdsgw/regions.hpp"
#include "rdsgw/request.hpp"
#include "rdsgw/shared_cache.hpp"
#include "rdsgw/status.hpp"
#include "rdsgw/upstream_service.hpp"

namespace rdsgw {

// The callers' registry and the two reloadable switches, swapped as a whole on SIGHUP.
class CallerSet {
  public:
    CallerSet(const CallersConfig& cfg);
    // A per-thread snapshot, refreshed when a reload bumped the generation: no shared lock per request.
    std::shared_ptr<const CallerRegistry> snapshot() const;
    void reload(const CallersConfig& cfg);
    bool required() const { return required_.load(std::memory_order_relaxed); }
    bool metrics_require_auth() const { return metrics_require_auth_.load(std::memory_order_relaxed); }

  private:
    mutable std::mutex mu_;
    std::shared_ptr<const CallerRegistry> registry_;
    std::atomic<std::uint64_t> gen_{1};
    std::atomic<bool> required_{true}, metrics_require_auth_{false};
};

class Gateway {
  public:
    Gateway(Config cfg, std::unique_ptr<CredentialSource> creds, Metrics& metrics, AccessLog& access_log);
    ~Gateway();

    // Builds the per-thread parts of a worker (its upstream pool) and starts background work on worker 0.
    bool init_worker(Worker& w, std::string& why) {
        return start_shared_tier(why) && upstream_.init_worker(w, why);
    }
    void start_background(Worker& w0);

    // The inline phases, up to and including the cache lookup. False: the exchange is answered (its
    // response is ready). True: it needs the upstream; co_await continue_async() on the same thread.
    bool begin(Exchange& x);
    boost::asio::awaitable<void> continue_async(Worker& w, Exchange& x);
    // Maps the exchange's error or answer to its response (the one place a LocalError becomes bytes).
    // begin() and continue_async() call it; the session calls it for refusals it makes itself.
    void respond(Exchange& x);
    // After the response was written: request metrics and the access-log line.
    void finish(const Exchange& x);

    // SIGHUP: re-read secrets and the callers' list from `cfg` (other settings need a restart).
    void reload(const Config& cfg);
    void set_listening(bool v) { listening_ = v; }
    void set_draining(bool v) { draining_ = v; }
    bool draining() const { return draining_; }
    const Config& config() const { return cfg_; }
    Metrics& metrics() { return metrics_; }
    AccessLog& access_log() { return access_log_; }
    LinkCache* cache() { return cache_.get(); }
    CredentialSource& credentials() { return upstream_.credentials(); }
    StatusBoard& status_board() { return *status_; }

  private:
    // Phases (gateway.cpp); each returns true to continue.
    bool route(Exchange& x);
    bool authenticate(Exchange& x);  // the pipeline's phase: a no-op while callers.required is false
    // A caller from the list, whatever callers.required says (/metrics, the status page and the purge with
    // callers.metrics_require_auth). False with x.error set (401) otherwise.
    bool authenticate_caller(Exchange& x);
    bool validate(Exchange& x);
    bool authorize(Exchange& x);
    bool rate_limit(Exchange& x);
    bool cache_lookup(Exchange& x, std::chrono::system_clock::time_point now);
    // Which region serves the project (regions.hpp) when there are several; 404 when none does. May await an
    // on-demand discovery. (With one region continue_async takes it without a coroutine.)
    boost::asio::awaitable<bool> resolve_region(Exchange& x, FetchJob& job);
    std::shared_ptr<FetchJob> new_job(const Exchange& x) const;
    // The leader's fetch: [shared tier,] upstream, then fetched(). Without the shared tier continue_async
    // fetches itself (the upstream call, then fetched()).
    boost::asio::awaitable<FetchPtr> fetch(Worker& w, std::shared_ptr<const FetchJob> job);
    // What the upstream attempts came to, as the fetch's outcome: counted, interpreted (normalized), stored.
    FetchPtr fetched(const FetchJob& job, const UpstreamResult& up);
    FetchPtr interpret(const FetchJob& job, const UpstreamResult& up);
    FetchPtr accept_answer(const FetchJob& job, const UpstreamResponse& last,
                           std::shared_ptr<FetchOutcome>& out);
    FetchPtr refuse(const FetchJob& job, std::shared_ptr<FetchOutcome>& out, std::string_view reason,
                    std::string msg);
    void store(const FetchJob& job, const FetchOutcome& out);
    bool echoes_credential(const FetchJob& job, const UpstreamResponse& r);
    // The shared tier (shared_tier.cpp; only with redis.enabled).
    bool start_shared_tier(std::string& why);
    boost::asio::awaitable<FetchPtr> shared_lookup(const FetchJob& job, bool& lock_held);
    void shared_store(const FetchJob& job, const FetchPtr& out, bool lock_held,
                      boost::asio::any_io_executor ex);
    boost::asio::awaitable<bool> shared_rate_limit(Exchange& x);
    boost::asio::awaitable<bool> purge_everywhere(Exchange& x);
    bool purge_request(Exchange& x, std::string& project, std::string& backup);
    void deliver(Exchange& x, const SingleFlight::Result& r);
    bool serve_stale(Exchange& x, const FetchOutcome* o);
    bool fail(Exchange& x, LocalError e) const;
    void debug_begin(const Exchange& x, bool needs_upstream) const;
    // An upstream answer the gateway refused to serve: rdsgw_upstream_answers_refused_total{reason} and the
    // status board. reason: "contract" | "encoding" | "expiring" | "credential_echo" (never a body's value).
    void answer_refused(std::string_view reason) const;
    void collect_regions(Metrics& m);  // the breaker and credential gauges (a metrics collect hook)

    // The other routes (admin.cpp).
    void readiness(Exchange& x);
    void region_readiness(boost::json::object& checks, bool& ready, std::string& reason);
    void metrics_page(Exchange& x);
    void admin_cache(Exchange& x);
    // The status page and status.json (status_page.cpp).
    void status_page(Exchange& x);
    LiveStatus live_status();

    Config cfg_;
    RequestRules rules_;
    NormalizeOptions norm_;
    Metrics& metrics_;
    AccessLog& access_log_;
    CallerSet callers_;
    CacheOptions cache_opts_;
    std::unique_ptr<LinkCache> cache_;
    std::unique_ptr<SharedCache> l2_;  // Redis, when redis.enabled
    SingleFlight flights_;
    Regions regions_;
    UpstreamService upstream_;
    std::unique_ptr<StatusBoard> status_;
    std::unique_ptr<ProjectDiscovery> discovery_;  // projects.discovery.enabled
    std::atomic<bool> listening_{false}, draining_{false};
};

}  // namespace rdsgw
