// The routes besides backup-files: readiness, metrics and the cache purge (health is a constant, in route()).
#include <boost/json.hpp>
#include <cmath>

#include "rdsgw/gateway.hpp"

namespace rdsgw {

namespace http = boost::beast::http;
namespace json = boost::json;
using sys = std::chrono::system_clock;
using std::chrono::milliseconds;

void Gateway::readiness(Exchange& x) {
    const auto now = sys::now();
    const auto cs = upstream_.credentials().status(now);
    const bool listening = listening_.load(), draining = draining_.load();
    bool ready = listening && !draining && cs.ready;
    json::object checks;
    checks["config"] = json::object{{"ok", true}};
    checks["listeners"] = json::object{{"ok", listening}};
    json::object cred{{"ok", cs.ready}, {"mode", std::string(upstream_.credentials().kind())}};
    if (!cs.reason.empty()) cred["reason"] = cs.reason;
    if (std::isfinite(cs.seconds_to_expiry) && cs.seconds_to_expiry >= 0)
        cred["seconds_to_expiry"] = static_cast<std::int64_t>(std::floor(cs.seconds_to_expiry));
    checks["credentials"] = std::move(cred);
    std::string region_reason;
    if (!regions_.multi()) {
        const Region& r = regions_.only();
        static constexpr const char* bnames[] = {"closed", "half-open", "open"};
        json::object up{{"ok", true}, {"breaker", bnames[static_cast<int>(r.breaker.state())]}};
        if (auto last = r.last_success_ms.load(std::memory_order_relaxed); last > 0) {
            auto now_ms = std::chrono::duration_cast<milliseconds>(now.time_since_epoch()).count();
            up["last_success_ms_ago"] = static_cast<std::int64_t>(now_ms - last);
        }
        checks["upstream"] = std::move(up);
    } else {
        bool servable = false;
        region_readiness(checks, servable, region_reason);
        ready = listening && !draining && servable;
    }
    checks["draining"] = json::object{{"ok", !draining}};
    if (l2_) {  // the shared tier never makes the gateway unready: without it, L1 and local coalescing serve
        const RedisStatus rs = l2_->client().status();
        json::object redis{{"ok", true}, {"state", rs.up ? "up" : "degraded"}};
        if (!rs.up) redis["reason"] = rs.reason;
        checks["redis"] = std::move(redis);
    }
    std::string reason;
    if (!listening)
        reason = "starting: not listening yet";
    else if (draining)
        reason = "draining: shutting down";
    else if (!region_reason.empty())
        reason = region_reason;
    else if (!cs.ready)
        reason = "credentials: " + cs.reason;
    json::object body{{"status", ready ? "ready" : "not ready"}, {"checks", std::move(checks)}};
    if (!ready) body["reason"] = reason;
    x.response.status = ready ? 200 : 503;
    x.response.body = json::serialize(body);
}

// Multi-region: each region's endpoint, breaker and credentials. A region is listed as unavailable while its
// credentials are unusable or its breaker is open; the gateway is ready while one region has usable
// credentials (as with one region, an open breaker alone never makes it unready: taking every instance out
// of a load balancer helps nobody, and stale answers are still served). `reason` is set when none has.
void Gateway::region_readiness(json::object& checks, bool& servable, std::string& reason) {
    static constexpr const char* bnames[] = {"closed", "half-open", "open"};
    const auto now = sys::now();
    const auto now_ms = std::chrono::duration_cast<milliseconds>(now.time_since_epoch()).count();
    json::object regions;
    json::array unavailable;
    std::string first_problem;
    for (Region* r : regions_.list()) {
        const auto cs = upstream_.credentials().region_status(r->name, now);
        const auto state = r->breaker.state();
        const bool ok = cs.ready && state != CircuitBreaker::State::open;
        json::object cred{{"ok", cs.ready}};
        if (!cs.reason.empty()) cred["reason"] = cs.reason;
        if (std::isfinite(cs.seconds_to_expiry) && cs.seconds_to_expiry >= 0)
            cred["seconds_to_expiry"] = static_cast<std::int64_t>(std::floor(cs.seconds_to_expiry));
        json::object o{{"ok", ok},
                       {"endpoint", r->ep.host_header},
                       {"breaker", bnames[static_cast<int>(state)]},
                       {"credentials", std::move(cred)}};
        if (auto last = r->last_success_ms.load(std::memory_order_relaxed); last > 0)
            o["last_success_ms_ago"] = static_cast<std::int64_t>(now_ms - last);
        if (!r->configured) o["discovered"] = true;
        servable = servable || cs.ready;
        if (!ok) {
            unavailable.emplace_back(r->name);
            if (first_problem.empty())
                first_problem =
                    r->name + ": " + (cs.ready ? "circuit breaker open" : "credentials: " + cs.reason);
        }
        regions[r->name] = std::move(o);
    }
    checks["upstream"] = json::object{{"ok", servable}, {"unavailable_regions", std::move(unavailable)}};
    checks["regions"] = std::move(regions);
    if (discovery_) {
        const auto ds = discovery_->status();
        json::object d{{"ok", ds.ok}, {"refreshes", ds.refreshes}};
        if (auto pm = regions_.projects()) d["projects"] = pm->size();
        if (!ds.last_error.empty()) d["last_error"] = ds.last_error;
        if (ds.last_ok_ms > 0) d["last_success_ms_ago"] = static_cast<std::int64_t>(now_ms - ds.last_ok_ms);
        checks["discovery"] = std::move(d);
    }
    if (!servable)
        reason = first_problem.empty() ? "regions: no region known yet (waiting for project discovery)"
                                       : "regions: no region can be served (" + first_problem + ")";
}

void Gateway::metrics_page(Exchange& x) {
    if (callers_.metrics_require_auth() && !authenticate_caller(x)) return;
    x.response.content_type = "text/plain; version=0.0.4; charset=utf-8";
    x.response.body = metrics_.render();
}

// DELETE /admin/cache                              -> purge all
// DELETE /admin/cache?project_id=P&backup_id=B     -> purge one
// With the shared tier, the purge reaches Redis and every instance (purge_everywhere, asynchronous).
void Gateway::admin_cache(Exchange& x) {
    if (x.method != http::verb::delete_) {
        fail(x, LocalError(405, "method not allowed", ErrorSource::caller).with("Allow", "DELETE"));
        return;
    }
    // Protected like /metrics: with callers.metrics_require_auth, only a known caller may purge (whatever
    // callers.required says).
    if (callers_.metrics_require_auth() && !authenticate_caller(x)) return;
    if (!cache_) {
        fail(x, LocalError(409, "the cache is disabled", ErrorSource::caller));
        return;
    }
    std::string project, backup;
    if (!purge_request(x, project, backup)) return;
    if (l2_) {
        x.project_id = std::move(project);
        x.backup_id = std::move(backup);
        x.pending = PendingStep::purge;
        return;
    }
    if (project.empty()) {
        std::size_t n = cache_->clear();
        x.response.body = "{\"purged\":" + std::to_string(n) + "}";
        log_info("admin: cache purged (" + std::to_string(n) + " entries)");
        return;
    }
    const bool removed = cache_->erase(make_cache_key(project, backup));
    x.response.body = std::string("{\"purged\":") + (removed ? "1" : "0") + "}";
}

// The purge's query (parse_purge_query): both project_id and backup_id, or no query at all (everything).
// False with x.error set otherwise.
bool Gateway::purge_request(Exchange& x, std::string& project, std::string& backup) {
    if (auto e = parse_purge_query(x.target, rules_, project, backup))
        return fail(x, LocalError(e->status, std::move(e->message), ErrorSource::caller, "validation"));
    return true;
}

}  // namespace rdsgw
