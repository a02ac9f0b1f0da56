// AnswerParser: Beast's parser reading an upstream answer straight into an UpstreamResponse. The exchange
// (upstream.cpp) uses it for every answer parse_plain_answer() (answer_wire.hpp) declines, and
// take_plain_answer() for the others; test_answer_wire holds the two ways to the same reading.
#pragma once
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/field.hpp>
#include <boost/optional/optional.hpp>
#include <cstdint>
#include <string>

#include "rdsgw/answer_wire.hpp"
#include "rdsgw/upstream.hpp"

namespace rdsgw {

// Reads an answer straight into an UpstreamResponse: the status, the body and the few headers the gateway
// uses. Beast's response_parser would build a header container (an allocation and a tree insert per
// header) only to have a few of them looked up. The first of a repeated header wins, as a lookup would,
// except for the coding lists: every Content-Encoding and Transfer-Encoding line counts (RFC 9110 §5.3),
// so that a second line cannot hide a coding behind an "identity" one.
class AnswerParser final : public boost::beast::http::basic_parser<false> {
  public:
    explicit AnswerParser(UpstreamResponse& r) : r_(r) {}

  private:
    void on_request_impl(boost::beast::http::verb, boost::beast::string_view, boost::beast::string_view, int,
                         boost::beast::error_code&) override {}
    void on_response_impl(int code, boost::beast::string_view, int, boost::beast::error_code&) override {
        r_.status = static_cast<unsigned>(code);
    }
    void on_field_impl(boost::beast::http::field f, boost::beast::string_view name,
                       boost::beast::string_view value, boost::beast::error_code&) override {
        if (f == boost::beast::http::field::retry_after)
            take(seen_retry_after_, r_.retry_after, value);
        else if (f == boost::beast::http::field::content_encoding)
            join(r_.content_encoding, value);
        else if (f == boost::beast::http::field::transfer_encoding)
            join(r_.transfer_encoding, value);
        else if (name.size() == 12 && boost::beast::iequals(name, "X-Request-Id"))
            take(seen_request_id_, r_.request_id, value);
        else if (name.size() == 15 && boost::beast::iequals(name, "X-Subject-Token"))
            take(seen_subject_token_, r_.subject_token, value);
    }
    void on_header_impl(boost::beast::error_code&) override {}
    void on_body_init_impl(boost::optional<std::uint64_t> const& length, boost::beast::error_code&) override {
        // body_limit() has already refused a larger declared length.
        if (length) r_.body.reserve(static_cast<std::size_t>(*length));
    }
    std::size_t on_body_impl(boost::beast::string_view body, boost::beast::error_code&) override {
        r_.body.append(body.data(), body.size());
        return body.size();
    }
    void on_chunk_header_impl(std::uint64_t, boost::beast::string_view, boost::beast::error_code&) override {}
    std::size_t on_chunk_body_impl(std::uint64_t, boost::beast::string_view body,
                                   boost::beast::error_code&) override {
        r_.body.append(body.data(), body.size());
        return body.size();
    }
    void on_finish_impl(boost::beast::error_code&) override {}

    static void take(bool& seen, std::string& out, boost::beast::string_view value) {
        if (seen) return;
        seen = true;
        out.assign(value.data(), value.size());
    }
    // One more line of a list-valued field: "a" then "b" is "a, b".
    static void join(std::string& out, boost::beast::string_view value) {
        if (!out.empty()) out += ", ";
        out.append(value.data(), value.size());
    }

    UpstreamResponse& r_;
    bool seen_retry_after_ = false, seen_request_id_ = false, seen_subject_token_ = false;
};

// What parse_plain_answer() read, into an UpstreamResponse as AnswerParser would have put it (`r` as the
// exchange gives it: fresh).
inline void take_plain_answer(const PlainAnswer& a, UpstreamResponse& r) {
    r.status = a.status;
    r.body.assign(a.body.data(), a.body.size());
    if (a.has_request_id) r.request_id.assign(a.request_id);
    if (a.has_retry_after) r.retry_after.assign(a.retry_after);
    if (a.has_subject_token) r.subject_token.assign(a.subject_token);
    for (std::size_t i = 0; i < a.content_encodings; ++i) {  // joined as AnswerParser::join does
        if (!r.content_encoding.empty()) r.content_encoding += ", ";
        r.content_encoding.append(a.content_encoding[i]);
    }
}

}  // namespace rdsgw
