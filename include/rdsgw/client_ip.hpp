// The real client behind a load balancer, pure: X-Forwarded-For counts only when the connection comes from a
// configured trusted proxy (listen.trusted_proxies), and then the right-most address that is not itself a
// trusted proxy is the client (what nginx's real_ip with real_ip_recursive does).
#pragma once
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace rdsgw {

class TrustedProxies {
  public:
    // "10.0.0.0/8", "192.0.2.7" (a single address), "2001:db8::/32". False with `why` naming the entry.
    static bool parse(const std::vector<std::string>& cidrs, TrustedProxies& out, std::string& why);
    bool contains(const boost::asio::ip::address& a) const;
    bool empty() const { return v4_.empty() && v6_.empty(); }

  private:
    std::vector<boost::asio::ip::network_v4> v4_;
    std::vector<boost::asio::ip::network_v6> v6_;
};

// The client address to log: `peer` itself unless it is a trusted proxy; then X-Forwarded-For (every line,
// comma-separated, read right to left) gives the first address that is not trusted. A malformed entry ends
// the walk: the last trusted hop before it is the client. An address shows in its plain text form.
std::string real_client(std::string_view peer, const std::vector<std::string_view>& forwarded_for,
                        const TrustedProxies& trusted);

}  // namespace rdsgw
