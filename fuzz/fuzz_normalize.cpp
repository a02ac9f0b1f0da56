// libFuzzer target for the response contract and the time parser.
// Besides "no crash, no sanitizer report" it checks invariants and aborts when one breaks:
//  - an accepted answer's canonical body is valid JSON and a fixed point of normalization;
//  - an error message carries only printable ASCII and no more than the path and the reason;
//  - an accepted time's canonical form parses back to the same instant and offset;
//  - where the one-pass fast path answers, the general path gives the same answer (both option sets).
#include "rdsgw/normalize.hpp"
#include "rdsgw/timefmt.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

namespace {

const rdsgw::NormalizeOptions& options() {
    static const rdsgw::NormalizeOptions o = [] {
        rdsgw::NormalizeOptions x;
        x.max_body_bytes = 64 * 1024;
        x.link_host_suffixes = {"myhwclouds.com", "obs.com"};
        x.emit_legacy_expiry_field = true;
        return x;
    }();
    return o;
}

const rdsgw::NormalizeOptions& plain_options() {
    static const rdsgw::NormalizeOptions o = [] {
        rdsgw::NormalizeOptions x;
        x.max_body_bytes = 64 * 1024;
        x.allow_http_links = true;
        return x;
    }();
    return o;
}

void check(bool ok) {
    if (!ok) std::abort();
}

void check_fast_path(std::string_view in, const rdsgw::NormalizeOptions& opts) {
    rdsgw::NormalizedAnswer fast;
    if (!rdsgw::detail::normalize_plain(in, opts, fast)) return;
    const rdsgw::NormalizeResult ref = rdsgw::detail::normalize_reference(in, opts);
    const auto* r = std::get_if<rdsgw::NormalizedAnswer>(&ref);
    check(r != nullptr && r->body == fast.body && r->file_count == fast.file_count &&
          r->earliest_expiry == fast.earliest_expiry);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    const auto now = std::chrono::system_clock::time_point{};

    check_fast_path(in, options());
    check_fast_path(in, plain_options());
    const rdsgw::NormalizeResult r = rdsgw::normalize_backup_files(in, now, options());
    if (const auto* a = std::get_if<rdsgw::NormalizedAnswer>(&r)) {
        // Growth is bounded: re-spelled doubles ("1.5" -> "1.5E0"), sizes ("1e18" -> 19 digits), canonical
        // and legacy expiry fields.
        check(a->body.size() <= 2 * in.size() + 128 * a->file_count + 64);
        if (a->body.size() <= options().max_body_bytes) {
            const rdsgw::NormalizeResult again = rdsgw::normalize_backup_files(a->body, now, options());
            const auto* b = std::get_if<rdsgw::NormalizedAnswer>(&again);
            check(b != nullptr && b->body == a->body && b->file_count == a->file_count &&
                  b->earliest_expiry == a->earliest_expiry);
        }
    } else {
        const auto& e = std::get<rdsgw::NormalizeError>(r);
        const std::string m = e.message();
        check(m.size() <= 29 + e.path.size() + e.reason.size());  // "invalid upstream answer at " + ": "
        for (const char c : m) check(c >= 0x20 && c < 0x7f);
    }
    (void)rdsgw::is_rds_error_body(in);
    const std::string redacted = rdsgw::redact_link(in);
    check(redacted.find('?') == std::string::npos && redacted.find('#') == std::string::npos);

    if (const auto t = rdsgw::parse_rds_time(in)) {
        const std::string canonical = rdsgw::format_rds_time(*t);
        const auto u = rdsgw::parse_rds_time(canonical);
        check(u && u->utc == t->utc && u->offset_minutes == t->offset_minutes &&
              rdsgw::format_rds_time(*u) == canonical);
    }
    return 0;
}
