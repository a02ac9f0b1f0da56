// libFuzzer target: the download_link check's fast path against Boost.URL, on arbitrary bytes.
// Checks, for http allowed and not:
// - whenever plain_link_host accepts a link, Boost.URL accepts it too (check_link_reference gives no
//   reason) and finds the same host;
// - check_link (fast path, then Boost.URL) always gives exactly Boost.URL's verdict, and on success the
//   host Boost.URL finds;
// - an accepted host is one no resolver reads as an address (libc's inet_aton and inet_pton refuse it),
//   not localhost or *.localhost, with at least two labels and no trailing dot (issue 15).
#include <arpa/inet.h>
#include <netinet/in.h>

#include <boost/url/parse.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "rdsgw/normalize.hpp"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

bool same_reason(const char* a, const char* b) {
    if (a == nullptr || b == nullptr) return a == b;
    return std::strcmp(a, b) == 0;
}

bool acceptable_host(std::string_view host) {
    if (host.empty() || host.back() == '.' || host.find('.') == std::string_view::npos) return false;
    std::string h(host);
    for (char& c : h)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (h == "localhost" || h.ends_with(".localhost")) return false;
    in_addr v4{};
    in6_addr v6{};
    if (h.front() == '[' || inet_aton(h.c_str(), &v4) != 0 || inet_pton(AF_INET6, h.c_str(), &v6) == 1)
        return false;
    return h.find('\0') == std::string::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view link(reinterpret_cast<const char*>(data), size);
    for (const bool allow_http : {false, true}) {
        const char* reference = rdsgw::detail::check_link_reference(link, allow_http);
        std::string_view reference_host;
        if (reference == nullptr) reference_host = boost::urls::parse_uri(link)->encoded_host();
        if (const auto fast = rdsgw::detail::plain_link_host(link, allow_http)) {
            check(reference == nullptr);
            check(*fast == reference_host);
        }
        std::string_view host;
        const char* verdict = rdsgw::detail::check_link(link, allow_http, host);
        check(same_reason(verdict, reference));
        if (verdict == nullptr) check(host == reference_host && acceptable_host(host));
    }
    return 0;
}
