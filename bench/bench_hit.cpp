// What one cache hit costs, and how many heap allocations it makes, in two views:
//
//   1. The pipeline alone (Google Benchmark "BM_PipelineHit"): Gateway::begin (route, authenticate with an
//      API key, validate, authorize, rate-limit, cache lookup), respond and finish (metrics, status board,
//      access-log line), with an Exchange made the way the session makes it, on 1 and 2 threads.
//   2. The whole hit path in process ("session" mode): a worker thread runs the real session
//      (run_session: header read and parse, framing checks, the pipeline, the response write, finish)
//      over loopback; a client thread sends keep-alive requests one at a time and reads each answer.
//
// Allocations are counted by a malloc hook in this program (malloc, calloc, realloc, the aligned forms;
// operator new goes through malloc): every call made on a thread that counts. Steady state: the counts are
// taken after a warm-up, so what a thread or a connection sets up once is not counted.
//
//   build/release/bench/bench_hit                    # both; the allocation lines come first
//   build/release/bench/bench_hit --session-only [N] # N requests (default 200000) over one connection
//
// The gateway runs with callers.required (one API key caller with a rate limit), the cache on, metrics,
// the status board and the access log written to /dev/null by its background thread, as in production.
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <malloc.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "rdsgw/cache.hpp"
#include "rdsgw/config.hpp"
#include "rdsgw/credentials.hpp"
#include "rdsgw/exchange.hpp"
#include "rdsgw/gateway.hpp"
#include "rdsgw/log.hpp"
#include "rdsgw/metrics.hpp"
#include "rdsgw/session.hpp"
#include "rdsgw/signer.hpp"
#include "rdsgw/trace.hpp"

// ------------------------------------------------------------------------------------- the malloc hook
// glibc's own entry points, forwarded to after counting (glibc supports replacing malloc this way).
extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}

namespace {
thread_local bool t_counting = false;
std::atomic<std::uint64_t> g_allocs{0};
bool g_trace = false;  // gdb: `break allocation_traced` to see where each counted allocation comes from
extern "C" __attribute__((noinline)) void allocation_traced() {
    asm volatile("");
}
inline void counted() {
    if (!t_counting) return;
    g_allocs.fetch_add(1, std::memory_order_relaxed);
    if (g_trace) allocation_traced();
}
}  // namespace

extern "C" {
void* malloc(std::size_t n) {
    counted();
    return __libc_malloc(n);
}
void* calloc(std::size_t a, std::size_t b) {
    counted();
    return __libc_calloc(a, b);
}
void* realloc(void* p, std::size_t n) {
    counted();
    return __libc_realloc(p, n);
}
void free(void* p) {
    __libc_free(p);
}
void* memalign(std::size_t al, std::size_t n) {
    counted();
    return __libc_memalign(al, n);
}
void* aligned_alloc(std::size_t al, std::size_t n) {
    counted();
    return __libc_memalign(al, n);
}
int posix_memalign(void** out, std::size_t al, std::size_t n) {
    counted();
    void* p = __libc_memalign(al, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
}

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;

constexpr const char* kApiKey = "bench-api-key-0123456789abcdef";
constexpr const char* kProject = "97b026aa9cc4417888c14c84a1ad9860";
constexpr const char* kBackup = "c0c9f155c7b7423a9d30f0175998b63bbr01";

std::string target() {
    return std::string("/v3/") + kProject + "/backup-files?backup_id=" + kBackup;
}

std::string request_text() {
    return "GET " + target() + " HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nX-Api-Key: " + kApiKey +
           "\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n";
}

rdsgw::Config make_config() {
    ::setenv("RDS_AUTH_TOKEN", "bench-token-0123456789", 1);
    const std::string text = R"({
      "listen": {"address": "127.0.0.1", "port": 0, "threads": 1},
      "upstream": {"base_url": "http://127.0.0.1:9"},
      "auth": {"mode": "token", "token": {"env": "RDS_AUTH_TOKEN"}},
      "cache": {"enabled": true, "max_entries": 100000},
      "callers": {"required": true, "list": [{"name": "restore-svc", "api_key_sha256": [")" +
                             rdsgw::sha256_hex(kApiKey) +
                             R"("], "projects": ["*"], "rate_per_s": 1e9, "burst": 1e9}]},
      "log": {"access": "/dev/null", "level": "warn"}
    })";
    rdsgw::Config cfg;
    std::vector<std::string> errors;
    if (!rdsgw::parse_config(text, cfg, errors)) {
        for (auto& e : errors) std::fprintf(stderr, "config: %s\n", e.c_str());
        std::exit(1);
    }
    return cfg;
}

