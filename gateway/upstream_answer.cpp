// See include/rdsgw/upstream_answer.hpp.
#include "rdsgw/upstream_answer.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>

#include "rdsgw/json_sax.hpp"
#include "rdsgw/normalize.hpp"
#include "rdsgw/text.hpp"

namespace rdsgw {
namespace {

namespace json = boost::json;

// A SAX handler that keeps the member names of every open object and stops at the first object that had
// one name twice. Names are sorted when their object closes: O(n log n) whatever the body (a linear search
// per name would let a 1 MiB body of distinct names cost 10^10 comparisons).
struct DuplicateKeyFinder : SaxIgnoring {
    std::vector<std::vector<std::string>> open;  // the names of each open object, innermost last
    std::string key;                             // the name being read (it may come in parts)
    bool found = false;

    bool on_object_begin(json::error_code&) {
        open.emplace_back();
        return true;
    }
    bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
        key.append(s.data(), s.size());
        return true;
    }
    bool on_key(json::string_view s, std::size_t, json::error_code&) {
        key.append(s.data(), s.size());
        open.back().push_back(std::move(key));
        key.clear();
        return true;
    }
    bool on_object_end(std::size_t, json::error_code&) {
        auto& names = open.back();
        std::sort(names.begin(), names.end());
        found = std::adjacent_find(names.begin(), names.end()) != names.end();
        open.pop_back();
        return !found;  // false ends the parse: the answer is known
    }
};

}  // namespace

bool identity_content_coding(std::string_view content_encoding) {
    return for_each_list_element(
        content_encoding, [](std::string_view c) { return c.empty() || ascii_iequals(c, "identity"); });
}

bool plain_transfer_coding(std::string_view transfer_encoding) {
    int codings = 0;
    const bool all_chunked = for_each_list_element(transfer_encoding, [&](std::string_view c) {
        if (c.empty()) return true;
        ++codings;
        return ascii_iequals(c, "chunked");
    });
    return codings == 0 || (all_chunked && codings == 1);
}

bool json_has_duplicate_key(std::string_view json_text) {
    json::basic_parser<DuplicateKeyFinder> p(json::parse_options{});
    json::error_code ec;
    p.write_some(false, json_text.data(), json_text.size(), ec);
    return p.handler().found;
}

bool passable_rds_error(unsigned status, std::string_view body) {
    return status >= 400 && status <= 599 && is_rds_error_body(body) && !json_has_duplicate_key(body);
}

}  // namespace rdsgw
