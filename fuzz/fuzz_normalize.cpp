// libFuzzer target for the response contract and the time parser.
// Besides "no crash, no sanitizer report" it checks invariants and aborts when one breaks:
//  - an accepted answer's canonical body is valid JSON and a fixed point of normalization;
//  - an error message carries only printable ASCII and no more than the path and the reason;
//  - an accepted time's canonical form parses back to the same instant and offset;
//  - where the one-pass fast path answers, the general path gives the same answer (both option sets);
//  - no accepted file name holds a C0/C1 control, a bidi control or a look-alike of '/' or '\' (checked on
//    the UTF-8 bytes, without the gateway's decoder);
//  - the gateway's credentials never pass through: when an accepted answer's canonical body, or the input
//    itself (an RDS error passes verbatim), holds the fuzz secret, find_secret flagged the input.
#include "rdsgw/normalize.hpp"
#include "rdsgw/secret_scan.hpp"
#include "rdsgw/timefmt.hpp"

#include <boost/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
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

// A credential the gateway holds (the seeds carry it, raw and escaped).
constexpr std::string_view kSecret = "FUZZSECRET-0123456789";

// UTF-8 of the characters a name may not hold beyond ASCII: C1 controls (U+0080-U+009F: C2 80-C2 9F), line
// and paragraph separators, bidi controls, and look-alikes of '/' and '\'.
bool clean_name(std::string_view n) {
    static constexpr std::string_view kBad[] = {
        "\xe2\x80\xa8", "\xe2\x80\xa9", "\xd8\x9c",     "\xe2\x80\x8e", "\xe2\x80\x8f", "\xe2\x80\xaa",
        "\xe2\x80\xab", "\xe2\x80\xac", "\xe2\x80\xad", "\xe2\x80\xae", "\xe2\x81\xa6", "\xe2\x81\xa7",
        "\xe2\x81\xa8", "\xe2\x81\xa9", "\xe2\x81\x84", "\xe2\x88\x95", "\xe2\xa7\xb8", "\xef\xbc\x8f",
        "\xe2\x88\x96", "\xe2\xa7\xb5", "\xe2\xa7\xb9", "\xef\xb9\xa8", "\xef\xbc\xbc"};
    for (std::size_t i = 0; i < n.size(); ++i) {
        const auto c = static_cast<unsigned char>(n[i]);
        if (c < 0x20 || c == 0x7f || c == '/' || c == '\\') return false;
        if (c == 0xc2 && i + 1 < n.size() && static_cast<unsigned char>(n[i + 1]) < 0xa0) return false;
    }
    for (const std::string_view b : kBad)
        if (n.find(b) != std::string_view::npos) return false;
    return true;
}

void check_names(const std::string& canonical) {
    const boost::json::value v = boost::json::parse(canonical);
    for (const auto& f : v.at("files").as_array()) check(clean_name(f.at("name").as_string()));
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
        // Growth is bounded: canonical and legacy expiry fields (numbers of unknown fields keep their
        // spelling; a size is an integer literal or a digit string, never longer when rewritten).
        check(a->body.size() <= 2 * in.size() + 128 * a->file_count + 64);
        if (a->body.size() <= options().max_body_bytes) {
            const rdsgw::NormalizeResult again = rdsgw::normalize_backup_files(a->body, now, options());
            const auto* b = std::get_if<rdsgw::NormalizedAnswer>(&again);
            check(b != nullptr && b->body == a->body && b->file_count == a->file_count &&
                  b->earliest_expiry == a->earliest_expiry);
        }
        check_names(a->body);
        if (a->body.find(kSecret) != std::string::npos) check(rdsgw::find_secret(in, {kSecret}).has_value());
    } else {
        const auto& e = std::get<rdsgw::NormalizeError>(r);
        const std::string m = e.message();
        check(m.size() <= 29 + e.path.size() + e.reason.size());  // "invalid upstream answer at " + ": "
        for (const char c : m) check(c >= 0x20 && c < 0x7f);
    }
    const auto leak = rdsgw::find_secret(in, {kSecret, std::string_view("short")});
    if (in.find(kSecret) != std::string_view::npos) check(leak && !leak->decoded);
    if (leak) check(leak->index == 0);
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
