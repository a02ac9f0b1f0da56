// parse_plain_answer (answer_wire.hpp) against Beast's reading of the same bytes (AnswerParser, as the
// exchange uses it): every answer the plain reader takes, Beast takes too, with the same status, body,
// fields, length and keep-alive. Crafted answers, then a few hundred thousand seeded mutations of them.
#define BOOST_TEST_MODULE answer_wire
#include <boost/test/unit_test.hpp>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "rdsgw/answer_parser.hpp"
#include "rdsgw/answer_wire.hpp"

using rdsgw::PlainAnswer;
using rdsgw::UpstreamResponse;

namespace {

constexpr std::size_t kMaxBody = 4096;

std::optional<PlainAnswer> parse_plain_answer(std::string_view in, std::size_t max_body) {
    PlainAnswer a;
    if (!rdsgw::parse_plain_answer(in, max_body, a)) return std::nullopt;
    return a;
}

struct BeastReading {
    UpstreamResponse r;
    std::size_t size = 0;
    bool keep_alive = false;
};

// The exchange's settings: eager, 64 KiB of head, the pool's body limit; all bytes in one put.
std::optional<BeastReading> beast_read(std::string_view in) {
    BeastReading out;
    rdsgw::AnswerParser p(out.r);
    p.eager(true);
    p.header_limit(64 * 1024);
    p.body_limit(kMaxBody);
    boost::system::error_code ec;
    out.size = p.put(boost::asio::buffer(in.data(), in.size()), ec);
    if (ec || !p.is_done()) return std::nullopt;
    out.keep_alive = p.keep_alive();
    return out;
}

// What a failure message shows of an answer: its head only (a body may hold a download link, and a link's
// query string is never printed).
std::string_view head_of(std::string_view in) {
    return in.substr(0, in.find("\r\n\r\n"));
}

// True when the plain reader declined, or Beast read the same; reports what differs.
bool agrees(const std::string& in, const std::optional<PlainAnswer>& a) {
    if (!a) return true;
    const auto b = beast_read(in);
    if (!b) {
        BOOST_ERROR("the plain reader took an answer Beast refuses: " << head_of(in));
        return false;
    }
    bool same = true;
    const auto check = [&](bool ok, const char* what) {
        if (!ok) {
            BOOST_ERROR(what << " differs for: " << head_of(in));
            same = false;
        }
    };
    UpstreamResponse taken;  // as the exchange takes it
    rdsgw::take_plain_answer(*a, taken);
    check(taken.status == b->r.status, "status");
    check(taken.body == b->r.body && a->body == b->r.body, "body");
    check(a->size == b->size, "size");
    check(a->keep_alive == b->keep_alive, "keep-alive");
    check(taken.request_id == b->r.request_id, "X-Request-Id");
    check(taken.retry_after == b->r.retry_after, "Retry-After");
    check(taken.subject_token == b->r.subject_token, "X-Subject-Token");
    check(taken.content_encoding == b->r.content_encoding, "Content-Encoding");
    check(b->r.transfer_encoding.empty(), "Transfer-Encoding");
    return same;
}

const std::string kBody =
    R"({"files":[{"name":"a.qp","size":1,"download_link":"https://x/y?z","link_expired_time":"2026-11-30T10:11:30+0800","database_name":""}],"bucket":"b"})";

std::string answer(std::string_view head_fields, std::string_view body = kBody,
                   std::string_view status = "200 OK") {
    return "HTTP/1.1 " + std::string(status) + "\r\n" + std::string(head_fields) +
           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + std::string(body);
}

}  // namespace

BOOST_AUTO_TEST_CASE(the_common_shapes_are_read_as_beast_reads_them) {
    const std::vector<std::string> accepted = {
        answer("Server: rds-mock\r\nContent-Type: application/json\r\nX-Request-Id: mock-1\r\n"),
        answer(""),
        answer("", "", "404 Not Found"),
        answer("Connection: close\r\n"),
        answer("connection: Keep-Alive\r\nConnection: CLOSE\r\n"),
        answer("X-Request-Id:   spaced \t \r\nx-request-id: second\r\n"),
        answer("Retry-After: 7\r\nRETRY-AFTER: 9\r\n", "{}", "503 Service Unavailable"),
        answer("X-Subject-Token: tok\r\n", "{}", "201 Created"),
        answer("Content-Encoding: identity\r\nContent-Encoding: gzip\r\n"),
        answer("Content-Encoding:\r\nContent-Encoding: gzip\r\nContent-Encoding:  \r\n"),  // empty lines
        answer("X-Empty:\r\nX-Blank:  \r\n"),
        answer("", kBody, "200 "),             // an empty reason
        answer("", kBody, "599 odd\treason"),  // a tab in the reason
        answer("") + "HTTP/1.1 200 OK\r\n",    // the next bytes are not this answer's
    };
    for (const auto& in : accepted) {
        const auto a = parse_plain_answer(in, kMaxBody);
        BOOST_TEST_REQUIRE(a.has_value(), head_of(in));
        BOOST_TEST(agrees(in, a));
    }
    const std::string closing =
        answer("Connection: close\r\nX-Request-Id: r\r\n");  // the views point into it
    const auto a = parse_plain_answer(closing, kMaxBody);
    BOOST_TEST_REQUIRE(a.has_value());
    BOOST_TEST(!a->keep_alive);
    BOOST_TEST(a->request_id == "r");
    BOOST_TEST(a->body == kBody);
    const std::string two = answer("") + "rest";
    const auto first = parse_plain_answer(two, kMaxBody);
    BOOST_TEST_REQUIRE(first.has_value());
    BOOST_TEST(first->size == two.size() - 4);
}

