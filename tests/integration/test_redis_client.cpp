// The Redis client against a real redis-server: pipelining, AUTH with an ACL user, SELECT, unix sockets,
// TLS, scripts, pub/sub, and what happens when Redis dies, hangs and comes back.
#define BOOST_TEST_MODULE redis_client
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <boost/test/unit_test.hpp>
#include <map>
#include <mutex>

#include "harness.hpp"
#include "rdsgw/redis.hpp"
#include "support/certs.hpp"
#include "support/redis_server.hpp"

using namespace rdsgw;
using namespace rdsgw::test;
namespace asio = boost::asio;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

template <class T>
T run_sync(asio::awaitable<T> a) {
    asio::io_context io;
    auto f = asio::co_spawn(io, std::move(a), asio::use_future);
    io.run();
    return f.get();
}

template <class... S>
RedisClient::Args cmd(S&&... s) {
    return RedisClient::Args{std::string(std::forward<S>(s))...};
}

RedisReply sync_cmd(RedisClient& c, RedisClient::Args args, std::chrono::milliseconds timeout = 2000ms) {
    return run_sync(c.command(std::move(args), steady::now() + timeout));
}

// Counts what the client reports through its callbacks.
struct Recorder {
    std::mutex mu;
    std::map<std::string, int> ops;  // "op result"
    int ups = 0, downs = 0;
    RedisEvents events() {
        RedisEvents e;
        e.on_operation = [this](std::string_view op, std::string_view result, double) {
            std::lock_guard lk(mu);
            ++ops[std::string(op) + " " + std::string(result)];
        };
        e.on_state = [this](bool up) {
            std::lock_guard lk(mu);
            ++(up ? ups : downs);
        };
        return e;
    }
    int count(const std::string& key) {
        std::lock_guard lk(mu);
        return ops.count(key) ? ops[key] : 0;
    }
};

RedisOptions options(const std::string& address) {
    RedisOptions o;
    o.address = address;
    o.op_timeout = 2000ms;  // generous: the machine may be busy; outage tests set their own
    o.connect_timeout = 2000ms;
    o.reconnect_base = 10ms;
    o.reconnect_max = 200ms;
    return o;
}

asio::awaitable<void> set_then_get(RedisClient& c, int i, int& ok) {
    const auto d = steady::now() + 10s;
    const std::string k = "key:" + std::to_string(i), v = "value-" + std::to_string(i);
    RedisReply s = co_await c.command(cmd("SET", k, v), d);
    RedisReply g = co_await c.command(cmd("GET", k), d);
    if (s.kind == RedisReply::Kind::status && s.str == "OK" && g.str == v) ++ok;
}

}  // namespace

BOOST_AUTO_TEST_CASE(pipelined_commands_get_their_own_answers) {
    RedisServer srv;
    Recorder rec;
    RedisOptions o = options(srv.address());
    o.pool_size = 1;  // everything on one connection: replies must be matched in order
    RedisClient c(o, rec.events());
    asio::io_context io;
    int ok = 0;
    for (int i = 0; i < 300; ++i) asio::co_spawn(io, set_then_get(c, i, ok), asio::detached);
    io.run();
    BOOST_TEST(ok == 300);
    BOOST_TEST(rec.count("set ok") == 300);
    BOOST_TEST(rec.count("get ok") == 300);

    std::vector<RedisClient::Args> batch{cmd("SET", "n", "1"), cmd("INCR", "n"), cmd("GET", "n"),
                                         cmd("NOSUCHCMD")};
    auto replies = run_sync(c.pipeline(batch, steady::now() + 2s, "batch"));
    BOOST_REQUIRE(replies.size() == 4u);
    BOOST_TEST(replies[0].str == "OK");
    BOOST_TEST(replies[1].integer == 2);
    BOOST_TEST(replies[2].str == "2");
    BOOST_TEST(replies[3].error());
    BOOST_TEST(rec.count("batch error") == 1);
    BOOST_TEST(c.status().up);
}

