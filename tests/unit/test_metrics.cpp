// Metrics conventions (issue 18): standard process metrics, rdsgw_build_info, known label values exported at
// 0, no empty or space-containing label values.
#define BOOST_TEST_MODULE metrics
#include <boost/test/unit_test.hpp>
#include <chrono>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "rdsgw/metrics.hpp"

using namespace rdsgw;

namespace {
double sample(const std::string& text, const std::string& series) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    return -1;  // absent
}
BuildInfo build() {
    return BuildInfo{"1.2.3", "0123abcd4567-dirty", "1.81.0", "3.0.19", "jemalloc"};
}
}  // namespace

BOOST_AUTO_TEST_CASE(label_values) {
    BOOST_TEST(label_value("") == "none");
    BOOST_TEST(label_value("missing credentials") == "missing_credentials");
    BOOST_TEST(label_value("HIT") == "HIT");
}

BOOST_AUTO_TEST_CASE(proc_stat_parsing) {
    // The command name may contain spaces and parentheses: fields count from the last ')'.
    const std::string stat =
        "4242 (rds gw (x)) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 3 0 1000 123456789 1000 "
        "18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 17 1 0 0 0 0 0";
    ProcessStats ps;
    BOOST_TEST_REQUIRE(parse_proc_stat(stat, 100, 4096, 1700000000, ps));
    BOOST_TEST(ps.cpu_seconds == 3.0);                  // (250 + 50) / 100
    BOOST_TEST(ps.start_time_seconds == 1700000010.0);  // boot + 1000 / 100
    BOOST_TEST(ps.virtual_bytes == 123456789.0);
    BOOST_TEST(ps.resident_bytes == 1000.0 * 4096);
    BOOST_TEST(!parse_proc_stat("4242 (x) S 1 2 3", 100, 4096, 0, ps));
    BOOST_TEST(!parse_proc_stat("no parenthesis", 100, 4096, 0, ps));
    BOOST_TEST(!parse_proc_stat(stat, 0, 4096, 0, ps));
}

BOOST_AUTO_TEST_CASE(this_process) {
    ProcessStats ps;
    BOOST_TEST_REQUIRE(read_process_stats(ps));
    const double now =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    BOOST_TEST(ps.start_time_seconds > now - 86400);
    BOOST_TEST(ps.start_time_seconds < now + 60);
    BOOST_TEST(ps.resident_bytes > 1e5);
    BOOST_TEST(ps.virtual_bytes >= ps.resident_bytes);
    BOOST_TEST(ps.open_fds >= 3);  // stdin, stdout, stderr at least
    BOOST_TEST(ps.max_fds != 0);
}

