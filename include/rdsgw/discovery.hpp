// Project discovery (projects.discovery): which projects the account has and their regions, from IAM's
// project list (GET /v3/auth/projects, authenticated with the gateway's own IAM token or signed with its
// AK/SK). Refreshed every refresh_s, and on demand when a request names an unknown project: one refresh at a
// time (callers join the one running), at most one every min_interval_s, and a request waits for it at most
// wait_ms. The result replaces the discovered part of the project map (Regions::set_discovered); static
// entries win. Runs on the IAM client's executor.
#pragma once
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "rdsgw/config.hpp"

namespace rdsgw {

class CredentialSource;
class Metrics;
class Regions;

class ProjectDiscovery {
  public:
    ProjectDiscovery(const DiscoveryConfig& cfg, Regions& regions, CredentialSource& creds, Metrics& metrics,
                     std::chrono::milliseconds request_timeout);
    ~ProjectDiscovery();
    // Starts the refresh loop (the first refresh at once). After the credentials' start().
    void start();
    void stop();

    // A request named an unknown project. Joins the running refresh, or starts one unless one started within
    // min_interval_s; waits at most until `deadline` (and wait_ms). True when a refresh succeeded meanwhile
    // (look the project up again); false at once when rate-limited.
    boost::asio::awaitable<bool> refresh_for_unknown(std::chrono::steady_clock::time_point deadline);

    struct Status {
        bool ok = false;              // the last refresh succeeded
        std::string last_error;       // of the last failed refresh ("" when none)
        std::int64_t last_ok_ms = 0;  // wall clock of the last success (0: none)
        std::uint64_t refreshes = 0;  // finished refreshes
    };
    Status status() const;

  private:
    struct State;
    std::shared_ptr<State> st_;
};

}  // namespace rdsgw
