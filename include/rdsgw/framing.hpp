// HTTP/1.1 request framing checks (RFC 9112), pure: a request's header fields in, a verdict out. The session
// applies them to every request before the pipeline sees it; any refusal closes the connection, because
// after a framing error nobody can know where the next request starts (request smuggling).
#pragma once
#include <boost/beast/http/fields.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "rdsgw/header_arena.hpp"

#include "rdsgw/local_error.hpp"

namespace rdsgw {

struct Framing {
    std::optional<LocalError> error;  // set: answer it and close
    bool keep_alive = true;           // from the version and every Connection header line
};

// - Transfer-Encoding (any, this API has no request bodies): 413 when its final coding is chunked (a real
//   body), else 400; with Content-Length as well: 400.
// - Content-Length: every value the same decimal number (several differing ones: 400); above 0: 413.
// - Host: HTTP/1.1 needs exactly one, a valid uri-host[:port] (RFC 3986: reg-name, IPv4 or [IPv6]); none
//   (1.1), several, empty, or one with spaces, userinfo, bytes >= 0x80 or a bad port: 400. HTTP/1.0 may omit
//   it, but one it sends must be valid.
// - Connection: the tokens of every Connection line count ("close" ends keep-alive; "keep-alive" keeps an
//   HTTP/1.0 connection).
Framing check_framing(const RequestFields& f, unsigned version);

// RFC 9112 2.2: the header block's lines end with CRLF. A bare LF (an LF not after a CR) or a bare CR (a CR
// followed by anything but LF) in `data[from..]` is refused at once (400) rather than waited on: the block
// would never end with CRLF CRLF, and a parser that accepts bare LF while another does not is a smuggling
// vector. Returns true when `data` has one; a CR at the very end is not yet bare (its LF may follow).
bool has_bare_line_ending(std::string_view data, std::size_t from = 0);

// A Host header value: uri-host [ ":" port ].
bool valid_host_header(std::string_view v);

// The port of a Host header value valid_host_header() accepted (uri-host [":" port]): "" when there is none
// or it is 1-65535 (leading zeros allowed: RFC 3986's port is *DIGIT, "0080" is 80), else why not: an empty
// port after ':', a port that is not a number, 0 or above 65535.
std::string host_port_error(std::string_view host);

}  // namespace rdsgw
