// A stand-in for systemd's notification socket: a unix datagram socket bound in a temporary directory, whose
// path goes into NOTIFY_SOCKET; receive() returns each sd_notify() message.
#pragma once
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>

#include "support/tempdir.hpp"

namespace rdsgw::test {

class NotifySocket {
  public:
    NotifySocket() : dir_("rdsgw-notify") {
        path_ = dir_.file("notify.sock");
        fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        if (fd_ < 0 || path_.size() >= sizeof a.sun_path) throw std::runtime_error("notify socket");
        path_.copy(a.sun_path, path_.size());
        if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
            throw std::runtime_error("bind notify socket");
    }
    ~NotifySocket() {
        if (fd_ >= 0) ::close(fd_);
    }
    NotifySocket(const NotifySocket&) = delete;
    const std::string& path() const { return path_; }

    // The next message, or nullopt when none arrives within `timeout`.
    std::optional<std::string> receive(std::chrono::milliseconds timeout) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return std::nullopt;
        char buf[4096];
        const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n < 0) return std::nullopt;
        return std::string(buf, static_cast<std::size_t>(n));
    }
    // Waits (up to `timeout` in all) for a message containing `what`; the messages before it are appended to
    // `seen` (when given). False when none comes.
    bool wait_for(const std::string& what, std::chrono::milliseconds timeout, std::string* seen = nullptr) {
        const auto end = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
            if (left.count() <= 0) return false;
            const auto m = receive(left);
            if (!m) return false;
            if (m->find(what) != std::string::npos) return true;
            if (seen) *seen += *m + "\n";
        }
    }

  private:
    TempDir dir_;
    std::string path_;
    int fd_ = -1;
};

}  // namespace rdsgw::test
