#include "rdsgw/gateway.hpp"

#include <boost/asio.hpp>
#include <boost/json.hpp>
#include <charconv>
#include <cmath>

#include "rdsgw/async_util.hpp"
#include "rdsgw/signer.hpp"
#include "rdsgw/text.hpp"
#include "rdsgw/timefmt.hpp"

namespace rdsgw {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using steady = std::chrono::steady_clock;
using sys = std::chrono::system_clock;
using std::chrono::milliseconds;

std::string make_error_body(unsigned status, std::string_view message, std::string_view request_id) {
    std::string out;
    out.reserve(64 + message.size() + request_id.size());
    out += "{\"error_code\":\"RDSGW.";
    out += std::to_string(status);
    out += "\",\"error_msg\":";
    json_escape_append(out, message);
    out += ",\"request_id\":";
    json_escape_append(out, request_id);
    out += "}";
    return out;
}

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

bool header_has_token(std::string_view value, std::string_view token) {
    // Case-insensitive search of a comma-separated directive list.
    while (!value.empty()) {
        auto comma = value.find(',');
        std::string_view part = trim_ows(value.substr(0, comma));
        auto eq = part.find('=');
        if (eq != std::string_view::npos) part = trim_ows(part.substr(0, eq));
        if (ascii_iequals(part, token)) return true;
        if (comma == std::string_view::npos) break;
        value.remove_prefix(comma + 1);
    }
    return false;
}

std::string rds_error_code(std::string_view body) {
    boost::system::error_code ec;
    auto v = boost::json::parse(body, ec);
    if (ec || !v.is_object()) return {};
    auto* c = v.get_object().if_contains("error_code");
    if (!c || !c->is_string()) return {};
    return std::string(c->get_string());
}

}  // namespace

