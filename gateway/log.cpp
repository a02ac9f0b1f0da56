#include "rdsgw/log.hpp"
#include "rdsgw/text.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>

#include "rdsgw/timefmt.hpp"

namespace rdsgw {

namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::info)};
std::mutex g_diag_mu;

void write_all(int fd, const char* p, std::size_t n) {
    while (n > 0) {
        ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return;
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}
}  // namespace

LogLevel parse_level(std::string_view s) {
    if (s == "debug") return LogLevel::debug;
    if (s == "warn") return LogLevel::warn;
    if (s == "error") return LogLevel::error;
    return LogLevel::info;
}
void set_log_level(LogLevel l) {
    g_level.store(static_cast<int>(l));
}
bool log_enabled(LogLevel l) {
    return static_cast<int>(l) >= g_level.load(std::memory_order_relaxed);
}

namespace {
void write_record(LogLevel l, std::string_view msg, const LogField* fields, std::size_t n) {
    static constexpr const char* names[] = {"debug", "info", "warn", "error"};
    std::string line = "{\"time\":\"" + format_log_time(std::chrono::system_clock::now()) +
                       "\",\"level\":\"" + names[static_cast<int>(l)] + "\",\"msg\":";
    json_escape_append(line, msg);
    for (const LogField* f = fields; f != fields + n; ++f) {
        if (!f->is_number && f->text.empty()) continue;  // a field without a value is left out
        line += ',';
        json_escape_append(line, f->key);
        line += ':';
        if (f->is_number)
            line += std::to_string(f->number);
        else
            json_escape_append(line, f->text);
    }
    line += "}\n";
    std::lock_guard lk(g_diag_mu);
    write_all(2, line.data(), line.size());
}
}  // namespace

void log(LogLevel l, std::string_view msg) {
    if (log_enabled(l)) write_record(l, msg, nullptr, 0);
}

void log(LogLevel l, std::string_view msg, std::initializer_list<LogField> fields) {
    if (log_enabled(l)) write_record(l, msg, fields.begin(), fields.size());
}

void log(LogLevel l, std::string_view msg, const LogIds& ids) {
    if (!log_enabled(l)) return;
    const LogField fields[] = {
        {"request_id", ids.request_id}, {"trace_id", ids.trace_id}, {"span_id", ids.span_id}};
    write_record(l, msg, fields, 3);
}

void log_always(LogLevel l, std::string_view msg, std::initializer_list<LogField> fields) {
    write_record(l, msg, fields.begin(), fields.size());
}

AccessLog::AccessLog(std::string target, std::size_t max_queue)
    : path_(std::move(target)), max_queue_(max_queue) {
    if (path_ == "off")
        mode_ = Mode::off;
    else if (path_ == "stdout")
        mode_ = Mode::stdout_;
    else
        mode_ = Mode::file;
    if (mode_ == Mode::off) return;
    if (mode_ == Mode::file)
        open_file();
    else
        fd_ = 1;
    thread_ = std::thread([this] { run(); });
}

AccessLog::~AccessLog() {
    if (thread_.joinable()) {
        {
            std::lock_guard lk(mu_);
            stop_ = true;
        }
        cv_.notify_one();
        thread_.join();
    }
    if (mode_ == Mode::file && fd_ >= 0) ::close(fd_);
}

void AccessLog::open_file() {
    int fd = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0) {
        log_error("cannot open access log file " + path_);
        return;
    }
    if (fd_ >= 0 && fd_ != 1) ::close(fd_);
    fd_ = fd;
}

void AccessLog::write(std::string line) {
    if (mode_ == Mode::off) return;
    bool wake;
    {
        std::lock_guard lk(mu_);
        if (queue_.size() >= max_queue_) {
            dropped_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        queue_.push_back(std::move(line));
        // The writer flushes every kFlushInterval by itself (like nginx's access_log buffer/flush); it is
        // woken early only when a batch is large, so requests make no futex call per line.
        wake = queue_.size() == kWakeBatch;
    }
    if (wake) cv_.notify_one();
}

void AccessLog::reopen() {
    if (mode_ != Mode::file) return;
    {
        std::lock_guard lk(mu_);
        reopen_ = true;
    }
    cv_.notify_one();
}

void AccessLog::flush() {
    if (mode_ == Mode::off) return;
    std::unique_lock lk(mu_);
    idle_cv_.wait(lk, [&] { return queue_.empty() && !busy_; });
}

void AccessLog::run() {
    std::deque<std::string> batch;
    std::string buf;
    for (;;) {
        bool reopen = false;
        {
            std::unique_lock lk(mu_);
            busy_ = false;
            idle_cv_.notify_all();
            cv_.wait_for(lk, kFlushInterval, [&] { return stop_ || reopen_ || queue_.size() >= kWakeBatch; });
            if (queue_.empty() && !stop_ && !reopen_) continue;
            if (queue_.empty() && stop_) return;
            batch.swap(queue_);
            reopen = reopen_;
            reopen_ = false;
            busy_ = true;
        }
        if (reopen) open_file();
        buf.clear();
        for (auto& l : batch) {
            buf += l;
            buf.push_back('\n');
        }
        batch.clear();
        if (fd_ >= 0) write_all(fd_, buf.data(), buf.size());
    }
}

}  // namespace rdsgw
