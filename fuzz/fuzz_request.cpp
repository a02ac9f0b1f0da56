// libFuzzer target for request validation: check_target, classify, parse_backup_files (default
// RequestConfig) and percent_decode on arbitrary bytes. Besides "no crash, no sanitizer report" it checks
// invariants and aborts when one breaks:
//  - a target check_target accepts is origin-form, ASCII, free of controls, spaces, '#' and '\';
//  - an accepted backup-files request passed check_target, is classified as backup_files, and its ids
//    match the configured patterns ([A-Za-z0-9]{1,64} by default, checked here without std::regex);
//  - rebuilding the target from the accepted ids (every non-alphanumeric byte percent-encoded) and
//    parsing it again yields the same ids;
//  - a refusal has status 400 or 404, a known field name (or a short plain query parameter name) and a
//    short printable-ASCII message;
//  - percent_decode never grows its input, and decoding the fully percent-encoded output gives it back;
//  - with RE2 patterns (issue 14's ([A-Za-z0-9]+-?)+ and (ab|a)*b?), accepted ids are at most
//    IdPattern::kMaxIdBytes long and match the pattern's language, checked here without a regex engine.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "rdsgw/request.hpp"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

const rdsgw::RequestRules& rules() {
    static const rdsgw::RequestRules r{rdsgw::RequestConfig{}};
    return r;
}

const rdsgw::RequestRules& re2_rules() {
    static const rdsgw::RequestRules r = [] {
        rdsgw::RequestConfig c;
        c.project_id_pattern = "([A-Za-z0-9]+-?)+";
        c.backup_id_pattern = "(ab|a)*b?";
        return rdsgw::RequestRules(c);
    }();
    return r;
}

bool is_alnum(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

// The default patterns, [A-Za-z0-9]{1,64}, written out.
bool matches_default_id(std::string_view s) {
    if (s.empty() || s.size() > 64) return false;
    for (const unsigned char c : s)
        if (!is_alnum(c)) return false;
    return true;
}

// ([A-Za-z0-9]+-?)+ written out: alphanumerics and '-', starting with an alphanumeric, no "--".
bool matches_nested(std::string_view s) {
    if (s.empty() || !is_alnum(static_cast<unsigned char>(s[0]))) return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (!is_alnum(c) && !(c == '-' && s[i - 1] != '-')) return false;
    }
    return true;
}

// (ab|a)*b? written out: only 'a' and 'b', no "bb", not starting with 'b' unless it is just "b".
bool matches_ab(std::string_view s) {
    if (s == "b") return true;
    if (!s.empty() && s[0] == 'b') return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != 'a' && s[i] != 'b') return false;
        if (s[i] == 'b' && i > 0 && s[i - 1] == 'b') return false;
    }
    return true;
}

std::string encode_non_alnum(std::string_view s) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    std::string out;
    out.reserve(s.size() * 3);
    for (const unsigned char c : s) {
        if (is_alnum(c)) {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(kHex[c >> 4]);
            out.push_back(kHex[c & 15]);
        }
    }
    return out;
}

bool printable_ascii(std::string_view s) {
    for (const unsigned char c : s)
        if (c < 0x20 || c >= 0x7f) return false;
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);

    const std::string why = rdsgw::check_target(in);
    if (why.empty()) {
        check(!in.empty() && in.front() == '/' && !(in.size() > 1 && in[1] == '/'));
        for (const unsigned char c : in) check(c > 0x20 && c < 0x7f && c != '#' && c != '\\');
    } else {
        check(why.size() <= 96 && printable_ascii(why));
    }

    const rdsgw::Route route = rdsgw::classify(in);
    check(!rdsgw::route_name(route).empty());

    const auto parsed = rdsgw::parse_backup_files(in, rules());
    if (const auto* req = std::get_if<rdsgw::BackupFilesRequest>(&parsed)) {
        check(why.empty());
        check(route == rdsgw::Route::backup_files);
        check(matches_default_id(req->project_id) && matches_default_id(req->backup_id));

        const std::string rebuilt = "/v3/" + encode_non_alnum(req->project_id) +
                                    "/backup-files?backup_id=" + encode_non_alnum(req->backup_id);
        const auto again = rdsgw::parse_backup_files(rebuilt, rules());
        const auto* req2 = std::get_if<rdsgw::BackupFilesRequest>(&again);
        check(req2 != nullptr && req2->project_id == req->project_id && req2->backup_id == req->backup_id);
    } else {
        const auto& e = std::get<rdsgw::RequestError>(parsed);
        check(e.status == 400 || e.status == 404);
        const bool known = e.field == "version_id" || e.field == "project_id" || e.field == "backup_id" ||
                           e.field == "request-target" || e.field == "query";
        check(known || (rdsgw::is_sane_request_id(e.field) && e.field.size() <= 32));
        check(!e.message.empty() && e.message.size() <= 128 && printable_ascii(e.message));
    }

    const auto re2_parsed = rdsgw::parse_backup_files(in, re2_rules());
    if (const auto* req = std::get_if<rdsgw::BackupFilesRequest>(&re2_parsed)) {
        check(req->project_id.size() <= rdsgw::IdPattern::kMaxIdBytes && matches_nested(req->project_id));
        check(req->backup_id.size() <= rdsgw::IdPattern::kMaxIdBytes && matches_ab(req->backup_id));
    }

    std::string decoded;
    if (rdsgw::percent_decode(in, decoded)) {
        check(decoded.size() <= in.size());
        if (in.find('%') == std::string_view::npos) check(decoded == in);
        std::string round;
        check(rdsgw::percent_decode(encode_non_alnum(decoded), round) && round == decoded);
    }
    return 0;
}
