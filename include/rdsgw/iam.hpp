// IAM's protocol, as pure functions: the token request (POST /v3/auth/tokens, password identity, scoped to a
// project by name or id, or to the account), its answer, and the project list (GET /v3/auth/projects).
// The one client that talks to IAM is in iam_client.hpp.
#pragma once
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "rdsgw/config.hpp"
#include "rdsgw/project_map.hpp"

namespace rdsgw {

// What a token is scoped to.
struct IamScope {
    enum class Kind { project_name, project_id, domain };
    Kind kind = Kind::project_name;
    std::string value;

    static IamScope project(std::string id) { return {Kind::project_id, std::move(id)}; }
    // The scope auth.iam names: its project (name or id), else the account (domain).
    static IamScope configured(const IamConfig& cfg);
    std::string key() const;       // "name:cn-north-4" | "id:<project id>" | "domain:<account>"
    std::string describe() const;  // for logs: "project cn-north-4", "project <id>", "account <name>"
};

struct IamToken {
    std::string value;
    std::chrono::system_clock::time_point expires_at;
};

// The body of a password-identity token request for `scope`.
std::string iam_token_request_body(const IamConfig& cfg, std::string_view password, const IamScope& scope);

// Checks a token answer (status 200/201, X-Subject-Token, token.expires_at) and fills `out`; false with
// `err` (never a secret) when it is not usable, also when it expires within `min_validity` of `now`.
bool parse_token_answer(unsigned status, std::string_view subject_token, std::string_view body,
                        std::chrono::system_clock::time_point now, std::chrono::seconds min_validity,
                        IamToken& out, std::string& err);

// Reads {"projects":[{"id":"...","name":"...","enabled":true}, ...]}: at most `max` entries (the answer
// is refused beyond 4 x max, which no real account reaches). Entries without a string id and name are
// skipped; `enabled` defaults to true. False with `err` when the body is not of that shape.
bool parse_projects_answer(std::string_view body, std::size_t max, std::vector<IamProject>& out,
                           std::string& err);

}  // namespace rdsgw