Gateway::Gateway(Config cfg, std::unique_ptr<CredentialSource> creds, Metrics& metrics, AccessLog& access_log)
    : cfg_(std::move(cfg)),
      rules_(cfg_.request),
      creds_(std::move(creds)),
      metrics_(metrics),
      access_log_(access_log),
      flights_(SingleFlight::Options{cfg_.cache.max_waiters, milliseconds(cfg_.cache.wait_timeout_ms)}),
      budget_(cfg_.retry.budget_ratio, cfg_.retry.budget_min),
      breaker_(cfg_.retry.breaker_failures, milliseconds(cfg_.retry.breaker_open_ms)),
      limiter_(cfg_.upstream.max_concurrent, cfg_.upstream.max_queue) {
    norm_.max_body_bytes = cfg_.response.max_body_bytes;
    norm_.allow_http_links = cfg_.response.allow_http_links;
    norm_.link_host_suffixes = cfg_.response.link_host_suffixes;
    norm_.drop_unknown_fields = cfg_.response.drop_unknown_fields;
    norm_.emit_legacy_expiry_field = cfg_.response.emit_legacy_expiry_field;
    if (cfg_.cache.enabled) {
        CacheOptions co;
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
    std::vector<std::string> problems;
    callers_ = std::make_shared<const CallerRegistry>(caller_defs(cfg_.callers, problems));
    callers_required_ = cfg_.callers.required;
    metrics_require_auth_ = cfg_.callers.metrics_require_auth;
    for (auto& p : problems) log_error(p);
    breaker_.set_listener([this](CircuitBreaker::State from, CircuitBreaker::State to) {
        static constexpr const char* names[] = {"closed", "half-open", "open"};
        log_warn(std::string("upstream circuit breaker: ") + names[static_cast<int>(from)] + " -> " +
                 names[static_cast<int>(to)]);
        metrics_.set_breaker_state(static_cast<int>(to));
    });
    metrics_.on_collect([this](Metrics& m) {
        if (cache_) m.set_cache(static_cast<double>(cache_->entries()), static_cast<double>(cache_->bytes()));
        m.set_singleflight_waiters(static_cast<double>(flights_.waiting()));
        m.set_credential_expiry_seconds(creds_->status(sys::now()).seconds_to_expiry);
        m.set_breaker_state(static_cast<int>(breaker_.state()));
        m.set_access_log_dropped(static_cast<double>(access_log_.dropped()));
    });
}

Gateway::~Gateway() {
    creds_->stop();
}

bool Gateway::init_worker(Worker& w, std::string& why) {
    if (!upstream_tls_ && upstream_ep_.host.empty()) {
        if (!Endpoint::parse(cfg_.upstream.base_url, upstream_ep_, why)) {
            why = "upstream.base_url: " + why;
            return false;
        }
        if (upstream_ep_.tls) {
            upstream_tls_ = make_client_tls_context(cfg_.upstream.ca_file, why);
            if (!upstream_tls_) {
                why = "upstream.ca_file: " + why;
                return false;
            }
        }
    }
    PoolOptions po;
    po.connect_timeout = milliseconds(cfg_.upstream.connect_timeout_ms);
    po.idle_timeout = milliseconds(cfg_.upstream.pool_idle_timeout_ms);
    po.max_idle = cfg_.upstream.pool_size;
    po.max_response_bytes = cfg_.upstream.max_response_bytes;
    po.dns_refresh = std::chrono::seconds(cfg_.upstream.dns_refresh_s);
    w.pool =
        std::make_unique<ConnectionPool>(w.ioc.get_executor(), upstream_ep_, upstream_tls_, po, &metrics_);
    return true;
}

void Gateway::start_background(Worker& w0) {
    creds_->start(w0.ioc.get_executor());
}

std::shared_ptr<const CallerRegistry> Gateway::callers() const {
    // Per-thread snapshot, refreshed when a reload bumped the generation: no shared lock per request.
    thread_local const Gateway* owner = nullptr;
    thread_local std::uint64_t gen = 0;
    thread_local std::shared_ptr<const CallerRegistry> snap;
    std::uint64_t now_gen = callers_gen_.load(std::memory_order_acquire);
    if (owner != this || gen != now_gen || !snap) {
        std::lock_guard lk(callers_mu_);
        snap = callers_;
        gen = now_gen;
        owner = this;
    }
    return snap;
}

void Gateway::reload(const Config& cfg) {
    std::string why;
    if (!creds_->reload(why))
        log_error("SIGHUP: upstream credentials not reloaded: " + why);
    else
        log_info("SIGHUP: upstream credentials reloaded");
    std::vector<std::string> problems;
    auto reg = std::make_shared<const CallerRegistry>(caller_defs(cfg.callers, problems));
    for (auto& p : problems) log_error("SIGHUP: " + p);
    {
        std::lock_guard lk(callers_mu_);
        reg->adopt_rate_state(*callers_, steady::now());  // a reload neither refills nor empties buckets
        callers_ = std::move(reg);
        callers_gen_.fetch_add(1, std::memory_order_release);
    }
    if (!cfg.callers.required && callers_required_.load())
        log_warn(
            "callers.required is false: ANY client that reaches this port can fetch backup download links");
    callers_required_.store(cfg.callers.required);
    metrics_require_auth_.store(cfg.callers.metrics_require_auth);
    log_info("SIGHUP: callers reloaded (" + std::to_string(cfg.callers.list.size()) + ")");
    access_log_.reopen();
}

Response Gateway::auth_failed(const AuthOutcome& out, const std::string& request_id) {
    metrics_.rejected("auth");
    metrics_.auth_failure(out.reason.empty() ? "invalid credentials" : out.reason);
    Response r = error(401, out.reason.empty() ? "authentication failed" : out.reason, request_id);
    r.headers.emplace_back("WWW-Authenticate", "Bearer");
    return r;
}

Response Gateway::error(unsigned status, std::string_view msg, const std::string& request_id) const {
    Response r;
    r.status = status;
    r.body = make_error_body(status, msg, request_id);
    return r;
}

std::variant<Response, Gateway::Pending> Gateway::prepare(const RequestView& rq,
                                                          const std::string& request_id) {
    Route route = rq.route;
    bool admin_here = cfg_.admin.enabled ? rq.admin_listener : true;
    if (rq.admin_listener && route == Route::backup_files) route = Route::not_found;
    if (!admin_here && (route == Route::metrics || route == Route::admin_cache)) route = Route::not_found;
    if (route == Route::admin_cache && !cfg_.admin.enabled) route = Route::not_found;

    auto only = [&](std::initializer_list<http::verb> verbs,
                    std::string_view allow) -> std::optional<Response> {
        for (auto v : verbs)
            if (rq.method == v) return std::nullopt;
        Response r = error(405, "method not allowed", request_id);
        r.headers.emplace_back("Allow", std::string(allow));
        return r;
    };

    switch (route) {
        case Route::healthz: {
            if (auto r = only({http::verb::get, http::verb::head}, "GET, HEAD")) return *r;
            Response r;
            r.body = "{\"status\":\"ok\"}";
            return r;
        }
        case Route::readyz: {
            if (auto r = only({http::verb::get, http::verb::head}, "GET, HEAD")) return *r;
            return readiness();
        }
        case Route::metrics: {
            if (auto r = only({http::verb::get, http::verb::head}, "GET, HEAD")) return *r;
            if (metrics_require_auth_.load()) {
                std::vector<std::pair<std::string_view, std::string_view>> hs;
                for (auto& f : *rq.fields) hs.emplace_back(f.name_string(), f.value());
                AuthInput in{rq.method_string, rq.target, &hs, rq.tls_subject, sys::now()};
                auto out = callers()->authenticate(in);
                if (!out.caller) return auth_failed(out, request_id);
            }
            Response r;
            r.content_type = "text/plain; version=0.0.4; charset=utf-8";
            r.body = metrics_.render();
            return r;
        }
        case Route::admin_cache:
            return admin_cache(rq, request_id);
        case Route::backup_files:
            return backup_files_sync(rq, request_id);
        case Route::not_found:
            break;
    }
    if (auto why = check_target(rq.target); !why.empty()) {
        metrics_.rejected("validation");
        return error(400, why, request_id);
    }
    return error(404, "no such resource", request_id);
}

asio::awaitable<Response> Gateway::handle(Worker& w, const RequestView& rq, const std::string& request_id) {
    auto v = prepare(rq, request_id);
    if (auto* r = std::get_if<Response>(&v)) co_return std::move(*r);
    Pending p = std::move(std::get<Pending>(v));
    co_return co_await backup_files_fetch(w, p, request_id);
}

Response Gateway::readiness() {
    auto now = sys::now();
    auto cs = creds_->status(now);
    bool listening = listening_.load(), draining = draining_.load();
    auto bs = breaker_.state();
    bool ready = listening && !draining && cs.ready;
    namespace json = boost::json;
    json::object checks;
    checks["config"] = json::object{{"ok", true}};
    checks["listeners"] = json::object{{"ok", listening}};
    json::object cred{{"ok", cs.ready}, {"mode", std::string(creds_->kind())}};
    if (!cs.reason.empty()) cred["reason"] = cs.reason;
    if (std::isfinite(cs.seconds_to_expiry) && cs.seconds_to_expiry >= 0)
        cred["seconds_to_expiry"] = static_cast<std::int64_t>(std::floor(cs.seconds_to_expiry));
    checks["credentials"] = std::move(cred);
    static constexpr const char* bnames[] = {"closed", "half-open", "open"};
    json::object up{{"ok", true}, {"breaker", bnames[static_cast<int>(bs)]}};
    auto last = last_upstream_success_ms_.load();
    if (last > 0) {
        auto now_ms = std::chrono::duration_cast<milliseconds>(now.time_since_epoch()).count();
        up["last_success_ms_ago"] = static_cast<std::int64_t>(now_ms - last);
    }
    checks["upstream"] = std::move(up);
    checks["draining"] = json::object{{"ok", !draining}};
    std::string reason;
    if (!listening)
        reason = "starting: not listening yet";
    else if (draining)
        reason = "draining: shutting down";
    else if (!cs.ready)
        reason = "credentials: " + cs.reason;
    json::object body{{"status", ready ? "ready" : "not ready"}, {"checks", std::move(checks)}};
    if (!ready) body["reason"] = reason;
    Response r;
    r.status = ready ? 200 : 503;
    r.body = json::serialize(body);
    return r;
}

Response Gateway::admin_cache(const RequestView& rq, const std::string& request_id) {
    // DELETE /admin/cache                              -> purge all
    // DELETE /admin/cache?project_id=P&backup_id=B     -> purge one
    if (rq.method != http::verb::delete_) {
        Response r = error(405, "method not allowed", request_id);
        r.headers.emplace_back("Allow", "DELETE");
        return r;
    }
    if (!cache_) return error(409, "the cache is disabled", request_id);
    auto q = rq.target.find('?');
    std::string project, backup;
    if (q != std::string_view::npos) {
        std::string_view query = rq.target.substr(q + 1);
        while (!query.empty()) {
            auto amp = query.find('&');
            std::string_view part = query.substr(0, amp);
            auto eq = part.find('=');
            std::string name, value;
            if (eq == std::string_view::npos || !percent_decode(part.substr(0, eq), name) ||
                !percent_decode(part.substr(eq + 1), value))
                return error(400, "malformed query", request_id);
            if (name == "project_id")
                project = value;
            else if (name == "backup_id")
                backup = value;
            else
                return error(400, "unknown query parameter; use project_id and backup_id", request_id);
            if (amp == std::string_view::npos) break;
            query.remove_prefix(amp + 1);
        }
    }
    Response r;
    if (project.empty() && backup.empty()) {
        std::size_t n = cache_->clear();
        r.body = "{\"purged\":" + std::to_string(n) + "}";
        log_info("admin: cache purged (" + std::to_string(n) + " entries)");
        return r;
    }
    if (project.empty() || backup.empty())
        return error(400, "give both project_id and backup_id, or neither", request_id);
    bool removed = cache_->erase(make_cache_key(project, backup));
    r.body = std::string("{\"purged\":") + (removed ? "1" : "0") + "}";
    return r;
}

// The synchronous part: everything up to a cache hit. A miss returns what the upstream part needs.
std::variant<Response, Gateway::Pending> Gateway::backup_files_sync(const RequestView& rq,
                                                                    const std::string& request_id) {
    if (rq.method != http::verb::get && rq.method != http::verb::head) {
        Response r = error(405, "method not allowed", request_id);
        r.headers.emplace_back("Allow", "GET, HEAD");
        return r;
    }
    const auto now = sys::now();
    const Caller* caller = nullptr;
    std::shared_ptr<const CallerRegistry> reg;
    if (callers_required_.load(std::memory_order_relaxed)) {
        reg = callers();
        std::vector<std::pair<std::string_view, std::string_view>> hs;
        hs.reserve(16);
        for (auto& f : *rq.fields) hs.emplace_back(f.name_string(), f.value());
        AuthInput in{rq.method_string, rq.target, &hs, rq.tls_subject, now};
        AuthOutcome out = reg->authenticate(in);
        if (!out.caller) return auth_failed(out, request_id);
        caller = out.caller;
        double retry_after = 0;
        if (!caller->try_acquire(steady::now(), retry_after)) {
            metrics_.rejected("rate");
            Response r = error(429, "rate limit exceeded for this caller", request_id);
            r.headers.emplace_back("Retry-After",
                                   std::to_string(static_cast<long long>(std::ceil(retry_after))));
            r.caller = caller->name();
            return r;
        }
    }
    auto parsed = parse_backup_files(rq.target, rules_);
    if (auto* e = std::get_if<RequestError>(&parsed)) {
        metrics_.rejected("validation");
        Response r = error(e->status, e->message, request_id);
        if (caller) r.caller = caller->name();
        return r;
    }
    auto& req = std::get<BackupFilesRequest>(parsed);
    if (caller && !caller->may_read(req.project_id)) {
        metrics_.rejected("forbidden");
        // Same answer whether or not the project or backup exists.
        Response r = error(403, "this caller may not read this project", request_id);
        r.caller = caller->name();
        return r;
    }

    Pending p;
    p.key = make_cache_key(req.project_id, req.backup_id);
    if (cfg_.cache.honor_no_cache) {
        if (auto it = rq.fields->find(http::field::cache_control); it != rq.fields->end())
            p.no_cache = header_has_token(it->value(), "no-cache");
        if (auto it = rq.fields->find(http::field::pragma); it != rq.fields->end())
            p.no_cache = p.no_cache || header_has_token(it->value(), "no-cache");
    }
    if (caller) p.caller = caller->name();
    p.project_id = std::move(req.project_id);
    p.backup_id = std::move(req.backup_id);
    if (cache_ && !p.no_cache) {
        auto found = cache_->get(p.key, now);
        if (found.answer && found.fresh) {
            metrics_.cache_event(found.answer->status == 200 ? "hit" : "negative_hit");
            return serve_cached(p, found.answer, "HIT");
        }
        p.stale = std::move(found.answer);
    }
    if (auto it = rq.fields->find("X-Language"); it != rq.fields->end())
        p.language = valid_language(it->value());
    return p;
}

Response Gateway::finish(Pending& p, Response r) const {
    r.caller = std::move(p.caller);
    r.project_id = std::move(p.project_id);
    r.backup_id = std::move(p.backup_id);
    r.headers.emplace_back("Cache-Control", "no-store");
    return r;
}

Response Gateway::serve_cached(Pending& p, const AnswerPtr& a, std::string_view cache_state) const {
    Response r;
    r.headers.reserve(5);
    r.status = a->status;
    r.shared_body = a;
    r.cache = cache_state;
    auto age = std::chrono::duration_cast<std::chrono::seconds>(sys::now() - a->stored_at).count();
    r.headers.emplace_back("X-Cache", std::string(cache_state));
    r.headers.emplace_back("Age", std::to_string(age < 0 ? 0 : age));
    if (!a->upstream_request_id.empty())
        r.headers.emplace_back("X-Upstream-Request-Id", a->upstream_request_id);
    return finish(p, std::move(r));
}

// The asynchronous part of a miss: one shared upstream fetch, stale answers on upstream failure.
asio::awaitable<Response> Gateway::backup_files_fetch(Worker& w, Pending& p, const std::string& request_id) {
    // Named objects, not temporaries, in the co_await: GCC 12 mishandles temporaries with non-trivial
    // destructors in co_await expressions (double destruction).
    std::function<asio::awaitable<FetchPtr>()> fetch = [this, &w, pr = p.project_id, b = p.backup_id,
                                                        id = request_id, lang = p.language]() {
        return fetch_upstream(w, pr, b, id, lang);
    };
    auto result = co_await flights_.run(p.key, std::move(fetch));
    if (result.overflow || result.timed_out || !result.outcome) {
        if (p.stale && cfg_.cache.stale_on_error) {
            metrics_.cache_event("stale");
            co_return serve_cached(p, p.stale, "STALE");
        }
        metrics_.rejected("overload");
        Response r = error(result.overflow || result.timed_out ? 503 : 502,
                           result.overflow    ? "too many callers waiting for this backup"
                           : result.timed_out ? "timed out waiting for the upstream answer"
                                              : "upstream fetch failed",
                           request_id);
        r.headers.emplace_back("Retry-After", "1");
        r.cache = result.role == SingleFlight::Role::leader ? "MISS" : "COALESCED";
        co_return finish(p, std::move(r));
    }
    const FetchOutcome& o = *result.outcome;
    if (o.upstream_failed && cfg_.cache.stale_on_error && cache_) {
        if (!p.stale) p.stale = cache_->get(p.key, sys::now()).answer;
        if (p.stale && p.stale->status == 200 &&
            p.stale->earliest_expiry - std::chrono::seconds(cfg_.cache.expiry_margin_s) > sys::now()) {
            metrics_.cache_event("stale");
            AnswerPtr stale = p.stale;
            Response r = serve_cached(p, stale, "STALE");
            r.upstream_status = o.upstream_status;
            r.attempts = o.attempts;
            r.upstream_ms = o.upstream_ms;
            co_return r;
        }
    }
    const bool leader = result.role == SingleFlight::Role::leader;
    std::string_view state = p.no_cache ? "BYPASS" : leader ? "MISS" : "COALESCED";
    metrics_.cache_event(p.no_cache ? "bypass" : leader ? "miss" : "coalesced");
    Response r = from_outcome(o, request_id);
    r.cache = state;
    r.headers.emplace_back("X-Cache", std::string(state));
    r.headers.emplace_back("Age", "0");
    co_return finish(p, std::move(r));
}

Response Gateway::from_outcome(const FetchOutcome& o, const std::string& request_id) const {
    Response r;
    if (o.error_status) {
        r = error(o.error_status, o.error_message, request_id);
        if (!o.retry_after.empty()) r.headers.emplace_back("Retry-After", o.retry_after);
        if (o.answer && !o.answer->upstream_request_id.empty())
            r.headers.emplace_back("X-Upstream-Request-Id", o.answer->upstream_request_id);
    } else {
        r.status = o.answer->status;
        r.shared_body = o.answer;
        if (!o.answer->upstream_request_id.empty())
            r.headers.emplace_back("X-Upstream-Request-Id", o.answer->upstream_request_id);
        if (!o.retry_after.empty()) r.headers.emplace_back("Retry-After", o.retry_after);
    }
    if (o.attempts > 1) r.headers.emplace_back("X-Upstream-Attempts", std::to_string(o.attempts));
    r.upstream_status = o.upstream_status;
    r.attempts = o.attempts;
    r.upstream_ms = o.upstream_ms;
    return r;
}

asio::awaitable<FetchPtr> Gateway::fetch_upstream(Worker& w, std::string project_id, std::string backup_id,
                                                  std::string request_id, std::string language) {
    auto out = std::make_shared<FetchOutcome>();
    const auto started = steady::now();
    const auto deadline = started + milliseconds(cfg_.retry.deadline_ms);
    budget_.request_started();
    struct BudgetGuard {
        RetryBudget& b;
        ~BudgetGuard() { b.request_finished(); }
    } guard{budget_};

    UpstreamResponse last;
    bool renewed = false;
    unsigned attempt = 0;
    unsigned max_attempts = cfg_.retry.max_attempts;
    bool in_retry = false;
    auto end_retry = [&] {
        if (in_retry) budget_.retry_finished();
        in_retry = false;
    };
    auto fail = [&](unsigned status, std::string msg, bool upstream_failed) -> FetchPtr {
        end_retry();
        out->error_status = status;
        out->error_message = std::move(msg);
        out->upstream_failed = upstream_failed;
        out->attempts = attempt;
        out->upstream_status = last.status;
        out->upstream_ms = std::chrono::duration<double, std::milli>(steady::now() - started).count();
        if (!last.request_id.empty()) {
            auto a = std::make_shared<CachedAnswer>();
            a->status = status;
            a->upstream_request_id = last.request_id;
            out->answer = a;
        }
        return out;
    };
    auto describe_last = [&]() -> std::string {
        std::string s = " after " + std::to_string(attempt) + (attempt == 1 ? " attempt" : " attempts");
        if (last.error != UpstreamResponse::Error::none)
            s += " (last: " + last.error_detail + ")";
        else if (last.status)
            s += " (last: HTTP " + std::to_string(last.status) + ")";
        return s;
    };

    while (true) {
        if (attempt >= max_attempts) break;
        if (!breaker_.allow(steady::now())) {
            if (attempt == 0) co_return fail(503, "upstream circuit breaker is open", true);
            break;
        }
        auto permit = co_await limiter_.acquire(
            std::min(deadline, steady::now() + milliseconds(cfg_.upstream.queue_timeout_ms)));
        if (!permit) {
            out->retry_after = "1";
            co_return fail(503, "too many concurrent upstream requests", false);
        }
        ++attempt;
        UpstreamRequest req;
        req.target =
            "/v3/" + sdk_uri_encode(project_id) + "/backup-files?backup_id=" + sdk_uri_encode(backup_id);
        req.headers.reserve(8);
        req.headers.emplace_back("Accept", "application/json");
        req.headers.emplace_back("Accept-Encoding", "identity");
        req.headers.emplace_back("User-Agent", "rds-gateway/" RDSGW_VERSION);
        req.headers.emplace_back("X-Request-Id", request_id);
        if (!language.empty()) req.headers.emplace_back("X-Language", language);
        if (creds_->kind() == "aksk") req.headers.emplace_back("X-Project-Id", project_id);
        std::shared_ptr<const void> used;
        std::string why;
        if (!creds_->apply(req, w.pool->endpoint(), sys::now(), used, why)) {
            metrics_.rejected("credentials");
            --attempt;
            co_return fail(503, why, false);
        }
        auto attempt_deadline =
            std::min(deadline, steady::now() + milliseconds(cfg_.upstream.request_timeout_ms));
        auto t0 = steady::now();
        last = co_await w.pool->exchange(req, attempt_deadline);
        permit.reset();
        metrics_.upstream_done(last.error == UpstreamResponse::Error::none ? last.status : 0, attempt,
                               std::chrono::duration<double>(steady::now() - t0).count());
        end_retry();

        bool retryable = false;
        if (last.error != UpstreamResponse::Error::none) {
            breaker_.on_failure(steady::now());
            retryable = last.error == UpstreamResponse::Error::connect ||
                        (last.error == UpstreamResponse::Error::reset && !last.got_response_bytes);
        } else if (last.status == 401 && !renewed) {
            std::string code = rds_error_code(last.body);
            breaker_.on_success();
            if (code == "APIGW.0307" || code == "APIGW.0301") {
                renewed = true;
                if (co_await creds_->renew_after_rejection(used, deadline)) {
                    ++max_attempts;  // the retry after a credential refresh is extra
                    continue;
                }
            }
        } else if (last.status == 429) {
            breaker_.on_success();  // throttling is not an outage
            retryable = true;
        } else if (last.status == 502 || last.status == 503 || last.status == 504) {
            breaker_.on_failure(steady::now());
            retryable = true;
        } else if (last.status >= 500) {
            breaker_.on_failure(steady::now());
        } else {
            breaker_.on_success();
        }
        if (last.error == UpstreamResponse::Error::none && last.status < 500) {
            last_upstream_success_ms_.store(
                std::chrono::duration_cast<milliseconds>(sys::now().time_since_epoch()).count());
        }
        if (!retryable || attempt >= max_attempts) break;
        // Back off (Retry-After wins when present), never past the deadline.
        milliseconds delay = backoff_delay(attempt, milliseconds(cfg_.retry.base_backoff_ms),
                                           milliseconds(cfg_.retry.max_backoff_ms));
        if (auto ra = parse_retry_after(last.retry_after, sys::now())) delay = *ra;
        if (steady::now() + delay >= deadline) break;
        if (!budget_.try_start_retry()) break;
        in_retry = true;
        co_await sleep_until(steady::now() + delay);
    }
    end_retry();

    out->attempts = attempt;
    out->upstream_status = last.status;
    out->upstream_ms = std::chrono::duration<double, std::milli>(steady::now() - started).count();
    out->retry_after = last.retry_after;

    using E = UpstreamResponse::Error;
    switch (last.error) {
        case E::none:
            break;
        case E::timeout:
            co_return fail(504, "upstream did not answer in time" + describe_last(), true);
        case E::connect:
        case E::tls:
            co_return fail(502, "upstream unreachable" + describe_last(), true);
        case E::reset:
        case E::protocol:
            co_return fail(502, "upstream connection failed" + describe_last(), true);
        case E::too_large:
            co_return fail(502, "upstream answer too large", true);
    }
    if (!last.content_encoding.empty() && last.content_encoding != "identity") {
        co_return fail(502,
                       "upstream sent an encoded answer (Content-Encoding) although identity was requested",
                       last.status >= 500);
    }
    auto answer = std::make_shared<CachedAnswer>();
    answer->upstream_request_id = last.request_id;
    answer->stored_at = sys::now();
    if (last.status == 200) {
        auto n = normalize_backup_files(last.body, sys::now(), norm_);
        if (auto* e = std::get_if<NormalizeError>(&n)) {
            log_warn("request " + request_id + ": " + e->message());
            co_return fail(502, e->message(), false);
        }
        auto& ok = std::get<NormalizedAnswer>(n);
        answer->status = 200;
        answer->body = std::move(ok.body);
        answer->earliest_expiry = ok.earliest_expiry;
        out->answer = answer;
        if (cache_) cache_->put(make_cache_key(project_id, backup_id), answer, sys::now());
        co_return out;
    }
    if (!is_rds_error_body(last.body)) {
        out->answer = nullptr;
        co_return fail(502,
                       "upstream answered HTTP " + std::to_string(last.status) +
                           " without an RDS error body" + (attempt > 1 ? describe_last() : std::string()),
                       last.status >= 500);
    }
    // A well-formed RDS error passes through with its status; a 404 is cached briefly.
    answer->status = last.status;
    answer->body = std::move(last.body);
    out->answer = answer;
    out->upstream_failed = last.status >= 500;
    if (last.status == 404 && cache_) cache_->put(make_cache_key(project_id, backup_id), answer, sys::now());
    co_return out;
}

namespace {
// Appends v rounded to `decimals` (1 or 2) places, without the cost of floating-point formatting.
void append_fixed(std::string& s, double v, int decimals) {
    const double scale = decimals == 1 ? 10.0 : 100.0;
    if (!(v >= 0) || v > 1e12) v = 0;  // negative or absurd durations never come from a steady clock
    const auto scaled = static_cast<std::uint64_t>(v * scale + 0.5);
    const std::uint64_t whole = scaled / static_cast<std::uint64_t>(scale);
    const auto frac = static_cast<unsigned>(scaled % static_cast<std::uint64_t>(scale));
    char buf[32];
    char* p = std::to_chars(buf, buf + 24, whole).ptr;
    *p++ = '.';
    if (decimals == 2) *p++ = static_cast<char>('0' + frac / 10);
    *p++ = static_cast<char>('0' + frac % 10);
    s.append(buf, p);
}
void append_uint(std::string& s, std::uint64_t v) {
    char buf[24];
    s.append(buf, std::to_chars(buf, buf + sizeof buf, v).ptr);
}
}  // namespace

std::string Gateway::access_line(const RequestView& rq, const Response& r, const std::string& request_id,
                                 std::size_t bytes_sent, double total_ms) const {
    using namespace std::string_view_literals;
    std::string s;
    s.reserve(384);
    s += "{\"time\":\""sv;
    s += format_log_time(sys::now());
    s += "\",\"request_id\":"sv;
    json_escape_append(s, request_id);
    s += ",\"client\":"sv;
    json_escape_append(s, rq.client_addr);
    s += ",\"caller\":"sv;
    json_escape_append(s, r.caller);
    s += ",\"method\":"sv;
    json_escape_append(s, rq.method_string.size() <= 16 ? rq.method_string : std::string_view("other"));
    s += ",\"route\":\""sv;
    Route route = rq.route;
    s += route == Route::backup_files ? "/{version_id}/{project_id}/backup-files"sv : route_name(route);
    s += "\",\"project_id\":"sv;
    json_escape_append(s, r.project_id);
    s += ",\"backup_id\":"sv;
    json_escape_append(s, r.backup_id);
    s += ",\"status\":"sv;
    append_uint(s, r.status);
    s += ",\"cache\":"sv;
    json_escape_append(s, r.cache);
    s += ",\"upstream_status\":"sv;
    if (r.upstream_status)
        append_uint(s, r.upstream_status);
    else
        s += "null"sv;
    s += ",\"attempts\":"sv;
    append_uint(s, r.attempts);
    s += ",\"upstream_ms\":"sv;
    if (r.upstream_ms >= 0)
        append_fixed(s, r.upstream_ms, 1);
    else
        s += "null"sv;
    s += ",\"total_ms\":"sv;
    append_fixed(s, total_ms, 2);
    s += ",\"bytes_sent\":"sv;
    append_uint(s, bytes_sent);
    s += '}';
    return s;
}

}  // namespace rdsgw