BOOST_AUTO_TEST_CASE(acl_user_select_and_unix_socket) {
    RedisServerOptions so;
    so.extra_args = {"--requirepass", "admin-pw", "--user", "gw", "on", ">gw-secret-pw", "~*", "&*", "+@all"};
    so.admin_password = "admin-pw";
    RedisServer srv(so);
    for (const std::string& address : {srv.address(), srv.unix_address()}) {
        RedisOptions o = options(address);
        o.user = "gw";
        o.password = "gw-secret-pw";
        o.db = 3;
        RedisClient c(o);
        BOOST_TEST(sync_cmd(c, cmd("SET", "where", address)).str == "OK", address);
        BOOST_TEST(sync_cmd(c, cmd("ACL", "WHOAMI")).str == "gw");
        BOOST_TEST(srv.query({"GET", "where"}, 3).str == address);
        BOOST_TEST(srv.query({"GET", "where"}, 0).nil());
    }
}

BOOST_AUTO_TEST_CASE(wrong_password_degrades_and_never_shows_it) {
    RedisServerOptions so;
    so.extra_args = {"--requirepass", "right-pw"};
    so.admin_password = "right-pw";
    RedisServer srv(so);
    RedisOptions o = options(srv.address());
    o.password = "wrong-pw-s3cr3t";
    o.op_timeout = 200ms;
    RedisClient c(o);
    BOOST_REQUIRE(eventually([&] { return c.status().reason.find("authentication") != std::string::npos; }));
    const RedisStatus st = c.status();
    BOOST_TEST(!st.up);
    BOOST_TEST_MESSAGE("status: " << st.reason);
    BOOST_TEST(st.reason.find("s3cr3t") == std::string::npos);
    const RedisReply r = sync_cmd(c, cmd("PING"), 200ms);
    BOOST_TEST(r.failed());
}

BOOST_AUTO_TEST_CASE(scripts_run_by_sha_and_reload_after_a_flush) {
    RedisServer srv;
    RedisClient c(options(srv.address()));
    RedisScript script("return redis.call('INCRBY', KEYS[1], ARGV[1])");
    BOOST_TEST(run_sync(c.eval(script, {"counter"}, {"5"}, steady::now() + 2s)).integer == 5);
    BOOST_TEST(srv.query({"SCRIPT", "EXISTS", script.sha1()}).elements.at(0).integer == 1);
    BOOST_TEST(srv.query({"SCRIPT", "FLUSH"}).ok());
    BOOST_TEST(run_sync(c.eval(script, {"counter"}, {"2"}, steady::now() + 2s)).integer == 7);
}

BOOST_AUTO_TEST_CASE(killed_redis_fails_fast_opens_the_breaker_then_recovers) {
    RedisServer srv;
    Recorder rec;
    RedisOptions o = options(srv.address());
    o.op_timeout = 100ms;
    o.connect_timeout = 300ms;
    o.breaker_failures = 3;
    o.breaker_open = 300ms;
    RedisClient c(o, rec.events());
    BOOST_REQUIRE(eventually([&] { return sync_cmd(c, cmd("PING"), 100ms).ok(); }));
    BOOST_TEST(c.status().up);

    srv.kill9();
    int failed = 0;
    for (int i = 0; i < 30; ++i) {
        const auto t0 = steady::now();
        const RedisReply r = sync_cmd(c, cmd("GET", "k"), 100ms);
        const auto took = steady::now() - t0;
        BOOST_TEST(to_ms(took) < 2000, "an operation took " << to_ms(took) << " ms");
        failed += r.failed() ? 1 : 0;
    }
    BOOST_TEST(failed == 30);
    BOOST_TEST(rec.count("get breaker_open") > 0);
    BOOST_TEST(!c.status().up);
    BOOST_TEST(!c.status().reason.empty());
    BOOST_TEST_MESSAGE("while down: " << c.status().reason);

    srv.restart();
    BOOST_TEST(eventually([&] { return sync_cmd(c, cmd("PING"), 100ms).ok(); }, 10s));
    BOOST_TEST(eventually([&] { return c.status().up; }, 10s));
    BOOST_TEST(rec.downs >= 1);
    BOOST_TEST(rec.ups >= 2);
}

