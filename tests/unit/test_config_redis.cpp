#define BOOST_TEST_MODULE config_redis
#include <boost/test/unit_test.hpp>

#include "rdsgw/config.hpp"
#include "support/config_errors.hpp"

using namespace rdsgw;

namespace {
std::string with_redis(const std::string& redis) {
    return R"({"callers": {"required": false}, "redis": )" + redis + "}";
}
std::vector<std::string> errors_of(const std::string& text, Config* out = nullptr) {
    return test::config_errors(text, out);
}
using test::mentions;
const std::string kKeys = R"("encryption_keys": [{"id": "k1", "key": {"env": "RDSGW_L2_KEY"}}])";
}  // namespace

BOOST_AUTO_TEST_CASE(off_by_default) {
    Config c;
    BOOST_TEST(errors_of(R"({"callers": {"required": false}})", &c).empty());
    BOOST_TEST(!c.redis.enabled);
    BOOST_TEST(c.redis.address == "127.0.0.1:6379");
    BOOST_TEST(c.redis.key_prefix == "rdsgw:");
    BOOST_TEST(c.redis.pool_size == 2u);
    BOOST_TEST(c.redis.db == 0u);
    BOOST_TEST(c.redis.encryption_keys.empty());
    BOOST_TEST(!c.redis.shared_rate_limits);
    BOOST_TEST(!c.redis.tls);
}

BOOST_AUTO_TEST_CASE(full_section_parses) {
    Config c;
    auto errs = errors_of(with_redis(R"({
        "enabled": true, "address": "redis.internal:6380", "user": "gw", "password": {"file": "/run/redis-pw"},
        "db": 3, "key_prefix": "prod:", "pool_size": 4, "op_timeout_ms": 8, "connect_timeout_ms": 300,
        "breaker_failures": 3, "breaker_open_ms": 1500, "lock_ttl_ms": 4000, "shared_rate_limits": true,
        "tls": true, "tls_ca_file": "/etc/ca.pem", "tls_server_name": "redis.example",
        "encryption_keys": [{"id": "k2", "key": {"env": "K2"}}, {"id": "k1", "key": {"file": "/run/k1"}}]})"),
                          &c);
    for (auto& e : errs) BOOST_TEST_MESSAGE(e);
    BOOST_TEST(errs.empty());
    const RedisConfig& r = c.redis;
    BOOST_TEST(r.enabled);
    BOOST_TEST(r.address == "redis.internal:6380");
    BOOST_TEST(r.user == "gw");
    BOOST_TEST(r.password.file == "/run/redis-pw");
    BOOST_TEST(r.db == 3u);
    BOOST_TEST(r.key_prefix == "prod:");
    BOOST_TEST(r.pool_size == 4u);
    BOOST_TEST(r.op_timeout_ms == 8u);
    BOOST_TEST(r.connect_timeout_ms == 300u);
    BOOST_TEST(r.breaker_failures == 3u);
    BOOST_TEST(r.breaker_open_ms == 1500u);
    BOOST_TEST(r.lock_ttl_ms == 4000u);
    BOOST_TEST(r.shared_rate_limits);
    BOOST_TEST(r.tls);
    BOOST_TEST(r.tls_ca_file == "/etc/ca.pem");
    BOOST_TEST(r.tls_server_name == "redis.example");
    BOOST_REQUIRE(r.encryption_keys.size() == 2u);
    BOOST_TEST(r.encryption_keys[0].id == "k2");
    BOOST_TEST(r.encryption_keys[0].key.env == "K2");
    BOOST_TEST(r.encryption_keys[1].key.file == "/run/k1");
}

BOOST_AUTO_TEST_CASE(addresses) {
    for (const char* ok :
         {"127.0.0.1:6379", "localhost:1", "[::1]:6379", "a.b-c.example:65535", "unix:/run/r.sock"}) {
        auto errs = errors_of(with_redis(std::string(R"({"address": ")") + ok + "\"}"));
        BOOST_TEST(errs.empty(), ok << ": " << (errs.empty() ? "" : errs.front()));
    }
    for (const char* bad : {"", "localhost", "localhost:0", "localhost:65536", "host:port", "unix:relative",
                            "redis://localhost:6379", "a b:1", "[::1:6379"}) {
        auto errs = errors_of(with_redis(std::string(R"({"address": ")") + bad + "\"}"));
        BOOST_TEST(mentions(errs, "redis.address"), bad);
    }
    BOOST_TEST(mentions(errors_of(with_redis(R"({"address": "unix:/r.sock", "tls": true})")), "redis.tls"));
}

