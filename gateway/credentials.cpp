#include "rdsgw/credentials.hpp"

#include <boost/asio.hpp>
#include <boost/json.hpp>
#include <cmath>
#include <limits>
#include <mutex>
#include <random>
#include <vector>

#include "rdsgw/async_util.hpp"
#include "rdsgw/log.hpp"
#include "rdsgw/metrics.hpp"
#include "rdsgw/resilience.hpp"
#include "rdsgw/signer.hpp"
#include "rdsgw/timefmt.hpp"

namespace rdsgw {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;
using sys = std::chrono::system_clock;

asio::awaitable<bool> CredentialSource::renew_after_rejection(const std::shared_ptr<const void>&,
                                                              steady::time_point) {
    co_return false;
}

std::shared_ptr<const std::vector<std::string>> CredentialSource::secrets_for_scan() const {
    std::lock_guard lk(scan_mu_);
    return scan_;
}

void CredentialSource::rotated(const std::string& now_sent) {
    if (now_sent.empty()) return;
    std::lock_guard lk(scan_mu_);
    if (scan_ && !scan_->empty() && scan_->front() == now_sent) return;
    auto next = std::make_shared<std::vector<std::string>>();
    next->push_back(now_sent);
    if (scan_ && !scan_->empty()) next->push_back(scan_->front());
    scan_ = std::move(next);
}

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Secret {
    std::string value;
};

// ---------------------------------------------------------------- static token
class TokenSource final : public CredentialSource {
  public:
    TokenSource(SecretRef ref, Metrics* m) : ref_(std::move(ref)), metrics_(m) {}
    bool init(std::string& why) { return reload(why); }
    std::string_view kind() const override { return "token"; }
    bool reload(std::string& why) override {
        std::string v;
        if (!load_secret(ref_, v, why)) {
            why = "auth.token: " + why;
            if (metrics_) metrics_->credential_refresh("token", "error");
            return false;
        }
        auto s = std::make_shared<const Secret>(Secret{std::move(v)});
        rotated(s->value);
        std::lock_guard lk(mu_);
        cur_ = std::move(s);
        if (metrics_) metrics_->credential_refresh("token", "ok");
        return true;
    }
    bool apply(UpstreamRequest& req, const Endpoint&, sys::time_point, std::shared_ptr<const void>& used,
               std::string& why) override {
        std::shared_ptr<const Secret> s;
        {
            std::lock_guard lk(mu_);
            s = cur_;
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
        if (!cur_) return {false, "no token loaded from " + ref_.describe(), -1};
        return {true, "", kInf};
    }

  private:
    SecretRef ref_;
    Metrics* metrics_;
    mutable std::mutex mu_;
    std::shared_ptr<const Secret> cur_;
};

// ---------------------------------------------------------------- AK/SK
struct Keys {
    std::string ak, sk, security_token;
};

class AkskSource final : public CredentialSource {
  public:
    AkskSource(AkskConfig cfg, Metrics* m) : cfg_(std::move(cfg)), metrics_(m) {}
    std::string_view kind() const override { return "aksk"; }
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
        auto p = std::make_shared<const Keys>(std::move(k));
        rotated(p->security_token);
        std::lock_guard lk(mu_);
        cur_ = std::move(p);
        if (metrics_) metrics_->credential_refresh("aksk", "ok");
        return true;
    }
    bool apply(UpstreamRequest& req, const Endpoint& ep, sys::time_point now,
               std::shared_ptr<const void>& used, std::string& why) override {
        std::shared_ptr<const Keys> k;
        {
            std::lock_guard lk(mu_);
            k = cur_;
        }
        if (!k) {
            why = "no valid upstream credentials";
            return false;
        }
        SignableRequest s;
        s.method = req.method;
        auto q = req.target.find('?');
        s.path = req.target.substr(0, q);
        if (q != std::string::npos) s.query = req.target.substr(q + 1);
        std::string date = sdk_date(now);
        req.headers.emplace_back("X-Sdk-Date", date);
        if (!k->security_token.empty()) req.headers.emplace_back("X-Security-Token", k->security_token);
        s.headers.emplace_back("Host", ep.host_header);
        for (auto& [name, value] : req.headers) {
            // Sign every header we send, as the official SDKs do, except the ones below.
            if (name == "User-Agent" || name == "Accept-Encoding") continue;
            s.headers.emplace_back(name, value);
        }
        s.body = req.body;
        req.headers.emplace_back("Authorization", authorization_header(s, k->ak, k->sk));
        used = k;
        return true;
    }
    Status status(sys::time_point) const override {
        std::lock_guard lk(mu_);
        if (!cur_) return {false, "AK/SK not loaded", -1};
        return {true, "", kInf};
    }

