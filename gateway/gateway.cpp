#include "rdsgw/gateway.hpp"

#include <boost/asio.hpp>
#include <cmath>

#include "rdsgw/async_util.hpp"
#include "rdsgw/resilience.hpp"
#include "rdsgw/retry_policy.hpp"
#include "rdsgw/secret_scan.hpp"
#include "rdsgw/text.hpp"
#include "rdsgw/trace.hpp"
#include "rdsgw/upstream_answer.hpp"

namespace rdsgw {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using steady = std::chrono::steady_clock;
using sys = std::chrono::system_clock;
using std::chrono::milliseconds;

namespace {

std::vector<CallerDef> caller_defs(const CallersConfig& cfg, std::vector<std::string>& problems) {
    std::vector<CallerDef> defs;
    for (const auto& c : cfg.list) {
        CallerDef d;
        d.name = c.name;
        d.api_key_sha256 = c.api_key_sha256;
        d.access_key = c.access_key;
        if (!c.access_key.empty()) {
            std::string why;
            if (!load_secret(c.secret_key, d.secret_key, why)) {
                problems.push_back("callers." + c.name + ".secret_key: " + why);
                d.access_key.clear();  // the AK cannot be verified without its SK
            }
        }
        d.cert_subjects = c.cert_subjects;
        d.projects = c.projects;
        d.rate_per_s = c.rate_per_s;
        d.burst = c.burst;
        defs.push_back(std::move(d));
    }
    return defs;
}

// Whether a request asks for a fresh answer (README "The cache"): Cache-Control no-cache or max-age=0
// (RFC 9111 §5.2.1.4, §5.2.1.1: no answer older than 0 s will do; the value may be quoted and have leading
// zeros; max-age above 0 or malformed is ignored), or Pragma: no-cache. Every line of a repeated header
// counts (Beast's find() gives the first only); one pass over the fields.
bool asks_for_fresh(const RequestFields& f) {
    const auto fresh = [](std::string_view directive, bool cache_control) {
        const auto eq = directive.find('=');
        const std::string_view name = trim_ows(directive.substr(0, eq));
        if (ascii_iequals(name, "no-cache")) return true;
        if (!cache_control || eq == std::string_view::npos || !ascii_iequals(name, "max-age")) return false;
        std::string_view n = trim_ows(directive.substr(eq + 1));
        if (n.size() >= 2 && n.front() == '"' && n.back() == '"') n = n.substr(1, n.size() - 2);
        return !n.empty() && n.find_first_not_of('0') == std::string_view::npos;
    };
    for (const auto& field : f) {
        const bool cache_control = field.name() == http::field::cache_control;
        if (!cache_control && field.name() != http::field::pragma) continue;
        if (!for_each_list_element(field.value(),
                                   [&](std::string_view d) { return !fresh(d, cache_control); }))
            return true;
    }
    return false;
}

// The upstream's Retry-After (either form) as the gateway's own whole seconds, capped; "" when absent or
// malformed.
std::string retry_after_seconds(std::string_view v) {
    if (v.empty()) return {};
    auto d = parse_retry_after(v, sys::now());
    if (!d) return {};
    auto s = std::min<long long>((d->count() + 999) / 1000, 3600);
    return std::to_string(s);
}

// " after 3 attempts (last: upstream closed the connection without answering)"
std::string describe_attempts(const UpstreamResult& up) {
    std::string s = " after " + std::to_string(up.attempts) + (up.attempts == 1 ? " attempt" : " attempts");
    if (up.last.error != UpstreamResponse::Error::none)
        s += " (last: " + up.last.error_detail + ")";
    else if (up.last.status)
        s += " (last: HTTP " + std::to_string(up.last.status) + ")";
    return s;
}

}  // namespace

// ------------------------------------------------------------------------------------------- CallerSet

CallerSet::CallerSet(const CallersConfig& cfg) {
    reload(cfg);
}

std::shared_ptr<const CallerRegistry> CallerSet::snapshot() const {
    thread_local const CallerSet* owner = nullptr;
    thread_local std::uint64_t gen = 0;
    thread_local std::shared_ptr<const CallerRegistry> snap;
    const std::uint64_t now_gen = gen_.load(std::memory_order_acquire);
    if (owner != this || gen != now_gen || !snap) {
        std::lock_guard lk(mu_);
        snap = registry_;
        gen = now_gen;
        owner = this;
    }
    return snap;
}

void CallerSet::reload(const CallersConfig& cfg) {
    std::vector<std::string> problems;
    std::shared_ptr<const CallerRegistry> reg;
    try {
        reg = std::make_shared<const CallerRegistry>(caller_defs(cfg, problems));
    } catch (const std::exception& e) {  // config validation refuses these first; never end the process
        log_error(std::string("callers not loaded: ") + e.what());
        if (registry_) return;
        reg = std::make_shared<const CallerRegistry>(std::vector<CallerDef>{});
    }
    for (auto& p : problems) log_error(p);
    {
        std::lock_guard lk(mu_);
        // A reload neither refills nor empties buckets.
        if (registry_) reg->adopt_rate_state(*registry_, steady::now());
        registry_ = std::move(reg);
        gen_.fetch_add(1, std::memory_order_release);
    }
    required_.store(cfg.required);
    metrics_require_auth_.store(cfg.metrics_require_auth);
}

// --------------------------------------------------------------------------------------------- Gateway

Gateway::Gateway(Config cfg, std::unique_ptr<CredentialSource> creds, Metrics& metrics, AccessLog& access_log)
    : cfg_(std::move(cfg)),
      rules_(cfg_.request),
      metrics_(metrics),
      access_log_(access_log),
      callers_(cfg_.callers),
      flights_(SingleFlight::Options{cfg_.cache.max_waiters, milliseconds(cfg_.cache.wait_timeout_ms)}),
      regions_(cfg_, metrics),
      upstream_(cfg_, regions_, std::move(creds), metrics),
      status_(std::make_unique<StatusBoard>()) {
    if (regions_.multi()) metrics_.enable_region_labels();
    if (cfg_.projects.discovery.enabled && upstream_.credentials().iam())
        discovery_ =
            std::make_unique<ProjectDiscovery>(cfg_.projects.discovery, regions_, upstream_.credentials(),
                                               metrics_, milliseconds(cfg_.upstream.request_timeout_ms));
    norm_.max_body_bytes = cfg_.response.max_body_bytes;
    norm_.allow_http_links = cfg_.response.allow_http_links;
    norm_.link_host_suffixes = cfg_.response.link_host_suffixes;
    norm_.drop_unknown_fields = cfg_.response.drop_unknown_fields;
    norm_.emit_legacy_expiry_field = cfg_.response.emit_legacy_expiry_field;
    CacheOptions& co = cache_opts_;
    if (cfg_.cache.enabled) {
        co.max_entries = cfg_.cache.max_entries;
        co.max_bytes = cfg_.cache.max_bytes;
        co.ttl = std::chrono::seconds(cfg_.cache.ttl_s);
        co.expiry_margin = std::chrono::seconds(cfg_.cache.expiry_margin_s);
        co.negative_ttl = std::chrono::seconds(cfg_.cache.negative_ttl_s);
        CacheEvents ev;
        ev.on_evicted = [this] { metrics_.cache_event("evicted"); };
        ev.on_expired = [this] { metrics_.cache_event("expired"); };
        cache_ = std::make_unique<LinkCache>(co, std::move(ev));
    }
    metrics_.on_collect([this](Metrics& m) {
        if (cache_) m.set_cache(static_cast<double>(cache_->entries()), static_cast<double>(cache_->bytes()));
        m.set_singleflight_waiters(static_cast<double>(flights_.waiting()));
        collect_regions(m);
        m.set_access_log_dropped(static_cast<double>(access_log_.dropped()));
    });
}

Gateway::~Gateway() = default;

void Gateway::start_background(Worker& w0) {
    CredentialSource& creds = upstream_.credentials();
    creds.start(w0.ioc.get_executor());
    // Multi-region IAM: the statically mapped projects' tokens ahead of their first requests.
    std::size_t n = 0;
    for (const auto& [project, region] : cfg_.projects.static_map)
        if (n++ < cfg_.auth.iam.max_tokens) creds.prefetch(project, region);
    if (discovery_) discovery_->start();
}

// The breaker and credential gauges: unlabelled with one region, per region (bounded labels) with several.
void Gateway::collect_regions(Metrics& m) {
    const auto now = sys::now();
    CredentialSource& creds = upstream_.credentials();
    if (!regions_.multi()) {
        m.set_credential_expiry_seconds(creds.status(now).seconds_to_expiry);
        m.set_breaker_state(static_cast<int>(regions_.only().breaker.state()));
        return;
    }
    for (Region* r : regions_.list()) {
        if (r->label == "other") continue;
        m.set_breaker_state(r->label, static_cast<int>(r->breaker.state()));
        // A region whose projects' tokens come on first need may have none yet and still be ready: no
        // expiry to report then (-1 would read as "no credential" to the alert rules).
        const auto st = creds.region_status(r->name, now);
        if (!(st.ready && st.seconds_to_expiry < 0))
            m.set_credential_expiry_seconds(r->label, st.seconds_to_expiry);
    }
    if (auto pm = regions_.projects()) m.set_projects_known(static_cast<double>(pm->size()));
}

void Gateway::reload(const Config& cfg) {
    std::string why;
    if (!upstream_.credentials().reload(why))
        log_error("SIGHUP: upstream credentials not reloaded: " + why);
    else
        log_info("SIGHUP: upstream credentials reloaded");
    if (!regions_.reload(why)) log_error("SIGHUP: proxy credentials not reloaded: " + why);
    if (!cfg.callers.required && callers_.required())
        log_warn(
            "callers.required is false: ANY client that reaches this port can fetch backup download links");
    callers_.reload(cfg.callers);
    log_info("SIGHUP: callers reloaded (" + std::to_string(cfg.callers.list.size()) + ")");
    access_log_.reopen();
}

// ------------------------------------------------------------------------------------ the pipeline

bool Gateway::begin(Exchange& x) {
    const bool needs_upstream = route(x) && authenticate(x) && validate(x) && authorize(x) && rate_limit(x) &&
                                cache_lookup(x, x.wall_started);
    if (log_enabled(LogLevel::debug)) debug_begin(x, needs_upstream);
    if (needs_upstream || x.pending != PendingStep::none) return true;
    respond(x);
    return false;
}

// The fetch's job: the exchange's ids and trace context with a span of its own, and its deadline.
std::shared_ptr<FetchJob> Gateway::new_job(const Exchange& x) const {
    thread_local std::string upstream_span_id;  // storage kept per thread: the job copies it
    new_span_id(upstream_span_id);
    auto job = std::make_shared<FetchJob>(FetchJob::Ids{
        .project_id = x.project_id,
        .backup_id = x.backup_id,
        .cache_key = x.cache_key,
        .request_id = x.request_id,
        .language = x.language,
        .trace_id = x.trace.trace_id,
        .span_id = x.trace.span_id,
        .upstream_span_id = upstream_span_id,
        .flags = x.trace.flags,
        .tracestate = x.trace.tracestate,
    });
    job->no_cache = x.no_cache;
    job->deadline = steady::now() + milliseconds(cfg_.retry.deadline_ms);
    return job;
}

// A miss (or a step that needed Redis first), then the answer. One coroutine for the whole fetch phase: each
// coroutine layer costs a frame and a trip through Asio's awaitable machinery (about 460 instructions).
asio::awaitable<void> Gateway::continue_async(Worker& w, Exchange& x) {
    // A step that needed Redis (shared tier) first: the shared rate limit, or a purge of every instance.
    bool go_on = true;
    if (x.pending == PendingStep::purge)
        go_on = co_await purge_everywhere(x);
    else if (x.pending == PendingStep::rate_limit)
        go_on = co_await shared_rate_limit(x) && cache_lookup(x, sys::now());  // after a Redis round trip
    std::shared_ptr<FetchJob> job;
    if (go_on) {
        job = new_job(x);
        if (!regions_.multi())
            job->region = &regions_.only();  // one region: no lookup, no coroutine
        else
            go_on = co_await resolve_region(x, *job);  // false: no region serves the project (404)
    }
    if (go_on) {
        std::function<FetchPtr()> recheck;
        if (cache_ && !x.no_cache) {
            recheck = [this, &x]() -> FetchPtr {
                auto found = cache_->get(x.cache_key, sys::now());
                if (!found.answer || !found.fresh) return nullptr;
                auto o = std::make_shared<FetchOutcome>();
                if (found.answer->status() == 502)
                    o->error = LocalError(502, std::string(found.answer->body()), ErrorSource::upstream);
                else
                    o->answer = std::move(found.answer);
                return o;
            };
        }
        SingleFlight::Result r;
        bool settled = false;
        if (!l2_ && cfg_.retry.deadline_ms <= cfg_.cache.wait_timeout_ms) {
            // Without the shared tier the fetch is all upstream, bounded by job->deadline, and so within the
            // waiters' wait_timeout (else run() below detaches it and the leader waits like the others, as
            // SingleFlight::run's fetch_within rule says): the leader fetches right here, with no coroutine
            // of single-flight's own and none for the fetch (two trips through Asio's awaitable machinery
            // fewer per miss). Callers that find a flight in progress join it through run() below.
            SingleFlight::Lead lead = flights_.lead(x.cache_key, recheck);
            if (lead.found()) {
                r.outcome = lead.found();
                r.role = SingleFlight::Role::waiter;
                r.rechecked = true;
                settled = true;
            } else if (lead.leads()) {
                FetchPtr out;
                try {
                    UpstreamResult up;
                    co_await upstream_.call(w, *job, up);
                    out = fetched(*job, up);
                } catch (...) {  // as run() treats a fetch that throws: a null outcome for everyone
                    out = nullptr;
                }
                lead.finish(out);
                r.outcome = std::move(out);
                r.role = SingleFlight::Role::leader;
                settled = true;
            }
        }
        if (!settled) {
            // Named objects, not temporaries, in the co_await: GCC 12 mishandles temporaries with non-trivial
            // destructors in co_await expressions (double destruction).
            std::function<asio::awaitable<FetchPtr>()> start =
                [this, &w, job = std::shared_ptr<const FetchJob>(job)] { return fetch(w, job); };
            // run() makes this caller the leader too when the flight lead() saw has left meanwhile. The fetch
            // ends by job->deadline, within retry.deadline_ms of now, when it is all upstream: run() fetches
            // in this coroutine when that is within wait_timeout_ms (as lead() above would have). With the
            // shared tier its Redis steps are bounded by redis.op_timeout_ms rather than the deadline: no
            // bound is claimed, and the leader waits on a detached fetch, at most wait_timeout_ms.
            std::optional<steady::duration> fetch_within;
            if (!l2_) fetch_within = milliseconds(cfg_.retry.deadline_ms);
            // Initialized from the co_await, then copied: no temporary Result in the co_await expression.
            const SingleFlight::Result joined =
                co_await flights_.run(x.cache_key, std::move(start), std::move(recheck), fetch_within);
            r = joined;
        }
        deliver(x, r);
        x.pending = PendingStep::none;
        if (log_enabled(LogLevel::debug))
            log(LogLevel::debug,
                std::string(r.role == SingleFlight::Role::leader ? "fetched as the leader"
                            : r.rechecked                        ? "found the answer a flight had just stored"
                                                                 : "waited for another caller's fetch") +
                    ": cache " + std::string(cache_state_name(x.cache)) + ", " +
                    (x.error ? "error " + std::to_string(x.error->status)
                             : "answer " + std::to_string(x.answer->status())),
                x.log_ids());
    }
    respond(x);
}

// Debug: what the inline phases decided (never a secret or a link: ids, states and statuses only).
void Gateway::debug_begin(const Exchange& x, bool needs_upstream) const {
    std::string m = "route " + std::string(route_name(x.route));
    if (x.caller) m += ", caller " + x.caller->name();
    if (x.error)
        m += ", refused: " + std::to_string(x.error->status) + " " + x.error->message;
    else if (needs_upstream)
        m += std::string(", cache miss") + (x.no_cache ? " (no-cache)" : "") +
             (x.stale ? ", a stale answer is kept" : "");
    else if (x.cache == CacheState::hit)
        m += ", cache hit";
    log(LogLevel::debug, m, x.log_ids());
}

// ------------------------------------------------------------------------------------------ phases

bool Gateway::fail(Exchange& x, LocalError e) const {
    x.error = std::move(e);
    return false;
}

namespace {

// The target's form, checked before any route but backup-files is served (validate checks it there, after
// authentication). The Host header, port included, is the framing checks' (check_framing).
std::optional<LocalError> front_checks(const Exchange& x) {
    if (x.route == Route::backup_files) return std::nullopt;
    if (auto why = check_target(x.target); !why.empty())
        return LocalError(400, std::move(why), ErrorSource::caller, "validation");
    return std::nullopt;
}

}  // namespace

bool Gateway::route(Exchange& x) {
    const bool admin_here = cfg_.admin.enabled ? x.admin_listener : true;
    if (x.admin_listener && x.route == Route::backup_files) x.route = Route::not_found;
    if (!admin_here &&
        (x.route == Route::metrics || x.route == Route::admin_cache || x.route == Route::status))
        x.route = Route::not_found;
    if (x.route == Route::admin_cache && !cfg_.admin.enabled) x.route = Route::not_found;
    if (auto e = front_checks(x)) return fail(x, std::move(*e));

    const bool get_or_head = x.method == http::verb::get || x.method == http::verb::head;
    if (!get_or_head && x.route != Route::admin_cache && x.route != Route::not_found)
        return fail(x, LocalError(405, "method not allowed", ErrorSource::caller).with("Allow", "GET, HEAD"));
    switch (x.route) {
        case Route::backup_files:
            return true;
        case Route::healthz:
            x.response.body = "{\"status\":\"ok\"}";
            return false;
        case Route::readyz:
            readiness(x);
            return false;
        case Route::metrics:
            metrics_page(x);
            return false;
        case Route::admin_cache:
            admin_cache(x);
            return false;
        case Route::status:
            status_page(x);
            return false;
        case Route::not_found:
            break;
    }
    return fail(x, LocalError(404, "no such resource", ErrorSource::caller));
}

bool Gateway::authenticate(Exchange& x) {
    return !callers_.required() || authenticate_caller(x);
}

bool Gateway::authenticate_caller(Exchange& x) {
    x.registry = callers_.snapshot();
    thread_local std::vector<std::pair<std::string_view, std::string_view>> hs;  // storage kept per thread
    hs.clear();
    for (auto& f : *x.fields) hs.emplace_back(f.name_string(), f.value());
    const AuthOutcome out =
        x.registry->authenticate({x.method_string, x.target, hs, x.tls_subject, x.wall_started});
    hs.clear();
    if (out.caller) {
        x.caller = out.caller;
        return true;
    }
    metrics_.auth_failure(out.reason.empty() ? "invalid credentials" : out.reason);
    return fail(x, LocalError(401, out.reason.empty() ? "authentication failed" : out.reason,
                              ErrorSource::caller, "auth")
                       .with("WWW-Authenticate", "Bearer"));
}

bool Gateway::validate(Exchange& x) {
    if (auto e = parse_backup_files(x.target, rules_, x.project_id, x.backup_id)) {
        x.project_id.clear();
        x.backup_id.clear();
        return fail(x, LocalError(e->status, std::move(e->message), ErrorSource::caller, "validation"));
    }
    make_cache_key(x.cache_key, x.project_id, x.backup_id);
    if (cfg_.cache.honor_no_cache) x.no_cache = asks_for_fresh(*x.fields);
    if (auto it = x.fields->find("X-Language"); it != x.fields->end())
        x.language = valid_language(it->value());
    return true;
}

bool Gateway::authorize(Exchange& x) {
    // Same answer whether or not the project or backup exists.
    if (x.caller && !x.caller->may_read(x.project_id))
        return fail(
            x, LocalError(403, "this caller may not read this project", ErrorSource::caller, "forbidden"));
    return true;
}

bool Gateway::rate_limit(Exchange& x) {
    if (!x.caller) return true;
    if (l2_ && cfg_.redis.shared_rate_limits && x.caller->def().rate_per_s > 0) {
        x.pending = PendingStep::rate_limit;  // across instances: asks Redis (shared_rate_limit)
        return false;
    }
    double retry_after = 0;
    if (x.caller->try_acquire(steady::now(), retry_after)) return true;
    return fail(x, LocalError(429, "rate limit exceeded for this caller", ErrorSource::caller, "rate")
                       .with("Retry-After", std::to_string(static_cast<long long>(std::ceil(retry_after)))));
}

bool Gateway::cache_lookup(Exchange& x, sys::time_point now) {
    if (!cache_ || x.no_cache) return true;
    auto found = cache_->get(x.cache_key, now);
    if (found.answer && found.fresh) {
        metrics_.cache_event(found.answer->status() == 200 ? "hit" : "negative_hit");
        x.cache = CacheState::hit;
        x.found_at = now;                    // a hit's Age counts to the moment it was found (respond)
        x.answer = std::move(found.answer);  // a refusal's entry too: respond() takes Age from its fetch time
        if (x.answer->status() == 502)       // a recent refusal of the upstream's answer
            return fail(x, LocalError(502, std::string(x.answer->body()), ErrorSource::upstream));
        return false;
    }
    x.stale = std::move(found.answer);
    return true;
}

// One region: it serves every project. Several: the project map says which (static entries, then discovery,
// refreshed once on demand for an unknown project); a project no region serves is a 404 with no upstream
// call.
asio::awaitable<bool> Gateway::resolve_region(Exchange& x, FetchJob& job) {
    Regions::Found found = regions_.find(x.project_id);
    if (found.miss == Regions::Miss::unknown && discovery_) {
        const auto deadline = x.started + milliseconds(cfg_.retry.deadline_ms);
        if (co_await discovery_->refresh_for_unknown(deadline)) found = regions_.find(x.project_id);
    }
    if (!found.region) {
        if (log_enabled(LogLevel::debug))
            log_debug("request " + x.request_id + ": project " + x.project_id + " not served (" +
                      (found.miss == Regions::Miss::disabled    ? "disabled"
                       : found.miss == Regions::Miss::no_region ? "its region cannot be served"
                                                                : "unknown") +
                      ")");
        co_return fail(x, LocalError(404, "project is not served by this gateway", ErrorSource::caller,
                                     "unknown_project"));
    }
    job.region = found.region;
    x.region = found.region->name;
    co_return true;
}

// ------------------------------------------------------------------------ the leader's fetch

asio::awaitable<FetchPtr> Gateway::fetch(Worker& w, std::shared_ptr<const FetchJob> job) {
    // The shared tier first (when configured): another instance's answer, or its fetch in flight.
    bool lock_held = false;
    if (l2_ && !job->no_cache) {
        FetchPtr shared = co_await shared_lookup(*job, lock_held);
        if (shared) co_return shared;
    }
    UpstreamResult up;
    co_await upstream_.call(w, *job, up);
    FetchPtr out = fetched(*job, up);
    if (l2_) shared_store(*job, out, lock_held, co_await asio::this_coro::executor);
    co_return out;
}

FetchPtr Gateway::fetched(const FetchJob& job, const UpstreamResult& up) {
    status_->fetch(up.attempts, up.ms, steady::now());
    FetchPtr out = interpret(job, up);
    store(job, *out);
    return out;
}

namespace {

// A non-200 answer: a well-formed RDS error with a 4xx/5xx status passes through unchanged (status and body;
// README "Errors"); anything else is the gateway's 502 naming the status. Neither is a refusal (not cached
// as one; store() caches only 200s, 404s and refusals).
std::shared_ptr<FetchOutcome> rds_error_or_502(const UpstreamResult& up, std::shared_ptr<FetchOutcome> out) {
    const UpstreamResponse& last = up.last;
    out->upstream_failed = last.status >= 500;
    if (!passable_rds_error(last.status, last.body)) {
        const bool error_status = last.status >= 400 && last.status <= 599;
        out->error = LocalError(
            502,
            "upstream answered HTTP " + std::to_string(last.status) +
                (error_status ? " without an RDS error body" : ", which is neither 200 nor an error status") +
                (up.attempts > 1 ? describe_attempts(up) : ""),
            ErrorSource::upstream);
        return out;
    }
    AnswerFields answer;
    answer.status = last.status;
    answer.body = last.body;
    answer.upstream_request_id = out->upstream_request_id;
    answer.stored_at = sys::now();
    out->answer = CachedAnswer::make(answer);
    return out;
}

}  // namespace

// The upstream's answer (or the failure to get one) as the outcome every waiting caller receives.
FetchPtr Gateway::interpret(const FetchJob& job, const UpstreamResult& up) {
    auto out = std::make_shared<FetchOutcome>();
    const UpstreamResponse& last = up.last;
    out->attempts = up.attempts;
    out->upstream_ms = up.ms;
    out->upstream_status = last.status;
    if (is_sane_request_id(last.request_id)) out->upstream_request_id = last.request_id;
    out->retry_after = retry_after_seconds(last.retry_after);
    if (up.refused) {
        out->error = *up.refused;
        out->upstream_failed = up.refused_as_outage;
        return out;
    }
    if (last.error != UpstreamResponse::Error::none) {
        const auto tf = transport_failure(last.error);
        const bool never_retried = last.error == UpstreamResponse::Error::too_large;  // nothing more to say
        out->error =
            LocalError(tf.status, std::string(tf.text) + (never_retried ? "" : describe_attempts(up)),
                       ErrorSource::upstream);
        out->upstream_failed = true;
        return out;
    }
    if (echoes_credential(job, last)) {
        out->upstream_request_id.clear();  // nothing of such an answer goes on
        return refuse(job, out, "credential_echo", "upstream answer contained a gateway credential");
    }
    // Codings the gateway cannot (or was not asked to) decode: every field line counts, in any case.
    if (!identity_content_coding(last.content_encoding))
        return refuse(job, out, "encoding",
                      "upstream sent an encoded answer (Content-Encoding) although identity was requested");
    if (!plain_transfer_coding(last.transfer_encoding))
        return refuse(job, out, "encoding",
                      "upstream sent an encoded answer (Transfer-Encoding other than chunked) although none "
                      "was requested");
    if (last.status == 200) return accept_answer(job, last, out);
    return rds_error_or_502(up, std::move(out));
}

// A 200: normalized (the response contract), and never a dying link.
FetchPtr Gateway::accept_answer(const FetchJob& job, const UpstreamResponse& last,
                                std::shared_ptr<FetchOutcome>& out) {
    const auto now = sys::now();
    auto n = normalize_backup_files(last.body, now, norm_);
    if (auto* e = std::get_if<NormalizeError>(&n)) return refuse(job, out, "contract", e->message());
    auto& ok = std::get<NormalizedAnswer>(n);
    if (ok.earliest_expiry - std::chrono::seconds(cfg_.cache.expiry_margin_s) <= now)
        return refuse(job, out, "expiring",
                      "upstream answer's download links expire within the expiry margin");
    AnswerFields answer;
    answer.body = ok.body;
    answer.earliest_expiry = ok.earliest_expiry;
    answer.upstream_request_id = out->upstream_request_id;
    answer.stored_at = now;
    out->answer = CachedAnswer::make(answer);
    return out;
}

// The upstream answered, but not with what callers may receive: 502, counted, logged, cached briefly.
FetchPtr Gateway::refuse(const FetchJob& job, std::shared_ptr<FetchOutcome>& out, std::string_view reason,
                         std::string msg) {
    answer_refused(reason);
    log(LogLevel::warn, msg, job.log_ids());
    out->refusal = true;
    out->error = LocalError(502, std::move(msg), ErrorSource::upstream);
    return out;
}

// Whether the upstream's answer (body or request id) holds a credential the gateway sent: then no part of
// it may reach a caller or the cache. The log says which kind, never the value.
bool Gateway::echoes_credential(const FetchJob& job, const UpstreamResponse& r) {
    const CredentialTarget target{job.region ? std::string_view(job.region->name) : std::string_view(),
                                  job.project_id, job.region ? &job.region->ep : nullptr};
    const auto secrets = upstream_.credentials().secrets_for_scan(target);
    std::string_view views[2];
    std::size_t n = 0;
    if (secrets.current) views[n++] = *secrets.current;
    if (secrets.previous) views[n++] = *secrets.previous;
    if (n == 0) return false;
    const std::span<const std::string_view> list(views, n);
    return find_secret(r.body, list).has_value() || find_secret(r.request_id, list).has_value();
}

// A 200 is cached for its link-bounded lifetime; a 404 and a refusal of the upstream's answer briefly
// (negative_ttl); nothing else is (LinkCache::put applies the lifetimes).
void Gateway::store(const FetchJob& job, const FetchOutcome& o) {
    if (!cache_) return;
    if (o.error && o.refusal) {
        AnswerFields a;
        a.status = 502;
        a.body = o.error->message;
        a.stored_at = sys::now();
        cache_->put(job.cache_key, CachedAnswer::make(a), sys::now());
    } else if (o.answer && !o.error && (o.answer->status() == 200 || o.answer->status() == 404)) {
        cache_->put(job.cache_key, o.answer, sys::now());
    }
}

// ------------------------------------------------------------------------------------ delivering

void Gateway::deliver(Exchange& x, const SingleFlight::Result& r) {
    const FetchOutcome* o = r.outcome.get();
    if (o) {
        x.attempts = o->attempts;
        x.upstream_status = o->upstream_status;
        x.upstream_ms = o->upstream_ms;
        x.upstream_request_id = o->upstream_request_id;
        x.upstream_retry_after = o->retry_after;
    }
    if ((!o || o->upstream_failed) && serve_stale(x, o)) return;
    const bool leader = r.role == SingleFlight::Role::leader;
    x.cache = x.no_cache                           ? CacheState::bypass
              : leader && o && o->from_shared_tier ? CacheState::hit  // another instance's answer, from L2
              : leader                             ? CacheState::miss
                                                   : CacheState::coalesced;
    if (!o) {
        fail(x, LocalError(r.overflow || r.timed_out ? 503 : 502,
                           r.overflow    ? "too many callers waiting for this backup"
                           : r.timed_out ? "timed out waiting for the upstream answer"
                                         : "upstream fetch failed",
                           ErrorSource::internal, "overload")
                    .with("Retry-After", "1"));
        return;
    }
    if (x.cache != CacheState::hit)  // an L2 hit was counted as such ("l2_hit")
        metrics_.cache_event(x.no_cache ? "bypass" : x.cache == CacheState::miss ? "miss" : "coalesced");
    if (o->error)
        x.error = o->error;
    else
        x.answer = o->answer;
}

// A cached answer past its TTL, when the upstream failed and its links are still valid beyond the margin.
bool Gateway::serve_stale(Exchange& x, const FetchOutcome* o) {
    if (!cfg_.cache.stale_on_error || !cache_) return false;
    if (!x.stale && o) x.stale = cache_->get(x.cache_key, sys::now()).answer;
    const AnswerPtr& s = x.stale;
    if (!s || s->status() != 200 ||
        s->earliest_expiry() - std::chrono::seconds(cfg_.cache.expiry_margin_s) <= sys::now())
        return false;
    metrics_.cache_event("stale");
    x.answer = s;
    x.cache = CacheState::stale;
    return true;
}

void Gateway::respond(Exchange& x) {
    Response& r = x.response;
    // Counted before the answer leaves, so that a client that got its refusal sees it in /metrics.
    if (x.error && !x.error->reject_reason.empty()) metrics_.rejected(x.error->reject_reason);
    if (x.error) {
        r.status = x.error->status;
        r.body = make_error_body(x.error->status, x.error->message, x.request_id);
        r.headers = x.error->headers;
        r.close = r.close || x.error->close;
    } else if (x.answer) {
        r.status = x.answer->status();
        r.shared_body = x.answer;
    }
    if (x.route != Route::backup_files) return;
    const bool from_cache = x.cache == CacheState::hit || x.cache == CacheState::stale;
    if (x.cache != CacheState::none) {
        r.headers.emplace_back("X-Cache", std::string(cache_state_name(x.cache)));
        long long age = 0;
        if (from_cache && x.answer)
            age = std::max<long long>(
                0, std::chrono::duration_cast<std::chrono::seconds>(
                       (x.found_at != sys::time_point{} ? x.found_at : sys::now()) - x.answer->stored_at())
                       .count());
        r.headers.emplace_back("Age", std::to_string(age));
    }
    const std::string_view urid =
        x.answer ? x.answer->upstream_request_id() : std::string_view(x.upstream_request_id);
    if (!urid.empty()) r.headers.emplace_back("X-Upstream-Request-Id", urid);
    if (!from_cache) {
        const bool has_retry_after = x.error && std::any_of(x.error->headers.begin(), x.error->headers.end(),
                                                            [](auto& h) { return h.first == "Retry-After"; });
        if (!x.upstream_retry_after.empty() && !has_retry_after)
            r.headers.emplace_back("Retry-After", x.upstream_retry_after);
        if (x.attempts > 1) r.headers.emplace_back("X-Upstream-Attempts", std::to_string(x.attempts));
    }
    r.headers.emplace_back("Cache-Control", "no-store");
}

void Gateway::answer_refused(std::string_view reason) const {
    metrics_.answer_refused(reason);
    status_->refused(reason, steady::now());
}

void Gateway::finish(const Exchange& x) {
    const auto now = steady::now();
    const double total_ms = std::chrono::duration<double, std::milli>(now - x.started).count();
    std::string_view m = x.method == http::verb::get    ? "GET"
                         : x.method == http::verb::head ? "HEAD"
                                                        : "other";
    metrics_.request_done(route_name(x.route), m, x.logged_status(), cache_state_name(x.cache),
                          total_ms / 1000.0);
    if (x.route == Route::backup_files) {
        const bool throttled = x.error && x.error->reject_reason == "rate";
        status_->request(x.logged_status(), x.cache, x.caller_name(), throttled, now);
        if (x.caller) metrics_.caller_request(x.caller_name(), throttled);
    }
    if (access_log_.enabled())
        access_log_.write_with([&](std::string& pending) { append_access_line(pending, x, total_ms); });
}

}  // namespace rdsgw
