// IAM mode's credentials: a set of token keepers, one per token scope. The one-region setup has one (scoped
// as auth.iam says, used for every project); with regions each project gets its own project-scoped token,
// obtained on first need or ahead of time for statically mapped projects, at most auth.iam.max_tokens at once
// (the least recently used one goes). Every keeper behaves as the one token did before: refreshed in the
// background refresh_margin_s before expiry, never injected with less than min_validity_s left, IAM failures
// retried with backoff, and dropped and renewed once for a burst of 401s. All IAM calls go through one
// IamClient on one executor.
#pragma once
#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "rdsgw/credentials.hpp"
#include "rdsgw/iam.hpp"

namespace rdsgw {

class IamClient;
class Metrics;
class Waker;

// One token scope's token: fetch, refresh before expiry, renew on rejection, single-flight.
class TokenKeeper : public std::enable_shared_from_this<TokenKeeper> {
  public:
    // `label` is appended to log lines ("" or " for project <id>").
    TokenKeeper(IamScope scope, std::string region, std::string label, std::shared_ptr<IamClient> iam,
                Metrics* metrics);
    // Starts the refresh loop on the IAM client's executor (it fetches the first token at once).
    void start();
    void stop();
    void release_io();

    // The current token when it has more than min_validity_s left; else null.
    std::shared_ptr<const IamToken> current(std::chrono::system_clock::time_point now) const;
    // Without a usable token: waits (until `deadline`) for the fetch under way to end (the first one, or a
    // renewal after a rejection). Returns at once when a token is there, or when no fetch is under way (the
    // last one failed and the next waits for its backoff): the caller then answers 503 at once.
    boost::asio::awaitable<void> wait_fetch(std::chrono::steady_clock::time_point deadline);
    // See CredentialSource::renew_after_rejection.
    boost::asio::awaitable<bool> renew(const std::shared_ptr<const void>& used,
                                       std::chrono::steady_clock::time_point deadline);
    CredentialSource::Status status(std::chrono::system_clock::time_point now) const;
    // The token sent now and the one before (for the check that no upstream answer echoes them). A token
    // dropped after a rejection is "the one before" until the next new token replaces it there.
    CredentialSource::EchoSecrets secrets() const;

    const IamScope& scope() const { return scope_; }
    const std::string& region() const { return region_; }
    std::atomic<std::uint64_t> last_used{0};  // IamTokens' LRU stamp

  private:
    struct Waiter {
        std::shared_ptr<Waker> waker;
        bool any_result;  // woken by a failed fetch too (first need), or only by a new token (renewal)
    };
    static boost::asio::awaitable<void> run(std::shared_ptr<TokenKeeper> self);
    std::chrono::steady_clock::time_point next_fetch(unsigned failures) const;  // under mu_
    void landed(bool ok, IamToken token, const std::string& err);

    IamScope scope_;
    std::string region_, label_;
    std::shared_ptr<IamClient> iam_;
    Metrics* metrics_;
    mutable std::mutex mu_;
    std::shared_ptr<const IamToken> cur_, prev_;
    std::string last_error_;
    bool fetching_ = true;  // a fetch is under way or imminent (the first one; a renewal)
    bool stopped_ = false;
    std::shared_ptr<Waker> wake_;  // the refresh loop's
    std::vector<Waiter> waiters_;
};

// Builds IAM mode's CredentialSource; null with `why` when the IAM settings or the password are unusable.
std::unique_ptr<CredentialSource> make_iam_tokens(const Config& cfg, const CredentialDeps& deps,
                                                  std::string& why);

}  // namespace rdsgw