// Heads around 64 KiB, Beast's header_limit in the exchange: taken only as Beast takes them.
BOOST_AUTO_TEST_CASE(heads_near_the_limit_are_taken_only_as_beast_takes_them) {
    const std::string start = "HTTP/1.1 200 OK\r\nX-Big: ";
    const std::string rest = "\r\nContent-Length: 2\r\n\r\n";
    for (std::size_t head = 64 * 1024 - 2; head <= 64 * 1024 + 2; ++head) {
        const std::string in = start + std::string(head - start.size() - rest.size(), 'a') + rest + "{}";
        BOOST_TEST(agrees(in, parse_plain_answer(in, kMaxBody)), head);
    }
    const std::string over = start + std::string(64 * 1024, 'a') + rest + "{}";
    BOOST_TEST(!parse_plain_answer(over, kMaxBody).has_value());
}

BOOST_AUTO_TEST_CASE(everything_else_is_left_to_beast) {
    const std::string ok = answer("");
    const std::vector<std::string> declined = {
        "",
        ok.substr(0, ok.size() - 1),  // the body not whole yet
        ok.substr(0, 40),             // nor the head
        "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
        "HTTP/1.1 100 Continue\r\n\r\n",
        "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 304 Not Modified\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 600 Odd\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",  // no space after the status
        "HTTP/1.1 200 OK\r\n\r\n",                    // no length: the body runs to the close
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 00\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nContent-Length: 1 1\r\n\r\nx",
        "HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + std::string(5000, 'x'),  // over max_body
        "HTTP/1.1 200 OK\r\nConnection: upgrade\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nConnection: close, keep-alive\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nProxy-Connection: close\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n",  // obs-fold
        "HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 0\r\n\r\n",            // blank before ':'
        "HTTP/1.1 200 OK\r\n: 1\r\nContent-Length: 0\r\n\r\n",                // no name
        "HTTP/1.1 200 OK\r\nX-A: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n",   // beyond ASCII
        "HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 0\r\n\r\n",               // bare LF
        "HTTP/1.1 200 OK\r\nX-A: 1\r2\r\nContent-Length: 0\r\n\r\n",          // bare CR
        "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\n",
        "HTTP/1.1 200 OK\r\nContent-Encoding: a\r\nContent-Encoding: b\r\nContent-Encoding: c\r\n"
        "Content-Encoding: d\r\nContent-Encoding: e\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-Big: " + std::string(70 * 1024, 'a') + "\r\nContent-Length: 0\r\n\r\n",
        "http/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    };
    for (const auto& in : declined) BOOST_TEST(!parse_plain_answer(in, kMaxBody).has_value(), head_of(in));
}

// Seeded mutations of accepted answers: the plain reader may decline any of them, but what it takes must be
// what Beast takes. Counts how many it took, so that the comparison is known to have run on many.
BOOST_AUTO_TEST_CASE(mutated_answers_are_never_read_differently) {
    const std::vector<std::string> seeds = {
        answer("Server: rds-mock\r\nContent-Type: application/json\r\nX-Request-Id: mock-1\r\n"),
        answer("Connection: close\r\nRetry-After: 3\r\n", "{}", "503 Busy"),
        answer("Content-Encoding: identity\r\nX-Subject-Token: t\r\n", "ab", "201 Created"),
    };
    static constexpr char kBytes[] = {' ', '\t', '\r',   '\n',   ':',  '0', '9', 'a',    'A',
                                      '-', ',',  '\x7f', '\x80', '\0', 'H', '1', '\xff', '"'};
    std::mt19937 rng(20261130);
    std::size_t taken = 0, compared = 0;
    for (int round = 0; round < 1000000; ++round) {
        std::string in = seeds[rng() % seeds.size()];
        const int edits = 1 + static_cast<int>(rng() % 3);
        for (int e = 0; e < edits && !in.empty(); ++e) {
            const std::size_t at = rng() % in.size();
            const char b = kBytes[rng() % sizeof kBytes];
            switch (rng() % 4) {
                case 0:
                    in[at] = b;
                    break;
                case 1:
                    in.insert(at, 1, b);
                    break;
                case 2:
                    in.erase(at, 1 + rng() % 3);
                    break;
                default:
                    in.resize(at);
                    break;
            }
        }
        const auto a = parse_plain_answer(in, kMaxBody);
        if (!a) continue;
        ++taken;
        if (!agrees(in, a)) break;
        ++compared;
    }
    BOOST_TEST_MESSAGE("mutations taken by the plain reader and compared with Beast: " << compared);
    BOOST_TEST(taken == compared);
    BOOST_TEST(compared > 10000u);
}
