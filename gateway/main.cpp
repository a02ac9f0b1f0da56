// rds-gateway: a caching, validating, credential-injecting gateway for RDS v3 "get backup download links".
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include "rdsgw/config.hpp"
#include "rdsgw/credentials.hpp"
#include "rdsgw/gateway.hpp"
#include "rdsgw/log.hpp"
#include "rdsgw/metrics.hpp"
#include "rdsgw/server.hpp"

namespace {

constexpr const char* kUsage =
    "usage: rds-gateway --config FILE        run the gateway\n"
    "       rds-gateway --check-config FILE  validate FILE; exit 0 if valid, 2 with messages if not\n"
    "       rds-gateway --version            print the version\n"
    "       rds-gateway --help               print this help\n"
    "\n"
    "Serves GET/HEAD /v3/{project_id}/backup-files?backup_id=... like Huawei Cloud RDS, from a cache or\n"
    "upstream with the gateway's own credentials. Signals: SIGTERM/SIGINT drain and exit; SIGHUP re-reads\n"
    "secrets, the callers' list and reopens the access log. See README.md and conf/gateway.json.\n";

bool load(const std::string& path, rdsgw::Config& cfg) {
    std::vector<std::string> errors;
    if (rdsgw::load_config_file(path, cfg, errors)) return true;
    for (auto& e : errors) std::cerr << "config error: " << e << "\n";
    return false;
}

}  // namespace

int main(int argc, char** argv) {
    std::string mode, path;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            std::cout << kUsage;
            return 0;
        }
        if (a == "--version") {
            std::cout << "rds-gateway " RDSGW_VERSION " (malloc: " RDSGW_ALLOCATOR ")\n";
            return 0;
        }
        if ((a == "--config" || a == "--check-config") && i + 1 < argc) {
            mode = a;
            path = argv[++i];
            continue;
        }
        std::cerr << "rds-gateway: unknown or incomplete argument: " << a << "\n\n" << kUsage;
        return 2;
    }
    if (mode.empty()) {
        std::cerr << kUsage;
        return 2;
    }
    rdsgw::Config cfg;
    if (!load(path, cfg)) return 2;
    if (mode == "--check-config") {
        // Also check that the secrets the file names are present, without printing them.
        std::string why;
        rdsgw::Metrics m(RDSGW_VERSION);
        rdsgw::CredentialDeps deps;
        if (!rdsgw::make_credential_source(cfg, deps, why)) {
            std::cerr << "config error: " << why << "\n";
            return 2;
        }
        std::cout << "config OK: " << path << "\n";
        return 0;
    }

    ::signal(SIGPIPE, SIG_IGN);
    rdsgw::set_log_level(rdsgw::parse_level(cfg.log.level));
    rdsgw::Metrics metrics(RDSGW_VERSION);
    rdsgw::AccessLog access_log(cfg.log.access, cfg.log.access_queue);
    rdsgw::CredentialDeps deps;
    deps.metrics = &metrics;
    deps.connect_timeout = std::chrono::milliseconds(cfg.upstream.connect_timeout_ms);
    deps.request_timeout = std::chrono::milliseconds(cfg.upstream.request_timeout_ms);
    deps.upstream_ca_file = cfg.upstream.ca_file;
    std::string why;
    auto creds = rdsgw::make_credential_source(cfg, deps, why);
    if (!creds) {
        rdsgw::log_error("cannot start: " + why);
        return 2;
    }
    if (!cfg.callers.required) {
        rdsgw::log_warn(
            "callers.required is false: ANY client that reaches this port can fetch backup download links");
    }
    rdsgw::Gateway gateway(cfg, std::move(creds), metrics, access_log);
    rdsgw::Server server(gateway, [path](rdsgw::Config& fresh) {
        std::vector<std::string> errors;
        if (rdsgw::load_config_file(path, fresh, errors)) return true;
        for (auto& e : errors) rdsgw::log_error("SIGHUP: config not reloaded: " + e);
        return false;
    });
    if (!server.bind(why)) {
        rdsgw::log_error("cannot start: " + why);
        return 1;
    }
    rdsgw::log_info("rds-gateway " RDSGW_VERSION " listening on " + cfg.listen.address + ":" +
                    std::to_string(server.main_port()) +
                    (server.admin_port()
                         ? " (admin " + cfg.admin.address + ":" + std::to_string(server.admin_port()) + ")"
                         : std::string()));
    // Machine-readable line for scripts and tests (stderr, so the access log on stdout stays pure JSON).
    std::fprintf(stderr, "LISTENING %u %u\n", server.main_port(), server.admin_port());
    std::fflush(stderr);
    int rc = server.run();
    rdsgw::log_info("stopped");
    return rc;
}
