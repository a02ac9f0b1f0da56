// systemd integration (include/rdsgw/systemd.hpp): the event-loop probe behind WATCHDOG=1, and the notifier
// thread's messages to a stand-in notify socket.
#define BOOST_TEST_MODULE systemd
#include <boost/asio/io_context.hpp>
#include <boost/test/unit_test.hpp>
#include <cstdlib>
#include <thread>

#include "rdsgw/systemd.hpp"
#include "support/notify_socket.hpp"

using namespace rdsgw;
using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {
// Runs the handlers already queued on `ioc` (as its thread would), without blocking.
std::size_t run_queued(asio::io_context& ioc) {
    ioc.restart();
    return ioc.poll();
}
}  // namespace

BOOST_AUTO_TEST_CASE(probe_detects_a_stuck_loop_without_piling_up_handlers) {
    asio::io_context a, b;
    LoopProbe probe({a.get_executor(), b.get_executor()});
    BOOST_TEST(!probe.tick());  // the first tick only posts
    BOOST_TEST(run_queued(a) == 1u);
    BOOST_TEST(run_queued(b) == 1u);
    BOOST_TEST(probe.tick());  // both answered: WATCHDOG=1 would be sent
    BOOST_TEST(probe.stuck().empty());

    // Loop b stops running handlers (a long computation, a deadlock): no more pings.
    BOOST_TEST(run_queued(a) == 1u);
    BOOST_TEST(!probe.tick());
    BOOST_TEST((probe.stuck() == std::vector<std::size_t>{1}));
    for (int i = 0; i < 5; ++i) {
        run_queued(a);
        BOOST_TEST(!probe.tick());
    }
    // It gets one probe only, however long it is stuck; once it runs it, pings resume.
    BOOST_TEST(run_queued(b) == 1u);
    run_queued(a);
    BOOST_TEST(probe.tick());
    BOOST_TEST(probe.stuck().empty());
}

BOOST_AUTO_TEST_CASE(probe_of_loops_run_by_threads) {
    asio::io_context a, b;
    auto wa = asio::make_work_guard(a), wb = asio::make_work_guard(b);
    std::thread ta([&] { a.run(); }), tb([&] { b.run(); });
    LoopProbe probe({a.get_executor(), b.get_executor()});
    probe.tick();
    bool answered = false;
    for (int i = 0; i < 500 && !answered; ++i) {  // bounded: running loops answer within microseconds
        std::this_thread::sleep_for(10ms);
        answered = probe.tick();
    }
    BOOST_TEST(answered);
    wa.reset();
    wb.reset();
    a.stop();
    b.stop();
    ta.join();
    tb.join();
}

BOOST_AUTO_TEST_CASE(no_notify_socket_no_messages) {
    ::unsetenv("NOTIFY_SOCKET");
    BOOST_TEST(!sd_notify_state("READY=1"));
    asio::io_context ioc;
    SystemdNotifier n({{ioc.get_executor()}, [](std::string&) { return true; }, "x"});
    BOOST_TEST(!n.active());
    n.stopping();  // harmless
}

BOOST_AUTO_TEST_CASE(notifier_ready_status_watchdog_stopping) {
    test::NotifySocket sock;
    ::setenv("NOTIFY_SOCKET", sock.path().c_str(), 1);
    ::setenv("WATCHDOG_USEC", "100000", 1);  // pings every 50 ms
    ::unsetenv("WATCHDOG_PID");
    BOOST_TEST(sd_notify_state("STATUS=hello"));
    BOOST_TEST(sock.receive(5s).value_or("") == "STATUS=hello");

    asio::io_context ioc;
    auto work = asio::make_work_guard(ioc);
    std::thread loop([&] { ioc.run(); });
    std::atomic<bool> creds{false};
    {
        SystemdNotifier n({{ioc.get_executor()},
                           [&](std::string& why) {
                               why = "no IAM token yet";
                               return creds.load();
                           },
                           "serving on 127.0.0.1:1"});
        BOOST_TEST(n.active());
        n.reloading();  // a SIGHUP before the first READY=1 says nothing
        n.reloaded();
        std::string before;
        BOOST_TEST(sock.wait_for("STATUS=not ready: no IAM token yet", 10s, &before));
        BOOST_TEST(sock.wait_for("WATCHDOG=1", 10s, &before));  // the loop answers: pings while starting too
        BOOST_TEST(before.find("READY=1") == std::string::npos);
        BOOST_TEST(before.find("RELOADING=1") == std::string::npos);
        creds = true;
        std::string seen;
        BOOST_TEST(sock.wait_for("READY=1\nSTATUS=serving on 127.0.0.1:1", 10s, &seen));
        BOOST_TEST(sock.wait_for("WATCHDOG=1", 10s));
        n.stopping();
        n.stopping();  // once only
        seen.clear();
        BOOST_TEST(sock.wait_for("STOPPING=1", 10s, &seen));
        n.reloading();
        BOOST_TEST(sock.wait_for("RELOADING=1", 10s, &seen));
        n.stop();  // joins the thread: whatever it sent is queued in the socket already
        std::string rest;
        while (auto m = sock.receive(0ms)) rest += *m + "\n";
        BOOST_TEST(rest.find("STOPPING=1") == std::string::npos, rest);
        BOOST_TEST(seen.find("STOPPING=1") == std::string::npos, seen);
    }
    work.reset();
    ioc.stop();
    loop.join();
    ::unsetenv("NOTIFY_SOCKET");
    ::unsetenv("WATCHDOG_USEC");
}
