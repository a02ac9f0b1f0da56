// Behaviour: parsing and printing the mock's knobs.
#include <array>
#include <string>

#include "mock.hpp"

namespace rdsgw::mock {

namespace json = boost::json;

namespace {

bool get_int(const json::value& v, std::int64_t lo, std::int64_t hi, std::int64_t& out) {
    if (v.is_int64()) {
        out = v.get_int64();
    } else if (v.is_uint64()) {
        if (v.get_uint64() > static_cast<std::uint64_t>(hi)) return false;
        out = static_cast<std::int64_t>(v.get_uint64());
    } else {
        return false;
    }
    return out >= lo && out <= hi;
}

template <std::size_t N>
bool one_of(std::string_view s, const std::array<std::string_view, N>& allowed) {
    for (auto a : allowed)
        if (a == s) return true;
    return false;
}

constexpr std::array<std::string_view, 4> kExpiryFields{"link_expired_time", "link_expired_link", "both",
                                                        "both_different"};
constexpr std::array<std::string_view, 9> kBodyModes{"normal", "doc_example", "not_json", "html",  "empty",
                                                     "array",  "bad_time",    "bad_size", "custom"};
constexpr std::array<std::string_view, 3> kErrorBodyModes{"rds", "html", "empty"};
constexpr std::array<std::string_view, 4> kAuthModes{"none", "static", "iam", "aksk"};
constexpr std::array<std::string_view, 3> kActions{"reset", "hang", "close"};

// Validates one script entry: an object whose keys are "action" or behaviour keys.
std::string check_script_entry(const json::value& v, const Behaviour& base) {
    if (!v.is_object()) return "script entries must be objects";
    json::object rest = v.get_object();
    if (auto it = rest.find("action"); it != rest.end()) {
        if (!it->value().is_string() || !one_of(std::string_view(it->value().get_string()), kActions))
            return "script action must be \"reset\", \"hang\" or \"close\"";
        rest.erase(it);
    }
    Behaviour copy = base;
    auto err = copy.merge(rest, nullptr, nullptr);
    return err.empty() ? "" : "script entry: " + err;
}

}  // namespace

std::string Behaviour::merge(const json::object& patch, std::deque<json::object>* script,
                             std::deque<json::object>* iam_script) {
    constexpr std::int64_t kMaxMs = 3'600'000;
    for (const auto& kv : patch) {
        const std::string_view key = kv.key();
        const json::value& v = kv.value();
        std::int64_t n = 0;
        auto int_field = [&](int& field, std::int64_t lo, std::int64_t hi) -> std::string {
            if (!get_int(v, lo, hi, n))
                return std::string(key) + " must be an integer in [" + std::to_string(lo) + ", " +
                       std::to_string(hi) + "]";
            field = static_cast<int>(n);
            return "";
        };
        auto status_field = [&](unsigned& field) -> std::string {
            if (!get_int(v, 0, 599, n) || (n != 0 && n < 100))
                return std::string(key) + " must be 0 or an HTTP status (100..599)";
            field = static_cast<unsigned>(n);
            return "";
        };
        auto string_field = [&](std::string& field) -> std::string {
            if (!v.is_string()) return std::string(key) + " must be a string";
            field = std::string(v.get_string());
            return "";
        };
        auto enum_field = [&](std::string& field, auto const& allowed) -> std::string {
            if (!v.is_string() || !one_of(std::string_view(v.get_string()), allowed))
                return std::string(key) + " has an unknown value";
            field = std::string(v.get_string());
            return "";
        };

        std::string err;
        if (key == "latency_ms") {
            err = int_field(latency_ms, 0, kMaxMs);
        } else if (key == "files") {
            err = int_field(files, 0, 10000);
        } else if (key == "link_lifetime_s") {
            err = int_field(link_lifetime_s, -86400 * 365, 86400 * 365);
        } else if (key == "expiry_field") {
            err = enum_field(expiry_field, kExpiryFields);
        } else if (key == "body_mode") {
            err = enum_field(body_mode, kBodyModes);
        } else if (key == "custom_body") {
            err = string_field(custom_body);
        } else if (key == "bucket") {
            err = string_field(bucket);
        } else if (key == "raw_before") {
            err = string_field(raw_before);
        } else if (key == "raw_after") {
            err = string_field(raw_after);
        } else if (key == "raw_answer") {
            err = string_field(raw_answer);
        } else if (key == "status") {
            err = status_field(status);
        } else if (key == "error_code") {
            err = string_field(error_code);
        } else if (key == "error_msg") {
            err = string_field(error_msg);
        } else if (key == "error_body_mode") {
            err = enum_field(error_body_mode, kErrorBodyModes);
        } else if (key == "retry_after") {
            err = string_field(retry_after);
        } else if (key == "missing_backups") {
            if (!v.is_array()) {
                err = "missing_backups must be an array of strings";
            } else {
                std::set<std::string> ids;
                for (const auto& e : v.get_array()) {
                    if (!e.is_string()) {
                        err = "missing_backups must be an array of strings";
                        break;
                    }
                    ids.emplace(e.get_string());
                }
                if (err.empty()) missing_backups = std::move(ids);
            }
        } else if (key == "idle_close_ms") {
            err = int_field(idle_close_ms, 0, kMaxMs);
        } else if (key == "gzip") {
            if (!v.is_bool())
                err = "gzip must be a boolean";
            else
                gzip = v.get_bool();
        } else if (key == "hold") {
            if (!v.is_bool())
                err = "hold must be a boolean";
            else
                hold = v.get_bool();
        } else if (key == "auth") {
            err = enum_field(auth, kAuthModes);
        } else if (key == "static_token") {
            err = string_field(static_token);
        } else if (key == "ak") {
            err = string_field(ak);
        } else if (key == "sk") {
            err = string_field(sk);
        } else if (key == "iam_password") {
            err = string_field(iam_password);
        } else if (key == "token_lifetime_s") {
            err = int_field(token_lifetime_s, -86400 * 365, 86400 * 365);
        } else if (key == "iam_latency_ms") {
            err = int_field(iam_latency_ms, 0, kMaxMs);
        } else if (key == "iam_fail_status") {
            err = status_field(iam_fail_status);
        } else if (key == "served_projects") {
            if (!v.is_array()) {
                err = "served_projects must be an array of strings";
            } else {
                std::set<std::string> ids;
                for (const auto& e : v.get_array()) {
                    if (!e.is_string()) {
                        err = "served_projects must be an array of strings";
                        break;
                    }
                    ids.emplace(e.get_string());
                }
                if (err.empty()) served_projects = std::move(ids);
            }
        } else if (key == "strict_scope") {
            if (!v.is_bool())
                err = "strict_scope must be a boolean";
            else
                strict_scope = v.get_bool();
        } else if (key == "iam_projects") {
            err = "iam_projects must be an array of {\"id\": string, \"name\": string, \"enabled\"?: bool}";
            if (v.is_array()) {
                bool ok = true;
                for (const auto& e : v.get_array()) {
                    const auto* o = e.if_object();
                    const auto* id = o ? o->if_contains("id") : nullptr;
                    const auto* name = o ? o->if_contains("name") : nullptr;
                    const auto* en = o ? o->if_contains("enabled") : nullptr;
                    ok = ok && id && id->is_string() && name && name->is_string() && (!en || en->is_bool());
                }
                if (ok) {
                    iam_projects = v.get_array();
                    err.clear();
                }
            }
        } else if (key == "domain_id") {
            err = string_field(domain_id);
        } else if (key == "script" || key == "iam_script") {
            auto* queue = key == "script" ? script : iam_script;
            if (queue == nullptr) {
                err = std::string(key) + " is not allowed here";
            } else if (!v.is_array()) {
                err = std::string(key) + " must be an array of objects";
            } else {
                std::deque<json::object> entries;
                for (const auto& e : v.get_array()) {
                    err = check_script_entry(e, *this);
                    if (!err.empty()) break;
                    entries.push_back(e.get_object());
                }
                if (err.empty()) *queue = std::move(entries);
            }
        } else {
            err = "unknown key \"" + std::string(key) + "\"";
        }
        if (!err.empty()) return err;
    }
    return "";
}

json::object Behaviour::to_json() const {
    json::array missing;
    for (const auto& id : missing_backups) missing.emplace_back(id);
    return json::object{{"latency_ms", latency_ms},
                        {"files", files},
                        {"link_lifetime_s", link_lifetime_s},
                        {"expiry_field", expiry_field},
                        {"body_mode", body_mode},
                        {"custom_body", custom_body},
                        {"bucket", bucket},
                        {"status", status},
                        {"error_code", error_code},
                        {"error_msg", error_msg},
                        {"error_body_mode", error_body_mode},
                        {"retry_after", retry_after},
                        {"missing_backups", std::move(missing)},
                        {"idle_close_ms", idle_close_ms},
                        {"gzip", gzip},
                        {"hold", hold},
                        {"raw_before", raw_before},
                        {"raw_after", raw_after},
                        {"raw_answer", raw_answer},
                        {"auth", auth},
                        // Secrets are reported by presence only.
                        {"static_token_set", !static_token.empty()},
                        {"ak", ak},
                        {"sk_set", !sk.empty()},
                        {"iam_password_set", !iam_password.empty()},
                        {"token_lifetime_s", token_lifetime_s},
                        {"iam_latency_ms", iam_latency_ms},
                        {"iam_fail_status", iam_fail_status},
                        {"served_projects", json::array(served_projects.begin(), served_projects.end())},
                        {"strict_scope", strict_scope},
                        {"iam_projects", iam_projects},
                        {"domain_id", domain_id}};
}

}  // namespace rdsgw::mock
