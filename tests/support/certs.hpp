// A throw-away PKI for TLS tests, generated with OpenSSL 3 (EC P-256 keys, X.509 v3, SHA-256) into a
// temporary directory that lives as long as the last copy of the Pki.
#pragma once
#include <memory>
#include <string>
#include <utility>

#include "support/tempdir.hpp"

namespace rdsgw::test {

struct Pki {
    std::string dir;
    std::string ca_cert, ca_key;              // the test CA (PEM)
    std::string server_cert, server_key;      // signed by the CA for DNS:localhost and IP:127.0.0.1
    std::string other_ca_cert, other_ca_key;  // a second, unrelated CA ("wrong CA")
    // Signed by the CA, valid, but for DNS:wrong.example only (host-name verification must reject it).
    std::string wrong_host_cert, wrong_host_key;
    // Signed by the CA for localhost/127.0.0.1, but expired yesterday.
    std::string expired_cert, expired_key;
    // Signed by the other CA for localhost/127.0.0.1 (chain verification against `ca_cert` must fail).
    std::string untrusted_server_cert, untrusted_server_key;

    // A client certificate (extendedKeyUsage clientAuth) with subject CN=`cn`, signed by the CA, or by
    // the other CA when `by_other_ca`. Returns {cert path, key path}; each call makes new files.
    std::pair<std::string, std::string> client(const std::string& cn, bool by_other_ca = false) const;
    // A server certificate signed by the CA for DNS:`dns_name` only (e.g. "rds.cn-north-4.example").
    // Returns {cert path, key path}; each call makes new files.
    std::pair<std::string, std::string> server_for(const std::string& dns_name) const;

    std::shared_ptr<TempDir> owner;  // removes `dir` with the last copy
};

// Generates a fresh PKI (a few milliseconds). Throws std::runtime_error on OpenSSL failures.
Pki make_pki();

}  // namespace rdsgw::test
