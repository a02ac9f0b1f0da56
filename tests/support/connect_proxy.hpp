// A small HTTP CONNECT proxy for tests, on 127.0.0.1 in its own thread: it records every CONNECT target and
// Proxy-Authorization it is sent, optionally requires one, maps target host:port pairs to local ports (so
// that a gateway can be pointed at "rds.cn-north-4.example:443" and reach a mock), and then splices bytes
// both ways. It never looks inside the tunnel.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace rdsgw::test {

class ConnectProxy {
  public:
    struct Options {
        // When not empty, a CONNECT without exactly this Proxy-Authorization value gets 407.
        std::string required_authorization;
        // "host:port" -> a port on 127.0.0.1. Other targets: "127.0.0.1:p" / "localhost:p" go to that port,
        // anything else gets 502.
        std::map<std::string, int> routes;
    };
    explicit ConnectProxy(Options options = {});
    ~ConnectProxy();
    ConnectProxy(const ConnectProxy&) = delete;
    ConnectProxy& operator=(const ConnectProxy&) = delete;

    int port() const;
    std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }
    // Every CONNECT target seen ("host:port"), in order, and how many tunnels were opened.
    std::vector<std::string> targets() const;
    std::vector<std::string> authorizations() const;  // the Proxy-Authorization values ("" when none)
    std::size_t tunnels() const;
    std::size_t count(const std::string& target) const;

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace rdsgw::test
