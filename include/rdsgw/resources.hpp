// What start-up loads from outside the config file: secrets (upstream credentials and callers' secret keys),
// CA bundles, the listener's certificate, key and client CA, the access log file. The same functions serve
// start-up, --check-config and SIGHUP, so a config the check accepts does not fail or misbehave when it runs.
// Each function reports every problem it finds (never only the first), naming the key and never a secret.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "rdsgw/config.hpp"

namespace boost::asio::ssl {
class context;
}

namespace rdsgw {

// Every secret the config names for its auth mode and its callers, read with load_secret().
std::vector<std::string> check_secrets(const Config& c);

// check_secrets() plus every file start-up loads: the upstream CA (https), the IAM CA (iam mode, https),
// the listener's TLS certificate chain, key (and that they match) and client CA, and the access log file.
std::vector<std::string> check_resources(const Config& c);

// The main listener's TLS context as start-up builds it (TLS 1.2+, certificate chain, private key, optional
// client CA with verify_peer [+ fail_if_no_peer_cert]). nullptr when listen has no TLS, or when something
// could not be loaded (then one message per problem is appended to `problems`).
std::shared_ptr<boost::asio::ssl::context> make_server_tls_context(const ListenConfig& l,
                                                                   std::vector<std::string>& problems);

}  // namespace rdsgw
