// RAII temporary directory for tests: created empty (mode 0700) under $TMPDIR or /tmp, removed with its
// contents on destruction.
#pragma once
#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace rdsgw::test {

class TempDir {
  public:
    explicit TempDir(std::string_view prefix = "rdsgw-test") {
        const char* base = std::getenv("TMPDIR");
        std::string templ = std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/" +
                            std::string(prefix) + "-XXXXXX";
        if (::mkdtemp(templ.data()) == nullptr)
            throw std::runtime_error("mkdtemp(" + templ + "): " + std::strerror(errno));
        path_ = templ;
    }
    ~TempDir() {
        if (path_.empty()) return;
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
    TempDir& operator=(TempDir&&) = delete;
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::string& path() const { return path_; }
    // The path of `name` inside the directory (the file is not created).
    std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }
    // Writes `content` to `name` inside the directory and returns its path.
    std::string write(std::string_view name, std::string_view content) const {
        const auto p = file(name);
        std::ofstream out(p, std::ios::binary | std::ios::trunc);
        out.write(content.data(), static_cast<std::streamsize>(content.size()));
        if (!out) throw std::runtime_error("cannot write " + p);
        return p;
    }

  private:
    std::string path_;
};

}  // namespace rdsgw::test
