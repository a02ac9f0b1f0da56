#include "rdsgw/iam_tokens.hpp"

#include <boost/asio.hpp>
#include <unordered_map>

#include "rdsgw/async_util.hpp"
#include "rdsgw/iam_client.hpp"
#include "rdsgw/log.hpp"
#include "rdsgw/metrics.hpp"
#include "rdsgw/proxy.hpp"
#include "rdsgw/resilience.hpp"

namespace rdsgw {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;
using sys = std::chrono::system_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

// ------------------------------------------------------------------------------------------ TokenKeeper

TokenKeeper::TokenKeeper(IamScope scope, std::string region, std::string label,
                         std::shared_ptr<IamClient> iam, Metrics* metrics)
    : scope_(std::move(scope)),
      region_(std::move(region)),
      label_(std::move(label)),
      iam_(std::move(iam)),
      metrics_(metrics) {}

void TokenKeeper::start() {
    asio::co_spawn(iam_->executor(), run(shared_from_this()), asio::detached);
}

void TokenKeeper::stop() {
    std::vector<Waiter> ws;
    std::shared_ptr<Waker> w;
    {
        std::lock_guard lk(mu_);
        stopped_ = true;
        w = wake_;
        ws = waiters_;
    }
    if (w) w->fire();
    for (auto& x : ws) x.waker->fire();
}

void TokenKeeper::release_io() {
    std::lock_guard lk(mu_);
    stopped_ = true;
    wake_.reset();
    waiters_.clear();
}

std::shared_ptr<const IamToken> TokenKeeper::current(sys::time_point now) const {
    std::lock_guard lk(mu_);
    if (!cur_ || cur_->expires_at - now <= seconds(iam_->config().min_validity_s)) return nullptr;
    return cur_;
}

asio::awaitable<void> TokenKeeper::wait_fetch(steady::time_point deadline) {
    auto w = std::make_shared<Waker>(co_await asio::this_coro::executor);
    {
        std::lock_guard lk(mu_);
        const bool usable = cur_ && cur_->expires_at - sys::now() > seconds(iam_->config().min_validity_s);
        if (usable || !fetching_ || stopped_) co_return;
        waiters_.push_back({w, true});
    }
    co_await w->wait(deadline);
    std::lock_guard lk(mu_);
    std::erase_if(waiters_, [&](const Waiter& x) { return x.waker == w; });
}

asio::awaitable<bool> TokenKeeper::renew(const std::shared_ptr<const void>& used_ref,
                                         steady::time_point deadline) {
    std::shared_ptr<const void> used = used_ref;
    auto self = shared_from_this();
    auto w = std::make_shared<Waker>(co_await asio::this_coro::executor);
    std::shared_ptr<Waker> refresher;
    {
        std::lock_guard lk(mu_);
        if (cur_ && cur_ == used) {
            log_warn("upstream rejected the IAM token" + label_ + "; dropping it and refreshing");
            // Dropped from use, not from the echo scan: it is the token "before the last rotation" now
            // (landed() keeps prev_ when there is no current token to move there).
            prev_ = std::move(cur_);
            fetching_ = true;
            refresher = wake_;
        }
        if (cur_ && cur_ != used) co_return true;  // someone already refreshed
        if (stopped_) co_return false;
        waiters_.push_back({w, false});
    }
    if (refresher) refresher->fire();
    const bool ok = co_await w->wait(deadline);
    std::lock_guard lk(mu_);
    std::erase_if(waiters_, [&](const Waiter& x) { return x.waker == w; });
    co_return ok&& cur_&& cur_ != used;
}

CredentialSource::Status TokenKeeper::status(sys::time_point now) const {
    const unsigned min_validity = iam_->config().min_validity_s;
    std::lock_guard lk(mu_);
    if (!cur_) {
        std::string r =
            last_error_.empty() ? "waiting for the first IAM token" : "no valid IAM token: " + last_error_;
        return {false, r + label_, -1};
    }
    const double left = std::chrono::duration<double>(cur_->expires_at - now).count();
    if (left <= min_validity)
        return {false, "IAM token" + label_ + " expired or about to; refresh failing: " + last_error_, left};
    return {true, "", left};
}

steady::time_point TokenKeeper::next_fetch(unsigned failures) const {
    const IamConfig& cfg = iam_->config();
    if (failures > 0)
        return steady::now() +
               backoff_delay(failures, milliseconds(cfg.retry_base_ms), milliseconds(cfg.retry_max_ms));
    if (!cur_) return steady::now();
    const auto refresh_at = cur_->expires_at - seconds(cfg.refresh_margin_s);
    return steady::now() + std::chrono::duration_cast<steady::duration>(
                               std::max(refresh_at - sys::now(), sys::duration::zero()));
}

CredentialSource::EchoSecrets TokenKeeper::secrets() const {
    std::lock_guard lk(mu_);
    CredentialSource::EchoSecrets out;
    if (cur_) out.current = std::shared_ptr<const std::string>(cur_, &cur_->value);
    if (prev_) out.previous = std::shared_ptr<const std::string>(prev_, &prev_->value);
    return out;
}

void TokenKeeper::landed(bool ok, IamToken token, const std::string& err) {
    std::vector<Waiter> wake;
    {
        std::lock_guard lk(mu_);
        fetching_ = false;
        if (ok) {
            if (cur_) prev_ = std::move(cur_);
            cur_ = std::make_shared<const IamToken>(std::move(token));
            last_error_.clear();
        } else {
            last_error_ = err;
        }
        for (auto& w : waiters_)
            if (ok || w.any_result) wake.push_back(w);
    }
    if (ok)
        log_info("obtained a new IAM token" + label_);
    else
        log_warn("IAM token refresh failed" + label_ + ": " + err);
    if (metrics_) metrics_->credential_refresh("iam", ok ? "ok" : "error");
    for (auto& w : wake) w.waker->fire();
}

asio::awaitable<void> TokenKeeper::run(std::shared_ptr<TokenKeeper> self) {
    unsigned failures = 0;
    for (;;) {
        std::shared_ptr<Waker> w;
        steady::time_point next;
        {
            std::lock_guard lk(self->mu_);
            if (self->stopped_) co_return;
            next = self->next_fetch(failures);
            self->wake_ = std::make_shared<Waker>(self->iam_->executor());
            w = self->wake_;
        }
        if (next > steady::now()) co_await w->wait(next);
        {
            std::lock_guard lk(self->mu_);
            if (self->stopped_) co_return;
            self->fetching_ = true;
        }
        IamToken token;
        std::string err;
        const bool ok = co_await self->iam_->issue_token(self->scope_, token, err);
        failures = ok ? 0 : failures + 1;
        self->landed(ok, std::move(token), err);
    }
}

// ------------------------------------------------------------------------------------------- IamTokens

namespace {

class IamTokens final : public CredentialSource {
  public:
    IamTokens(const Config& cfg, std::shared_ptr<IamClient> iam, Metrics* metrics, milliseconds first_wait)
        : multi_(multi_region(cfg)),
          max_tokens_(cfg.auth.iam.max_tokens),
          first_wait_(first_wait),
          iam_(std::move(iam)),
          metrics_(metrics) {
        // The token of the configured scope: every request's in the one-region setup; with regions, the one
        // that lists the projects (created when discovery first needs it).
        if (!multi_) single_ = make(IamScope::configured(cfg.auth.iam), "", "");
    }
    ~IamTokens() override { stop(); }

