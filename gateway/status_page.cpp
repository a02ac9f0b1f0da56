// The status page's routes: GET /admin/status (the page), /admin/status.json (its data) and
// /admin/status/{app.js,app.css,chart.js} (its files, embedded at build time). Served where /metrics is and
// behind the same caller authentication when callers.metrics_require_auth is on.
#include <algorithm>
#include <cmath>

#include "rdsgw/gateway.hpp"

namespace rdsgw {

using steady = std::chrono::steady_clock;
using sys = std::chrono::system_clock;

namespace {

// Everything the page loads comes from the gateway itself: no request leaves it for another origin.
constexpr std::string_view kPagePolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

std::string_view breaker_name(CircuitBreaker::State s) {
    static constexpr std::string_view names[] = {"closed", "half-open", "open"};
    return names[static_cast<int>(s)];
}

}  // namespace

LiveStatus Gateway::live_status() {
    const auto now = sys::now();
    LiveStatus l;
    l.version = RDSGW_VERSION;
    l.now_unix_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    l.draining = draining_.load();
    l.cache_enabled = cache_ != nullptr;
    if (cache_) {
        l.cache_entries = cache_->entries();
        l.cache_bytes = cache_->bytes();
        l.cache_max_entries = cfg_.cache.max_entries;
        l.cache_max_bytes = cfg_.cache.max_bytes;
    }
    l.singleflight_waiters = flights_.waiting();
    CredentialSource& creds = upstream_.credentials();
    const CredentialSource::Status cs = creds.status(now);
    l.credential_kind = std::string(creds.kind());
    l.credential_ready = cs.ready;
    l.credential_reason = cs.reason;
    l.credential_seconds_to_expiry = cs.seconds_to_expiry;
    if (!regions_.multi()) {
        l.breakers.emplace_back("default", std::string(breaker_name(regions_.only().breaker.state())));
    } else {
        for (Region* r : regions_.list())  // bounded by the config and discovery (max_regions)
            l.breakers.emplace_back(r->name, std::string(breaker_name(r->breaker.state())));
    }
    l.access_log_dropped = access_log_.dropped();
    return l;
}

void Gateway::status_page(Exchange& x) {
    if (callers_.metrics_require_auth() && !authenticate_caller(x)) return;
    thread_local std::string buf;  // the path with its unreserved escapes decoded, as classify() saw it
    const std::string_view path = normalize_path(x.target.substr(0, x.target.find('?')), buf);
    x.response.headers.emplace_back("X-Content-Type-Options", "nosniff");
    if (path == "/admin/status.json") {
        // The charts cover the process's life so far (rounded up to a minute; at most 10 minutes), in 1-s
        // steps up to 2 minutes and 5-s steps beyond; the summary covers the last 5 minutes.
        const auto now = steady::now();
        const auto span = std::clamp(std::chrono::ceil<std::chrono::minutes>(status_->age(now)),
                                     std::chrono::minutes(1), std::chrono::minutes(10));
        const auto step = span <= std::chrono::minutes(2) ? std::chrono::seconds(1) : std::chrono::seconds(5);
        x.response.body =
            render_status_json(status_->snapshot(now, std::chrono::minutes(5), span, step), live_status());
        x.response.headers.emplace_back("Cache-Control", "no-store");
        return;
    }
    const StatusAsset* a = find_status_asset(path.substr(std::string_view("/admin/status").size()));
    if (!a) {
        fail(x, LocalError(404, "no such resource", ErrorSource::caller));
        return;
    }
    x.response.content_type = a->content_type;
    x.response.body = std::string(a->body);
    if (path == "/admin/status") {
        x.response.headers.emplace_back("Content-Security-Policy", std::string(kPagePolicy));
        x.response.headers.emplace_back("Referrer-Policy", "no-referrer");
        x.response.headers.emplace_back("Cache-Control", "no-store");
    } else {
        x.response.headers.emplace_back("Cache-Control", "max-age=300");
    }
}

}  // namespace rdsgw
