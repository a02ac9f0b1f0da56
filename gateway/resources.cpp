#include "rdsgw/resources.hpp"

#include "rdsgw/sealed.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/ssl/context.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "rdsgw/upstream.hpp"

namespace rdsgw {

namespace ssl = boost::asio::ssl;

namespace {

void check_secret(const std::string& key, const SecretRef& ref, std::vector<std::string>& problems) {
    std::string value, why;
    if (!load_secret(ref, value, why)) problems.push_back(key + ": " + why);
}

bool is_https(const std::string& url) {
    return url.rfind("https://", 0) == 0;
}

void check_client_ca(const std::string& key, const std::string& ca_file, std::vector<std::string>& problems) {
    std::string why;
    if (!make_client_tls_context(ca_file, why)) problems.push_back(key + ": " + why);
}

// The access log file is opened for appending at start-up (created if missing); check that it can be.
void check_access_log(const LogConfig& l, std::vector<std::string>& problems) {
    if (l.access == "stdout" || l.access == "off") return;
    std::error_code ec;
    if (std::filesystem::exists(l.access, ec)) {
        const int fd = ::open(l.access.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
        if (fd < 0)
            problems.push_back("log.access: cannot open " + l.access +
                               " for appending: " + std::strerror(errno));
        else
            ::close(fd);
        return;
    }
    const std::filesystem::path parent = std::filesystem::path(l.access).parent_path();
    const std::string dir = parent.empty() ? std::string(".") : parent.string();
    if (::access(dir.c_str(), W_OK | X_OK) == 0) return;
    problems.push_back("log.access: cannot create " + l.access + " (directory " + dir +
                       "): " + std::strerror(errno));
}

}  // namespace

std::vector<std::string> check_secrets(const Config& c) {
    std::vector<std::string> problems;
    switch (c.auth.mode) {
        case AuthMode::token:
            check_secret("auth.token", c.auth.token, problems);
            break;
        case AuthMode::iam:
            check_secret("auth.iam.password", c.auth.iam.password, problems);
            break;
        case AuthMode::aksk:
            check_secret("auth.aksk.ak", c.auth.aksk.ak, problems);
            check_secret("auth.aksk.sk", c.auth.aksk.sk, problems);
            if (!c.auth.aksk.security_token.empty())
                check_secret("auth.aksk.security_token", c.auth.aksk.security_token, problems);
            break;
    }
    for (std::size_t i = 0; i < c.callers.list.size(); ++i) {
        const auto& k = c.callers.list[i];
        if (!k.access_key.empty())
            check_secret("callers.list[" + std::to_string(i) + "].secret_key (caller " + k.name + ")",
                         k.secret_key, problems);
    }
    if (c.auth.mode == AuthMode::token)
        for (const auto& r : c.regions)
            if (!r.token.empty()) check_secret("regions." + r.name + ".token", r.token, problems);
    if (!c.upstream.proxy.credentials.empty())
        check_secret("upstream.proxy.credentials", c.upstream.proxy.credentials, problems);
    if (c.redis.enabled) {
        if (!c.redis.password.empty()) check_secret("redis.password", c.redis.password, problems);
        for (std::size_t i = 0; i < c.redis.encryption_keys.size(); ++i) {
            const std::string key = "redis.encryption_keys[" + std::to_string(i) + "].key";
            std::string value, why;
            if (!load_secret(c.redis.encryption_keys[i].key, value, why))
                problems.push_back(key + ": " + why);
            else if (!parse_key_material(value))
                problems.push_back(key + ": must be 32 bytes as 64 hex digits or base64");
        }
    }
    return problems;
}

std::vector<std::string> check_resources(const Config& c) {
    std::vector<std::string> problems = check_secrets(c);
    if (is_https(c.upstream.base_url)) check_client_ca("upstream.ca_file", c.upstream.ca_file, problems);
    if (c.auth.mode == AuthMode::iam && is_https(c.auth.iam.endpoint)) {
        const bool own = !c.auth.iam.ca_file.empty();
        check_client_ca(own ? "auth.iam.ca_file" : "upstream.ca_file (for auth.iam)",
                        own ? c.auth.iam.ca_file : c.upstream.ca_file, problems);
    }
    for (const auto& r : c.regions)
        if (!r.ca_file.empty()) check_client_ca("regions." + r.name + ".ca_file", r.ca_file, problems);
    if (c.redis.enabled && c.redis.tls && !c.redis.tls_ca_file.empty())
        check_client_ca("redis.tls_ca_file", c.redis.tls_ca_file, problems);
    make_server_tls_context(c.listen, problems);
    check_access_log(c.log, problems);
    return problems;
}

std::shared_ptr<ssl::context> make_server_tls_context(const ListenConfig& l,
                                                      std::vector<std::string>& problems) {
    if (l.tls_cert_file.empty()) return nullptr;
    const std::size_t before = problems.size();
    auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
    boost::system::error_code ec;
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                     ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    ctx->use_certificate_chain_file(l.tls_cert_file, ec);
    if (ec) problems.push_back("listen.tls_cert_file: cannot load " + l.tls_cert_file + ": " + ec.message());
    // With the certificate loaded, OpenSSL also checks that the key belongs to it.
    ctx->use_private_key_file(l.tls_key_file, ssl::context::pem, ec);
    if (ec) problems.push_back("listen.tls_key_file: cannot load " + l.tls_key_file + ": " + ec.message());
    if (!l.client_ca_file.empty()) {
        ctx->load_verify_file(l.client_ca_file, ec);
        if (ec)
            problems.push_back("listen.client_ca_file: cannot load " + l.client_ca_file + ": " +
                               ec.message());
        ssl::verify_mode mode = ssl::verify_peer;
        if (l.require_client_cert) mode |= ssl::verify_fail_if_no_peer_cert;
        ctx->set_verify_mode(mode);
    }
    return problems.size() == before ? ctx : nullptr;
}

}  // namespace rdsgw
