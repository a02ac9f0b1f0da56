#include "rdsgw/build_info.hpp"

#include <openssl/crypto.h>
#include <openssl/opensslv.h>

#include <boost/version.hpp>

namespace rdsgw {

BuildInfo make_build_info(std::string_view version, std::string_view commit, std::string_view allocator) {
    BuildInfo b;
    b.version = std::string(version);
    b.commit = commit.empty() ? "unknown" : std::string(commit);
    b.boost = std::to_string(BOOST_VERSION / 100000) + "." + std::to_string(BOOST_VERSION / 100 % 1000) +
              "." + std::to_string(BOOST_VERSION % 100);
    b.openssl = OpenSSL_version(OPENSSL_VERSION_STRING);
    b.allocator = std::string(allocator);
    return b;
}

std::string version_text(const BuildInfo& b) {
    return "rds-gateway " + b.version + " (malloc: " + b.allocator + ")\n" + "commit: " + b.commit + "\n" +
           "boost: " + b.boost + "\n" + "openssl: " + b.openssl + " (built with " + OPENSSL_VERSION_STR +
           ")\n";
}

}  // namespace rdsgw
