// rds-mock: a mock of the RDS v3 "backup-files" API and of IAM's token endpoint, for integration tests,
// the demo and the benchmarks. This header holds the transport-independent part: the behaviour knobs,
// the shared state and counters, and the request handler (request in, reply decision out). The server
// (Asio/Beast, plain or TLS) and the command line are in server.cpp.
#pragma once
#include <atomic>
#include <chrono>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include "rdsgw/async_util.hpp"

namespace rdsgw::mock {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

// Every knob of the mock. JSON keys are the member names (see Behaviour::merge).
struct Behaviour {
    // RDS side
    int latency_ms = 0;
    int files = 2;
    int link_lifetime_s = 900;
    std::string expiry_field =
        "link_expired_time";  // link_expired_time|link_expired_link|both|both_different
    std::string body_mode =
        "normal";  // normal|doc_example|not_json|html|empty|array|bad_time|bad_size|custom
    std::string custom_body;
    std::string bucket = "rdsbucket.demo";
    unsigned status = 0;  // 0: normal behaviour; else every RDS answer has this status
    std::string error_code = "DBS.200001";
    std::string error_msg = "mock error";
    std::string error_body_mode = "rds";  // rds|html|empty
    std::string retry_after;              // Retry-After header on error answers when not empty
    std::set<std::string> missing_backups;
    int idle_close_ms = 0;  // 0: never close an idle keep-alive connection
    bool gzip = false;
    // Hold each RDS request (before its latency) until POST /_mock/release (at most 120 s): tests keep
    // upstream requests provably in flight for as long as they need. Counted as "held" while waiting.
    bool hold = false;
    // Raw bytes written on the connection right before / right after each RDS answer (e.g. an interim
    // "HTTP/1.1 103 Early Hints\r\n\r\n" before it, or stray bytes after it).
    std::string raw_before, raw_after;
    // When set: exactly these bytes are written instead of each RDS answer, and the connection is then
    // closed, so a test can make the upstream answer anything at all (any status line, header or framing).
    // In a script entry with the action "hang" they are written and the connection then stays silent (an
    // answer that starts and stalls).
    std::string raw_answer;
    std::string auth = "none";  // none|static|iam|aksk
    std::string static_token;
    std::string ak;
    std::string sk;
    // IAM side
    std::string iam_password;  // "" accepts any password
    int token_lifetime_s = 86400;
    int iam_latency_ms = 0;
    unsigned iam_fail_status = 0;
    // Regions (one mock instance per region). An instance serves only `served_projects` (empty: every
    // project; others get 403 DBS.200010); with `strict_scope` an IAM token must be scoped to the request's
    // project (by id, or by a name `iam_projects` maps to it). Tokens are self-describing (scope, issue time,
    // expiry, a MAC), so an instance accepts tokens another instance's IAM side issued.
    std::set<std::string> served_projects;
    bool strict_scope = false;
    // GET /v3/auth/projects lists these ({"id","name","enabled"}); a token scoped by project name is scoped
    // to the project of that name here.
    boost::json::array iam_projects;
    std::string domain_id;  // aksk: signed IAM calls must carry X-Domain-Id with this value (when set)

    // Merges the keys of `patch` into *this. "script" / "iam_script" replace the given queues (an error
    // when the queue pointers are null, as inside a script entry). Returns an error message naming the
    // offending key, or "" on success; on error *this may be partly modified (callers merge into a copy).
    std::string merge(const boost::json::object& patch, std::deque<boost::json::object>* script,
                      std::deque<boost::json::object>* iam_script);
    boost::json::object to_json() const;
};

// A long poll on a counter (GET /_mock/wait?counter=NAME&at_least=N&timeout_ms=T).
struct WaitFor {
    std::string counter;
    std::int64_t at_least = 0;
    std::chrono::milliseconds timeout{10000};
};

// What the server does with one request.
struct Reply {
    enum class Kind { respond, reset, hang, close, wait };
    Kind kind = Kind::respond;
    WaitFor wait;  // when kind == wait: the server waits (State::add_waiter), then asks wait_answer()
    // When set: the server first waits for this (the next /_mock/release), counted in "held", then acts.
    std::optional<WaitFor> hold;
    std::chrono::milliseconds delay{0};  // wait this long before acting
    Response response;                   // when kind == respond (keep-alive is set by the server)
    std::string raw_before, raw_after;   // written around the response (Behaviour::raw_before/after)
    std::string raw_answer;              // when set: written instead of the response, then close (hang:
                                         // written, then silence)
};

// The state shared by all connections and threads. Cheap operations happen under one mutex; bodies are
// built outside it.
class State {
  public:
    explicit State(Behaviour initial = {});

    // Applies a /_mock/config patch (or the --config JSON). Returns "" or an error message.
    std::string configure(const boost::json::object& patch);
    // Restores the built-in defaults, clears the scripts and zeroes the counters (issued tokens stay valid).
    void reset();

    // The whole request handling: routing, RDS, IAM and control endpoints. `control_seen` is the
    // connection's flag: its first /_mock/ request sets it and counts the connection as a control one.
    Reply handle(const Request& req, bool& control_seen);

    int idle_close_ms() const { return idle_close_ms_.load(std::memory_order_relaxed); }

