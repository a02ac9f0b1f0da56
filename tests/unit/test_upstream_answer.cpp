// upstream_answer.hpp: which codings the gateway accepts on an upstream answer, which non-200 answers pass
// through, and the duplicate-key check behind it.
#define BOOST_TEST_MODULE upstream_answer
#include <boost/test/unit_test.hpp>

#include <string>
#include <utility>
#include <vector>

#include "rdsgw/upstream_answer.hpp"

using namespace rdsgw;

BOOST_AUTO_TEST_CASE(content_coding_is_identity_only_when_every_element_is) {
    const std::vector<std::pair<std::string, bool>> cases = {
        {"", true},
        {"identity", true},
        {"IDENTITY", true},  // codings are case-insensitive (RFC 9110 §8.4.1)
        {"Identity", true},
        {" identity\t", true},
        {"identity, IDENTITY", true},
        {", identity,,", true},  // empty list elements do not count
        {"gzip", false},
        {"GZIP", false},
        {"identity, gzip", false},  // also how two field lines arrive (joined with ", ")
        {"gzip, identity", false},
        {"br", false},
        {"identityx", false},
        {"identity;q=1", false},
        {"x-identity", false},
    };
    for (const auto& [value, expected] : cases)
        BOOST_TEST(identity_content_coding(value) == expected, "Content-Encoding: '" << value << "'");
}

BOOST_AUTO_TEST_CASE(transfer_coding_is_plain_when_absent_or_exactly_chunked) {
    const std::vector<std::pair<std::string, bool>> cases = {
        {"", true},
        {"chunked", true},
        {"Chunked", true},
        {" CHUNKED ", true},
        {"gzip, chunked", false},
        {"gzip", false},
        {"chunked, gzip", false},
        {"chunked, chunked", false},
        {"identity", false},
        {"deflate, chunked", false},
        {"chunkedx", false},
    };
    for (const auto& [value, expected] : cases)
        BOOST_TEST(plain_transfer_coding(value) == expected, "Transfer-Encoding: '" << value << "'");
}

BOOST_AUTO_TEST_CASE(duplicate_keys_are_found_anywhere_and_after_unescaping) {
    const std::vector<std::pair<std::string, bool>> cases = {
        {R"({"error_code":"A","error_msg":"m"})", false},
        {R"({"error_code":"A","error_msg":"m","error_code":"B"})", true},
        {R"({"error_code":"A","error_msg":"m","error_\u0063ode":"B"})", true},   // the same name, escaped
        {R"({"error_code":"A","error_msg":"m","x":{"k":1,"k":2}})", true},       // nested
        {R"({"error_code":"A","error_msg":"m","x":[{"k":1},{"k":2}]})", false},  // same name, two objects
        {R"({"a":{"b":1},"b":{"a":1}})", false},
        {R"([{"k":1,"k":1}])", true},
        {R"({"K":1,"k":1})", false},  // names are case-sensitive
        {"not json", false},
        {"", false},
        {R"({"a":1,"a")", false},  // truncated: not JSON (other checks refuse it)
    };
    for (const auto& [text, expected] : cases) BOOST_TEST(json_has_duplicate_key(text) == expected, text);
}

BOOST_AUTO_TEST_CASE(duplicate_key_search_is_fast_on_many_distinct_names) {
    // 100 000 distinct names in one object: sorted once, not compared pairwise (which would take minutes).
    std::string body = "{";
    for (int i = 0; i < 100000; ++i) body += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":1";
    body += "}";
    BOOST_TEST(!json_has_duplicate_key(body));
    body.insert(body.size() - 1, ",\"k77777\":2");
    BOOST_TEST(json_has_duplicate_key(body));
}

BOOST_AUTO_TEST_CASE(only_4xx_and_5xx_rds_errors_pass_through) {
    const std::string rds = R"({"error_code":"DBS.200001","error_msg":"param"})";
    for (unsigned s : {400u, 401u, 404u, 429u, 499u, 500u, 503u, 599u})
        BOOST_TEST(passable_rds_error(s, rds), s);
    for (unsigned s : {0u, 100u, 101u, 102u, 200u, 201u, 204u, 206u, 301u, 302u, 304u, 399u, 600u, 999u})
        BOOST_TEST(!passable_rds_error(s, rds), s);
    BOOST_TEST(!passable_rds_error(400, R"({"error_code":"A","error_msg":"m","error_code":"B"})"));
    BOOST_TEST(!passable_rds_error(400, "<html>Bad Request</html>"));
    BOOST_TEST(!passable_rds_error(500, ""));
    BOOST_TEST(!passable_rds_error(400, R"({"error_code":1,"error_msg":"m"})"));
}
