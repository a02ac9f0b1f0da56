// What this binary is: version, commit and the libraries it runs with. Shown by --version and exported as
// the rdsgw_build_info metric.
#pragma once
#include <string>
#include <string_view>

namespace rdsgw {

struct BuildInfo {
    std::string version;  // the project version (CMake's project(VERSION))
    std::string
        commit;  // git commit of the sources ("-dirty" with uncommitted changes; "unknown" outside git)
    std::string boost;      // Boost the binary was built with, e.g. "1.81.0"
    std::string openssl;    // libssl in use at run time, e.g. "3.0.15"
    std::string allocator;  // "jemalloc" | "glibc"
};

BuildInfo make_build_info(std::string_view version, std::string_view commit, std::string_view allocator);

// The --version text: "rds-gateway <version> (malloc: <allocator>)" then one "name: value" line each.
std::string version_text(const BuildInfo& b);

}  // namespace rdsgw
