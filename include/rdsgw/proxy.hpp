// Egress through an HTTP proxy (upstream.proxy): the rules (which hosts bypass it, the CONNECT request, the
// Proxy-Authorization value) as pure functions, and the Proxy every connection pool of the process shares.
// The tunnel itself is opened by the upstream client (upstream.cpp), which then speaks TLS to the real host
// through it, with SNI and the same certificate checks as without a proxy.
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "rdsgw/config.hpp"

namespace rdsgw {

// "http://host[:port]" -> host ("[::1]" without brackets) and port ("3128" when none is given).
bool parse_proxy_url(std::string_view url, std::string& host, std::string& port, std::string& why);

// True when `host` is reached directly. Entries: "*" (everything), "name" (that host exactly,
// case-insensitive),
// ".suffix" (the suffix itself and every host ending in ".suffix"), "a.b.c.d/n" or "v6::/n" (literal
// addresses in that range), or a literal address.
bool no_proxy_matches(std::string_view host, const std::vector<std::string>& no_proxy);

// "Basic " + base64(user_colon_password).
std::string basic_authorization(std::string_view user_colon_password);

// "CONNECT host:port HTTP/1.1\r\nHost: host:port\r\n[Proxy-Authorization: ...\r\n]\r\n"; an IPv6 host is
// written in brackets.
std::string connect_request(std::string_view host, std::string_view port, std::string_view authorization);

class Proxy {
  public:
    // Null without `why` when no proxy is configured; null with `why` when it is unusable.
    static std::shared_ptr<Proxy> make(const ProxyConfig& cfg, std::string& why);

    // Is a connection to `host` tunnelled (not in no_proxy)?
    bool applies_to(std::string_view host) const { return !no_proxy_matches(host, no_proxy_); }
    const std::string& host() const { return host_; }
    const std::string& port() const { return port_; }
    std::string describe() const { return host_ + ":" + port_; }  // for messages: never the credentials
    // The Proxy-Authorization value ("" when no credentials are configured).
    std::string authorization() const;
    // SIGHUP: re-reads the credentials. False (the old ones stay) when they cannot be read.
    bool reload(std::string& why);

  private:
    ProxyConfig cfg_;
    std::string host_, port_;
    std::vector<std::string> no_proxy_;
    mutable std::mutex mu_;
    std::string authorization_;
};

}  // namespace rdsgw
