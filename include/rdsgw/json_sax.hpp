// The callbacks of a Boost.JSON SAX handler (boost::json::basic_parser) that accept and ignore every event.
// A handler derives from SaxIgnoring and defines only the events it uses (a member of the derived handler
// hides the base's of the same name), and its own limits when Boost's defaults do not suit it.
#pragma once
#include <boost/json/array.hpp>
#include <boost/json/error.hpp>
#include <boost/json/object.hpp>
#include <boost/json/string.hpp>
#include <boost/json/string_view.hpp>
#include <cstddef>
#include <cstdint>

namespace rdsgw {

struct SaxIgnoring {
    static constexpr std::size_t max_object_size = boost::json::object::max_size();
    static constexpr std::size_t max_array_size = boost::json::array::max_size();
    static constexpr std::size_t max_key_size = boost::json::string::max_size();
    static constexpr std::size_t max_string_size = boost::json::string::max_size();

    using ec_t = boost::json::error_code;
    using sv_t = boost::json::string_view;
    bool on_document_begin(ec_t&) { return true; }
    bool on_document_end(ec_t&) { return true; }
    bool on_object_begin(ec_t&) { return true; }
    bool on_object_end(std::size_t, ec_t&) { return true; }
    bool on_array_begin(ec_t&) { return true; }
    bool on_array_end(std::size_t, ec_t&) { return true; }
    bool on_key_part(sv_t, std::size_t, ec_t&) { return true; }
    bool on_key(sv_t, std::size_t, ec_t&) { return true; }
    bool on_string_part(sv_t, std::size_t, ec_t&) { return true; }
    bool on_string(sv_t, std::size_t, ec_t&) { return true; }
    bool on_number_part(sv_t, ec_t&) { return true; }
    bool on_int64(std::int64_t, sv_t, ec_t&) { return true; }
    bool on_uint64(std::uint64_t, sv_t, ec_t&) { return true; }
    bool on_double(double, sv_t, ec_t&) { return true; }
    bool on_bool(bool, ec_t&) { return true; }
    bool on_null(ec_t&) { return true; }
    bool on_comment_part(sv_t, ec_t&) { return true; }
    bool on_comment(sv_t, ec_t&) { return true; }
};

}  // namespace rdsgw