// One gateway for the whole program, with the benchmark's answer in its cache.
struct Fixture {
    rdsgw::Config cfg = make_config();
    rdsgw::Metrics metrics{"bench"};
    rdsgw::AccessLog access_log{cfg.log.access, cfg.log.access_queue};
    std::unique_ptr<rdsgw::Gateway> gw;

    Fixture() {
        std::string why;
        rdsgw::CredentialDeps deps;
        deps.metrics = &metrics;
        auto creds = rdsgw::make_credential_source(cfg, deps, why);
        if (!creds) {
            std::fprintf(stderr, "credentials: %s\n", why.c_str());
            std::exit(1);
        }
        gw = std::make_unique<rdsgw::Gateway>(cfg, std::move(creds), metrics, access_log);
        auto a = rdsgw::CachedAnswer::make(
            {.body =
                 R"({"files":[{"name":"backup.qp","size":2048,"download_link":"https://obs.example.com/b?x=1",)"
                 R"("link_expired_time":"2099-01-01T00:00:00+0000","database_name":"db"}],"bucket":"b"})",
             .earliest_expiry = std::chrono::system_clock::now() + std::chrono::hours(1000),
             .stored_at = std::chrono::system_clock::now()});
        gw->cache()->put(rdsgw::make_cache_key(kProject, kBackup), std::move(a),
                         std::chrono::system_clock::now());
    }
};

Fixture& fixture() {
    static Fixture f;
    return f;
}

// The parsed request the session would hand to the pipeline.
struct Parsed {
    rdsgw::HeaderArena arena;
    http::request_parser<http::empty_body, rdsgw::ArenaAllocator<char>> parser{
        std::piecewise_construct, std::make_tuple(), std::make_tuple(rdsgw::ArenaAllocator<char>(&arena))};
    Parsed() {
        const std::string text = request_text();
        boost::system::error_code ec;
        parser.put(asio::buffer(text), ec);
        if (ec || !parser.is_header_done()) std::abort();
    }
};

// One hit through the pipeline, the Exchange filled as Session::serve_one fills it.
void pipeline_hit(rdsgw::Gateway& gw, const Parsed& p) {
    const auto& req = p.parser.get();
    thread_local rdsgw::Exchange x;  // as the session keeps one per connection
    x.reset();
    x.started = std::chrono::steady_clock::now();
    x.wall_started = std::chrono::system_clock::now();
    x.client_addr = "127.0.0.1";
    rdsgw::make_request_id(x.request_id);
    rdsgw::continue_trace(x.trace, {}, {});
    x.method = req.method();
    x.method_string = req.method_string();
    x.target = req.target();
    x.version = 11;
    x.route = rdsgw::classify(x.target);
    x.fields = &req.base();
    if (gw.begin(x)) std::abort();  // not a hit
    if (x.response.status != 200) std::abort();
    x.bytes_sent = 900;
    gw.finish(x);
}

