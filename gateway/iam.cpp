#include "rdsgw/iam.hpp"

#include <boost/json.hpp>

#include "rdsgw/timefmt.hpp"

namespace rdsgw {

namespace json = boost::json;
using sys = std::chrono::system_clock;

IamScope IamScope::configured(const IamConfig& cfg) {
    if (!cfg.project_id.empty()) return {Kind::project_id, cfg.project_id};
    if (!cfg.project.empty()) return {Kind::project_name, cfg.project};
    return {Kind::domain, cfg.domain};
}

std::string IamScope::key() const {
    switch (kind) {
        case Kind::project_name:
            return "name:" + value;
        case Kind::project_id:
            return "id:" + value;
        case Kind::domain:
            break;
    }
    return "domain:" + value;
}

std::string IamScope::describe() const {
    return (kind == Kind::domain ? "account " : "project ") + value;
}

std::string iam_token_request_body(const IamConfig& cfg, std::string_view password, const IamScope& scope) {
    json::object user{
        {"domain", json::object{{"name", cfg.domain}}}, {"name", cfg.user}, {"password", password}};
    json::object sc;
    switch (scope.kind) {
        case IamScope::Kind::project_id:
            sc["project"] = json::object{{"id", scope.value}};
            break;
        case IamScope::Kind::project_name:
            sc["project"] = json::object{{"name", scope.value}};
            break;
        case IamScope::Kind::domain:
            sc["domain"] = json::object{{"name", scope.value}};
            break;
    }
    json::value v = {{"auth",
                      {{"identity", {{"methods", json::array{"password"}}, {"password", {{"user", user}}}}},
                       {"scope", std::move(sc)}}}};
    return json::serialize(v);
}

bool parse_token_answer(unsigned status, std::string_view subject_token, std::string_view body,
                        sys::time_point now, std::chrono::seconds min_validity, IamToken& out,
                        std::string& err) {
    if (status != 201 && status != 200) {
        err = "IAM answered HTTP " + std::to_string(status);
        return false;
    }
    if (subject_token.empty()) {
        err = "IAM answer has no X-Subject-Token";
        return false;
    }
    boost::system::error_code ec;
    auto v = json::parse(body, ec);
    const json::value* exp = nullptr;
    if (!ec && v.is_object()) {
        if (auto* tok = v.get_object().if_contains("token"); tok && tok->is_object())
            exp = tok->get_object().if_contains("expires_at");
    }
    if (!exp || !exp->is_string()) {
        err = "IAM answer has no token.expires_at";
        return false;
    }
    auto t = parse_rds_time(exp->get_string());
    if (!t) {
        err = "IAM answer has a malformed token.expires_at";
        return false;
    }
    const sys::time_point expires(t->utc);
    if (expires - now <= min_validity) {
        err = "IAM issued a token that is already (nearly) expired";
        return false;
    }
    out.value.assign(subject_token);
    out.expires_at = expires;
    return true;
}

bool parse_projects_answer(std::string_view body, std::size_t max, std::vector<IamProject>& out,
                           std::string& err) {
    out.clear();
    boost::system::error_code ec;
    json::parse_options po;
    po.max_depth = 16;
    auto v = json::parse(body, ec, {}, po);
    const json::value* list = nullptr;
    if (!ec && v.is_object()) list = v.get_object().if_contains("projects");
    if (!list || !list->is_array()) {
        err = "IAM's project list has no \"projects\" array";
        return false;
    }
    const auto& arr = list->get_array();
    if (arr.size() > 4 * max) {
        err = "IAM's project list has " + std::to_string(arr.size()) + " entries (at most " +
              std::to_string(4 * max) + " are read)";
        return false;
    }
    for (const auto& e : arr) {
        if (out.size() >= max) break;
        if (!e.is_object()) continue;
        const auto& o = e.get_object();
        const auto* id = o.if_contains("id");
        const auto* name = o.if_contains("name");
        if (!id || !name || !id->is_string() || !name->is_string()) continue;
        IamProject p;
        p.id = std::string(id->get_string());
        p.name = std::string(name->get_string());
        if (const auto* en = o.if_contains("enabled"); en && en->is_bool()) p.enabled = en->get_bool();
        out.push_back(std::move(p));
    }
    return true;
}

}  // namespace rdsgw