    std::string_view kind() const override { return "iam"; }

    void start(asio::any_io_executor ex) override {
        iam_->start(ex);
        std::vector<std::shared_ptr<TokenKeeper>> all;
        {
            std::lock_guard lk(mu_);
            started_ = true;
            all = everyone();
        }
        for (auto& k : all) k->start();
    }

    void stop() override {
        std::vector<std::shared_ptr<TokenKeeper>> all;
        {
            std::lock_guard lk(mu_);
            all = everyone();
        }
        for (auto& k : all) k->stop();
    }

    void release_io() override {
        std::vector<std::shared_ptr<TokenKeeper>> all;
        {
            std::lock_guard lk(mu_);
            all = everyone();
        }
        for (auto& k : all) k->release_io();
        iam_->release_io();
    }

    bool reload(std::string& why) override { return iam_->reload(why); }

    asio::awaitable<void> prepare(const CredentialTarget& t, steady::time_point deadline) override {
        if (!multi_) co_return;  // one token, obtained in the background from the start
        auto k = keeper_for(t.project_id, t.region);
        if (k->current(sys::now())) co_return;
        co_await k->wait_fetch(std::min(deadline, steady::now() + first_wait_));
    }

    bool apply(UpstreamRequest& req, const CredentialTarget& t, sys::time_point now,
               std::shared_ptr<const void>& used, std::string& why) override {
        auto k = multi_ ? find(t.project_id) : single_;
        auto tok = k ? k->current(now) : nullptr;
        if (!tok) {
            why = "no valid upstream credentials";
            return false;
        }
        req.headers.emplace_back("X-Auth-Token", tok->value);
        used = tok;
        return true;
    }

    asio::awaitable<bool> renew_after_rejection(const CredentialTarget& t,
                                                const std::shared_ptr<const void>& used,
                                                steady::time_point deadline) override {
        auto k = multi_ ? find(t.project_id) : single_;
        if (!k) co_return false;
        co_return co_await k->renew(used, deadline);
    }

    Status status(sys::time_point now) const override {
        if (!multi_) return single_->status(now);
        return summary(now, nullptr);
    }

    Status region_status(std::string_view region, sys::time_point now) const override {
        if (!multi_) return single_->status(now);
        return summary(now, &region);
    }

    void prefetch(std::string_view project_id, std::string_view region) override {
        if (multi_) keeper_for(project_id, region);
    }

    IamClient* iam() override { return iam_.get(); }

    EchoSecrets secrets_for_scan(const CredentialTarget& t) override {
        auto k = multi_ ? find(t.project_id) : single_;
        return k ? k->secrets() : EchoSecrets{};
    }

