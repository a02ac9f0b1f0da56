// write_now (include/rdsgw/async_util.hpp): the non-suspending first write of an answer or an upstream
// request. Over a real loopback TCP connection: what the kernel takes goes at once, and async_write writes
// the rest from where write_now stopped, so the peer reads every byte once, in order.
#define BOOST_TEST_MODULE async_util
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <array>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <cstdint>
#include <string>
#include <thread>
#include <utility>

#include "rdsgw/async_util.hpp"

using namespace rdsgw;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

// A connected pair on 127.0.0.1 (a port the kernel picks), with small socket buffers so that a large write
// cannot go whole while the reader reads nothing.
std::pair<tcp::socket, tcp::socket> connected_pair(asio::io_context& ctx, bool small_buffers) {
    tcp::acceptor acc(ctx);
    acc.open(tcp::v4());
    if (small_buffers) acc.set_option(asio::socket_base::receive_buffer_size(4096));
    acc.bind(tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    acc.listen();
    tcp::socket writer(ctx);
    writer.open(tcp::v4());
    if (small_buffers) writer.set_option(asio::socket_base::send_buffer_size(4096));
    writer.connect(acc.local_endpoint());
    tcp::socket reader = acc.accept();
    return {std::move(writer), std::move(reader)};
}

std::string pattern(std::size_t n, std::uint32_t seed) {
    std::string s(n, '\0');
    for (auto& c : s) {
        seed = seed * 1664525u + 1013904223u;
        c = static_cast<char>(seed >> 24);
    }
    return s;
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_small_answer_goes_whole_without_suspending) {
    asio::io_context ctx;
    auto [writer, reader] = connected_pair(ctx, false);
    const std::string head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", body = "hello";
    const std::array<asio::const_buffer, 2> bufs{asio::buffer(head), asio::buffer(body)};
    BOOST_TEST(write_now(writer, bufs) == head.size() + body.size());
    std::string got(head.size() + body.size(), '\0');
    asio::read(reader, asio::buffer(got));
    BOOST_TEST(got == head + body);
}

BOOST_AUTO_TEST_CASE(a_large_answer_is_written_in_part_and_async_write_sends_the_rest_in_order) {
    asio::io_context ctx;
    auto [writer, reader] = connected_pair(ctx, true);
    const std::string head = pattern(3000, 1), body = pattern(3u << 20, 2);  // far beyond both buffers
    const std::array<asio::const_buffer, 2> bufs{asio::buffer(head), asio::buffer(body)};
    const std::size_t total = head.size() + body.size();

    std::size_t n = write_now(writer, bufs);
    BOOST_TEST(n > 0u);     // the kernel took something at once
    BOOST_TEST(n < total);  // but not 3 MB with nobody reading: the rest is async_write's
    // A second attempt, from where the first stopped, returns at once (it never waits). It may take a little
    // more: acknowledgements the kernel processed since then free room (on a busy machine they come late).
    const std::array<asio::const_buffer, 2> rest_now{
        asio::buffer(head) + std::min(n, head.size()),
        asio::buffer(body) + (n > head.size() ? n - head.size() : 0)};
    n += write_now(writer, rest_now);
    BOOST_TEST(n < total);

    // The rest from where write_now stopped (as Session::write does), while the peer reads everything.
    boost::system::error_code write_ec;
    std::size_t async_written = 0;
    boost::beast::buffers_suffix<std::array<asio::const_buffer, 2>> rest(bufs);
    rest.consume(n);
    asio::async_write(writer, rest, [&](boost::system::error_code ec, std::size_t k) {
        write_ec = ec;
        async_written = k;
    });
    std::string got(total, '\0');
    boost::system::error_code read_ec;
    asio::async_read(reader, asio::buffer(got),
                     [&](boost::system::error_code ec, std::size_t) { read_ec = ec; });
    ctx.run();
    BOOST_TEST(!write_ec);
    BOOST_TEST(!read_ec);
    BOOST_TEST(n + async_written == total);
    BOOST_TEST((got == head + body));  // every byte once, in order (a wrong offset would garble or repeat)
}

BOOST_AUTO_TEST_CASE(nothing_to_write_or_no_socket_writes_nothing) {
    asio::io_context ctx;
    auto [writer, reader] = connected_pair(ctx, false);
    const std::array<asio::const_buffer, 2> empty{asio::const_buffer(), asio::const_buffer()};
    BOOST_TEST(write_now(writer, empty) == 0u);
    writer.close();
    const std::string s = "x";
    const std::array<asio::const_buffer, 1> one{asio::buffer(s)};
    BOOST_TEST(write_now(writer, one) == 0u);  // closed: left to async_write, which reports the error
}

BOOST_AUTO_TEST_CASE(the_iovecs_advance_past_what_each_send_took) {
    char head[10], body[20];
    auto fresh = [&] { return std::array<iovec, 2>{iovec{head, sizeof head}, iovec{body, sizeof body}}; };
    struct Case {
        std::size_t written, first, base_offset, len;  // after one send: first unsent iovec, where, how much
    } cases[] = {
        {0, 0, 0, 10},   // nothing sent
        {4, 0, 4, 6},    // inside the head
        {10, 1, 0, 20},  // exactly the head: the body is next, whole
        {13, 1, 3, 17},  // into the body
        {30, 2, 0, 0},   // everything
    };
    for (const Case& c : cases) {
        BOOST_TEST_CONTEXT("written " << c.written) {
            auto iov = fresh();
            std::size_t first = 0;
            detail::advance_iovecs(iov.data(), iov.size(), first, c.written);
            BOOST_TEST(first == c.first);
            if (first < iov.size()) {
                char* const start = first == 0 ? head : body;
                BOOST_TEST(static_cast<char*>(iov[first].iov_base) == start + c.base_offset);
                BOOST_TEST(iov[first].iov_len == c.len);
            }
        }
    }
    // Two sends in a row: 7 bytes, then 8 (3 of the head, 5 of the body).
    auto iov = fresh();
    std::size_t first = 0;
    detail::advance_iovecs(iov.data(), iov.size(), first, 7);
    detail::advance_iovecs(iov.data(), iov.size(), first, 8);
    BOOST_TEST(first == 1u);
    BOOST_TEST(static_cast<char*>(iov[1].iov_base) == body + 5);
    BOOST_TEST(iov[1].iov_len == 15u);
}

// DrainingRead: after a read that came back short, the socket's next read is queued without a recv (the
// bytes stay in the kernel until epoll reports them), and a read after an edge that nobody waited for still
// finds its bytes. FIONREAD (available()) tells whether the next read's start consumed them.
namespace {

// Runs the context until `done`, at most a few seconds (a read that never completes fails the test, not
// the run).
void run_until(asio::io_context& ctx, const bool& done) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    ctx.restart();  // a context that ran out of work stays stopped until restarted
    while (!done && std::chrono::steady_clock::now() < until) ctx.run_one_for(std::chrono::milliseconds(100));
}

// One read at a time into a 16-byte buffer, as a DrainingRead: on a socket, or on a DrainingLayer.
struct Read {
    bool done = false;
    boost::system::error_code ec;
    std::size_t n = 0;
    std::array<char, 16> buf{};
    template <class Stream>
    void start(Stream& s) {
        done = false;
        s.async_read_some(DrainingRead(asio::buffer(buf)),
                          [this](boost::system::error_code e, std::size_t k) {
                              ec = e;
                              n = k;
                              done = true;
                          });
    }
    std::string text() const { return std::string(buf.data(), n); }
};

// A first read completed by an edge (queued before the peer wrote) that came back short.
template <class Stream>
void short_first_read(asio::io_context& ctx, tcp::socket& writer, Stream& reader, Read& r) {
    r.start(reader);
    asio::write(writer, asio::buffer(std::string_view("x")));
    run_until(ctx, r.done);
    BOOST_TEST_REQUIRE(r.done);
    BOOST_TEST(!r.ec);
    BOOST_TEST(r.text() == "x");
}

// Writes `bytes` and waits (a few seconds at most) until they sit in the reader's receive queue, without
// running the context: on a busy machine loopback delivery can come after send() returns, and a FIONREAD
// check made before it would see nothing whatever the read did.
void write_and_wait_queued(tcp::socket& writer, tcp::socket& reader, std::string_view bytes) {
    asio::write(writer, asio::buffer(bytes));
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (reader.available() < bytes.size() && std::chrono::steady_clock::now() < until)
        std::this_thread::yield();
    BOOST_TEST_REQUIRE(reader.available() == bytes.size());
}

}  // namespace

