// Upstream credentials: a static token (env or file, re-read on SIGHUP), an IAM token the gateway obtains
// and refreshes itself, or AK/SK request signing. One source per process, shared by all threads.
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

class Metrics;

class CredentialSource {
  public:
    struct Status {
        bool ready = false;
        std::string reason;             // why not ready (never a secret)
        double seconds_to_expiry = -1;  // -1 none, +inf no expiry
    };
    virtual ~CredentialSource() = default;
    virtual std::string_view kind() const = 0;  // "token" | "iam" | "aksk"
    // Starts background work (IAM refresh) on `ex`. Safe to call once.
    virtual void start(boost::asio::any_io_executor) {}
    virtual void stop() {}
    // Releases I/O objects bound to the executor given to start(); called after the io_contexts stopped.
    virtual void release_io() {}
    // SIGHUP: re-read secrets from their files/env. False with a reason when the new secret is unusable
    // (the old one stays in use).
    virtual bool reload(std::string& why) = 0;
    // Adds the credential headers to `req` (its target and headers must be final, X-Project-Id included).
    // False with a reason when no usable credential exists (the caller answers 503 at once).
    virtual bool apply(UpstreamRequest& req, const Endpoint& ep, std::chrono::system_clock::time_point now,
                       std::shared_ptr<const void>& used, std::string& why) = 0;
    // The upstream answered 401 APIGW.0307/0301 to a request that used `used`. Drops that credential if it is
    // still the current one (so a burst of 401s causes one refresh) and waits for a new one. True when a
    // retry may help.
    virtual boost::asio::awaitable<bool> renew_after_rejection(
        const std::shared_ptr<const void>& used, std::chrono::steady_clock::time_point deadline);
    virtual Status status(std::chrono::system_clock::time_point now) const = 0;
    // The values an upstream could echo back: the token (static or IAM) or security token the gateway sends
    // now and the one before the last rotation. A snapshot, cheap to take; null when there are none.
    virtual std::shared_ptr<const std::vector<std::string>> secrets_for_scan() const;

  protected:
    // Sources call this whenever the value they send changes (the previous one is kept as well).
    void rotated(const std::string& now_sent);

  private:
    mutable std::mutex scan_mu_;
    std::shared_ptr<const std::vector<std::string>> scan_;
};

struct CredentialDeps {
    Metrics* metrics = nullptr;
    std::chrono::milliseconds connect_timeout{2000};
    std::chrono::milliseconds request_timeout{10000};
    std::string upstream_ca_file;
};

// Builds the source for config.auth; null with `why` when its secrets cannot be loaded.
std::unique_ptr<CredentialSource> make_credential_source(const AuthConfig& cfg, const CredentialDeps& deps,
                                                         std::string& why);

// Builds the IAM request body for a password identity (exposed for tests).
std::string iam_request_body(const IamConfig& cfg, std::string_view password);

}  // namespace rdsgw
