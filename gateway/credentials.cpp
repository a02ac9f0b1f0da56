#include "rdsgw/credentials.hpp"

#include <boost/asio.hpp>
#include <limits>
#include <map>
#include <mutex>

#include "rdsgw/iam.hpp"
#include "rdsgw/iam_client.hpp"
#include "rdsgw/iam_tokens.hpp"
#include "rdsgw/log.hpp"
#include "rdsgw/metrics.hpp"
#include "rdsgw/proxy.hpp"
#include "rdsgw/signer.hpp"

namespace rdsgw {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;
using sys = std::chrono::system_clock;

asio::awaitable<void> CredentialSource::prepare(const CredentialTarget&, steady::time_point) {
    co_return;
}

asio::awaitable<bool> CredentialSource::renew_after_rejection(const CredentialTarget&,
                                                              const std::shared_ptr<const void>&,
                                                              steady::time_point) {
    co_return false;
}

CredentialSource::Status CredentialSource::region_status(std::string_view, sys::time_point now) const {
    return status(now);
}

asio::awaitable<bool> CredentialSource::authorize_iam(UpstreamRequest&, steady::time_point,
                                                      std::string& why) {
    why = "auth.mode " + std::string(kind()) + " cannot list IAM projects";
    co_return false;
}

CredentialSource::EchoSecrets CredentialSource::secrets_for_scan(const CredentialTarget&) {
    std::lock_guard lk(scan_mu_);
    return scan_;
}

void CredentialSource::rotated(const std::string& now_sent) {
    if (now_sent.empty()) return;
    std::lock_guard lk(scan_mu_);
    if (scan_.current && *scan_.current == now_sent) return;
    scan_.previous = std::move(scan_.current);
    scan_.current = std::make_shared<const std::string>(now_sent);
}

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Secret {
    std::string value;
};

// ---------------------------------------------------------------- static token
// One token for every region (auth.token), or per region (regions.<name>.token; auth.token for the others).
class TokenSource final : public CredentialSource {
  public:
    TokenSource(const Config& cfg, Metrics* m) : metrics_(m) {
        bool every_region_has_one = !cfg.regions.empty() && cfg.upstream.base_url_template.empty();
        for (const auto& r : cfg.regions) {
            if (r.token.empty())
                every_region_has_one = false;
            else
                slots_[r.name].ref = {r.token, "regions." + r.name + ".token"};
        }
        if (!every_region_has_one) slots_[""].ref = {cfg.auth.token, "auth.token"};
    }
    std::string_view kind() const override { return "token"; }
    bool reload(std::string& why) override {
        bool all = true;
        for (auto& [region, slot] : slots_) {
            std::string v, err;
            if (!load_secret(slot.ref.first, v, err)) {
                if (all) why = slot.ref.second + ": " + err;
                all = false;
                if (metrics_) metrics_->credential_refresh("token", "error");
                continue;
            }
            auto s = std::make_shared<const Secret>(Secret{std::move(v)});
            std::lock_guard lk(mu_);
            if (slot.cur && slot.cur->value != s->value) slot.prev = std::move(slot.cur);
            slot.cur = std::move(s);
            if (metrics_) metrics_->credential_refresh("token", "ok");
        }
        return all;
    }
    bool apply(UpstreamRequest& req, const CredentialTarget& t, sys::time_point,
               std::shared_ptr<const void>& used, std::string& why) override {
        std::shared_ptr<const Secret> s;
        if (const Slot* slot = slot_for(t.region)) {
            std::lock_guard lk(mu_);
            s = slot->cur;
        }
        if (!s) {
            why = "no valid upstream credentials";
            return false;
        }
        req.headers.emplace_back("X-Auth-Token", s->value);
        used = s;
        return true;
    }
    Status status(sys::time_point) const override {
        std::lock_guard lk(mu_);
        for (const auto& [region, slot] : slots_)
            if (!slot.cur) return {false, "no token loaded from " + slot.ref.first.describe(), -1};
        return {true, "", kInf};
    }
    Status region_status(std::string_view region, sys::time_point) const override {
        const Slot* slot = slot_for(region);
        std::lock_guard lk(mu_);
        if (!slot || !slot->cur)
            return {false,
                    "no token loaded from " + (slot ? slot->ref.first.describe() : std::string("auth.token")),
                    -1};
        return {true, "", kInf};
    }

    EchoSecrets secrets_for_scan(const CredentialTarget& t) override {
        EchoSecrets out;
        const Slot* slot = slot_for(t.region);
        if (!slot) return out;
        std::lock_guard lk(mu_);
        if (slot->cur) out.current = std::shared_ptr<const std::string>(slot->cur, &slot->cur->value);
        if (slot->prev) out.previous = std::shared_ptr<const std::string>(slot->prev, &slot->prev->value);
        return out;
    }

  private:
    struct Slot {
        std::pair<SecretRef, std::string> ref;    // where, and the key for messages
        std::shared_ptr<const Secret> cur, prev;  // prev: before the last reload changed it
    };
    const Slot* slot_for(std::string_view region) const {
        auto it = slots_.find(region);
        if (it == slots_.end()) it = slots_.find(std::string_view());
        return it == slots_.end() ? nullptr : &it->second;
    }

