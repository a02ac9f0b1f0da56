// rds-gateway: a caching, validating, credential-injecting gateway for RDS v3 "get backup download links".
//
// Exit status: 0 after a drain, 1 when a listener cannot be bound, 2 for a usage or configuration problem
// (the systemd unit's RestartPreventExitStatus=2: a bad config does not restart-loop).
#include <signal.h>

#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include "rdsgw/build_info.hpp"
#include "rdsgw/config.hpp"
#include "rdsgw/credentials.hpp"
#include "rdsgw/gateway.hpp"
#include "rdsgw/log.hpp"
#include "rdsgw/metrics.hpp"
#include "rdsgw/resources.hpp"
#include "rdsgw/server.hpp"
#include "rdsgw/systemd.hpp"
#include "rdsgw_commit.h"

namespace {

constexpr const char* kUsage =
    "usage: rds-gateway -c FILE                 run the gateway (also --config FILE, --config=FILE)\n"
    "       rds-gateway -t -c FILE              check FILE as start-up would (also -t FILE, --check-config "
    "FILE)\n"
    "       rds-gateway --print-config -c FILE  print the effective configuration\n"
    "       rds-gateway --version               print the version, commit and library versions\n"
    "       rds-gateway --help                  print this help\n"
    "\n"
    "Serves GET/HEAD /v3/{project_id}/backup-files?backup_id=... like Huawei Cloud RDS, from a cache or\n"
    "upstream with the gateway's own credentials. The check (-t) validates every key, reads every secret "
    "and\n"
    "loads every file the configuration names, and lists every problem; exit 0, or 2. --print-config shows\n"
    "every setting with its default, secrets as their references only. Signals: SIGTERM/SIGINT drain and "
    "exit;\n"
    "SIGHUP re-reads secrets, the callers' list and the log level, and reopens the access log. Exit status: "
    "0\n"
    "after a drain, 1 when a listener cannot be bound, 2 for a usage or configuration problem. See\n"
    "rds-gateway(8), README.md and conf/gateway.json.\n";

enum class Mode { none, run, check, print, version, help };

struct Cli {
    Mode mode = Mode::none;
    std::string path;
    std::string error;
};

// -c FILE | --config FILE | --config=FILE; -t | --check-config [FILE]; --print-config [FILE]; --version;
// -h | --help. A mode's FILE may also come from -c (nginx's `-t -c FILE`).
Cli parse_cli(int argc, char** argv) {
    Cli c;
    const auto set_path = [&](const std::string& p) {
        if (!c.path.empty() && c.path != p) c.error = "two different config files: " + c.path + " and " + p;
        c.path = p;
    };
    const auto set_mode = [&](Mode m) {
        if (c.mode != Mode::none && c.mode != m)
            c.error = "choose one of -t, --print-config, --version, --help";
        c.mode = m;
    };
    for (int i = 1; i < argc && c.error.empty(); ++i) {
        const std::string a = argv[i];
        const bool has_next = i + 1 < argc && argv[i + 1][0] != '-';
        if (a == "-h" || a == "--help") {
            set_mode(Mode::help);
        } else if (a == "--version") {
            set_mode(Mode::version);
        } else if (a == "-c" || a == "--config") {
            if (i + 1 >= argc)
                c.error = a + " needs a FILE";
            else
                set_path(argv[++i]);
        } else if (a.rfind("--config=", 0) == 0) {
            set_path(a.substr(9));
        } else if (a == "-t" || a == "--check-config" || a == "--print-config") {
            set_mode(a == "--print-config" ? Mode::print : Mode::check);
            if (has_next) set_path(argv[++i]);
        } else if (a.rfind("--check-config=", 0) == 0 || a.rfind("--print-config=", 0) == 0) {
            set_mode(a[2] == 'p' ? Mode::print : Mode::check);
            set_path(a.substr(a.find('=') + 1));
        } else {
            c.error = "unknown or incomplete argument: " + a;
        }
    }
    if (c.mode == Mode::none && !c.path.empty()) c.mode = Mode::run;
    if (c.error.empty() && c.mode == Mode::none) c.error = "nothing to do";
    if (c.error.empty() && c.path.empty() &&
        (c.mode == Mode::run || c.mode == Mode::check || c.mode == Mode::print))
        c.error = "a config file is needed (-c FILE)";
    return c;
}

// Validation errors plus everything check_resources() finds. A resource problem in a block that already has
// a validation error is left out (its values may be defaults standing in for what failed to parse); a file
// that is not JSON gets only its syntax error.
std::vector<std::string> config_problems(const std::string& path, rdsgw::Config& cfg) {
    std::vector<std::string> errors;
    if (rdsgw::load_config_file(path, cfg, errors)) return rdsgw::check_resources(cfg);
    const bool parsed = !(errors.size() == 1 && (errors[0].rfind("config ", 0) == 0 ||
                                                 errors[0].rfind("cannot read config file", 0) == 0));
    if (!parsed) return errors;
    const auto block_of = [](const std::string& s) { return s.substr(0, s.find_first_of(".:[ ")); };
    for (auto& p : rdsgw::check_resources(cfg)) {
        bool same_block = false;
        for (const auto& e : errors) same_block = same_block || block_of(e) == block_of(p);
        if (!same_block) errors.push_back(p);
    }
    return errors;
}

int check_config(const std::string& path) {
    rdsgw::Config cfg;
    const auto problems = config_problems(path, cfg);
    for (const auto& p : problems) std::cerr << "config error: " << p << "\n";
    if (!problems.empty()) {
        std::cerr << "config check FAILED: " << path << " (" << problems.size() << " problem"
                  << (problems.size() == 1 ? "" : "s") << ")\n";
        return 2;
    }
    for (const auto& w : rdsgw::config_warnings(cfg)) std::cerr << "config warning: " << w << "\n";
    std::cout << "config OK: " << path << "\n";
    return 0;
}

int print_config(const std::string& path) {
    rdsgw::Config cfg;
    std::vector<std::string> errors;
    if (!rdsgw::load_config_file(path, cfg, errors)) {
        for (const auto& e : errors) std::cerr << "config error: " << e << "\n";
        return 2;
    }
    std::cout << rdsgw::print_config(cfg);
    return 0;
}

// SIGHUP: the file's callers, secrets and log level apply at once, or nothing does (a file that does not
// validate, or a secret it names that cannot be read, leaves everything as it was). Settings that need a
// restart are named, one warning each.
bool reload_config(const std::string& path, const rdsgw::Config& running, rdsgw::Config& fresh) {
    std::vector<std::string> errors;
    if (!rdsgw::load_config_file(path, fresh, errors) || !(errors = rdsgw::check_secrets(fresh)).empty()) {
        for (const auto& e : errors) rdsgw::log_error("SIGHUP: config not reloaded: " + e);
        return false;
    }
    for (const auto& key : rdsgw::changed_restart_settings(running, fresh))
        rdsgw::log(rdsgw::LogLevel::warn, "SIGHUP: " + key + " changed; it takes effect only after a restart",
                   {{"setting", key}});
    rdsgw::set_log_level(rdsgw::parse_level(fresh.log.level));
    return true;
}

std::string listen_text(const rdsgw::Config& cfg, const rdsgw::Server& server) {
    std::string s = cfg.listen.address + ":" + std::to_string(server.main_port());
    if (server.admin_port())
        s += " (admin " + cfg.admin.address + ":" + std::to_string(server.admin_port()) + ")";
    return s;
}

std::unique_ptr<rdsgw::CredentialSource> make_credentials(const rdsgw::Config& cfg, rdsgw::Metrics& metrics) {
    rdsgw::CredentialDeps deps;
    deps.metrics = &metrics;
    deps.connect_timeout = std::chrono::milliseconds(cfg.upstream.connect_timeout_ms);
    deps.request_timeout = std::chrono::milliseconds(cfg.upstream.request_timeout_ms);
    deps.upstream_ca_file = cfg.upstream.ca_file;
    std::string why;
    auto creds = rdsgw::make_credential_source(cfg, deps, why);
    if (!creds) rdsgw::log_error("cannot start: " + why);
    return creds;
}

// systemd: READY=1 once every loop runs and the upstream credentials are usable (polled: see systemd.hpp).
rdsgw::SystemdNotifier::Options notifier_options(rdsgw::Server& server, rdsgw::Gateway& gw,
                                                 std::string status) {
    rdsgw::SystemdNotifier::Options o;
    server.each_loop([&o](boost::asio::io_context& ioc) { o.loops.push_back(ioc.get_executor()); });
    o.ready = [&gw](std::string& why) {
        const auto st = gw.credentials().status(std::chrono::system_clock::now());
        if (!st.ready) why = "upstream credentials: " + st.reason;
        return st.ready;
    };
    o.status = std::move(status);
    return o;
}

int run_gateway(const std::string& path, const rdsgw::BuildInfo& build) {
    ::signal(SIGPIPE, SIG_IGN);
    rdsgw::Config cfg;
    const auto problems = config_problems(path, cfg);
    rdsgw::set_log_level(rdsgw::parse_level(cfg.log.level));
    for (const auto& p : problems) rdsgw::log_error("config error: " + p);
    if (!problems.empty()) {
        rdsgw::log_error("cannot start: the configuration has " + std::to_string(problems.size()) +
                         " problem(s); `rds-gateway -t -c " + path + "` lists them");
        return 2;
    }
    for (const auto& w : rdsgw::config_warnings(cfg)) rdsgw::log_warn(w);
    rdsgw::Metrics metrics(build);
    static constexpr const char* kinds[] = {"token", "iam", "aksk"};
    metrics.credential_kind(kinds[static_cast<int>(cfg.auth.mode)]);
    rdsgw::AccessLog access_log(cfg.log.access, cfg.log.access_queue);
    auto creds = make_credentials(cfg, metrics);
    if (!creds) return 2;
    rdsgw::Gateway gateway(cfg, std::move(creds), metrics, access_log);
    rdsgw::SystemdNotifier* notifier = nullptr;  // set below, once the loops exist
    rdsgw::Server server(gateway, [&](rdsgw::Config& fresh) {
        if (notifier) notifier->reloading();
        const bool ok = reload_config(path, gateway.config(), fresh);
        if (notifier) notifier->reloaded();
        return ok;
    });
    std::string why;
    if (!server.bind(why)) {
        rdsgw::log_error("cannot start: " + why);
        return 1;
    }
    const std::string where = listen_text(cfg, server);
    // The one record scripts and tests read to learn the ports (also when they are 0): always written.
    rdsgw::log_always(rdsgw::LogLevel::info, "rds-gateway " + build.version + " listening on " + where,
                      {{"event", "listening"},
                       {"address", cfg.listen.address},
                       {"port", server.main_port()},
                       {"admin_address", server.admin_port() ? cfg.admin.address : ""},
                       {"admin_port", server.admin_port()}});
    rdsgw::SystemdNotifier systemd(notifier_options(server, gateway, "serving on " + where));
    notifier = &systemd;
    server.on_drain([&systemd] { systemd.stopping(); });
    const int rc = server.run();
    systemd.stop();
    rdsgw::log_info("stopped");
    return rc;
}

}  // namespace

int main(int argc, char** argv) {
    const Cli cli = parse_cli(argc, argv);
    if (!cli.error.empty()) {
        std::cerr << "rds-gateway: " << cli.error << "\n\n" << kUsage;
        return 2;
    }
    const auto build = rdsgw::make_build_info(RDSGW_VERSION, RDSGW_COMMIT, RDSGW_ALLOCATOR);
    switch (cli.mode) {
        case Mode::help:
            std::cout << kUsage;
            return 0;
        case Mode::version:
            std::cout << rdsgw::version_text(build);
            return 0;
        case Mode::check:
            return check_config(cli.path);
        case Mode::print:
            return print_config(cli.path);
        default:
            return run_gateway(cli.path, build);
    }
}
