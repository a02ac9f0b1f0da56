// The per-connection exchange and the per-thread access log: what lets a cache hit run without heap
// allocations (README, "Performance") must not change what a request sees or what the log gets.
#define BOOST_TEST_MODULE exchange
#include <unistd.h>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <boost/test/unit_test.hpp>
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "rdsgw/exchange.hpp"
#include "rdsgw/header_arena.hpp"
#include "rdsgw/log.hpp"

using namespace rdsgw;
namespace http = boost::beast::http;

// A reset exchange is a new exchange in everything a phase or the access log reads.
BOOST_AUTO_TEST_CASE(reset_gives_a_new_exchange) {
    Exchange x;
    x.method = http::verb::get;
    x.method_string = "GET";
    x.target = "/v3/p/backup-files?backup_id=b";
    x.version = 10;
    x.route = Route::backup_files;
    x.client_addr = "10.0.0.1";
    x.admin_listener = true;
    x.request_id = "rid";
    x.user_agent = "ua";
    x.client = "203.0.113.9";
    x.trace = continue_trace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "a=b");
    x.project_id = "p";
    x.backup_id = "b";
    x.cache_key = "p\nb";
    x.language = "en-us";
    x.no_cache = true;
    x.pending = PendingStep::purge;
    x.cache = CacheState::hit;
    x.region = "cn-north-4";  // logged (multi-region misses)
    x.stale = CachedAnswer::make({});
    x.upstream_status = 503;
    x.attempts = 3;
    x.upstream_ms = 12.5;
    x.upstream_request_id = "u";
    x.upstream_retry_after = "1";
    x.answer = CachedAnswer::make({});
    x.error = LocalError(400, "bad", ErrorSource::caller, "validation");
    x.response.status = 400;
    x.response.body = "{}";
    x.response.headers.emplace_back("X-Cache", "HIT");
    x.response.shared_body = x.answer;
    x.response.close = true;
    x.bytes_sent = 99;

    x.reset();
    const Exchange fresh;
    BOOST_TEST(access_line(x, 1.0).substr(40) == access_line(fresh, 1.0).substr(40));  // past "time"
    BOOST_TEST((x.method == fresh.method));
    BOOST_TEST(x.target.empty());
    BOOST_TEST(x.version == fresh.version);
    BOOST_TEST((x.route == fresh.route));
    BOOST_TEST(!x.admin_listener);
    BOOST_TEST(x.trace.trace_id.empty());
    BOOST_TEST(x.trace.flags == "00");
    BOOST_TEST(x.trace.tracestate.empty());
    BOOST_TEST(x.language.empty());
    BOOST_TEST(!x.no_cache);
    BOOST_TEST((x.pending == PendingStep::none));
    BOOST_TEST(x.region.empty());
    BOOST_TEST(!x.stale);
    BOOST_TEST(!x.answer);
    BOOST_TEST(!x.error);
    BOOST_TEST(x.upstream_ms == fresh.upstream_ms);
    BOOST_TEST(x.response.status == 200u);
    BOOST_TEST(x.response.body.empty());
    BOOST_TEST(x.response.headers.empty());
    BOOST_TEST(!x.response.shared_body);
    BOOST_TEST(!x.response.close);
    BOOST_TEST(x.response.content_type == "application/json");
}

