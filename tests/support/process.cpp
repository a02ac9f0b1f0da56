#include "support/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>

#include <boost/json.hpp>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace rdsgw::test {

namespace {

std::string errno_text(const char* what) {
    return std::string(what) + ": " + std::strerror(errno);
}

int decode_status(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

// Waits until `pid` has exited (without reaping it) or the timeout passes. Uses a pidfd: no polling.
// nullopt when pidfds are unavailable.
std::optional<bool> wait_exited(pid_t pid, std::chrono::milliseconds timeout) {
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    int rc;
    do {
        rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
    } while (rc < 0 && errno == EINTR);
    ::close(fd);
    return rc > 0;
}

}  // namespace

Child::~Child() {
    stop();
}

Child::Child(Child&& other) noexcept
    : pid_(other.pid_), reaped_(other.reaped_), exit_(other.exit_), out_path_(std::move(other.out_path_)) {
    other.pid_ = -1;
    other.out_path_.clear();
}

Child& Child::operator=(Child&& other) noexcept {
    if (this != &other) {
        stop();
        pid_ = other.pid_;
        reaped_ = other.reaped_;
        exit_ = other.exit_;
        out_path_ = std::move(other.out_path_);
        other.pid_ = -1;
        other.out_path_.clear();
    }
    return *this;
}

void Child::stop() {
    if (pid_ > 0 && !reap(WNOHANG)) {
        ::kill(pid_, SIGTERM);
        if (!wait_exit(5s)) {
            ::kill(pid_, SIGKILL);
            reap(0);
        }
    }
    if (!out_path_.empty()) ::unlink(out_path_.c_str());
    pid_ = -1;
    out_path_.clear();
}

bool Child::reap(int options) {
    if (pid_ <= 0) return false;
    if (reaped_) return true;
    int status = 0;
    pid_t r;
    do {
        r = ::waitpid(pid_, &status, options);
    } while (r < 0 && errno == EINTR);
    if (r == pid_) {
        reaped_ = true;
        exit_ = decode_status(status);
        return true;
    }
    return false;
}

void Child::spawn(const std::vector<std::string>& argv,
                  const std::vector<std::pair<std::string, std::string>>& env) {
    if (argv.empty()) throw std::invalid_argument("Child::spawn: empty argv");
    if (pid_ > 0 && !reap(WNOHANG)) throw std::runtime_error("Child::spawn: a child is already running");
    if (!out_path_.empty()) ::unlink(out_path_.c_str());

    const char* tmp = std::getenv("TMPDIR");
    std::string path = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/rdsgw-child-XXXXXX";
    const int out_fd = ::mkstemp(path.data());
    if (out_fd < 0) throw std::runtime_error(errno_text("mkstemp"));
    out_path_ = path;
    const int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (null_fd < 0) {
        ::close(out_fd);
        throw std::runtime_error(errno_text("open /dev/null"));
    }

    // Everything the child needs is prepared before fork: after it, only async-signal-safe calls.
    std::map<std::string, std::string> vars;
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
        std::string_view kv(*e);
        const auto eq = kv.find('=');
        if (eq != std::string_view::npos)
            vars[std::string(kv.substr(0, eq))] = std::string(kv.substr(eq + 1));
    }
    for (const auto& [k, v] : env) vars[k] = v;
    std::vector<std::string> env_strings;
    env_strings.reserve(vars.size());
    for (const auto& [k, v] : vars) env_strings.push_back(k + "=" + v);
    std::vector<char*> envp;
    for (auto& s : env_strings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> args(argv);
    std::vector<char*> argp;
    for (auto& s : args) argp.push_back(s.data());
    argp.push_back(nullptr);
    const std::string exec_failed = "Child::spawn: cannot execute " + argv[0] + "\n";

    const pid_t pid = ::fork();
    if (pid < 0) {
        ::close(out_fd);
        ::close(null_fd);
        throw std::runtime_error(errno_text("fork"));
    }
    if (pid == 0) {
        ::dup2(null_fd, STDIN_FILENO);
        ::dup2(out_fd, STDOUT_FILENO);
        ::dup2(out_fd, STDERR_FILENO);
        ::execvpe(argp[0], argp.data(), envp.data());
        const int err = errno;
        [[maybe_unused]] auto w1 = ::write(STDERR_FILENO, exec_failed.data(), exec_failed.size());
        const char* reason = std::strerror(err);
        [[maybe_unused]] auto w2 = ::write(STDERR_FILENO, reason, std::strlen(reason));
        ::_exit(127);
    }
    ::close(out_fd);
    ::close(null_fd);
    pid_ = pid;
    reaped_ = false;
    exit_ = -1;
}

bool Child::running() {
    return pid_ > 0 && !reap(WNOHANG);
}

std::string Child::output() const {
    if (out_path_.empty()) return {};
    std::ifstream in(out_path_, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::optional<std::string> Child::wait_for_line(const std::string& prefix, std::chrono::milliseconds timeout,
                                                std::size_t from) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        // Check whether the child is gone before reading, so that its last words are seen.
        const bool gone = !running();
        const std::string out = output();
        std::size_t pos = std::min(from, out.size());
        while (pos < out.size()) {
            const auto nl = out.find('\n', pos);
            if (nl == std::string::npos) break;
            std::string_view line(out.data() + pos, nl - pos);
            if (line.starts_with(prefix)) return std::string(line);
            pos = nl + 1;
        }
        if (gone || std::chrono::steady_clock::now() >= deadline) return std::nullopt;
        // The output is a plain file: there is nothing to block on, so poll it briefly (bounded above).
        std::this_thread::sleep_for(5ms);
    }
}

void Child::signal(int signo) {
    if (running()) ::kill(pid_, signo);
}

std::optional<int> Child::wait_exit(std::chrono::milliseconds timeout) {
    if (pid_ <= 0) return std::nullopt;
    if (reap(WNOHANG)) return exit_;
    const auto exited = wait_exited(pid_, timeout);
    if (exited.has_value()) {
        if (*exited && reap(0)) return exit_;
        return std::nullopt;
    }
    // Kernels without pidfd_open (before 5.3): check periodically until the deadline.
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(5ms);
        if (reap(WNOHANG)) return exit_;
    }
    return std::nullopt;
}

