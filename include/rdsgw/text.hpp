// Small ASCII text helpers shared by the HTTP-facing stages (header names are ASCII, case-insensitive).
#pragma once
#include <string_view>

namespace rdsgw {

// A set of byte values, built at compile time from a predicate: the byte scans over request targets, links,
// names and JSON strings cost one table lookup per byte.
struct ByteSet {
    bool has[256] = {};
    template <class Pred>
    constexpr explicit ByteSet(Pred pred) {
        for (unsigned c = 0; c < 256; ++c) has[c] = pred(static_cast<unsigned char>(c));
    }
    constexpr bool operator()(unsigned char c) const { return has[c]; }
};

constexpr char ascii_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

constexpr bool ascii_iequals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
    return true;
}

// Strips HTTP optional white space (spaces and tabs) from both ends.
constexpr std::string_view trim_ows(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

}  // namespace rdsgw
