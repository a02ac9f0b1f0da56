// framing.hpp's pure checks: line endings of a header block (RFC 9112 2.2).
#define BOOST_TEST_MODULE framing
#include <boost/test/unit_test.hpp>
#include <random>
#include <string>

#include "rdsgw/framing.hpp"

using rdsgw::has_bare_line_ending;

BOOST_AUTO_TEST_CASE(crlf_only_blocks_pass) {
    BOOST_TEST(!has_bare_line_ending(""));
    BOOST_TEST(!has_bare_line_ending("GET / HTTP/1.1\r\nHost: gw\r\n\r\n"));
    BOOST_TEST(!has_bare_line_ending("GET / HTTP/1.1\r"));  // its LF may still come
    BOOST_TEST(!has_bare_line_ending("no line end yet"));
}

BOOST_AUTO_TEST_CASE(a_bare_lf_or_cr_anywhere_is_found) {
    const char* bad[] = {
        "GET / HTTP/1.1\nHost: gw\n\n",               // all bare LF
        "\n",                                         // at the start
        "GET / HTTP/1.1\r\nHost: gw\n\r\n",           // one bare LF
        "GET / HTTP/1.1\r\nHost: gw\r\n\n",           // the final empty line
        "GET / HTTP/1.1\rHost: gw\r\n\r\n",           // a bare CR
        "GET / HTTP/1.1\r\r\n",                       // CR CR LF
        "GET / HTTP/1.1\r\nX: a\rb\r\nHost: gw\r\n",  // CR inside a value
    };
    for (const char* b : bad) BOOST_TEST(has_bare_line_ending(b), b);
}

BOOST_AUTO_TEST_CASE(scanning_resumes_where_it_left_off) {
    const std::string data = "GET / HTTP/1.1\r\nHost: gw\n";
    BOOST_TEST(has_bare_line_ending(data, 16));
    BOOST_TEST(!has_bare_line_ending(data.substr(0, 16), 0));
    // A CR at the end of the previous piece is checked against the byte that follows it.
    BOOST_TEST(has_bare_line_ending("GET / HTTP/1.1\rX", 14));
    BOOST_TEST(!has_bare_line_ending("GET / HTTP/1.1\r\n", 14));
    // An LF right after `from` whose CR came in the previous piece is fine.
    BOOST_TEST(!has_bare_line_ending("GET / HTTP/1.1\r\n", 15));
}

// Against the definition, byte by byte: every LF from `from` on follows a CR, every CR from `from` on is
// followed by an LF or ends the data. 200,000 random strings of CR, LF and a letter, from any offset.
BOOST_AUTO_TEST_CASE(agrees_with_the_definition_on_random_data) {
    const auto reference = [](std::string_view d, std::size_t from) {
        for (std::size_t i = from; i < d.size(); ++i) {
            if (d[i] == '\n' && (i == 0 || d[i - 1] != '\r')) return true;
            if (d[i] == '\r' && i + 1 < d.size() && d[i + 1] != '\n') return true;
        }
        return false;
    };
    std::mt19937 rng(3);
    const char alphabet[] = {'\r', '\n', 'a'};
    int disagreements = 0;
    for (int n = 0; n < 200000; ++n) {
        std::string d(rng() % 12, 'a');
        for (char& c : d) c = alphabet[rng() % 3];
        const std::size_t from = rng() % (d.size() + 2);
        if (has_bare_line_ending(d, from) != reference(d, from)) ++disagreements;
    }
    BOOST_TEST(disagreements == 0);

    // Long header blocks (the CR count goes eight bytes per step and sums its lanes every 31 words): up to
    // 600 CRLF lines, half of them with one stray CR or LF put anywhere.
    int stray_found = 0;
    for (int n = 0; n < 20000; ++n) {
        std::string d;
        const std::size_t lines = rng() % 600;
        for (std::size_t l = 0; l < lines; ++l) d.append(rng() % 9, 'x').append("\r\n");
        if (rng() % 2 && !d.empty())
            d.insert(d.begin() + static_cast<std::ptrdiff_t>(rng() % d.size()), "\r\n"[rng() % 2]);
        const std::size_t from = rng() % (d.size() + 2);
        const bool expected = reference(d, from);
        if (has_bare_line_ending(d, from) != expected) ++disagreements;
        if (expected) ++stray_found;
    }
    BOOST_TEST(disagreements == 0);
    BOOST_TEST(stray_found > 1000);  // the stray bytes were there to be found
}
