#include "rdsgw/discovery.hpp"

#include <boost/asio.hpp>
#include <mutex>
#include <vector>

#include "rdsgw/async_util.hpp"
#include "rdsgw/credentials.hpp"
#include "rdsgw/iam_client.hpp"
#include "rdsgw/log.hpp"
#include "rdsgw/metrics.hpp"
#include "rdsgw/regions.hpp"

namespace rdsgw {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;
using sys = std::chrono::system_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Shared with the refresh loop's coroutine. Only weak references to wakers: they are bound to io_contexts
// that may be gone before this is.
struct ProjectDiscovery::State {
    DiscoveryConfig cfg;
    Regions& regions;
    CredentialSource& creds;
    Metrics& metrics;
    milliseconds request_timeout;

    std::mutex mu;
    bool stopped = false, in_flight = false, demanded = false, started_once = false;
    steady::time_point last_start{};
    std::weak_ptr<Waker> loop;
    std::vector<std::weak_ptr<Waker>> waiters;
    Status status;

    State(const DiscoveryConfig& c, Regions& r, CredentialSource& cr, Metrics& m, milliseconds t)
        : cfg(c), regions(r), creds(cr), metrics(m), request_timeout(t) {}

    static asio::awaitable<void> run(std::shared_ptr<State> self);
    asio::awaitable<void> refresh();
    void finished(bool ok, const std::string& err);
};

ProjectDiscovery::ProjectDiscovery(const DiscoveryConfig& cfg, Regions& regions, CredentialSource& creds,
                                   Metrics& metrics, milliseconds request_timeout)
    : st_(std::make_shared<State>(cfg, regions, creds, metrics, request_timeout)) {}

ProjectDiscovery::~ProjectDiscovery() {
    stop();
}

void ProjectDiscovery::start() {
    IamClient* iam = st_->creds.iam();
    if (!iam) return;
    asio::co_spawn(iam->executor(), State::run(st_), asio::detached);
}

void ProjectDiscovery::stop() {
    std::vector<std::shared_ptr<Waker>> wake;
    {
        std::lock_guard lk(st_->mu);
        st_->stopped = true;
        if (auto w = st_->loop.lock()) wake.push_back(w);
        for (auto& x : st_->waiters)
            if (auto w = x.lock()) wake.push_back(w);
    }
    for (auto& w : wake) w->fire();
}

asio::awaitable<void> ProjectDiscovery::State::run(std::shared_ptr<State> self) {
    IamClient& iam = *self->creds.iam();
    for (;;) {
        auto w = std::make_shared<Waker>(iam.executor());
        steady::time_point next;
        bool now;
        {
            std::lock_guard lk(self->mu);
            if (self->stopped) co_return;
            self->loop = w;
            // After a failure: again after min_interval_s; else every refresh_s.
            const auto every =
                self->status.ok ? seconds(self->cfg.refresh_s) : seconds(self->cfg.min_interval_s);
            next = self->last_start + every;
            now = self->demanded || !self->started_once;
        }
        if (!now) co_await w->wait(next);
        co_await self->refresh();
    }
}

asio::awaitable<void> ProjectDiscovery::State::refresh() {
    {
        std::lock_guard lk(mu);
        if (stopped) co_return;
        in_flight = true;
        demanded = false;
        started_once = true;
        last_start = steady::now();
    }
    IamClient& iam = *creds.iam();
    const auto deadline = steady::now() + request_timeout;
    IamClient::Authorize authorize = [this, deadline](UpstreamRequest& req, std::string& why) {
        return creds.authorize_iam(req, deadline, why);
    };
    std::vector<IamProject> projects;
    std::string err;
    const bool ok = co_await iam.list_projects(authorize, cfg.max_projects, projects, err);
    if (ok) regions.set_discovered(projects);
    finished(ok, err);
}

void ProjectDiscovery::State::finished(bool ok, const std::string& err) {
    std::vector<std::shared_ptr<Waker>> wake;
    {
        std::lock_guard lk(mu);
        in_flight = false;
        ++status.refreshes;
        status.ok = ok;
        status.last_error = ok ? "" : err;
        if (ok)
            status.last_ok_ms =
                std::chrono::duration_cast<milliseconds>(sys::now().time_since_epoch()).count();
        for (auto& x : waiters)
            if (auto w = x.lock()) wake.push_back(w);
        waiters.clear();
    }
    if (!ok) log_warn("project discovery failed: " + err);
    metrics.discovery_refresh(ok ? "ok" : "error");
    if (auto m = regions.projects()) metrics.set_projects_known(static_cast<double>(m->size()));
    for (auto& w : wake) w->fire();
}

asio::awaitable<bool> ProjectDiscovery::refresh_for_unknown(steady::time_point deadline) {
    auto w = std::make_shared<Waker>(co_await asio::this_coro::executor);
    std::shared_ptr<Waker> loop;
    std::uint64_t before;
    {
        std::lock_guard lk(st_->mu);
        if (st_->stopped || !st_->creds.iam()) co_return false;
        if (!st_->in_flight) {
            if (st_->started_once && steady::now() - st_->last_start < seconds(st_->cfg.min_interval_s))
                co_return false;  // rate-limited: the answer stands
            st_->demanded = true;
            loop = st_->loop.lock();
        }
        before = st_->status.refreshes;
        st_->waiters.push_back(w);
    }
    if (loop) loop->fire();
    co_await w->wait(std::min(deadline, steady::now() + milliseconds(st_->cfg.wait_ms)));
    std::lock_guard lk(st_->mu);
    std::erase_if(st_->waiters, [&](const std::weak_ptr<Waker>& x) { return x.expired() || x.lock() == w; });
    co_return st_->status.refreshes != before && st_->status.ok;
}

ProjectDiscovery::Status ProjectDiscovery::status() const {
    std::lock_guard lk(st_->mu);
    return st_->status;
}

}  // namespace rdsgw
