// The server: listeners bound exclusively by this process (every worker accepts from the same socket), one
// io_context per worker thread with its upstream pool, signals (SIGHUP reload, SIGTERM/SIGINT drain) and the
// graceful drain. One connection's life is in session.hpp.
#pragma once
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "rdsgw/config.hpp"
#include "rdsgw/gateway.hpp"

namespace rdsgw {

class Server {
  public:
    // `reload` re-reads the config file for SIGHUP; it returns false (and the old config stays) on errors.
    Server(Gateway& gw, std::function<bool(Config&)> reload);
    ~Server();
    // Binds the listeners; false with `why` on failure. Afterwards main_port()/admin_port() are known.
    bool bind(std::string& why);
    unsigned short main_port() const { return main_port_; }
    unsigned short admin_port() const { return admin_port_; }
    // Serves until SIGTERM/SIGINT and the drain are done. Returns the process exit status.
    int run();

    // Hooks for main (systemd integration), set before run():
    // `fn` runs (on the signal handler's loop) when a drain is requested: the first SIGTERM/SIGINT.
    void on_drain(std::function<void()> fn);
    // Calls `fn` with each event loop (one io_context per thread). After bind().
    void each_loop(const std::function<void(boost::asio::io_context&)>& fn);

    struct Impl;

  private:
    std::unique_ptr<Impl> impl_;
    unsigned short main_port_ = 0, admin_port_ = 0;
};

}  // namespace rdsgw
