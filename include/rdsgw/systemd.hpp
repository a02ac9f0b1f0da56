// systemd integration for a Type=notify unit (libsystemd's sd_notify): READY=1 once the listeners are bound,
// every event loop runs and the upstream credentials are usable; STOPPING=1 when a drain begins;
// RELOADING=1 ... READY=1 around a SIGHUP; WATCHDOG=1 only while every event loop answers a probe. Nothing
// is sent outside such a unit (no $NOTIFY_SOCKET).
#pragma once
#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace rdsgw {

// Sends one notification ("READY=1", "STOPPING=1\nSTATUS=..."); false without a notify socket.
bool sd_notify_state(std::string_view state);

// Probes event loops: each tick() posts a handler to every loop; a loop that has not run the handler posted
// to it by the time of the next tick is stuck. Bookkeeping only (tests drive tick() by hand).
class LoopProbe {
  public:
    explicit LoopProbe(std::vector<boost::asio::any_io_executor> loops);
    // True when every loop ran the last handler posted to it (never on the first tick). Then posts a new
    // handler to each loop that answered; a stuck loop gets no more until it answers (no pile-up).
    bool tick();
    // Indexes (into the constructor's vector) of the loops the last tick() found not answering.
    const std::vector<std::size_t>& stuck() const { return stuck_; }

  private:
    struct State;
    std::vector<boost::asio::any_io_executor> loops_;
    std::shared_ptr<State> st_;
    std::vector<std::uint64_t> posted_;  // the last probe posted to each loop (0: none yet)
    std::vector<std::size_t> stuck_;
    std::uint64_t seq_ = 0;
    bool started_ = false;
};

// The notifier thread of a Type=notify service.
class SystemdNotifier {
  public:
    struct Options {
        std::vector<boost::asio::any_io_executor> loops;  // every event loop (each io_context)
        // True once the service can serve; otherwise sets `why` (sent as STATUS=, never a secret). Polled
        // every 50 ms until it is true: the credentials have no ready callback, and this stays off the loops.
        std::function<bool(std::string& why)> ready;
        std::string status;  // STATUS= text sent with READY=1
    };
    // Starts a thread only under a notify socket; the watchdog pings only when $WATCHDOG_USEC asks for them
    // (every half of it).
    explicit SystemdNotifier(Options o);
    ~SystemdNotifier();
    SystemdNotifier(const SystemdNotifier&) = delete;

    bool active() const { return thread_.joinable(); }
    void stopping();   // STOPPING=1, once
    void reloading();  // RELOADING=1 (a SIGHUP is being applied); nothing before the first READY=1
    void reloaded();   // READY=1 after it; nothing before the first READY=1
    void stop();       // ends the thread (before the event loops are destroyed)

  private:
    void run();
    Options opt_;
    std::uint64_t watchdog_usec_ = 0;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false, stopping_sent_ = false;
    std::atomic<bool> ready_{false};  // the first READY=1 was sent
    std::thread thread_;
};

}  // namespace rdsgw
