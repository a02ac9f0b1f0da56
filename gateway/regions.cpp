#include "rdsgw/regions.hpp"

#include <algorithm>

#include "rdsgw/log.hpp"
#include "rdsgw/metrics.hpp"
#include "rdsgw/proxy.hpp"

namespace rdsgw {

using std::chrono::milliseconds;

Region::Region(std::string n, std::string l, unsigned i, bool c, const Config& cfg)
    : name(std::move(n)),
      label(std::move(l)),
      index(i),
      configured(c),
      budget(cfg.retry.budget_ratio, cfg.retry.budget_min),
      breaker(cfg.retry.breaker_failures, milliseconds(cfg.retry.breaker_open_ms)),
      limiter(cfg.upstream.max_concurrent, cfg.upstream.max_queue) {}

Regions::Regions(const Config& cfg, Metrics& metrics)
    : cfg_(cfg), metrics_(metrics), multi_(multi_region(cfg)) {}

Regions::~Regions() = default;

bool Regions::init(std::string& why) {
    std::lock_guard lk(mu_);
    if (!regions_.empty()) return true;
    proxy_ = Proxy::make(cfg_.upstream.proxy, why);
    if (!proxy_ && !why.empty()) return false;
    if (!multi_) return add("", true, why) != nullptr;
    for (const auto& r : cfg_.regions)
        if (!add(r.name, true, why)) return false;
    for (const auto& [project, region] : cfg_.projects.static_map)
        if (!named(region) && !add(region, true, why)) return false;
    map_ = std::make_shared<const ProjectMap>(cfg_.projects.static_map);
    return true;
}

// A region's endpoint: its own base_url, the template, or (one region) upstream.base_url.
Region* Regions::add(const std::string& name, bool configured, std::string& why) {
    std::string base_url = cfg_.upstream.base_url, ca_file = cfg_.upstream.ca_file, key = "upstream.base_url";
    std::string ca_key = "upstream.ca_file";
    if (multi_) {
        auto rc =
            std::find_if(cfg_.regions.begin(), cfg_.regions.end(), [&](auto& r) { return r.name == name; });
        const bool own = rc != cfg_.regions.end() && !rc->base_url.empty();
        if (!own && cfg_.upstream.base_url_template.empty()) {
            why = "region " + name + " is not in \"regions\" and upstream.base_url_template is not set";
            return nullptr;
        }
        base_url = own ? rc->base_url : expand_region_template(cfg_.upstream.base_url_template, name);
        key = own ? "regions." + name + ".base_url" : "upstream.base_url_template (" + name + ")";
        if (rc != cfg_.regions.end() && !rc->ca_file.empty()) {
            ca_file = rc->ca_file;
            ca_key = "regions." + name + ".ca_file";
        }
        if (regions_.size() >= cfg_.projects.discovery.max_regions) {
            why = "region " + name + ": projects.discovery.max_regions (" +
                  std::to_string(cfg_.projects.discovery.max_regions) + ") reached";
            return nullptr;
        }
    }
    const unsigned index = static_cast<unsigned>(regions_.size());
    std::string label = !multi_ ? "" : index < kMaxLabels ? name : "other";
    auto r = std::make_unique<Region>(name, std::move(label), index, configured, cfg_);
    if (!Endpoint::parse(base_url, r->ep, why)) {
        why = key + ": " + why;
        return nullptr;
    }
    if (r->ep.tls) {
        auto& ctx = tls_by_ca_[ca_file];
        if (!ctx && !(ctx = make_client_tls_context(ca_file, why))) {
            tls_by_ca_.erase(ca_file);
            why = ca_key + ": " + why;
            return nullptr;
        }
        r->tls = ctx;
    }
    Region* raw = r.get();
    raw->breaker.set_listener([this, raw](CircuitBreaker::State from, CircuitBreaker::State to) {
        static constexpr const char* names[] = {"closed", "half-open", "open"};
        log_warn(std::string("upstream circuit breaker") + (multi_ ? " of region " + raw->name : "") + ": " +
                 names[static_cast<int>(from)] + " -> " + names[static_cast<int>(to)]);
        if (!multi_)
            metrics_.set_breaker_state(static_cast<int>(to));
        else if (raw->label != "other")
            metrics_.set_breaker_state(raw->label, static_cast<int>(to));
    });
    if (multi_) {
        log_info("region " + name + ": " + (r->ep.tls ? "https://" : "http://") + r->ep.host_header +
                 (proxy_ && proxy_->applies_to(r->ep.host) ? " through proxy " + proxy_->describe() : ""));
        if (raw->label != "other") metrics_.set_breaker_state(raw->label, 0);
    }
    regions_.push_back(std::move(r));
    return raw;
}

Region* Regions::named(const std::string& name) {
    for (auto& r : regions_)
        if (r->name == name) return r.get();
    return nullptr;
}

Regions::Found Regions::find(std::string_view project_id) {
    std::lock_guard lk(mu_);
    const ProjectEntry* e = map_ ? map_->find(project_id) : nullptr;
    if (!e) return {nullptr, Miss::unknown};
    if (!e->enabled) return {nullptr, Miss::disabled};
    if (Region* r = named(e->region)) return {r, Miss::none};
    if (refused_.count(e->region)) return {nullptr, Miss::no_region};
    std::string why;
    if (Region* r = add(e->region, false, why)) return {r, Miss::none};
    log_error("cannot serve region " + e->region + ": " + why);
    refused_.insert(e->region);
    return {nullptr, Miss::no_region};
}

void Regions::set_discovered(const std::vector<IamProject>& projects) {
    std::lock_guard lk(mu_);
    ProjectMap::Merge m;
    auto next = std::make_shared<const ProjectMap>(
        map_->with_discovered(projects, cfg_.projects.discovery.max_projects, &m));
    if (next->discovered() != map_->discovered() || m.bad_names || m.over_limit)
        log_info(
            "project discovery: " + std::to_string(m.added) + " projects" +
            (m.overridden ? ", " + std::to_string(m.overridden) + " overridden by projects.static" : "") +
            (m.bad_names ? ", " + std::to_string(m.bad_names) + " with names that are not a region (skipped)"
                         : "") +
            (m.over_limit
                 ? ", " + std::to_string(m.over_limit) + " past projects.discovery.max_projects (skipped)"
                 : ""));
    map_ = std::move(next);
}

std::shared_ptr<const ProjectMap> Regions::projects() const {
    std::lock_guard lk(mu_);
    return map_;
}

std::vector<Region*> Regions::list() const {
    std::lock_guard lk(mu_);
    std::vector<Region*> out;
    out.reserve(regions_.size());
    for (auto& r : regions_) out.push_back(r.get());
    return out;
}

bool Regions::reload(std::string& why) {
    return !proxy_ || proxy_->reload(why);
}

}  // namespace rdsgw
