#include "support/redis_server.hpp"

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <memory>
#include <stdexcept>
#include <thread>

namespace rdsgw::test {
namespace {

constexpr const char* kRedisServer = "/usr/bin/redis-server";

// A port the kernel considers free right now (bound to port 0, then released).
int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) throw std::runtime_error("socket() failed");
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof a;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
        ::close(fd);
        throw std::runtime_error("cannot find a free port");
    }
    ::close(fd);
    return ntohs(a.sin_port);
}

RedisReply convert(const redisReply* r) {
    RedisReply out;
    switch (r->type) {
        case REDIS_REPLY_STRING:
        case REDIS_REPLY_STATUS:
        case REDIS_REPLY_ERROR:
            out.kind = r->type == REDIS_REPLY_STRING   ? RedisReply::Kind::string
                       : r->type == REDIS_REPLY_STATUS ? RedisReply::Kind::status
                                                       : RedisReply::Kind::error;
            out.str.assign(r->str, r->len);
            break;
        case REDIS_REPLY_INTEGER:
            out.kind = RedisReply::Kind::integer;
            out.integer = r->integer;
            break;
        case REDIS_REPLY_ARRAY:
            out.kind = RedisReply::Kind::array;
            for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
            break;
        default:
            out.kind = RedisReply::Kind::nil;
    }
    return out;
}

RedisReply run(redisContext* c, const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    auto* r = static_cast<redisReply*>(
        redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data()));
    if (!r) return RedisReply::failure(c->errstr);
    RedisReply out = convert(r);
    freeReplyObject(r);
    return out;
}

}  // namespace

RedisServer::RedisServer(RedisServerOptions opts) : opts_(std::move(opts)), dir_("rdsgw-redis") {
    for (int attempt = 0;; ++attempt) {
        port_ = free_port();
        start();
        try {
            wait_ready();
            return;
        } catch (const std::exception&) {
            // Someone else took the port between free_port() and the bind: try another one.
            if (attempt >= 2) throw;
            child_.signal(SIGKILL);
            child_.wait_exit();
        }
    }
}

RedisServer::~RedisServer() {
    if (frozen_) thaw();
    child_.signal(SIGKILL);
    child_.wait_exit();
}

void RedisServer::start() {
    std::vector<std::string> argv = {kRedisServer, "--bind",           "127.0.0.1", "--save",
                                     "",           "--appendonly",     "no",        "--dir",
                                     dir_.path(),  "--daemonize",      "no",        "--unixsocket",
                                     unix_path(),  "--unixsocketperm", "700",       "--loglevel",
                                     "warning",    "--databases",      "16"};
    if (opts_.tls_cert_file.empty()) {
        argv.insert(argv.end(), {"--port", std::to_string(port_)});
    } else {
        argv.insert(argv.end(), {"--port", "0", "--tls-port", std::to_string(port_), "--tls-cert-file",
                                 opts_.tls_cert_file, "--tls-key-file", opts_.tls_key_file,
                                 "--tls-ca-cert-file", opts_.tls_ca_file, "--tls-auth-clients", "no"});
    }
    argv.insert(argv.end(), opts_.extra_args.begin(), opts_.extra_args.end());
    child_.spawn(argv);
}

// Polls (bounded: 10 s) until the server answers PING on its unix socket (also when its TCP port speaks TLS:
// redis-server opens every listener before it serves any).
void RedisServer::wait_ready() {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
        if (!child_.running()) break;
        if (query({"PING"}).ok()) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    throw std::runtime_error("redis-server did not start; its output:\n" + child_.output());
}

void RedisServer::kill9() {
    if (frozen_) thaw();
    child_.signal(SIGKILL);
    if (!child_.wait_exit()) throw std::runtime_error("redis-server did not die");
}

void RedisServer::restart() {
    start();
    wait_ready();
}

void RedisServer::freeze() {
    child_.signal(SIGSTOP);
    frozen_ = true;
}

void RedisServer::thaw() {
    child_.signal(SIGCONT);
    frozen_ = false;
}

RedisReply RedisServer::query(const std::vector<std::string>& args, unsigned db) const {
    const timeval tv{2, 0};
    std::unique_ptr<redisContext, decltype(&redisFree)> c(
        redisConnectUnixWithTimeout(unix_path().c_str(), tv), &redisFree);
    if (!c || c->err) return RedisReply::failure(c ? c->errstr : "cannot allocate");
    redisSetTimeout(c.get(), tv);
    if (!opts_.admin_password.empty()) {
        std::vector<std::string> auth{"AUTH"};
        if (!opts_.admin_user.empty()) auth.push_back(opts_.admin_user);
        auth.push_back(opts_.admin_password);
        RedisReply r = run(c.get(), auth);
        if (!r.ok()) return r;
    }
    if (db != 0) {
        RedisReply r = run(c.get(), {"SELECT", std::to_string(db)});
        if (!r.ok()) return r;
    }
    return run(c.get(), args);
}

std::vector<std::string> RedisServer::keys(unsigned db) const {
    std::vector<std::string> out;
    std::string cursor = "0";
    do {
        RedisReply r = query({"SCAN", cursor, "COUNT", "1000"}, db);
        if (r.kind != RedisReply::Kind::array || r.elements.size() != 2)
            throw std::runtime_error("SCAN failed: " + r.str);
        cursor = r.elements[0].str;
        for (auto& k : r.elements[1].elements) out.push_back(k.str);
    } while (cursor != "0");
    return out;
}

std::vector<std::string> RedisServer::raw_values(unsigned db) const {
    std::vector<std::string> out;
    for (const auto& k : keys(db)) {
        RedisReply r = query({"GET", k}, db);
        if (r.kind == RedisReply::Kind::string) out.push_back(r.str);
    }
    return out;
}

}  // namespace rdsgw::test