// The access line is one JSON object for any content of its fields: every optional field set, hostile bytes
// (quotes, controls, ill-formed UTF-8) in what callers and upstreams control, a long error message, and a
// line appended after text already in the buffer. Each field reads back as written (the user agent cut at
// 256 bytes, an oversized method as "other").
BOOST_AUTO_TEST_CASE(access_line_is_json_for_any_fields) {
    const std::string agent = "agent \"q\" \\ \x01\x1f\xff\xc3" + std::string(400, 'u');
    const std::string error_text = "upstream said \"no\"\n" + std::string(10000, '\x7f') + "\xe2\x82";
    const std::string method(17, 'M');
    Exchange x;
    x.method_string = "GET";
    x.version = 10;
    x.route = Route::backup_files;
    x.client_addr = "10.0.0.1";
    x.client = "203.0.113.9\"";
    x.tls_version = "TLSv1.3";
    x.request_id = "rid\\";
    x.user_agent = agent;
    x.trace = continue_trace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "");
    x.project_id = "p\x02";
    x.backup_id = "b\xf0";
    x.cache = CacheState::miss;
    x.region = "cn-north-4";
    x.upstream_status = 503;
    x.attempts = 3;
    x.upstream_ms = 12.46;
    x.upstream_request_id = "u\"";
    x.error = LocalError(502, error_text, ErrorSource::upstream, "bad_answer");
    x.response.status = 502;
    x.bytes_sent = 18446744073709551615ull;
    // The line's time is the request's wall-clock start advanced by its duration (no clock read).
    x.wall_started = std::chrono::sys_days(std::chrono::year(2026) / 11 / 27) + std::chrono::hours(12);

    for (const bool odd_method : {false, true}) {
        if (odd_method) x.method_string = method;
        std::string line = "prefix";
        append_access_line(line, x, 1234.567);
        BOOST_TEST(line.starts_with("prefix"));
        boost::system::error_code ec;
        const boost::json::value v = boost::json::parse(std::string_view(line).substr(6), ec);
        BOOST_REQUIRE(!ec);
        const boost::json::object& o = v.as_object();
        const auto str = [&](const char* k) { return std::string(o.at(k).as_string()); };
        const auto text = [](std::string_view s) {  // what the escaper makes of s, read back
            std::string e;
            json_escape_append(e, s);
            return std::string(boost::json::parse(e).as_string());
        };
        BOOST_TEST(str("request_id") == "rid\\");
        BOOST_TEST(str("client") == "203.0.113.9\"");
        BOOST_TEST(str("peer") == "10.0.0.1");
        BOOST_TEST(str("caller") == "");
        BOOST_TEST(str("protocol") == "HTTP/1.0");
        BOOST_TEST(str("tls") == "TLSv1.3");
        BOOST_TEST(str("method") == (odd_method ? "other" : "GET"));
        BOOST_TEST(str("route") == "/{version_id}/{project_id}/backup-files");
        BOOST_TEST(str("project_id") == "p\x02");
        BOOST_TEST(str("backup_id") == text("b\xf0"));
        BOOST_TEST(o.at("status").as_int64() == 502);
        BOOST_TEST(str("cache") == "MISS");
        BOOST_TEST(str("region") == "cn-north-4");
        BOOST_TEST(o.at("upstream_status").as_int64() == 503);
        BOOST_TEST(o.at("attempts").as_int64() == 3);
        BOOST_TEST(o.at("upstream_ms").as_double() == 12.5);
        BOOST_TEST(o.at("total_ms").as_double() == 1234.57);
        BOOST_TEST(o.at("bytes_sent").as_uint64() == 18446744073709551615ull);
        BOOST_TEST(str("upstream_request_id") == "u\"");
        BOOST_TEST(str("user_agent") == text(std::string_view(agent).substr(0, 256)));
        BOOST_TEST(str("trace_id") == "4bf92f3577b34da6a3ce929d0e0e4736");
        BOOST_TEST(str("span_id").size() == 16u);
        BOOST_TEST(str("parent_span_id") == "00f067aa0ba902b7");
        BOOST_TEST(str("error") == text(error_text));
        BOOST_TEST(str("time") == "2026-11-27T12:00:01.234Z");
    }
}

// The line's keys, their order and their spelling, byte for byte (log pipelines parse it): a plain hit,
// and a miss with every optional field.
BOOST_AUTO_TEST_CASE(access_line_golden) {
    Exchange x;
    x.method_string = "GET";
    x.route = Route::backup_files;
    x.client_addr = "10.0.0.1";
    x.request_id = "rid";
    x.project_id = "p";
    x.backup_id = "b";
    x.cache = CacheState::hit;
    x.response.status = 200;
    x.bytes_sent = 705;
    x.wall_started = std::chrono::sys_days(std::chrono::year(2026) / 11 / 27) + std::chrono::hours(12);
    BOOST_TEST(
        access_line(x, 0.25) ==
        "{\"time\":\"2026-11-27T12:00:00.000Z\",\"request_id\":\"rid\",\"client\":\"10.0.0.1\","
        "\"caller\":\"\",\"protocol\":\"HTTP/1.1\",\"method\":\"GET\","
        "\"route\":\"/{version_id}/{project_id}/backup-files\",\"project_id\":\"p\",\"backup_id\":\"b\","
        "\"status\":200,\"cache\":\"HIT\",\"upstream_status\":null,\"attempts\":0,\"upstream_ms\":null,"
        "\"total_ms\":0.25,\"bytes_sent\":705}");
    x.client = "203.0.113.9";
    x.tls_version = "TLSv1.3";
    x.cache = CacheState::miss;
    x.region = "cn-north-4";
    x.upstream_status = 200;
    x.attempts = 1;
    x.upstream_ms = 3.14;
    x.upstream_request_id = "u";
    x.user_agent = "ua";
    x.trace.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    x.trace.span_id = "00f067aa0ba902b7";
    x.trace.parent_id = "b7ad6b7169203331";
    x.error = LocalError(502, "bad", ErrorSource::upstream);
    x.response.status = 502;
    BOOST_TEST(
        access_line(x, 1500) ==
        "{\"time\":\"2026-11-27T12:00:01.500Z\",\"request_id\":\"rid\",\"client\":\"203.0.113.9\","
        "\"peer\":\"10.0.0.1\",\"caller\":\"\",\"protocol\":\"HTTP/1.1\",\"tls\":\"TLSv1.3\","
        "\"method\":\"GET\",\"route\":\"/{version_id}/{project_id}/backup-files\",\"project_id\":\"p\","
        "\"backup_id\":\"b\",\"status\":502,\"cache\":\"MISS\",\"region\":\"cn-north-4\","
        "\"upstream_status\":200,\"attempts\":1,\"upstream_ms\":3.1,\"total_ms\":1500.00,"
        "\"bytes_sent\":705,\"upstream_request_id\":\"u\",\"user_agent\":\"ua\","
        "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\",\"span_id\":\"00f067aa0ba902b7\","
        "\"parent_span_id\":\"b7ad6b7169203331\",\"error\":\"bad\"}");
}