namespace {

// The port(s) in one line of output: rds-gateway's JSON "listening" record
// ({"time":..,"msg":..,"event":"listening",..,"port":P,..,"admin_port":A}) or rds-mock's "LISTENING <port>".
bool parse_listening(const std::string& line, int& port, int& admin_port) {
    if (line.rfind("LISTENING ", 0) == 0) {
        port = std::atoi(line.c_str() + 10);
        admin_port = 0;
        return true;
    }
    if (line.empty() || line[0] != '{' || line.find("\"event\":\"listening\"") == std::string::npos)
        return false;
    boost::system::error_code ec;
    const auto v = boost::json::parse(line, ec);
    if (ec || !v.is_object()) return false;
    const auto& o = v.get_object();
    const auto* p = o.if_contains("port");
    const auto* a = o.if_contains("admin_port");
    if (!p || !p->is_int64() || !a || !a->is_int64()) return false;
    port = static_cast<int>(p->get_int64());
    admin_port = static_cast<int>(a->get_int64());
    return true;
}

}  // namespace

int start_and_get_port(Child& child, std::chrono::milliseconds timeout, int* admin_port) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        // Check whether the child is gone before reading, so that its last words are seen.
        const bool gone = !child.running();
        std::istringstream out(child.output());
        std::string line;
        while (std::getline(out, line)) {
            if (out.eof()) break;  // an incomplete last line
            int port = 0, admin = 0;
            if (!parse_listening(line, port, admin)) continue;
            if (port <= 0 || port > 65535 || admin < 0 || admin > 65535)
                throw std::runtime_error("bad listening record: " + line);
            if (admin_port) *admin_port = admin;
            return port;
        }
        if (gone || std::chrono::steady_clock::now() >= deadline) break;
        // The output is a plain file: there is nothing to block on, so poll it briefly (bounded above).
        std::this_thread::sleep_for(5ms);
    }
    throw std::runtime_error("no listening record from pid " + std::to_string(child.pid()) +
                             "; its output:\n" + child.output());
}

}  // namespace rdsgw::test