  private:
    AkskConfig cfg_;
    Metrics* metrics_;
    mutable std::mutex mu_;
    std::shared_ptr<const Keys> cur_;
};

// ---------------------------------------------------------------- IAM
struct IamToken {
    std::string value;
    sys::time_point expires_at;
};

class IamSource final : public CredentialSource, public std::enable_shared_from_this<IamSource> {
  public:
    IamSource(IamConfig cfg, CredentialDeps deps) : cfg_(std::move(cfg)), deps_(std::move(deps)) {}
    std::string_view kind() const override { return "iam"; }

    bool init(std::string& why) {
        if (!Endpoint::parse(cfg_.endpoint, ep_, why)) {
            why = "auth.iam.endpoint: " + why;
            return false;
        }
        if (ep_.tls) {
            tls_ = make_client_tls_context(cfg_.ca_file.empty() ? deps_.upstream_ca_file : cfg_.ca_file, why);
            if (!tls_) return false;
        }
        return reload(why);
    }

    bool reload(std::string& why) override {
        std::string pw;
        if (!load_secret(cfg_.password, pw, why)) {
            why = "auth.iam.password: " + why;
            return false;
        }
        std::lock_guard lk(mu_);
        body_ = iam_request_body(cfg_, pw);
        return true;
    }

    void start(asio::any_io_executor ex) override {
        ex_ = ex;
        PoolOptions po;
        po.connect_timeout = deps_.connect_timeout;
        po.max_idle = 2;
        pool_ = std::make_unique<ConnectionPool>(ex, ep_, tls_, po, nullptr);
        wake_ = std::make_shared<Waker>(ex);
        asio::co_spawn(ex, refresh_loop(), asio::detached);
    }

    void stop() override {
        std::shared_ptr<Waker> w;
        {
            std::lock_guard lk(mu_);
            stopped_ = true;
            w = wake_;
        }
        if (w) w->fire();
    }

    void release_io() override {
        std::lock_guard lk(mu_);
        stopped_ = true;
        wake_.reset();
        waiters_.clear();
        pool_.reset();
    }

    bool apply(UpstreamRequest& req, const Endpoint&, sys::time_point now, std::shared_ptr<const void>& used,
               std::string& why) override {
        std::shared_ptr<const IamToken> t;
        {
            std::lock_guard lk(mu_);
            t = cur_;
        }
        if (!t || t->expires_at - now <= std::chrono::seconds(cfg_.min_validity_s)) {
            why = "no valid upstream credentials";
            return false;
        }
        req.headers.emplace_back("X-Auth-Token", t->value);
        used = t;
        return true;
    }

    asio::awaitable<bool> renew_after_rejection(const std::shared_ptr<const void>& used_ref,
                                                steady::time_point deadline) override {
        std::shared_ptr<const void> used = used_ref;
        auto me = shared_from_this();
        std::shared_ptr<Waker> w = std::make_shared<Waker>(co_await asio::this_coro::executor);
        std::shared_ptr<Waker> refresher;
        {
            std::lock_guard lk(mu_);
            if (cur_ && cur_ == used) {
                log_warn("upstream rejected the IAM token; dropping it and refreshing");
                cur_.reset();
                refresher = wake_;
            }
            if (cur_ && cur_ != used) co_return true;  // someone already refreshed
            waiters_.push_back(w);
        }
        if (refresher) refresher->fire();
        bool ok = co_await w->wait(deadline);
        std::lock_guard lk(mu_);
        std::erase(waiters_, w);
        co_return ok&& cur_&& cur_ != used;
    }

