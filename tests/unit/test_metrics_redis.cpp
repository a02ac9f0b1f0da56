#define BOOST_TEST_MODULE metrics_redis
#include <boost/test/unit_test.hpp>

#include "rdsgw/metrics.hpp"

using namespace rdsgw;

BOOST_AUTO_TEST_CASE(no_redis_series_until_used) {
    Metrics m("test");
    BOOST_TEST(m.render().find("rdsgw_redis") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(operations_duration_and_up) {
    Metrics m("test");
    m.set_redis_up(false);
    m.redis_operation("l2_get", "ok", 0.0004);
    m.redis_operation("l2_get", "ok", 0.002);
    m.redis_operation("l2_get", "timeout", 0.02);
    m.redis_operation("l2_put", "breaker_open", 0);
    m.cache_event("l2_hit");
    const std::string text = m.render();
    BOOST_TEST(text.find("rdsgw_redis_up 0") != std::string::npos);
    BOOST_TEST(text.find(R"(rdsgw_redis_operations_total{op="l2_get",result="ok"} 2)") != std::string::npos);
    BOOST_TEST(text.find(R"(rdsgw_redis_operations_total{op="l2_get",result="timeout"} 1)") !=
               std::string::npos);
    BOOST_TEST(text.find(R"(rdsgw_redis_operations_total{op="l2_put",result="breaker_open"} 1)") !=
               std::string::npos);
    BOOST_TEST(text.find(R"(rdsgw_redis_duration_seconds_count{op="l2_get"} 3)") != std::string::npos);
    BOOST_TEST(text.find(R"(rdsgw_redis_duration_seconds_bucket{op="l2_get",le="0.0005"} 1)") !=
               std::string::npos);
    BOOST_TEST(text.find(R"(rdsgw_cache_events_total{event="l2_hit"} 1)") != std::string::npos);
    m.set_redis_up(true);
    BOOST_TEST(m.render().find("rdsgw_redis_up 1") != std::string::npos);
}
