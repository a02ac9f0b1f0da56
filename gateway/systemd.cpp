#include "rdsgw/systemd.hpp"

#include <systemd/sd-daemon.h>

#include <atomic>
#include <boost/asio/post.hpp>
#include <chrono>
#include <cstdlib>

#include "rdsgw/log.hpp"

namespace rdsgw {

bool sd_notify_state(std::string_view state) {
    const std::string s(state);
    return ::sd_notify(0, s.c_str()) > 0;
}

struct LoopProbe::State {
    explicit State(std::size_t n) : acked(n) {}
    std::vector<std::atomic<std::uint64_t>> acked;  // the last probe each loop ran
};

LoopProbe::LoopProbe(std::vector<boost::asio::any_io_executor> loops)
    : loops_(std::move(loops)), st_(std::make_shared<State>(loops_.size())), posted_(loops_.size(), 0) {}

bool LoopProbe::tick() {
    stuck_.clear();
    for (std::size_t i = 0; i < loops_.size(); ++i) {
        const bool answered = st_->acked[i].load(std::memory_order_acquire) == posted_[i];
        if (!answered) {
            stuck_.push_back(i);
            continue;
        }
        posted_[i] = ++seq_;
        boost::asio::post(
            loops_[i], [st = st_, i, n = posted_[i]] { st->acked[i].store(n, std::memory_order_release); });
    }
    const bool all = started_ && stuck_.empty();
    started_ = true;
    return all;
}

SystemdNotifier::SystemdNotifier(Options o) : opt_(std::move(o)) {
    const char* socket = std::getenv("NOTIFY_SOCKET");
    if (!socket || !*socket) return;
    std::uint64_t usec = 0;
    if (::sd_watchdog_enabled(0, &usec) > 0) watchdog_usec_ = usec;
    thread_ = std::thread([this] { run(); });
}

SystemdNotifier::~SystemdNotifier() {
    stop();
}

void SystemdNotifier::stop() {
    {
        std::lock_guard lk(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

void SystemdNotifier::stopping() {
    {
        std::lock_guard lk(mu_);
        if (stopping_sent_) return;
        stopping_sent_ = true;
    }
    sd_notify_state("STOPPING=1\nSTATUS=draining");
}

// Before the first READY=1 a reload says nothing: READY=1 must still wait for usable credentials.
void SystemdNotifier::reloading() {
    if (ready_.load()) sd_notify_state("RELOADING=1\nSTATUS=reloading (SIGHUP)");
}

void SystemdNotifier::reloaded() {
    if (ready_.load()) sd_notify_state("READY=1\nSTATUS=" + opt_.status);
}

void SystemdNotifier::run() {
    using namespace std::chrono;
    LoopProbe probe(opt_.loops);
    const auto ping_every = microseconds(watchdog_usec_ / 2);
    const auto poll_every = milliseconds(50);
    bool ready = false, warned = false;
    std::string last_why;
    std::unique_lock lk(mu_);
    while (!stop_) {
        const auto period =
            !ready ? (watchdog_usec_ ? std::min<microseconds>(poll_every, ping_every) : poll_every)
                   : (watchdog_usec_ ? ping_every : hours(24));
        if (cv_.wait_for(lk, period, [&] { return stop_; })) break;
        lk.unlock();
        const bool answered = probe.tick();
        if (watchdog_usec_ && answered) {
            sd_notify_state("WATCHDOG=1");
            warned = false;
        } else if (watchdog_usec_ && !probe.stuck().empty() && !warned) {
            warned = true;
            log_warn("watchdog: event loop " + std::to_string(probe.stuck().front()) +
                     " has not run a posted handler for a whole probe interval; WATCHDOG=1 withheld");
        }
        std::string why;
        if (!ready && answered && opt_.ready(why)) {
            ready = true;
            sd_notify_state("READY=1\nSTATUS=" + opt_.status);
            ready_.store(true);
        } else if (!ready && !why.empty() && why != last_why) {
            last_why = why;
            sd_notify_state("STATUS=not ready: " + why);
        }
        lk.lock();
    }
}

}  // namespace rdsgw
