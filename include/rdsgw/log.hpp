// Logging: the diagnostic log (levels, stderr, synchronous: rare events only) and the access log
// (one JSON line per request, written by a background thread; lines are dropped and counted when it lags).
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "rdsgw/text.hpp"  // json_escape_append, used with the log lines

namespace rdsgw {

enum class LogLevel { debug = 0, info = 1, warn = 2, error = 3 };
LogLevel parse_level(std::string_view s);
void set_log_level(LogLevel l);
bool log_enabled(LogLevel l);
// Writes {"time":..,"level":..,"msg":..} to stderr. Callers must never pass a secret.
void log(LogLevel l, std::string_view msg);

// One more member of a diagnostic log record: a string or an integer.
struct LogField {
    std::string_view key;
    std::string_view text;
    long long number = 0;
    bool is_number = false;
    LogField(std::string_view k, std::string_view v) : key(k), text(v) {}
    LogField(std::string_view k, long long v) : key(k), number(v), is_number(true) {}
    LogField(std::string_view k, unsigned v) : key(k), number(v), is_number(true) {}
    LogField(std::string_view k, int v) : key(k), number(v), is_number(true) {}
};
// {"time":..,"level":..,"msg":..,"<key>":<value>,...}: a record with fields programs can read.
void log(LogLevel l, std::string_view msg, std::initializer_list<LogField> fields);
// The same, written whatever the log level: for records other programs rely on (the "listening" record).
void log_always(LogLevel l, std::string_view msg, std::initializer_list<LogField> fields);
// The request a diagnostic line is about: its ids join the line to the access log and to the caller's trace
// (OpenTelemetry's log data model names: trace_id, span_id).
struct LogIds {
    std::string_view request_id, trace_id, span_id;
};
void log(LogLevel l, std::string_view msg, const LogIds& ids);
inline void log_debug(std::string_view m) {
    log(LogLevel::debug, m);
}
inline void log_info(std::string_view m) {
    log(LogLevel::info, m);
}
inline void log_warn(std::string_view m) {
    log(LogLevel::warn, m);
}
inline void log_error(std::string_view m) {
    log(LogLevel::error, m);
}

class AccessLog {
  public:
    // target: "stdout", "off", or a file path (opened for append; reopen() reopens it for rotation).
    AccessLog(std::string target, std::size_t max_queue);
    ~AccessLog();
    AccessLog(const AccessLog&) = delete;
    bool enabled() const { return mode_ != Mode::off; }
    // Queues one line (without the trailing newline): copied into the calling thread's own pending block
    // (its lock is shared with nobody but the writer, and its storage is kept: no allocation per line once it
    // has grown). Never blocks on I/O; drops when max_queue lines of this thread wait.
    void write(std::string_view line);
    // The same, the line written by append(std::string& pending) straight into the pending block: no copy
    // of the line on the request's thread. append must add exactly one line, without its newline.
    template <class Append>
    void write_with(Append&& append) {
        if (mode_ == Mode::off) return;
        Buffer& b = local();
        bool wake;
        {
            std::lock_guard lk(b.mu);
            if (b.lines >= max_queue_) {
                dropped_.fetch_add(1, std::memory_order_relaxed);
                return;
            }
            const std::size_t before = b.pending.size();
            try {
                append(b.pending);
                b.pending.push_back('\n');
            } catch (...) {  // no half line glued to the next one
                b.pending.resize(before);
                throw;
            }
            // The writer flushes every kFlushInterval by itself (like nginx's access_log buffer/flush); it is
            // woken early only when a batch is large, so requests make no futex call per line.
            wake = ++b.lines == kWakeBatch;
        }
        if (wake) wake_writer();  // never while holding b.mu (flush() takes mu_, then each b.mu)
    }
    void reopen();  // SIGHUP: reopen the file
    std::uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }
    void flush();  // waits until the queue is written (shutdown, tests)

  private:
    enum class Mode { off, stdout_, file };
    struct Buffer {  // one per thread that writes lines
        std::mutex mu;
        std::string pending;  // lines, each ending in '\n'
        std::size_t lines = 0;
    };
    Buffer& local();
    void wake_writer();
    bool all_empty();
    static constexpr std::chrono::milliseconds kFlushInterval{20};
    static constexpr std::size_t kWakeBatch = 1024;
    void run();
    void open_file();
    Mode mode_;
    std::string path_;
    std::size_t max_queue_;
    int fd_ = -1;
    std::mutex mu_;
    std::condition_variable cv_, idle_cv_;
    std::mutex buffers_mu_;
    std::vector<std::unique_ptr<Buffer>> buffers_;
    std::uint64_t id_;
    bool wake_ = false;  // guarded by mu_: a thread has a large batch
    bool stop_ = false, reopen_ = false, busy_ = false;
    std::atomic<std::uint64_t> dropped_{0};
    std::thread thread_;
};

}  // namespace rdsgw