    Metrics* metrics_;
    mutable std::mutex mu_;                           // guards every Slot::cur (the map itself is fixed)
    std::map<std::string, Slot, std::less<>> slots_;  // "" = auth.token
};

// ---------------------------------------------------------------- AK/SK
struct Keys {
    std::string ak, sk, security_token;
};

// Signs `req` (target and headers final) for `host_header`: X-Sdk-Date, X-Security-Token, Authorization.
void sign(UpstreamRequest& req, const std::string& host_header, const Keys& k, sys::time_point now) {
    SignableRequest s;
    s.method = req.method;
    auto q = req.target.find('?');
    s.path = req.target.substr(0, q);
    if (q != std::string::npos) s.query = req.target.substr(q + 1);
    req.headers.emplace_back("X-Sdk-Date", sdk_date(now));
    if (!k.security_token.empty()) req.headers.emplace_back("X-Security-Token", k.security_token);
    s.headers.emplace_back("Host", host_header);
    for (auto& [name, value] : req.headers) {
        // Sign every header we send, as the official SDKs do, except the ones below.
        if (name == "User-Agent" || name == "Accept-Encoding") continue;
        s.headers.emplace_back(name, value);
    }
    s.body = req.body;
    req.headers.emplace_back("Authorization", authorization_header(s, k.ak, k.sk));
}

class AkskSource final : public CredentialSource {
  public:
    AkskSource(AkskConfig cfg, Metrics* m, std::shared_ptr<IamClient> iam)
        : cfg_(std::move(cfg)), metrics_(m), iam_(std::move(iam)) {}
    std::string_view kind() const override { return "aksk"; }
    void start(asio::any_io_executor ex) override {
        if (iam_) iam_->start(ex);
    }
    void release_io() override {
        if (iam_) iam_->release_io();
    }
    bool reload(std::string& why) override {
        Keys k;
        if (!load_secret(cfg_.ak, k.ak, why)) {
            why = "auth.aksk.ak: " + why;
            if (metrics_) metrics_->credential_refresh("aksk", "error");
            return false;
        }
        if (!load_secret(cfg_.sk, k.sk, why)) {
            why = "auth.aksk.sk: " + why;
            if (metrics_) metrics_->credential_refresh("aksk", "error");
            return false;
        }
        if (!cfg_.security_token.empty() && !load_secret(cfg_.security_token, k.security_token, why)) {
            why = "auth.aksk.security_token: " + why;
            if (metrics_) metrics_->credential_refresh("aksk", "error");
            return false;
        }
        if (iam_ && !iam_->reload(why)) return false;  // the proxy's credentials
        auto p = std::make_shared<const Keys>(std::move(k));
        rotated(p->security_token);
        std::lock_guard lk(mu_);
        cur_ = std::move(p);
        if (metrics_) metrics_->credential_refresh("aksk", "ok");
        return true;
    }
    bool apply(UpstreamRequest& req, const CredentialTarget& t, sys::time_point now,
               std::shared_ptr<const void>& used, std::string& why) override {
        auto k = keys();
        if (!k) {
            why = "no valid upstream credentials";
            return false;
        }
        sign(req, t.endpoint->host_header, *k, now);
        used = k;
        return true;
    }
    Status status(sys::time_point) const override {
        std::lock_guard lk(mu_);
        if (!cur_) return {false, "AK/SK not loaded", -1};
        return {true, "", kInf};
    }
    IamClient* iam() override { return iam_.get(); }
    // IAM is a global service: its calls are signed with the account id (X-Domain-Id), not a project's.
    asio::awaitable<bool> authorize_iam(UpstreamRequest& req, steady::time_point, std::string& why) override {
        auto k = keys();
        if (!k || !iam_) {
            why = "no AK/SK to sign the project list with";
            co_return false;
        }
        if (!cfg_.domain_id.empty()) req.headers.emplace_back("X-Domain-Id", cfg_.domain_id);
        sign(req, iam_->endpoint().host_header, *k, sys::now());
        co_return true;
    }

  private:
    std::shared_ptr<const Keys> keys() const {
        std::lock_guard lk(mu_);
        return cur_;
    }

    AkskConfig cfg_;
    Metrics* metrics_;
    std::shared_ptr<IamClient> iam_;  // project discovery only
    mutable std::mutex mu_;
    std::shared_ptr<const Keys> cur_;
};

}  // namespace

std::string iam_request_body(const IamConfig& cfg, std::string_view password) {
    return iam_token_request_body(cfg, password, IamScope::configured(cfg));
}

std::unique_ptr<CredentialSource> make_credential_source(const Config& cfg, const CredentialDeps& deps,
                                                         std::string& why) {
    switch (cfg.auth.mode) {
        case AuthMode::token: {
            auto s = std::make_unique<TokenSource>(cfg, deps.metrics);
            if (!s->reload(why)) return nullptr;
            return s;
        }
        case AuthMode::aksk: {
            std::shared_ptr<IamClient> iam;
            if (cfg.projects.discovery.enabled) {
                IamClient::Options o;
                o.ca_file = cfg.auth.iam.ca_file.empty() ? deps.upstream_ca_file : cfg.auth.iam.ca_file;
                o.connect_timeout = deps.connect_timeout;
                o.request_timeout = deps.request_timeout;
                o.with_password = false;
                o.proxy = Proxy::make(cfg.upstream.proxy, why);
                if (!o.proxy && !why.empty()) return nullptr;
                iam = std::make_shared<IamClient>(cfg.auth.iam, o);
                if (!iam->init(why)) return nullptr;
            }
            auto s = std::make_unique<AkskSource>(cfg.auth.aksk, deps.metrics, std::move(iam));
            if (!s->reload(why)) return nullptr;
            return s;
        }
        case AuthMode::iam:
            return make_iam_tokens(cfg, deps, why);
    }
    why = "unknown auth mode";
    return nullptr;
}

}  // namespace rdsgw
