// Upstream credentials: static tokens (env or file, re-read on SIGHUP; one per region when configured), IAM
// tokens the gateway obtains and refreshes itself (one for the one-region setup, one per project with
// regions), or AK/SK request signing. One source per process, shared by all threads.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "rdsgw/config.hpp"
#include "rdsgw/upstream.hpp"

namespace rdsgw {

class IamClient;
class Metrics;

// What one upstream request needs a credential for: the region (static tokens per region; the endpoint an
// AK/SK signature covers) and the project (multi-region IAM: one project-scoped token each).
struct CredentialTarget {
    std::string_view region;  // region id; "" in the one-region setup
    std::string_view project_id;
    const Endpoint* endpoint = nullptr;
};

class CredentialSource {
  public:
    struct Status {
        bool ready = false;
        std::string reason;             // why not ready (never a secret)
        double seconds_to_expiry = -1;  // -1 none, +inf no expiry
    };
    virtual ~CredentialSource() = default;
    virtual std::string_view kind() const = 0;  // "token" | "iam" | "aksk"
    // Starts background work (IAM refresh, the IAM client) on `ex`. Safe to call once.
    virtual void start(boost::asio::any_io_executor) {}
    virtual void stop() {}
    // Releases I/O objects bound to the executor given to start(); called after the io_contexts stopped.
    virtual void release_io() {}
    // SIGHUP: re-read secrets from their files/env. False with a reason when a new secret is unusable
    // (the old one stays in use).
    virtual bool reload(std::string& why) = 0;
    // Called before apply() on the fetch's own thread. Multi-region IAM: obtains the project's token on
    // first need (one IAM call for all the callers of a project), waiting at most until `deadline`.
    virtual boost::asio::awaitable<void> prepare(const CredentialTarget& target,
                                                 std::chrono::steady_clock::time_point deadline);
    // Adds the credential headers to `req` (its target and headers must be final, X-Project-Id included).
    // False with a reason when no usable credential exists (the caller answers 503 at once).
    virtual bool apply(UpstreamRequest& req, const CredentialTarget& target,
                       std::chrono::system_clock::time_point now, std::shared_ptr<const void>& used,
                       std::string& why) = 0;
    // The upstream answered 401 APIGW.0307/0301 to a request that used `used`. Drops that credential if it is
    // still the current one (so a burst of 401s causes one refresh) and waits for a new one. True when a
    // retry may help. Only the target's credential is touched.
    virtual boost::asio::awaitable<bool> renew_after_rejection(
        const CredentialTarget& target, const std::shared_ptr<const void>& used,
        std::chrono::steady_clock::time_point deadline);
    // The state of the credential(s): the whole source, and those a region's requests use.
    virtual Status status(std::chrono::system_clock::time_point now) const = 0;
    virtual Status region_status(std::string_view region, std::chrono::system_clock::time_point now) const;

    // Multi-region IAM: obtain this project's token ahead of its first request (statically mapped projects).
    virtual void prefetch(std::string_view /*project_id*/, std::string_view /*region*/) {}
    // Project discovery: the IAM client (null when there is none) and how its project-list call is
    // authenticated (the gateway's own IAM token, or an AK/SK signature); may wait until `deadline`.
    virtual IamClient* iam() { return nullptr; }
    virtual boost::asio::awaitable<bool> authorize_iam(UpstreamRequest& req,
                                                       std::chrono::steady_clock::time_point deadline,
                                                       std::string& why);

    // The values an upstream could echo back to callers for this target: the credential (static token, IAM
    // token, security token) the gateway sends it now and the one it sent before the last rotation. Shared
    // handles, no copies; empty when there are none.
    struct EchoSecrets {
        std::shared_ptr<const std::string> current, previous;
    };
    virtual EchoSecrets secrets_for_scan(const CredentialTarget& target);

  protected:
    // For sources with one value for every target: call it whenever the value sent changes.
    void rotated(const std::string& now_sent);

  private:
    mutable std::mutex scan_mu_;
    EchoSecrets scan_;
};

struct CredentialDeps {
    Metrics* metrics = nullptr;
    std::chrono::milliseconds connect_timeout{2000};
    std::chrono::milliseconds request_timeout{10000};
    std::string upstream_ca_file;
};

// Builds the source for cfg.auth (and cfg.regions' tokens, cfg.projects' discovery); null with `why` when its
// secrets cannot be loaded.
std::unique_ptr<CredentialSource> make_credential_source(const Config& cfg, const CredentialDeps& deps,
                                                         std::string& why);

// Builds the IAM request body for a password identity scoped as auth.iam says (exposed for tests).
std::string iam_request_body(const IamConfig& cfg, std::string_view password);

}  // namespace rdsgw