BOOST_AUTO_TEST_CASE(after_a_short_read_the_next_read_waits_for_the_edge_instead_of_trying_at_once) {
    asio::io_context ctx;
    auto [writer, reader] = connected_pair(ctx, false);
    Read r;
    short_first_read(ctx, writer, reader, r);
    write_and_wait_queued(writer, reader, "yz");
    r.start(reader);
#ifdef RDSGW_DRAINING_READ
    // Not read when the read started: no recv came back "would block" while the socket was empty.
    BOOST_TEST(reader.available() == 2u);
#else
    BOOST_TEST_MESSAGE("this Boost is not the one DrainingRead is made for: Asio's own reads");
#endif
    run_until(ctx, r.done);
    BOOST_TEST_REQUIRE(r.done);
    BOOST_TEST(!r.ec);
    BOOST_TEST(r.text() == "yz");
}

BOOST_AUTO_TEST_CASE(a_read_after_an_edge_nobody_waited_for_still_gets_its_bytes) {
    asio::io_context ctx;
    auto [writer, reader] = connected_pair(ctx, false);
    Read r;
    short_first_read(ctx, writer, reader, r);
    // The bytes arrive while no read is queued, and the reactor polls (a timer's wait lets it): the edge is
    // spent on no operation. The next read must still find them, not wait for an edge that already came.
    asio::write(writer, asio::buffer(std::string_view("later")));
    bool ticked = false;
    asio::steady_timer tick(ctx, std::chrono::milliseconds(20));
    tick.async_wait([&](boost::system::error_code) { ticked = true; });
    run_until(ctx, ticked);
    BOOST_TEST_REQUIRE(ticked);
    r.start(reader);
    run_until(ctx, r.done);
    BOOST_TEST_REQUIRE(r.done);
    BOOST_TEST(r.text() == "later");
    // And end of file after a short read is reported, not waited past.
    writer.close();
    r.start(reader);
    run_until(ctx, r.done);
    BOOST_TEST_REQUIRE(r.done);
    BOOST_TEST(r.ec == asio::error::eof);
}