    Status status(sys::time_point now) const override {
        std::lock_guard lk(mu_);
        if (!cur_) {
            std::string r = last_error_.empty() ? "waiting for the first IAM token"
                                                : "no valid IAM token: " + last_error_;
            return {false, r, -1};
        }
        double left = std::chrono::duration<double>(cur_->expires_at - now).count();
        if (left <= cfg_.min_validity_s) {
            return {false, "IAM token expired or about to; refresh failing: " + last_error_, left};
        }
        return {true, "", left};
    }

  private:
    asio::awaitable<void> refresh_loop() {
        auto self = shared_from_this();
        unsigned failures = 0;
        for (;;) {
            std::shared_ptr<Waker> w;
            steady::time_point next;
            {
                std::lock_guard lk(mu_);
                if (stopped_) co_return;
                auto now_sys = sys::now();
                if (!cur_)
                    next = steady::now();
                else {
                    auto refresh_at = cur_->expires_at - std::chrono::seconds(cfg_.refresh_margin_s);
                    next = steady::now() + std::chrono::duration_cast<steady::duration>(
                                               std::max(refresh_at - now_sys, sys::duration::zero()));
                }
                if (failures > 0) {
                    auto d = backoff_delay(failures, std::chrono::milliseconds(cfg_.retry_base_ms),
                                           std::chrono::milliseconds(cfg_.retry_max_ms));
                    next = steady::now() + d;
                }
                wake_ = std::make_shared<Waker>(ex_);
                w = wake_;
            }
            if (next > steady::now()) co_await w->wait(next);
            {
                std::lock_guard lk(mu_);
                if (stopped_) co_return;
            }
            std::string err;
            bool ok = co_await fetch(err);
            if (deps_.metrics) deps_.metrics->credential_refresh("iam", ok ? "ok" : "error");
            if (ok) {
                failures = 0;
                std::vector<std::shared_ptr<Waker>> ws;
                {
                    std::lock_guard lk(mu_);
                    ws = waiters_;
                    last_error_.clear();
                }
                for (auto& x : ws) x->fire();
            } else {
                ++failures;
                log_warn("IAM token refresh failed: " + err);
                std::lock_guard lk(mu_);
                last_error_ = err;
            }
        }
    }

    asio::awaitable<bool> fetch(std::string& err) {
        UpstreamRequest req;
        req.method = "POST";
        req.target = "/v3/auth/tokens?nocatalog=true";
        req.headers.emplace_back("Content-Type", "application/json;charset=utf8");
        req.headers.emplace_back("Accept", "application/json");
        req.headers.emplace_back("Accept-Encoding", "identity");
        {
            std::lock_guard lk(mu_);
            req.body = body_;
        }
        auto deadline = steady::now() + deps_.request_timeout;
        UpstreamResponse res = co_await pool_->exchange(req, deadline);
        if (res.error != UpstreamResponse::Error::none) {
            err = res.error_detail;
            co_return false;
        }
        if (res.status != 201 && res.status != 200) {
            err = "IAM answered HTTP " + std::to_string(res.status);
            co_return false;
        }
        if (res.subject_token.empty()) {
            err = "IAM answer has no X-Subject-Token";
            co_return false;
        }
        boost::system::error_code ec;
        auto v = boost::json::parse(res.body, ec);
        const boost::json::value* exp = nullptr;
        if (!ec && v.is_object()) {
            if (auto* tok = v.get_object().if_contains("token"); tok && tok->is_object())
                exp = tok->get_object().if_contains("expires_at");
        }
        if (!exp || !exp->is_string()) {
            err = "IAM answer has no token.expires_at";
            co_return false;
        }
        auto t = parse_rds_time(exp->get_string());
        if (!t) {
            err = "IAM answer has a malformed token.expires_at";
            co_return false;
        }
        auto tok =
            std::make_shared<const IamToken>(IamToken{std::move(res.subject_token), sys::time_point(t->utc)});
        if (tok->expires_at - sys::now() <= std::chrono::seconds(cfg_.min_validity_s)) {
            err = "IAM issued a token that is already (nearly) expired";
            co_return false;
        }
        rotated(tok->value);
        {
            std::lock_guard lk(mu_);
            cur_ = std::move(tok);
        }
        log_info("obtained a new IAM token");
        co_return true;
    }