BOOST_AUTO_TEST_CASE(render_follows_the_conventions) {
    Metrics m(build());
    m.credential_kind("iam");
    m.request_done("healthz", "GET", 200, "", 0.001);
    m.auth_failure("invalid credentials");
    const std::string text = m.render();

    BOOST_TEST(
        sample(
            text,
            R"(rdsgw_build_info{allocator="jemalloc",boost="1.81.0",commit="0123abcd4567-dirty",openssl="3.0.19",version="1.2.3"})") ==
        1);
    for (const char* p :
         {"process_cpu_seconds_total", "process_start_time_seconds", "process_resident_memory_bytes",
          "process_virtual_memory_bytes", "process_open_fds", "process_max_fds"})
        BOOST_TEST(text.find(std::string("# TYPE ") + p + " ") != std::string::npos, p);
    BOOST_TEST(sample(text, "process_resident_memory_bytes") > 0);
    BOOST_TEST(sample(text, "process_open_fds") >= 3);

    // Known label values start at 0.
    for (const char* s :
         {R"(rdsgw_cache_events_total{event="miss"})", R"(rdsgw_cache_events_total{event="expired"})",
          R"(rdsgw_rejected_requests_total{reason="overload"})",
          R"(rdsgw_caller_auth_failures_total{reason="missing_credentials"})",
          R"(rdsgw_credential_refreshes_total{kind="iam",result="ok"})",
          R"(rdsgw_credential_refreshes_total{kind="iam",result="error"})",
          R"(rdsgw_request_duration_seconds_count{route="backup_files"})"})
        BOOST_TEST(sample(text, s) == 0, s);
    BOOST_TEST(sample(text, R"(rdsgw_credential_refreshes_total{kind="token",result="ok"})") ==
               -1);  // not this kind
    // Empty and spaced values are rewritten.
    BOOST_TEST(
        sample(text, R"(rdsgw_requests_total{cache="none",code="200",method="GET",route="healthz"})") == 1);
    BOOST_TEST(sample(text, R"(rdsgw_caller_auth_failures_total{reason="invalid_credentials"})") == 1);
    static const std::regex value(R"re(="([^"]*)")re");
    for (auto it = std::sregex_iterator(text.begin(), text.end(), value); it != std::sregex_iterator();
         ++it) {
        const std::string v = (*it)[1];
        BOOST_TEST(!v.empty());
        BOOST_TEST(v.find(' ') == std::string::npos, v);
    }
}

BOOST_AUTO_TEST_CASE(cpu_counter_only_grows) {
    Metrics m(build());
    const double first = sample(m.render(), "process_cpu_seconds_total");
    volatile double x = 0;
    for (int i = 0; i < 20000000; ++i) x = x + 1;  // burn some CPU
    const double second = sample(m.render(), "process_cpu_seconds_total");
    BOOST_TEST(first >= 0);
    BOOST_TEST(second >= first);
}

// Hot-path updates go to per-thread cells that render() folds in: counts from several threads add up, the
// duration histogram gets every observation and their sum, the in-flight gauge is the sum over threads, and a
// second render adds only what is new.
BOOST_AUTO_TEST_CASE(per_thread_counts_add_up_at_render) {
    Metrics m(build());
    constexpr int kThreads = 4, kEach = 1000;
    std::vector<std::thread> ts;
    for (int t = 0; t < kThreads; ++t)
        ts.emplace_back([&] {
            for (int i = 0; i < kEach; ++i) {
                m.request_done("backup_files", "GET", 200, "HIT", 0.002);
                m.cache_event("hit");
            }
            m.inflight_add(2);
            m.upstream_connections_add(1, 1);
        });
    for (auto& t : ts) t.join();
    std::string text = m.render();
    const std::string req =
        "rdsgw_requests_total{cache=\"HIT\",code=\"200\",method=\"GET\",route=\"backup_files\"}";
    BOOST_TEST(sample(text, req) == kThreads * kEach);
    BOOST_TEST(sample(text, "rdsgw_cache_events_total{event=\"hit\"}") == kThreads * kEach);
    BOOST_TEST(sample(text, "rdsgw_request_duration_seconds_count{route=\"backup_files\"}") ==
               kThreads * kEach);
    BOOST_TEST(sample(text, "rdsgw_request_duration_seconds_bucket{route=\"backup_files\",le=\"0.005\"}") ==
               kThreads * kEach);
    BOOST_TEST(sample(text, "rdsgw_request_duration_seconds_sum{route=\"backup_files\"}") ==
                   kThreads * kEach * 0.002,
               boost::test_tools::tolerance(1e-6));
    BOOST_TEST(sample(text, "rdsgw_requests_in_flight") == 2 * kThreads);
    BOOST_TEST(sample(text, "rdsgw_upstream_connections_open") == kThreads);
    // Only what is new since the last render is added.
    m.request_done("backup_files", "GET", 200, "HIT", 0.002);
    m.inflight_add(-1);
    text = m.render();
    BOOST_TEST(sample(text, req) == kThreads * kEach + 1);
    BOOST_TEST(sample(text, "rdsgw_requests_in_flight") == 2 * kThreads - 1);
}