BOOST_AUTO_TEST_CASE(a_read_that_fills_its_buffer_leaves_the_next_read_trying_at_once) {
    asio::io_context ctx;
    auto [writer, reader] = connected_pair(ctx, false);
    Read r;
    r.start(reader);
    asio::write(writer, asio::buffer(std::string(20, 'a')));  // more than the 16-byte buffer
    run_until(ctx, r.done);
    BOOST_TEST_REQUIRE(r.done);
    BOOST_TEST(r.n == 16u);
    // The 4 left behind raise no new edge: the next read must take them at its start.
    r.start(reader);
    BOOST_TEST(reader.available() == 0u);
    run_until(ctx, r.done);
    BOOST_TEST_REQUIRE(r.done);
    BOOST_TEST(r.text() == "aaaa");
}

// DrainingLayer, the layer under a TLS stream: draining, its reads are DrainingReads of the socket (the
// bytes that came after a short read stay in the kernel when the next read starts); not draining, they go
// through the next layer (Beast's tcp_stream, whose timer bounds a handshake), which tries them at once.
BOOST_AUTO_TEST_CASE(a_draining_layer_reads_the_socket_as_draining_reads_only_once_told_to) {
    for (const bool drain : {true, false}) {
        BOOST_TEST_CONTEXT("drain " << drain) {
            asio::io_context ctx;
            auto [writer, reader_socket] = connected_pair(ctx, false);
            DrainingLayer<boost::beast::tcp_stream> layer(boost::beast::tcp_stream(std::move(reader_socket)));
            layer.drain(drain);
            Read r;
            short_first_read(ctx, writer, layer, r);
            write_and_wait_queued(writer, layer.lowest_layer(), "yz");
            r.start(layer);
#ifdef RDSGW_DRAINING_READ
            BOOST_TEST(layer.lowest_layer().available() == (drain ? 2u : 0u));
#endif
            run_until(ctx, r.done);
            BOOST_TEST_REQUIRE(r.done);
            BOOST_TEST(r.text() == "yz");
        }
    }
}