struct BadCase {
    std::string redis;
    std::string named;
};

BOOST_AUTO_TEST_CASE(bad_keys_are_named) {
    const std::vector<BadCase> cases = {
        {"5", "redis: must be an object"},
        {R"({"enable": true})", "redis.enable: unknown key"},
        {R"({"enabled": "yes"})", "redis.enabled"},
        {R"({"enabled": true})", "redis.encryption_keys: is required"},
        {R"({"db": 256})", "redis.db"},
        {R"({"db": -1})", "redis.db"},
        {R"({"pool_size": 0})", "redis.pool_size"},
        {R"({"pool_size": 65})", "redis.pool_size"},
        {R"({"op_timeout_ms": 0})", "redis.op_timeout_ms"},
        {R"({"connect_timeout_ms": 0})", "redis.connect_timeout_ms"},
        {R"({"breaker_failures": 0})", "redis.breaker_failures"},
        {R"({"breaker_open_ms": 0})", "redis.breaker_open_ms"},
        {R"({"lock_ttl_ms": 5})", "redis.lock_ttl_ms"},
        {R"({"key_prefix": "a{b"})", "redis.key_prefix"},
        {R"({"key_prefix": "a b"})", "redis.key_prefix"},
        {R"({"password": "hunter2"})", "redis.password"},
        {R"({"user": "gw"})", "redis.password: is required with user"},
        {R"({"shared_rate_limits": 1})", "redis.shared_rate_limits"},
        {R"({"encryption_keys": {"id": "k1"}})", "redis.encryption_keys"},
        {R"({"encryption_keys": ["k1"]})", "redis.encryption_keys[0]"},
        {R"({"encryption_keys": [{"id": "bad id", "key": {"env": "K"}}]})", "redis.encryption_keys[0].id"},
        {R"({"encryption_keys": [{"key": {"env": "K"}}]})", "redis.encryption_keys[0].id"},
        {R"({"encryption_keys": [{"id": "k1"}]})", "redis.encryption_keys[0].key"},
        {R"({"encryption_keys": [{"id": "k1", "key": "c2VjcmV0"}]})", "redis.encryption_keys[0].key"},
        {R"({"encryption_keys": [{"id": "k1", "key": {"env": "A"}}, {"id": "k1", "key": {"env": "B"}}]})",
         "redis.encryption_keys[1].id: is used twice"},
        {R"({"encryption_keys": [{"id": "k1", "key": {"env": "A"}, "alg": "x"}]})",
         "redis.encryption_keys[0].alg: unknown key"},
    };
    for (const auto& c : cases) {
        auto errs = errors_of(with_redis(c.redis));
        BOOST_TEST(mentions(errs, c.named),
                   c.redis << " should name " << c.named
                           << "; got: " << (errs.empty() ? std::string("nothing") : errs.front()));
    }
}

BOOST_AUTO_TEST_CASE(long_prefix_is_refused) {
    std::string redis = R"({"key_prefix": ")";
    redis.append(65, 'p');
    redis.append("\"}");
    BOOST_TEST(mentions(errors_of(with_redis(redis)), "redis.key_prefix: must be at most 64"));
}

BOOST_AUTO_TEST_CASE(secrets_never_in_messages) {
    auto errs = errors_of(
        with_redis(R"({"password": "hunter2", "encryption_keys": [{"id": "k1", "key": "c2VjcmV0"}]})"));
    BOOST_REQUIRE(!errs.empty());
    for (auto& e : errs) {
        BOOST_TEST(e.find("hunter2") == std::string::npos);
        BOOST_TEST(e.find("c2VjcmV0") == std::string::npos);
    }
}

BOOST_AUTO_TEST_CASE(enabled_with_keys_is_valid) {
    Config c;
    auto errs = errors_of(with_redis("{\"enabled\": true, " + kKeys + "}"), &c);
    BOOST_TEST(errs.empty());
    BOOST_TEST(c.redis.enabled);
    BOOST_TEST(c.redis.encryption_keys.size() == 1u);
}
