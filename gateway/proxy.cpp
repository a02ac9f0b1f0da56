#include "rdsgw/proxy.hpp"

#include <openssl/evp.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>
#include <boost/url/parse.hpp>

#include "rdsgw/text.hpp"

namespace rdsgw {

bool parse_proxy_url(std::string_view url, std::string& host, std::string& port, std::string& why) {
    auto u = boost::urls::parse_absolute_uri(url);
    if (!u || u->scheme() != "http" || u->host().empty()) {
        why = "must be http://host[:port]";
        return false;
    }
    host = u->host_type() == boost::urls::host_type::ipv6 ? std::string(u->host_address())
                                                          : std::string(u->host());
    port = u->has_port() && !u->port().empty() ? std::string(u->port()) : "3128";
    return true;
}

namespace {

// A literal address within "net/prefix"?
bool in_cidr(std::string_view host, std::string_view cidr) {
    boost::system::error_code ec;
    const auto addr = boost::asio::ip::make_address(std::string(host), ec);
    if (ec) return false;
    if (addr.is_v4()) {
        const auto net = boost::asio::ip::make_network_v4(cidr, ec);
        if (ec) return false;
        const auto mine = boost::asio::ip::network_v4(addr.to_v4(), net.prefix_length()).canonical();
        return mine == net.canonical();
    }
    const auto net = boost::asio::ip::make_network_v6(cidr, ec);
    if (ec) return false;
    const auto mine = boost::asio::ip::network_v6(addr.to_v6(), net.prefix_length()).canonical();
    return mine == net.canonical();
}

bool ends_with_ci(std::string_view s, std::string_view suffix) {
    return s.size() >= suffix.size() && ascii_iequals(s.substr(s.size() - suffix.size()), suffix);
}

}  // namespace

bool no_proxy_matches(std::string_view host, const std::vector<std::string>& no_proxy) {
    for (std::string_view e : no_proxy) {
        if (e == "*") return true;
        if (e.find('/') != std::string_view::npos) {
            if (in_cidr(host, e)) return true;
            continue;
        }
        if (e.size() > 1 && e.front() == '.') {
            if (ascii_iequals(host, e.substr(1)) || ends_with_ci(host, e)) return true;
            continue;
        }
        if (ascii_iequals(host, e)) return true;
    }
    return false;
}

std::string basic_authorization(std::string_view user_colon_password) {
    std::string out(4 * ((user_colon_password.size() + 2) / 3) + 1, '\0');
    const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                  reinterpret_cast<const unsigned char*>(user_colon_password.data()),
                                  static_cast<int>(user_colon_password.size()));
    out.resize(static_cast<std::size_t>(n));
    return "Basic " + out;
}

std::string connect_request(std::string_view host, std::string_view port, std::string_view authorization) {
    std::string authority;
    if (host.find(':') != std::string_view::npos)
        authority.append("[").append(host).append("]");
    else
        authority.append(host);
    authority.append(":").append(port);
    std::string out = "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n";
    if (!authorization.empty()) out.append("Proxy-Authorization: ").append(authorization).append("\r\n");
    out += "\r\n";
    return out;
}

std::shared_ptr<Proxy> Proxy::make(const ProxyConfig& cfg, std::string& why) {
    if (cfg.url.empty()) return nullptr;
    auto p = std::make_shared<Proxy>();
    p->cfg_ = cfg;
    p->no_proxy_ = cfg.no_proxy;
    if (!parse_proxy_url(cfg.url, p->host_, p->port_, why)) {
        why = "upstream.proxy.url: " + why;
        return nullptr;
    }
    if (!p->reload(why)) return nullptr;
    return p;
}

std::string Proxy::authorization() const {
    std::lock_guard lk(mu_);
    return authorization_;
}

bool Proxy::reload(std::string& why) {
    if (cfg_.credentials.empty()) return true;
    std::string secret;
    if (!load_secret(cfg_.credentials, secret, why)) {
        why = "upstream.proxy.credentials: " + why;
        return false;
    }
    if (secret.find(':') == std::string::npos) {
        why = "upstream.proxy.credentials: must be user:password";
        return false;
    }
    std::string value = basic_authorization(secret);
    std::lock_guard lk(mu_);
    authorization_ = std::move(value);
    return true;
}

}  // namespace rdsgw
