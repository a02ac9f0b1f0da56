#include "rdsgw/log.hpp"
#include "rdsgw/text.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
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

namespace {
std::atomic<std::uint64_t> g_access_log_ids{0};
}

AccessLog::AccessLog(std::string target, std::size_t max_queue)
    : path_(std::move(target)), max_queue_(max_queue), id_(++g_access_log_ids) {
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

AccessLog::Buffer& AccessLog::local() {
    // This thread's buffer of this log (ids are unique, so a destroyed log's buffer is never taken).
    thread_local std::vector<std::pair<std::uint64_t, Buffer*>> mine;
    for (auto& [id, b] : mine)
        if (id == id_) return *b;
    auto owned = std::make_unique<Buffer>();
    Buffer* b = owned.get();
    {
        std::lock_guard lk(buffers_mu_);
        buffers_.push_back(std::move(owned));
    }
    mine.emplace_back(id_, b);
    return *b;
}

void AccessLog::write(std::string_view line) {
    write_with([line](std::string& pending) { pending.append(line); });
}

void AccessLog::wake_writer() {
    {
        std::lock_guard lk(mu_);
        wake_ = true;
    }
    cv_.notify_one();
}

void AccessLog::reopen() {
    if (mode_ != Mode::file) return;
    {
        std::lock_guard lk(mu_);
        reopen_ = true;
    }
    cv_.notify_one();
}

bool AccessLog::all_empty() {
    std::lock_guard lk(buffers_mu_);
    for (auto& b : buffers_) {
        std::lock_guard bl(b->mu);
        if (b->lines) return false;
    }
    return true;
}

void AccessLog::flush() {
    if (mode_ == Mode::off) return;
    std::unique_lock lk(mu_);
    idle_cv_.wait(lk, [&] { return !busy_ && all_empty(); });
}

void AccessLog::run() {
    // The writer swaps each thread's pending block for one of its own (emptied, its storage kept) and writes
    // them: lines are neither copied nor allocated for.
    std::vector<std::string> outs;
    std::vector<std::size_t> largest;              // per block: the room to hand to its thread
    constexpr std::size_t kMaxReserve = 4u << 20;  // past a burst of this, a thread's block grows on demand
    std::vector<Buffer*> bufs;
    for (;;) {
        bool reopen = false, stop = false;
        {
            std::unique_lock lk(mu_);
            busy_ = false;
            idle_cv_.notify_all();
            cv_.wait_for(lk, kFlushInterval, [&] { return stop_ || reopen_ || wake_; });
            wake_ = false;
            reopen = reopen_;
            reopen_ = false;
            stop = stop_;
            busy_ = true;
        }
        {
            std::lock_guard lk(buffers_mu_);
            bufs.clear();
            for (auto& b : buffers_) bufs.push_back(b.get());
        }
        if (outs.size() < bufs.size()) {
            outs.resize(bufs.size());
            largest.resize(bufs.size());
        }
        bool wrote_nothing = true;
        for (std::size_t i = 0; i < bufs.size(); ++i) {
            // The block handed to the thread has room for twice the largest batch it gave up so far (reserved
            // here, not under its lock): a thread allocates only while its batches keep outgrowing that.
            outs[i].clear();
            outs[i].reserve(largest[i]);
            {
                std::lock_guard bl(bufs[i]->mu);
                outs[i].swap(bufs[i]->pending);
                bufs[i]->lines = 0;
            }
            largest[i] = std::min(std::max(largest[i], 2 * outs[i].size()), kMaxReserve);
            wrote_nothing = wrote_nothing && outs[i].empty();
        }
        if (reopen) open_file();
        if (fd_ >= 0)
            for (std::size_t i = 0; i < bufs.size(); ++i)
                if (!outs[i].empty()) write_all(fd_, outs[i].data(), outs[i].size());
        if (stop && wrote_nothing) {
            std::lock_guard lk(mu_);
            busy_ = false;
            idle_cv_.notify_all();
            return;
        }
    }
}

}  // namespace rdsgw