    IamConfig cfg_;
    CredentialDeps deps_;
    Endpoint ep_;
    std::shared_ptr<asio::ssl::context> tls_;
    asio::any_io_executor ex_;
    std::unique_ptr<ConnectionPool> pool_;
    mutable std::mutex mu_;
    std::string body_;
    std::shared_ptr<const IamToken> cur_;
    std::shared_ptr<Waker> wake_;
    std::vector<std::shared_ptr<Waker>> waiters_;
    std::string last_error_;
    bool stopped_ = false;
};

// Keeps the IamSource alive through shared_ptr while exposing it as a unique_ptr<CredentialSource>.
class IamHandle final : public CredentialSource {
  public:
    explicit IamHandle(std::shared_ptr<IamSource> s) : s_(std::move(s)) {}
    ~IamHandle() override { s_->stop(); }
    std::string_view kind() const override { return s_->kind(); }
    void start(asio::any_io_executor ex) override { s_->start(ex); }
    void stop() override { s_->stop(); }
    void release_io() override { s_->release_io(); }
    bool reload(std::string& why) override { return s_->reload(why); }
    bool apply(UpstreamRequest& r, const Endpoint& e, sys::time_point n, std::shared_ptr<const void>& u,
               std::string& w) override {
        return s_->apply(r, e, n, u, w);
    }
    asio::awaitable<bool> renew_after_rejection(const std::shared_ptr<const void>& u,
                                                steady::time_point d) override {
        return s_->renew_after_rejection(u, d);
    }
    Status status(sys::time_point n) const override { return s_->status(n); }
    std::shared_ptr<const std::vector<std::string>> secrets_for_scan() const override {
        return s_->secrets_for_scan();
    }

  private:
    std::shared_ptr<IamSource> s_;
};

}  // namespace

std::string iam_request_body(const IamConfig& cfg, std::string_view password) {
    namespace json = boost::json;
    json::object user{
        {"domain", json::object{{"name", cfg.domain}}}, {"name", cfg.user}, {"password", password}};
    json::object scope_project;
    if (!cfg.project_id.empty())
        scope_project["id"] = cfg.project_id;
    else
        scope_project["name"] = cfg.project;
    json::value v = {{"auth",
                      {{"identity", {{"methods", json::array{"password"}}, {"password", {{"user", user}}}}},
                       {"scope", {{"project", scope_project}}}}}};
    return json::serialize(v);
}

std::unique_ptr<CredentialSource> make_credential_source(const AuthConfig& cfg, const CredentialDeps& deps,
                                                         std::string& why) {
    switch (cfg.mode) {
        case AuthMode::token: {
            auto s = std::make_unique<TokenSource>(cfg.token, deps.metrics);
            if (!s->init(why)) return nullptr;
            return s;
        }
        case AuthMode::aksk: {
            auto s = std::make_unique<AkskSource>(cfg.aksk, deps.metrics);
            if (!s->reload(why)) return nullptr;
            return s;
        }
        case AuthMode::iam: {
            auto s = std::make_shared<IamSource>(cfg.iam, deps);
            if (!s->init(why)) return nullptr;
            return std::make_unique<IamHandle>(std::move(s));
        }
    }
    why = "unknown auth mode";
    return nullptr;
}

}  // namespace rdsgw
