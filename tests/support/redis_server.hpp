// A real redis-server (Debian's /usr/bin/redis-server) for integration tests: on a free 127.0.0.1 port and a
// unix socket in a temporary directory, without persistence. It can be killed (-9), stopped (SIGSTOP) and
// restarted on the same port, for outage tests. A small synchronous hiredis connection reads what the
// gateway's client wrote (raw values, keys, databases).
#pragma once
#include <string>
#include <vector>

#include "rdsgw/redis.hpp"
#include "support/process.hpp"
#include "support/tempdir.hpp"

namespace rdsgw::test {

struct RedisServerOptions {
    std::vector<std::string> extra_args;  // e.g. {"--requirepass", "pw"}
    std::string admin_user;               // AUTH used by query() ("" = default user)
    std::string admin_password;           // "" = no AUTH
    // TLS only (the plain port is then disabled): certificate and key files for --tls-cert-file/-key-file.
    std::string tls_cert_file, tls_key_file, tls_ca_file;
};

class RedisServer {
  public:
    explicit RedisServer(RedisServerOptions opts = {});
    ~RedisServer();
    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;

    int port() const { return port_; }
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    std::string unix_path() const { return dir_.file("redis.sock"); }
    std::string unix_address() const { return "unix:" + unix_path(); }

    // SIGKILL and wait for the exit (no clean shutdown: connections are reset).
    void kill9();
    // Start again on the same port (after kill9) and wait until it answers.
    void restart();
    // Freeze (SIGSTOP) and thaw (SIGCONT) the process: connections stay open but nothing is answered.
    void freeze();
    void thaw();
    bool running() { return child_.running(); }
    std::string output() const { return child_.output(); }

    // One command over a fresh synchronous connection (AUTH with the admin user, SELECT db). A connection
    // failure gives a `failed` reply.
    RedisReply query(const std::vector<std::string>& args, unsigned db = 0) const;
    // Every key in `db` (SCAN), and every key's raw value (GET; other types skipped).
    std::vector<std::string> keys(unsigned db = 0) const;
    std::vector<std::string> raw_values(unsigned db = 0) const;

  private:
    void start();
    void wait_ready();
    RedisServerOptions opts_;
    TempDir dir_;
    Child child_;
    int port_ = 0;
    bool frozen_ = false;
};

}  // namespace rdsgw::test