    asio::awaitable<bool> authorize_iam(UpstreamRequest& req, steady::time_point deadline,
                                        std::string& why) override {
        std::shared_ptr<TokenKeeper> k = lister();
        if (!k->current(sys::now())) co_await k->wait_fetch(deadline);
        auto tok = k->current(sys::now());
        if (!tok) {
            why = "no IAM token to list the projects with: " + k->status(sys::now()).reason;
            co_return false;
        }
        req.headers.emplace_back("X-Auth-Token", tok->value);
        co_return true;
    }

  private:
    std::shared_ptr<TokenKeeper> make(IamScope scope, std::string region, std::string label) {
        return std::make_shared<TokenKeeper>(std::move(scope), std::move(region), std::move(label), iam_,
                                             metrics_);
    }

    std::vector<std::shared_ptr<TokenKeeper>> everyone() const {  // under mu_
        std::vector<std::shared_ptr<TokenKeeper>> all;
        if (single_) all.push_back(single_);
        if (lister_) all.push_back(lister_);
        for (auto& [id, k] : keepers_) all.push_back(k);
        return all;
    }

    std::shared_ptr<TokenKeeper> find(std::string_view project_id) {
        std::lock_guard lk(mu_);
        auto it = keepers_.find(std::string(project_id));
        if (it == keepers_.end()) return nullptr;
        it->second->last_used.store(++clock_, std::memory_order_relaxed);
        return it->second;
    }

    // The project's keeper, made (and started) on first need; the least recently used one goes past
    // max_tokens.
    std::shared_ptr<TokenKeeper> keeper_for(std::string_view project_id, std::string_view region) {
        std::shared_ptr<TokenKeeper> k, evicted;
        bool start = false;
        {
            std::lock_guard lk(mu_);
            const std::string id(project_id);
            if (auto it = keepers_.find(id); it != keepers_.end()) {
                it->second->last_used.store(++clock_, std::memory_order_relaxed);
                return it->second;
            }
            if (keepers_.size() >= max_tokens_) {
                auto lru =
                    std::min_element(keepers_.begin(), keepers_.end(), [](const auto& a, const auto& b) {
                        return a.second->last_used.load() < b.second->last_used.load();
                    });
                evicted = lru->second;
                keepers_.erase(lru);
            }
            k = make(IamScope::project(id), std::string(region), " for project " + id);
            k->last_used.store(++clock_, std::memory_order_relaxed);
            keepers_.emplace(id, k);
            start = started_;
        }
        if (evicted) {
            log_info("IAM token for project " + evicted->scope().value +
                     " dropped (auth.iam.max_tokens reached)");
            evicted->stop();
        }
        if (start) k->start();
        return k;
    }

    std::shared_ptr<TokenKeeper> lister() {
        if (!multi_) return single_;
        bool start = false;
        std::shared_ptr<TokenKeeper> k;
        {
            std::lock_guard lk(mu_);
            if (!lister_) {
                lister_ = make(IamScope::configured(iam_->config()), "", " for the project list");
                start = started_;
            }
            k = lister_;
        }
        if (start) k->start();
        return k;
    }

    // Multi-region: ready while a token is usable, or none was asked for yet (tokens come on first need).
    Status summary(sys::time_point now, const std::string_view* region) const {
        std::vector<std::shared_ptr<TokenKeeper>> ks;
        {
            std::lock_guard lk(mu_);
            for (auto& [id, k] : keepers_)
                if (!region || k->region() == *region) ks.push_back(k);
        }
        if (ks.empty()) return {true, "", -1};
        Status best{false, "", -1};
        for (auto& k : ks) {
            Status s = k->status(now);
            if (s.ready && (!best.ready || s.seconds_to_expiry < best.seconds_to_expiry)) best = s;
            if (!best.ready && best.reason.empty()) best.reason = s.reason;
        }
        if (best.ready) best.reason.clear();
        return best;
    }

    const bool multi_;
    const std::size_t max_tokens_;
    const milliseconds first_wait_;
    std::shared_ptr<IamClient> iam_;
    Metrics* metrics_;
    mutable std::mutex mu_;
    bool started_ = false;
    std::uint64_t clock_ = 0;
    std::shared_ptr<TokenKeeper> single_, lister_;
    std::unordered_map<std::string, std::shared_ptr<TokenKeeper>> keepers_;  // by project id
};

}  // namespace

std::unique_ptr<CredentialSource> make_iam_tokens(const Config& cfg, const CredentialDeps& deps,
                                                  std::string& why) {
    IamClient::Options o;
    o.ca_file = cfg.auth.iam.ca_file.empty() ? deps.upstream_ca_file : cfg.auth.iam.ca_file;
    o.connect_timeout = deps.connect_timeout;
    o.request_timeout = deps.request_timeout;
    o.proxy = Proxy::make(cfg.upstream.proxy, why);
    if (!o.proxy && !why.empty()) return nullptr;
    auto iam = std::make_shared<IamClient>(cfg.auth.iam, o);
    if (!iam->init(why)) return nullptr;
    return std::make_unique<IamTokens>(cfg, std::move(iam), deps.metrics, deps.request_timeout);
}

}  // namespace rdsgw
