// Child processes for integration tests: the gateway and the mock upstream.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace rdsgw::test {

using namespace std::chrono_literals;

// One child process. Its stdout and stderr both go to a temporary file, readable at any time with
// output(). The destructor stops a child still running (SIGTERM, then SIGKILL after 5 s) and reaps it.
class Child {
  public:
    Child() = default;
    ~Child();
    Child(Child&& other) noexcept;
    Child& operator=(Child&& other) noexcept;
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;

    // fork + execve. argv[0] is the program (a path; without '/', it is looked up in PATH). The child
    // inherits this environment plus `env` (which overrides variables of the same name), and has stdin on
    // /dev/null. Throws std::runtime_error when a child is already running or fork fails; an exec failure
    // shows as exit status 127 with the reason in output().
    void spawn(const std::vector<std::string>& argv,
               const std::vector<std::pair<std::string, std::string>>& env = {});

    pid_t pid() const { return pid_; }
    // True while the child has been spawned and not yet reaped.
    bool running();
    // Everything the child wrote to stdout and stderr so far.
    std::string output() const;
    // The path of the file holding the output.
    const std::string& output_path() const { return out_path_; }

    // Waits until the output holds a complete line starting with `prefix` (the first such line after
    // byte offset `from`) and returns it without the newline. nullopt on timeout, or when the child exits
    // without writing it.
    std::optional<std::string> wait_for_line(const std::string& prefix,
                                             std::chrono::milliseconds timeout = 10s, std::size_t from = 0);

    // Sends a signal (no-op when not running).
    void signal(int signo);
    // Waits for the child to exit. Returns its exit code, or 128 + the signal number when a signal
    // killed it; nullopt on timeout (the child keeps running). Without waiting when already reaped.
    std::optional<int> wait_exit(std::chrono::milliseconds timeout = 10s);

  private:
    void stop();
    bool reap(int options);  // waitpid wrapper; true when the child was reaped now or before

    pid_t pid_ = -1;
    bool reaped_ = false;
    int exit_ = -1;
    std::string out_path_;
};

// Waits for the child's listening record and returns its port: rds-gateway's JSON log record with
// "event":"listening" (its admin port, 0 when none, goes to *admin_port), or rds-mock's "LISTENING <port>".
// Throws std::runtime_error with the child's output when none comes within `timeout`.
int start_and_get_port(Child& child, std::chrono::milliseconds timeout = 10s, int* admin_port = nullptr);

}  // namespace rdsgw::test
