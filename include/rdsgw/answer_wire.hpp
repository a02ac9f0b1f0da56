// The upstream answer's common shape, read without Beast (pure: bytes in, views out).
//
// Why our own: Beast's parser (basic_parser<false>) took about 3,300 instructions to read the mock's
// four-field answer, 7 % of a miss, through a virtual call per field and a table-driven field lookup. The
// common answer is one simple shape: "HTTP/1.1", a final status, a few plain fields, a Content-Length and
// the whole body in the buffer. parse_plain_answer() reads exactly that shape (733 instructions) and
// declines everything else, which Beast then reads as before (AnswerParser, answer_parser.hpp): what it
// accepts is a strict subset of what Beast accepts, read the same way (test_answer_wire compares the two on
// crafted answers and 1,000,000 mutations of them; fuzz_answer checks the reader's own invariants under
// libFuzzer). An answer not whole in the first read goes to Beast: the fast path is for the common case.
#pragma once
#include <array>
#include <cstddef>
#include <string_view>

namespace rdsgw {

struct PlainAnswer {
    std::size_t size = 0;  // bytes of the answer: head and body (what follows belongs to nobody)
    unsigned status = 0;
    bool keep_alive = true;  // HTTP/1.1 without "Connection: close"
    std::string_view body;
    // The first line of each, as Beast's parser hands it over (leading and trailing blanks removed).
    std::string_view request_id, retry_after, subject_token;
    bool has_request_id = false, has_retry_after = false, has_subject_token = false;
    // Every Content-Encoding line, in order (a coding hidden behind a second line still counts).
    std::array<std::string_view, 4> content_encoding{};
    std::size_t content_encodings = 0;
};

// Reads one complete answer at the start of `in` into `out` when it has this shape (true), else returns false
// (`out` then means nothing; the caller gives the same bytes to Beast):
// - the status line "HTTP/1.1 " three digits " " and a reason of printable ASCII (and tabs); the status is
//   200-599 but 204 and 304 (no 1xx: interim answers are Beast's);
// - fields "name: value" CRLF, the name of letters, digits and '-' (a subset of RFC 9110's tokens), the
//   value printable ASCII, spaces and tabs; no obs-fold (a line starting with a blank), no byte above 0x7e,
//   no bare CR or LF;
// - exactly one Content-Length, 1 to 15 digits without a leading zero (unless it is "0"), at most
//   `max_body`; no Transfer-Encoding, Proxy-Connection or Upgrade; Connection only "close" or "keep-alive";
//   at most 4 Content-Encoding lines;
// - the head (status line, fields, empty line) at most 64 KiB, and the whole body in `in`.
bool parse_plain_answer(std::string_view in, std::size_t max_body, PlainAnswer& out);

}  // namespace rdsgw
