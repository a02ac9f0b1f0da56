#include "rdsgw/client_ip.hpp"

#include "rdsgw/text.hpp"

namespace rdsgw {

namespace ip = boost::asio::ip;

namespace {

// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) compare as the IPv4 address they carry.
ip::address plain(const ip::address& a) {
    if (a.is_v6() && a.to_v6().is_v4_mapped()) return ip::make_address_v4(ip::v4_mapped, a.to_v6());
    return a;
}

bool parse_address(std::string_view s, ip::address& out) {
    s = trim_ows(s);
    if (s.size() > 2 && s.front() == '[' && s.back() == ']') s = s.substr(1, s.size() - 2);
    boost::system::error_code ec;
    out = ip::make_address(std::string(s), ec);
    if (ec) return false;
    out = plain(out);
    return true;
}

}  // namespace

bool TrustedProxies::parse(const std::vector<std::string>& cidrs, TrustedProxies& out, std::string& why) {
    out = {};
    for (const auto& c : cidrs) {
        boost::system::error_code ec;
        const auto slash = c.find('/');
        ip::address a;
        if (!parse_address(std::string_view(c).substr(0, slash), a)) {
            why = "\"" + c + "\" is not an address or CIDR";
            return false;
        }
        const std::string prefix = slash == std::string::npos ? "" : c.substr(slash);
        if (a.is_v4()) {
            auto n = ip::make_network_v4(a.to_string() + (prefix.empty() ? "/32" : prefix), ec);
            if (ec) {
                why = "\"" + c + "\" is not a valid IPv4 CIDR";
                return false;
            }
            out.v4_.push_back(n);
        } else {
            auto n = ip::make_network_v6(a.to_string() + (prefix.empty() ? "/128" : prefix), ec);
            if (ec) {
                why = "\"" + c + "\" is not a valid IPv6 CIDR";
                return false;
            }
            out.v6_.push_back(n);
        }
    }
    return true;
}

bool TrustedProxies::contains(const ip::address& addr) const {
    const ip::address a = plain(addr);
    if (a.is_v4()) {
        for (const auto& n : v4_) {
            const auto host = ip::network_v4(a.to_v4(), n.prefix_length()).network();
            if (host == n.network()) return true;
        }
        return false;
    }
    for (const auto& n : v6_) {
        const auto host = ip::network_v6(a.to_v6(), n.prefix_length()).network();
        if (host == n.network()) return true;
    }
    return false;
}

std::string real_client(std::string_view peer, const std::vector<std::string_view>& forwarded_for,
                        const TrustedProxies& trusted) {
    ip::address hop;
    if (trusted.empty() || forwarded_for.empty() || !parse_address(peer, hop) || !trusted.contains(hop))
        return std::string(peer);
    // Right to left over every line's entries.
    for (auto line = forwarded_for.rbegin(); line != forwarded_for.rend(); ++line) {
        std::string_view v = *line;
        while (!v.empty()) {
            const auto comma = v.rfind(',');
            const std::string_view entry = comma == std::string_view::npos ? v : v.substr(comma + 1);
            v = comma == std::string_view::npos ? std::string_view() : v.substr(0, comma);
            if (trim_ows(entry).empty()) continue;
            ip::address a;
            if (!parse_address(entry, a)) return hop.to_string();
            hop = a;
            if (!trusted.contains(a)) return a.to_string();
        }
    }
    return hop.to_string();  // every hop was a trusted proxy: the left-most is the client
}

}  // namespace rdsgw
