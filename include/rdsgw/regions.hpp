// Multi-region routing at run time: project_id -> region -> upstream endpoint, connection pools (one per
// worker thread, Worker::pools), circuit breaker, retry budget, concurrency limiter and credential. One
// region's failures never touch another's state. The pure rules (region ids, templates, the project map) are
// in project_map.hpp; discovery (discovery.hpp) feeds the map.
//
// The one-region setup (upstream.base_url alone) is one Region that serves every project, as before regions.
#pragma once
#include <atomic>
#include <boost/asio/ssl/context.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "rdsgw/config.hpp"
#include "rdsgw/project_map.hpp"
#include "rdsgw/resilience.hpp"
#include "rdsgw/upstream.hpp"

namespace rdsgw {

class Metrics;
class Proxy;

// One region: an RDS endpoint with its TLS context, and the protections its callers share across threads.
// Made at start (configured regions) or when a project of a new region is first requested; never removed.
struct Region {
    Region(std::string name, std::string label, unsigned index, bool configured, const Config& cfg);
    const std::string name;   // region id; "" in the one-region setup
    const std::string label;  // metrics label: the name ("other" past Regions::kMaxLabels; "" one-region)
    const unsigned index;     // into Worker::pools
    const bool configured;    // named by the config (else discovered)
    Endpoint ep;
    std::shared_ptr<boost::asio::ssl::context> tls;
    RetryBudget budget;
    CircuitBreaker breaker;
    ConcurrencyLimiter limiter;
    std::atomic<std::int64_t> last_success_ms{0};  // wall clock, ms since the epoch (0: none yet)
};

class Regions {
  public:
    static constexpr std::size_t kMaxLabels = 64;  // distinct region labels in the metrics

    Regions(const Config& cfg, Metrics& metrics);
    ~Regions();
    // Builds the configured regions (or the one region) and the static project map. Once.
    bool init(std::string& why);
    bool multi() const { return multi_; }
    // The one-region setup's region.
    Region& only() { return *regions_.front(); }

    // Which region serves `project_id` now (multi-region). `region` is null when it is not served: `miss`
    // says why (for the log; callers all get the same 404).
    enum class Miss { none, unknown, disabled, no_region };
    struct Found {
        Region* region = nullptr;
        Miss miss = Miss::none;
    };
    Found find(std::string_view project_id);

    // Discovery's answer replaces the discovered part of the project map (static entries win).
    void set_discovered(const std::vector<IamProject>& projects);
    std::shared_ptr<const ProjectMap> projects() const;
    std::vector<Region*> list() const;  // every region made so far, by index

    const std::shared_ptr<Proxy>& proxy() const { return proxy_; }
    bool reload(std::string& why);  // SIGHUP: the proxy's credentials

  private:
    Region* add(const std::string& name, bool configured, std::string& why);  // under mu_
    Region* named(const std::string& name);                                   // under mu_

    const Config& cfg_;
    Metrics& metrics_;
    const bool multi_;
    std::shared_ptr<Proxy> proxy_;
    mutable std::mutex mu_;
    std::vector<std::unique_ptr<Region>> regions_;
    std::map<std::string, std::shared_ptr<boost::asio::ssl::context>> tls_by_ca_;
    std::shared_ptr<const ProjectMap> map_;
    std::set<std::string> refused_;  // regions that could not be made (logged once each)
};

}  // namespace rdsgw
