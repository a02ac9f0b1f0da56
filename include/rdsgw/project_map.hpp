// Which region serves a project: the pure part of multi-region routing (no I/O, no clock). Region ids,
// IAM project names ("cn-north-4", "cn-north-4_sub"), base-URL templates, and the project -> region map
// that merges the config's static entries with what discovery found (static entries win).
#pragma once
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rdsgw {

// A region id as Huawei Cloud writes them ("cn-north-4", "ap-southeast-1", "eu-west-101"): 1 to 64 of
// lower-case letters, digits and '-', starting with a letter. Region ids become host names and metric labels,
// so nothing else is accepted.
bool is_region_id(std::string_view s);

// The region of an IAM project name: "cn-north-4" -> "cn-north-4", "cn-north-4_sub1" -> "cn-north-4" (a
// sub-project); "" when the name is not of that form.
std::string region_of_project_name(std::string_view name);

// Replaces every "{region}" in `tpl` with `region` ("https://rds.{region}.myhuaweicloud.com").
std::string expand_region_template(std::string_view tpl, std::string_view region);

// One project as IAM lists it (GET /v3/auth/projects).
struct IamProject {
    std::string id, name;
    bool enabled = true;
};

struct ProjectEntry {
    std::string region;
    bool enabled = true;
    bool from_config = false;  // a static entry (these win over discovery)
};

// project_id -> region. Immutable once built; a refresh builds a new one (with_discovered).
class ProjectMap {
  public:
    ProjectMap() = default;
    // The config's static entries (project id -> region id).
    explicit ProjectMap(const std::vector<std::pair<std::string, std::string>>& static_entries);

    // What a discovery run contributed.
    struct Merge {
        std::size_t added = 0;       // discovered entries kept
        std::size_t overridden = 0;  // discovered projects a static entry overrides
        std::size_t bad_names = 0;   // names that are not a region id (or <region>_<sub>): not served
        std::size_t over_limit = 0;  // past max_discovered: not served
    };
    // A map with these static entries and `projects` as the discovered ones (replacing the previous
    // discovery's). At most `max_discovered` discovered entries are kept.
    ProjectMap with_discovered(const std::vector<IamProject>& projects, std::size_t max_discovered,
                               Merge* stats = nullptr) const;

    const ProjectEntry* find(std::string_view project_id) const;
    std::size_t size() const { return entries_.size(); }
    std::size_t discovered() const { return discovered_; }
    const std::map<std::string, ProjectEntry, std::less<>>& entries() const { return entries_; }

  private:
    std::map<std::string, ProjectEntry, std::less<>> entries_;
    std::size_t discovered_ = 0;
};

}  // namespace rdsgw