BOOST_AUTO_TEST_CASE(hung_redis_times_out_at_the_deadline_then_recovers) {
    RedisServer srv;
    Recorder rec;
    RedisOptions o = options(srv.address());
    o.op_timeout = 50ms;
    o.connect_timeout = 300ms;
    o.breaker_failures = 3;
    o.breaker_open = 300ms;
    RedisClient c(o, rec.events());
    BOOST_REQUIRE(eventually([&] { return sync_cmd(c, cmd("PING"), 100ms).ok(); }));

    srv.freeze();
    for (int i = 0; i < 10; ++i) {
        const auto t0 = steady::now();
        const RedisReply r = sync_cmd(c, cmd("GET", "k"), 50ms);
        BOOST_TEST(r.failed());
        BOOST_TEST(to_ms(steady::now() - t0) < 2000);
    }
    BOOST_TEST(rec.count("get timeout") >= 3);
    BOOST_TEST(rec.count("get breaker_open") >= 1);
    BOOST_TEST(!c.status().up);

    srv.thaw();
    BOOST_TEST(eventually([&] { return sync_cmd(c, cmd("PING"), 200ms).ok(); }, 10s));
    BOOST_TEST(eventually([&] { return c.status().up; }, 10s));
}

BOOST_AUTO_TEST_CASE(subscriber_receives_and_resubscribes_after_a_restart) {
    RedisServer srv;
    RedisOptions o = options(srv.address());
    o.subscriber_ping = 200ms;
    RedisClient c(o);
    std::mutex mu;
    std::vector<std::string> got;
    std::atomic<int> subscribed_hooks{0};
    c.subscribe("test:chan", [&](std::string_view payload) {
        std::lock_guard lk(mu);
        got.emplace_back(payload);
    });
    c.on_subscribed([&] { ++subscribed_hooks; });
    auto received = [&](const std::string& what) {
        std::lock_guard lk(mu);
        return std::find(got.begin(), got.end(), what) != got.end();
    };
    BOOST_REQUIRE(eventually([&] { return c.subscribed(); }));
    BOOST_TEST(srv.query({"PUBLISH", "test:chan", "one"}).integer == 1);
    BOOST_TEST(eventually([&] { return received("one"); }));

    srv.kill9();
    BOOST_TEST(eventually([&] { return !c.subscribed(); }));
    srv.restart();
    BOOST_TEST(eventually([&] { return c.subscribed(); }, 10s));
    BOOST_TEST(subscribed_hooks.load() >= 2);
    BOOST_TEST(srv.query({"PUBLISH", "test:chan", "two"}).integer == 1);
    BOOST_TEST(eventually([&] { return received("two"); }));
}

BOOST_AUTO_TEST_CASE(tls_verifies_the_server) {
    Pki pki = make_pki();
    RedisServerOptions so;
    so.tls_cert_file = pki.server_cert;
    so.tls_key_file = pki.server_key;
    so.tls_ca_file = pki.ca_cert;
    RedisServer srv(so);
    {
        RedisOptions o = options("localhost:" + std::to_string(srv.port()));
        o.tls = true;
        o.tls_ca_file = pki.ca_cert;
        RedisClient c(o);
        BOOST_TEST(sync_cmd(c, cmd("SET", "over", "tls")).str == "OK");
        BOOST_TEST(srv.query({"GET", "over"}).str == "tls");
    }
    {
        RedisOptions o = options(srv.address());
        o.tls = true;
        o.tls_ca_file = pki.other_ca_cert;  // the wrong CA
        RedisClient c(o);
        BOOST_TEST(eventually([&] { return c.status().reason.find("TLS handshake") != std::string::npos; }));
        BOOST_TEST_MESSAGE("wrong CA: " << c.status().reason);
        BOOST_TEST(!c.status().up);
    }
}