void BM_PipelineHit(benchmark::State& state) {
    auto& f = fixture();
    Parsed p;
    for (int i = 0; i < 1000; ++i) pipeline_hit(*f.gw, p);  // warm the per-thread caches
    const std::uint64_t before = g_allocs.load();
    t_counting = true;
    for (auto _ : state) pipeline_hit(*f.gw, p);
    t_counting = false;
    state.counters["allocs_per_hit"] =
        benchmark::Counter(static_cast<double>(g_allocs.load() - before), benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_PipelineHit)->Threads(1)->Threads(2)->UseRealTime();

double thread_cpu_s() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

// The whole hit path: the real session on a worker thread, one keep-alive connection, one request at a time.
int session_mode(long n) {
    auto& f = fixture();
    rdsgw::SessionContext ctx(*f.gw, 100, 10);
    rdsgw::Worker w;
    rdsgw::WorkerSessions sessions;
    std::string why;
    if (!f.gw->init_worker(w, why)) {
        std::fprintf(stderr, "worker: %s\n", why.c_str());
        return 1;
    }
    tcp::acceptor acc(w.ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    const unsigned short port = acc.local_endpoint().port();
    std::atomic<double> server_cpu{0};
    asio::co_spawn(
        w.ioc,
        [&]() -> asio::awaitable<void> {
            tcp::socket s = co_await acc.async_accept(asio::use_awaitable);
            co_await rdsgw::run_session(ctx, w, sessions, std::move(s), false,
                                        std::chrono::steady_clock::now());
        },
        asio::detached);
    std::thread server([&] {
        t_counting = true;  // every allocation the worker thread makes
        w.ioc.run();
        t_counting = false;
    });

    const std::string req = request_text();
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return 1;
    char buf[16384];
    std::size_t answer_size = 0;
    auto one = [&] {
        if (::send(fd, req.data(), req.size(), 0) != static_cast<ssize_t>(req.size())) std::abort();
        // The answer is small and has a Content-Length: read until head + body are in.
        std::size_t got = 0, need = 0;
        for (;;) {
            ssize_t k = ::recv(fd, buf + got, sizeof buf - got, 0);
            if (k <= 0) std::abort();
            got += static_cast<std::size_t>(k);
            const std::string_view v(buf, got);
            const auto end = v.find("\r\n\r\n");
            if (end == std::string_view::npos) continue;
            if (!need) {
                if (v.substr(0, 12) != "HTTP/1.1 200") {
                    std::fprintf(stderr, "not a 200: %.*s\n",
                                 static_cast<int>(std::min<std::size_t>(got, 400)), buf);
                    std::abort();
                }
                const auto cl = v.find("Content-Length: ");
                need = end + 4 + std::strtoul(buf + cl + 16, nullptr, 10);
            }
            if (got >= need) break;
        }
        answer_size = got;
    };
    for (int i = 0; i < 2000; ++i) one();  // warm-up: per-thread caches, buffers, the access log's queue
    // The worker's CPU time is read on the worker itself (posted between two requests).
    auto worker_cpu = [&] {
        std::atomic<bool> done{false};
        asio::post(w.ioc, [&] {
            server_cpu = thread_cpu_s();
            done = true;
        });
        while (!done) std::this_thread::yield();
        return server_cpu.load();
    };
    if (std::getenv("BENCH_TRACE_ALLOCS")) {  // one request with allocation_traced() on (see above)
        g_trace = true;
        one();
        g_trace = false;
    }
    const double cpu0 = worker_cpu();
    const std::uint64_t a0 = g_allocs.load();
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < n; ++i) one();
    const auto t1 = std::chrono::steady_clock::now();
    const std::uint64_t a1 = g_allocs.load();
    const double cpu1 = worker_cpu();
    ::close(fd);
    std::printf("session hit path: %ld requests over one keep-alive connection, answer %zu bytes\n", n,
                answer_size);
    std::printf("  heap allocations on the worker thread per hit: %.3f (%llu in all)\n",
                static_cast<double>(a1 - a0) / static_cast<double>(n),
                static_cast<unsigned long long>(a1 - a0));
    std::printf("  worker CPU per hit: %.2f us (syscalls included); wall per round trip: %.2f us\n",
                (cpu1 - cpu0) * 1e6 / static_cast<double>(n),
                std::chrono::duration<double, std::micro>(t1 - t0).count() / static_cast<double>(n));
    w.ioc.stop();
    server.join();
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    ::signal(SIGPIPE, SIG_IGN);
    long n = 200000;
    bool session_only = false;
    if (argc >= 2 && std::strcmp(argv[1], "--session-only") == 0) {
        session_only = true;
        if (argc >= 3) n = std::strtol(argv[2], nullptr, 10);
    }
    if (session_mode(session_only ? n : 50000) != 0) return 1;
    if (session_only) return 0;
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
