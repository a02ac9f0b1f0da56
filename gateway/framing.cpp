#include "rdsgw/framing.hpp"

#include <cstdint>
#include <cstring>

#include "rdsgw/text.hpp"

namespace rdsgw {

namespace http = boost::beast::http;

namespace {

// RFC 3986 reg-name characters: unreserved / pct-encoded ('%') / sub-delims.
constexpr ByteSet kRegName([](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~' || c == '%' || c == '!' || c == '$' || c == '&' || c == '\'' ||
           c == '(' || c == ')' || c == '*' || c == '+' || c == ',' || c == ';' || c == '=';
});
constexpr ByteSet kIpv6Literal([](unsigned char c) {
    return (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || (c >= '0' && c <= '9') || c == ':' || c == '.';
});

bool all_digits(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

Framing refuse(unsigned status, std::string msg) {
    Framing fr;
    fr.error =
        LocalError(status, std::move(msg), ErrorSource::caller, status == 413 ? "limit" : "validation");
    fr.error->close = true;
    fr.keep_alive = false;
    return fr;
}

// How many bytes of `s` are `b`, eight bytes per step: std::count went byte by byte here (GCC does not
// vectorize a count into a 64-bit total), about three instructions per byte of every request's header.
std::size_t count_byte(std::string_view s, unsigned char b) {
    constexpr std::uint64_t kLow7 = 0x7F7F7F7F7F7F7F7FULL;
    const std::uint64_t pattern = 0x0101010101010101ULL * b;
    std::size_t n = 0, i = 0;
    while (i + 8 <= s.size()) {
        // Per byte lane: 1 where the byte is b. Lanes are summed after at most 31 words, while their total
        // (at most 8 x 31) still fits the top byte of the summing multiply.
        std::uint64_t lanes = 0;
        for (std::size_t words = 0; words < 31 && i + 8 <= s.size(); ++words, i += 8) {
            std::uint64_t w;
            std::memcpy(&w, s.data() + i, 8);
            w ^= pattern;                                        // a zero byte where the byte is b
            lanes += ~(((w & kLow7) + kLow7) | w | kLow7) >> 7;  // 1 in exactly those bytes' lanes
        }
        n += static_cast<std::size_t>((lanes * 0x0101010101010101ULL) >> 56);
    }
    for (; i < s.size(); ++i) n += static_cast<unsigned char>(s[i]) == b ? 1 : 0;
    return n;
}

}  // namespace

// One memchr scan for LFs (find of one character, not find_first_of("\r\n"), which tests every byte
// against the set one call at a time) and one word-wise count of CRs: this runs over every request's header
// block.
bool has_bare_line_ending(std::string_view data, std::size_t from) {
    if (from >= data.size()) return false;
    // Every LF must follow a CR. Then the CRs from `from` on that are followed by an LF are exactly those
    // LFs' CRs (`paired`); any other CR there is bare, but for one at the very end. One search per line
    // and one counting pass, instead of a search per line for each of the two bytes.
    std::size_t paired = 0;
    for (auto i = data.find('\n', from); i != std::string_view::npos; i = data.find('\n', i + 1)) {
        if (i == 0 || data[i - 1] != '\r') return true;
        if (i - 1 >= from) ++paired;
    }
    const std::size_t crs = count_byte(data.substr(from), '\r');
    return crs > paired + (data.back() == '\r' ? 1 : 0);
}

bool valid_host_header(std::string_view v) {
    if (v.empty()) return false;
    std::string_view host = v, port;
    if (v.front() == '[') {
        auto close = v.find(']');
        if (close == std::string_view::npos || close < 3) return false;
        for (char c : v.substr(1, close - 1))
            if (!kIpv6Literal(static_cast<unsigned char>(c))) return false;
        host = v.substr(0, close + 1);
        std::string_view rest = v.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return false;
            port = rest.substr(1);
            if (port.empty()) return true;  // "host:": syntax allows it; host_port_error() refuses it
        }
    } else {
        auto colon = v.rfind(':');
        if (colon != std::string_view::npos) {
            host = v.substr(0, colon);
            port = v.substr(colon + 1);
            if (port.empty()) port = "0";  // "host:" as above (the port's value: host_port_error())
        }
        if (host.empty()) return false;
        for (char c : host)
            if (!kRegName(static_cast<unsigned char>(c))) return false;
    }
    if (!port.empty() && (!all_digits(port) || port.size() > 5)) return false;
    return true;
}

std::string host_port_error(std::string_view host) {
    const std::size_t bracket = host.rfind(']');
    const std::size_t colon = host.rfind(':');
    if (colon == std::string_view::npos || (bracket != std::string_view::npos && colon < bracket)) return {};
    const std::string_view port = host.substr(colon + 1);
    if (port.empty()) return "invalid Host header: empty port after ':'";
    unsigned long value = 0;
    for (const char c : port) {
        if (c < '0' || c > '9') return "invalid Host header: the port is not a number";
        value = value * 10 + static_cast<unsigned long>(c - '0');
        if (value > 65535) return "invalid Host header: the port is above 65535";
    }
    if (value == 0) return "invalid Host header: port 0";
    return {};
}

Framing check_framing(const RequestFields& f, unsigned version) {
    // One pass over the fields (Beast's find/equal_range do not visit every line of a repeated name).
    std::size_t te_lines = 0, cl_lines = 0, hosts = 0;
    std::string_view te_last, cl_first, host;
    bool cl_bad = false, close = false, keep = false;
    for (const auto& field : f) {
        switch (field.name()) {
            case http::field::transfer_encoding:
                ++te_lines;
                for_each_list_element(field.value(), [&](std::string_view t) { te_last = t; });
                break;
            case http::field::content_length:
                ++cl_lines;
                for_each_list_element(field.value(), [&](std::string_view t) {
                    if (!all_digits(t) || (!cl_first.empty() && t != cl_first)) cl_bad = true;
                    if (cl_first.empty()) cl_first = t;
                });
                break;
            case http::field::host:
                ++hosts;
                host = field.value();
                break;
            case http::field::connection:
                for_each_list_element(field.value(), [&](std::string_view t) {
                    close = close || ascii_iequals(t, "close");
                    keep = keep || ascii_iequals(t, "keep-alive");
                });
                break;
            default:
                break;
        }
    }
    if (te_lines > 0) {
        if (cl_lines > 0) return refuse(400, "both Transfer-Encoding and Content-Length");
        if (ascii_iequals(te_last, "chunked")) return refuse(413, "request body not allowed");
        return refuse(400, "unsupported Transfer-Encoding");
    }
    if (cl_bad) return refuse(400, "invalid Content-Length");
    if (cl_lines > 0 && cl_first.find_first_not_of('0') != std::string_view::npos)
        return refuse(413, "request body not allowed");
    if (hosts > 1) return refuse(400, "more than one Host header");
    if (hosts == 0 && version >= 11) return refuse(400, "missing Host header");
    if (hosts == 1 && !valid_host_header(host)) return refuse(400, "invalid Host header");
    if (hosts == 1)
        if (std::string why = host_port_error(host); !why.empty()) return refuse(400, std::move(why));
    Framing fr;
    fr.keep_alive = !close && (version >= 11 || keep);
    return fr;
}

}  // namespace rdsgw