    // Connection accounting, called by the server.
    void on_accept() {
        connections_.fetch_add(1, std::memory_order_relaxed);
        notify_waiters();
    }
    void on_tls_handshake() {
        tls_handshakes_.fetch_add(1, std::memory_order_relaxed);
        notify_waiters();
    }
    void on_open() {
        open_connections_.fetch_add(1, std::memory_order_relaxed);
        notify_waiters();
    }
    void on_closed() { open_connections_.fetch_sub(1, std::memory_order_relaxed); }
    // A request held until /_mock/release starts or stops waiting (the "held" counter).
    void on_hold(bool start) {
        held_.fetch_add(start ? 1 : -1, std::memory_order_relaxed);
        notify_waiters();
    }

    // Long polls. add_waiter fires `w` as soon as the counter is at least `at_least` (at once when it is
    // already). The server answers with wait_answer(): 200 and the stats when `w` fired (`reached`), 408
    // when its timeout came first; then it removes the waiter. Waiters are held weakly: a connection that
    // goes away takes its waiter with it.
    void add_waiter(const std::shared_ptr<rdsgw::Waker>& w, const WaitFor& what);
    void remove_waiter(const std::shared_ptr<rdsgw::Waker>& w);
    Response wait_answer(const WaitFor& what, bool reached) const;
    // A counter of the stats by name (rds_requests, connections, waiters: the long polls pending, the asking
    // one included...);
    // nullopt for an unknown name.
    std::optional<std::int64_t> counter(std::string_view name) const;

  private:
    struct TokenInfo {
        std::chrono::system_clock::time_point expires;
        bool revoked = false;
        std::string scope;  // "id:<project>" | "name:<project name>" | "domain:<account>"
    };

    Reply handle_rds(const Request& req, std::string_view backup_id, bool has_backup_id);
    Reply handle_iam(const Request& req);
    Reply handle_iam_projects(const Request& req);
    Reply handle_control(const Request& req, std::string_view path);
    Reply parse_wait(const Request& req) const;
    WaitFor hold_until_release() const;
    // Fires the waiters whose counter has reached its mark. Never called with mu_ held.
    void notify_waiters();
    bool check_auth(const Request& req, const Behaviour& b, std::string& error_code, std::string& error_msg,
                    std::string_view project = {});
    // IAM tokens: valid (issued by this instance or any other), not revoked, not expired; its scope.
    bool token_valid(std::string_view token, std::string& scope);
    bool scope_covers(const Behaviour& b, std::string_view scope, std::string_view project) const;
    std::string next_request_id();
    boost::json::object stats() const;

    mutable std::mutex mu_;
    std::shared_ptr<const Behaviour> behaviour_;  // replaced, never mutated in place
    std::deque<boost::json::object> script_;
    std::deque<boost::json::object> iam_script_;
    std::unordered_map<std::string, TokenInfo> tokens_;
    std::uint64_t rds_requests_ = 0;
    std::uint64_t iam_requests_ = 0;
    std::uint64_t tokens_issued_ = 0;
    boost::json::object last_rds_headers_;
    std::string last_rds_target_;
    boost::json::value last_iam_body_;
    std::unordered_map<std::string, std::uint64_t> rds_by_backup_;
    std::unordered_map<std::string, std::uint64_t> rds_by_project_;
    std::unordered_map<std::string, std::uint64_t> tokens_by_scope_;
    std::uint64_t iam_project_lists_ = 0;
    std::int64_t revoked_before_us_ = 0;  // self-describing tokens issued up to then are revoked
    std::unordered_map<std::string, std::int64_t> revoked_before_by_project_;

    std::atomic<int> idle_close_ms_{0};
    std::atomic<std::uint64_t> connections_{0};
    std::atomic<std::uint64_t> tls_handshakes_{0};
    std::atomic<std::uint64_t> control_connections_{0};
    std::atomic<std::int64_t> open_connections_{0};
    std::atomic<std::uint64_t> rds_ok_{0};
    std::atomic<std::uint64_t> rds_unauthorized_{0};
    std::atomic<std::int64_t> held_{0};
    std::atomic<std::uint64_t> releases_{0};  // POST /_mock/release calls; never reset
    std::atomic<std::uint64_t> link_counter_{0};
    std::atomic<std::uint64_t> request_counter_{0};
    std::string request_id_prefix_;

    struct Waiter {
        std::weak_ptr<rdsgw::Waker> waker;
        WaitFor what;
    };
    std::mutex waiters_mu_;  // taken before mu_, never after
    std::vector<Waiter> waiters_;
    std::atomic<std::size_t> waiter_count_{
        0};  // the "waiters" counter; 0 lets notify_waiters() return at once
};

// Formats used in answers (exposed for the mock's own tests).
// "yyyy-mm-ddThh:mm:ss+0800": the instant written in UTC+08:00.
std::string format_beijing(std::chrono::sys_seconds t);
// "2020-01-04T09:05:22.701000Z" (UTC, microseconds).
std::string format_iam_time(std::chrono::system_clock::time_point t);
// gzip (RFC 1952) of the input.
std::string gzip_compress(std::string_view data);

}  // namespace rdsgw::mock
