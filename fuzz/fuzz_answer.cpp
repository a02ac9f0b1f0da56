// libFuzzer target for parse_plain_answer (answer_wire.hpp) on arbitrary bytes. Besides "no crash, no
// sanitizer report" it checks, and aborts when one breaks:
//  - a taken answer lies within the input: its size, its body at the end of it and every field's view;
//  - its status is 200-599 but 204 and 304, and the input starts with "HTTP/1.1 ";
//  - it is read the same from exactly its own bytes (what follows is not looked at), and neither its bytes
//    but the last nor its first half is taken (an answer is only taken whole);
//  - a body limit below its body's size declines it.
// test_answer_wire compares what it takes with Beast's reading (Beast is not in the fuzzers' build).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>

#include "rdsgw/answer_wire.hpp"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

std::optional<rdsgw::PlainAnswer> parse(std::string_view in, std::size_t max_body) {
    rdsgw::PlainAnswer a;
    if (!rdsgw::parse_plain_answer(in, max_body, a)) return std::nullopt;
    return a;
}

bool within(std::string_view outer, std::string_view v) {
    return v.empty() || (v.data() >= outer.data() && v.data() + v.size() <= outer.data() + outer.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    const auto a = parse(in, 1 << 20);
    if (!a) return 0;
    check(a->size <= in.size() && in.substr(0, 9) == "HTTP/1.1 ");
    check(a->status >= 200 && a->status <= 599 && a->status != 204 && a->status != 304);
    const std::string_view own = in.substr(0, a->size);
    check(a->body.data() + a->body.size() == own.data() + own.size());
    check(within(own, a->request_id) && within(own, a->retry_after) && within(own, a->subject_token));
    for (std::size_t i = 0; i < a->content_encodings; ++i) check(within(own, a->content_encoding[i]));

    const auto again = parse(own, 1 << 20);
    check(again && again->size == a->size && again->status == a->status && again->body == a->body &&
          again->keep_alive == a->keep_alive && again->request_id == a->request_id &&
          again->content_encodings == a->content_encodings);
    check(!parse(own.substr(0, own.size() - 1), 1 << 20));
    check(!parse(own.substr(0, own.size() / 2), 1 << 20));
    if (!a->body.empty()) check(!parse(own, a->body.size() - 1));
    return 0;
}