// Header fields parsed into the arena, including a header block larger than the arena (it spills to the
// heap).
BOOST_AUTO_TEST_CASE(header_fields_in_the_arena_and_beyond) {
    for (std::size_t value_size : {std::size_t{10}, HeaderArena::kBytes}) {
        HeaderArena arena;
        http::request_parser<http::empty_body, ArenaAllocator<char>> p(
            std::piecewise_construct, std::make_tuple(), std::make_tuple(ArenaAllocator<char>(&arena)));
        p.header_limit(64 * 1024);
        const std::string big(value_size, 'v');
        const std::string req = "GET /x HTTP/1.1\r\nHost: a\r\nX-Big: " + big + "\r\nX-Api-Key: k\r\n\r\n";
        boost::system::error_code ec;
        p.put(boost::asio::buffer(req), ec);
        BOOST_TEST(!ec);
        BOOST_REQUIRE(p.is_header_done());
        const RequestFields& f = p.get().base();
        BOOST_TEST(f["X-Big"] == big);
        BOOST_TEST(f["X-Api-Key"] == "k");
        BOOST_TEST(p.get().target() == "/x");
        BOOST_TEST(arena.used() > 0u);
    }
}

// Lines from several threads all reach the file, each whole, in each thread's order.
BOOST_AUTO_TEST_CASE(access_log_lines_from_many_threads) {
    char path[] = "/tmp/rdsgw-test-access-XXXXXX";
    const int fd = ::mkstemp(path);
    BOOST_REQUIRE(fd >= 0);
    ::close(fd);
    constexpr int kThreads = 4, kEach = 3000;
    {
        AccessLog log(path, 1u << 20);
        std::vector<std::thread> ts;
        for (int t = 0; t < kThreads; ++t)
            ts.emplace_back([&log, t] {
                for (int i = 0; i < kEach; ++i)
                    log.write("{\"thread\":" + std::to_string(t) + ",\"i\":" + std::to_string(i) + "}");
            });
        for (auto& t : ts) t.join();
        log.flush();
        BOOST_TEST(log.dropped() == 0u);
    }
    std::ifstream in(path);
    std::vector<int> next(kThreads, 0);
    int lines = 0;
    for (std::string line; std::getline(in, line); ++lines) {
        int t = -1, i = -1;
        BOOST_REQUIRE(std::sscanf(line.c_str(), "{\"thread\":%d,\"i\":%d}", &t, &i) == 2);
        BOOST_REQUIRE(t >= 0);
        BOOST_REQUIRE(t < kThreads);
        BOOST_TEST(i == next[t]);
        next[t] = i + 1;
    }
    BOOST_TEST(lines == kThreads * kEach);
    ::unlink(path);
}

// Past access_queue waiting lines (per thread), lines are dropped and counted, never blocking the writer.
BOOST_AUTO_TEST_CASE(access_log_drops_past_the_queue) {
    char path[] = "/tmp/rdsgw-test-access-XXXXXX";
    const int fd = ::mkstemp(path);
    BOOST_REQUIRE(fd >= 0);
    ::close(fd);
    {
        AccessLog log(path, 10);
        for (int i = 0; i < 100000; ++i) log.write("{\"line\":1}");  // far faster than a 20 ms flush cycle
        log.flush();
        BOOST_TEST(log.dropped() > 0u);
    }
    ::unlink(path);
}

// The arena's buffer is held only while a request is parsed and served: an idle connection holds none, and
// the next request takes a buffer from the thread's pool (the same one: no allocation in steady state).
BOOST_AUTO_TEST_CASE(the_arena_holds_a_buffer_only_between_first_field_and_reset) {
    HeaderArena a;
    BOOST_TEST(!a.holds_buffer());
    void* p = a.allocate(100, 8);
    BOOST_TEST(a.holds_buffer());
    BOOST_TEST(a.used() == 100u);
    a.reset();
    BOOST_TEST(!a.holds_buffer());
    BOOST_TEST(a.used() == 0u);
    void* q = a.allocate(100, 8);
    BOOST_TEST(q == p);  // this thread's pool gave the same buffer back
    HeaderArena b;
    void* r = b.allocate(100, 8);
    BOOST_TEST(r != q);  // two arenas in use: two buffers
    BOOST_TEST(b.holds_buffer());
    a.reset();
    b.reset();
    BOOST_TEST(!a.holds_buffer());
    BOOST_TEST(!b.holds_buffer());
}
