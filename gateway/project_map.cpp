#include "rdsgw/project_map.hpp"

namespace rdsgw {

bool is_region_id(std::string_view s) {
    if (s.empty() || s.size() > 64 || !(s[0] >= 'a' && s[0] <= 'z')) return false;
    for (char c : s)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    return s.back() != '-';
}

std::string region_of_project_name(std::string_view name) {
    const auto us = name.find('_');
    std::string_view region = name.substr(0, us);
    if (us != std::string_view::npos && us + 1 == name.size()) return {};  // "cn-north-4_": no sub-project
    return is_region_id(region) ? std::string(region) : std::string();
}

std::string expand_region_template(std::string_view tpl, std::string_view region) {
    static constexpr std::string_view kVar = "{region}";
    std::string out;
    out.reserve(tpl.size() + region.size());
    for (;;) {
        const auto at = tpl.find(kVar);
        out.append(tpl.substr(0, at));
        if (at == std::string_view::npos) break;
        out.append(region);
        tpl.remove_prefix(at + kVar.size());
    }
    return out;
}

ProjectMap::ProjectMap(const std::vector<std::pair<std::string, std::string>>& static_entries) {
    for (const auto& [id, region] : static_entries) entries_[id] = ProjectEntry{region, true, true};
}

ProjectMap ProjectMap::with_discovered(const std::vector<IamProject>& projects, std::size_t max_discovered,
                                       Merge* stats) const {
    Merge m;
    ProjectMap out;
    for (const auto& [id, e] : entries_)
        if (e.from_config) out.entries_.emplace(id, e);
    for (const auto& p : projects) {
        if (auto it = out.entries_.find(p.id); it != out.entries_.end()) {
            if (it->second.from_config) ++m.overridden;
            continue;  // a static entry, or the same id listed twice (the first wins)
        }
        std::string region = region_of_project_name(p.name);
        if (region.empty() || p.id.empty()) {
            ++m.bad_names;
            continue;
        }
        if (out.discovered_ >= max_discovered) {
            ++m.over_limit;
            continue;
        }
        out.entries_.emplace(p.id, ProjectEntry{std::move(region), p.enabled, false});
        ++out.discovered_;
        ++m.added;
    }
    if (stats) *stats = m;
    return out;
}

const ProjectEntry* ProjectMap::find(std::string_view project_id) const {
    auto it = entries_.find(project_id);
    return it == entries_.end() ? nullptr : &it->second;
}

}  // namespace rdsgw
