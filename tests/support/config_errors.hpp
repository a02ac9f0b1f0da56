// Config-parsing helpers shared by the config unit tests (test_config, test_config_redis, test_project_map).
#pragma once

#include <string>
#include <vector>

#include "rdsgw/config.hpp"

namespace rdsgw::test {

// The errors parse_config reports for `text` (and the parsed config in *out when asked).
inline std::vector<std::string> config_errors(const std::string& text, Config* out = nullptr) {
    Config c;
    std::vector<std::string> errors;
    parse_config(text, c, errors);
    if (out) *out = c;
    return errors;
}

// Whether any of the errors mentions `what`.
inline bool mentions(const std::vector<std::string>& errs, const std::string& what) {
    for (const auto& e : errs)
        if (e.find(what) != std::string::npos) return true;
    return false;
}

}  // namespace rdsgw::test
