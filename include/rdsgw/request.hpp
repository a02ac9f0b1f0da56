// Routing and validation of callers' requests. Pure functions over the request target and a few headers.
#pragma once
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "rdsgw/config.hpp"

namespace re2 {
class RE2;
}

namespace rdsgw {

enum class Route { backup_files, healthz, readyz, metrics, admin_cache, status, not_found };
std::string_view route_name(Route r);  // bounded set, used as a metric label and in the access log

// A configured id pattern, matched against the whole (percent-decoded) value with RE2 (its syntax; UTF-8
// mode; linear time and bounded memory whatever the pattern, made for untrusted input). Patterns of the
// common form "[class]{m,n}", "[class]{n}" or "[class]+" (class: letters, digits, '_', '.', ranges of
// them, and '-' first or last), like the defaults, are compiled to a byte table and a length range instead:
// the same answer as RE2 without its cost on every request. Any value longer than kMaxIdBytes is refused
// before either matcher looks at it.
class IdPattern {
  public:
    static constexpr std::size_t kMaxIdBytes = 256;
    // Throws std::invalid_argument with RE2's error text when the pattern is not valid (see
    // id_pattern_error; config validation calls that first).
    explicit IdPattern(const std::string& pattern);
    bool match(std::string_view s) const;
    bool is_fast() const { return fast_; }

  private:
    bool fast_ = false;
    bool allowed_[256] = {};
    std::size_t min_ = 0, max_ = 0;
    std::shared_ptr<const re2::RE2> re_;  // shared: IdPattern stays copyable; RE2 matching is thread-safe
};

// "" when `pattern` is usable as an IdPattern, else why not (RE2's error text, e.g. "missing ): (ab").
std::string id_pattern_error(const std::string& pattern);

// Compiled validation rules (from config.request).
struct RequestRules {
    explicit RequestRules(const RequestConfig& cfg);
    IdPattern project_id;
    IdPattern backup_id;
};

struct BackupFilesRequest {
    std::string project_id;  // validated, decoded
    std::string backup_id;   // validated, decoded
};

struct RequestError {
    unsigned status = 400;
    std::string field;    // "version_id", "project_id", "backup_id", "request-target"
    std::string message;  // names the field; never echoes the raw input
};

// Classifies the request target's path (admin routes included; the caller decides where they are served).
// Targets that are not origin-form or carry control characters are classified by parse_backup_files' rules.
Route classify(std::string_view target);

// Validates a backup-files request target: /{version_id}/{project_id}/backup-files?backup_id=...
std::variant<BackupFilesRequest, RequestError> parse_backup_files(std::string_view target,
                                                                  const RequestRules& rules);
// The same into the two strings (their storage reused: no allocation on a connection's later requests); the
// error, if any. The strings are unspecified after an error.
std::optional<RequestError> parse_backup_files(std::string_view target, const RequestRules& rules,
                                               std::string& project_id, std::string& backup_id);

// Checks that the raw target is a well-formed origin-form target with no control characters, CR, LF,
// spaces, fragment, empty path segments ("//" anywhere in the path), encoded slashes, backslashes, dots or
// controls, or dot segments. Returns an error message or "".
std::string check_target(std::string_view target);

// The path with every percent-escape of an unreserved character (RFC 3986 §2.3: letters, digits, '-', '_',
// '~') decoded (§6.2.2.2 normalization), into `buf`; other escapes, '.' included, stay as they are (so no
// '/' or dot segment appears). `path` itself when it has no '%'. Routes are matched on this form, and the
// fixed parts of a backup-files target ("v3", "backup-files") and query parameter names are compared after
// decoding, so an encoded unreserved character is the character everywhere.
std::string_view normalize_path(std::string_view path, std::string& buf);

// The query of DELETE /admin/cache: no query at all (both strings empty: purge everything), or exactly
// project_id and backup_id, each once, non-empty and valid by the rules after one decoding pass. Anything
// else (an empty query "?", an empty, repeated, unknown or missing parameter) is a 400 naming the field.
std::optional<RequestError> parse_purge_query(std::string_view target, const RequestRules& rules,
                                              std::string& project_id, std::string& backup_id);

// X-Request-Id as the caller sent it when sane ([A-Za-z0-9._-]{1,64}); else false.
bool is_sane_request_id(std::string_view id);
// A fresh request id (32 lower-hex characters).
std::string make_request_id();
void make_request_id(std::string& out);  // into `out`, its storage reused
// X-Language values passed upstream: "zh-cn" or "en-us" (case-insensitive); returns "" when invalid.
std::string_view valid_language(std::string_view value);

// One percent-decoding pass. Returns false on a malformed escape.
bool percent_decode(std::string_view in, std::string& out);

}  // namespace rdsgw
