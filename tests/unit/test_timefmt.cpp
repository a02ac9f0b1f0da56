#define BOOST_TEST_MODULE timefmt
#include <boost/test/unit_test.hpp>

#include "rdsgw/timefmt.hpp"

#include <chrono>
#include <random>
#include <string>
#include <string_view>

using namespace std::chrono;
using namespace std::string_view_literals;
using rdsgw::format_log_time;
using rdsgw::format_rds_time;
using rdsgw::OffsetTime;
using rdsgw::parse_http_date;
using rdsgw::parse_rds_time;

namespace {

constexpr sys_seconds utc(int y, unsigned mo, unsigned d, int h, int mi, int s) {
    return sys_days{year{y} / month{mo} / day{d}} + hours{h} + minutes{mi} + seconds{s};
}

struct Accepted {
    std::string_view input;
    std::string_view canonical;  // format_rds_time of the result
    sys_seconds instant;
    int offset_minutes;
};

const Accepted accepted[] = {
    // The documented form.
    {"2018-08-16T10:15:14+0800", "2018-08-16T10:15:14+0800", utc(2018, 8, 16, 2, 15, 14), 480},
    // The documentation's own example time: leading space, three-digit day.
    {" 2018-08-016T10:15:14+0800", "2018-08-16T10:15:14+0800", utc(2018, 8, 16, 2, 15, 14), 480},
    {"2018-08-16T10:15:14Z", "2018-08-16T10:15:14+0000", utc(2018, 8, 16, 10, 15, 14), 0},
    {"2018-08-16T10:15:14+08:00", "2018-08-16T10:15:14+0800", utc(2018, 8, 16, 2, 15, 14), 480},
    {"2018-08-16T10:15:14-05:30", "2018-08-16T10:15:14-0530", utc(2018, 8, 16, 15, 45, 14), -330},
    {"2018-08-16T10:15:14-0000", "2018-08-16T10:15:14+0000", utc(2018, 8, 16, 10, 15, 14), 0},
    // IAM's form: fractional seconds (truncated), 1 to 9 digits.
    {"2020-01-04T09:05:22.701000Z", "2020-01-04T09:05:22+0000", utc(2020, 1, 4, 9, 5, 22), 0},
    {"2020-01-04T09:05:22.9+0100", "2020-01-04T09:05:22+0100", utc(2020, 1, 4, 8, 5, 22), 60},
    {"2020-01-04T09:05:22.999999999Z", "2020-01-04T09:05:22+0000", utc(2020, 1, 4, 9, 5, 22), 0},
    // Surrounding ASCII white space.
    {"\t 2018-08-16T10:15:14+0800 \r\n", "2018-08-16T10:15:14+0800", utc(2018, 8, 16, 2, 15, 14), 480},
    // Extra leading zeros, in range.
    {"2018-008-0016T010:015:014+0800", "2018-08-16T10:15:14+0800", utc(2018, 8, 16, 2, 15, 14), 480},
    // Calendar edges.
    {"2024-02-29T00:00:00Z", "2024-02-29T00:00:00+0000", utc(2024, 2, 29, 0, 0, 0), 0},
    {"2000-02-29T12:00:00Z", "2000-02-29T12:00:00+0000", utc(2000, 2, 29, 12, 0, 0), 0},
    {"2018-12-31T23:59:59-0100", "2018-12-31T23:59:59-0100", utc(2019, 1, 1, 0, 59, 59), -60},
    {"2018-01-01T00:30:00+0100", "2018-01-01T00:30:00+0100", utc(2017, 12, 31, 23, 30, 0), 60},
    {"1970-01-01T00:00:00Z", "1970-01-01T00:00:00+0000", utc(1970, 1, 1, 0, 0, 0), 0},
    {"9999-12-31T23:59:59Z", "9999-12-31T23:59:59+0000", utc(9999, 12, 31, 23, 59, 59), 0},
    // Offsets up to +-14:00.
    {"2018-08-16T10:15:14+1400", "2018-08-16T10:15:14+1400", utc(2018, 8, 15, 20, 15, 14), 840},
    {"2018-08-16T10:15:14-14:00", "2018-08-16T10:15:14-1400", utc(2018, 8, 17, 0, 15, 14), -840},
    {"2018-08-16T10:15:14+0545", "2018-08-16T10:15:14+0545", utc(2018, 8, 16, 4, 30, 14), 345},
};

const std::string_view rejected[] = {
    "",
    "   ",
    "garbage",
    "2018-08-16",
    "2018-08-16T10:15:14",        // missing zone
    "2018-08-16T10:15",           // missing seconds
    "2018-08-16T10:15:14 +0800",  // space inside
    "2018-08-16 10:15:14+0800",   // space instead of T
    "2018-08-16t10:15:14z",       // lower case
    "2018-08-16T10:15:14+0800Z",
    "2018-08-16T10:15:14+0800x",
    "2018-08-16T10:15:14+0800 x",
    "x2018-08-16T10:15:14+0800",
    // impossible dates and times
    "2018-13-01T00:00:00Z",
    "2018-00-01T00:00:00Z",
    "2018-01-00T00:00:00Z",
    "2018-01-32T00:00:00Z",
    "2018-02-30T00:00:00Z",
    "2023-02-29T00:00:00Z",
    "1900-02-29T00:00:00Z",
    "2018-04-31T00:00:00Z",
    "2018-08-16T24:00:00Z",
    "2018-08-16T23:60:00Z",
    "2018-08-16T23:59:60Z",  // leap seconds are refused too
    "2018-08-16T23:59:61Z",
    // offsets
    "2018-08-16T10:15:14+1500",
    "2018-08-16T10:15:14+1401",
    "2018-08-16T10:15:14-14:01",
    "2018-08-16T10:15:14+0860",
    "2018-08-16T10:15:14+08:60",
    "2018-08-16T10:15:14+08",
    "2018-08-16T10:15:14+8:00",
    "2018-08-16T10:15:14+080",
    "2018-08-16T10:15:14+08:0",
    "2018-08-16T10:15:14+08::00",
    "2018-08-16T10:15:14+-0800",
    "2018-08-16T10:15:14 0800",
    // field widths
    "18-08-16T10:15:14Z",
    "02018-08-16T10:15:14Z",
    "1969-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "2018-8-16T10:15:14Z",
    "2018-08-6T10:15:14Z",
    "2018-08-16T1:15:14Z",
    "2018-08-116T10:15:14Z",  // three significant digits
    "2018-08-100T10:15:14Z",
    "2018-108-16T10:15:14Z",
    "+2018-08-16T10:15:14Z",
    "2018-08-16T10:15:14.Z",            // empty fraction
    "2018-08-16T10:15:14.1234567890Z",  // more than 9 fraction digits
    "2018-08-16T10:15:14,5Z",
    "2018-08-16T10:15:14.5.5Z",
    // not ASCII digits or separators
    "\xef\xbc\x92\xef\xbc\x90\xef\xbc\x91\xef\xbc\x98-08-16T10:15:14Z",  // full-width digits
    "2018\xe2\x80\x90"
    "08-16T10:15:14Z",  // Unicode hyphen
    "2018-08-16T10:15:14\xe2\x88\x92"
    "0800",  // Unicode minus
    "\xc2\xa0"
    "2018-08-16T10:15:14Z",      // no-break space
    "2018-08-16T10:15:14Z\0"sv,  // NUL
    "2018-08-16T10:15:14+0800\v\0"sv,
};

}  // namespace

BOOST_AUTO_TEST_CASE(accepts_the_documented_forms_and_writes_one_canonical_form) {
    for (const Accepted& c : accepted) {
        BOOST_TEST_CONTEXT("input \"" << c.input << "\"") {
            const std::optional<OffsetTime> t = parse_rds_time(c.input);
            BOOST_TEST_REQUIRE(t.has_value());
            BOOST_TEST(t->utc.time_since_epoch().count() == c.instant.time_since_epoch().count());
            BOOST_TEST(t->offset_minutes == c.offset_minutes);
            BOOST_TEST(format_rds_time(*t) == c.canonical);
            // The canonical form parses back to the same instant and offset.
            const std::optional<OffsetTime> again = parse_rds_time(format_rds_time(*t));
            BOOST_TEST_REQUIRE(again.has_value());
            BOOST_TEST(again->utc.time_since_epoch().count() == t->utc.time_since_epoch().count());
            BOOST_TEST(again->offset_minutes == t->offset_minutes);
        }
    }
}

BOOST_AUTO_TEST_CASE(rejects_impossible_and_malformed_times) {
    for (const std::string_view in : rejected) {
        BOOST_TEST_CONTEXT("input (" << in.size() << " bytes) \"" << in << "\"") {
            BOOST_TEST(!parse_rds_time(in).has_value());
        }
    }
}

BOOST_AUTO_TEST_CASE(every_single_character_damage_of_a_canonical_time_is_rejected) {
    // Replacing any one character of a canonical time with a non-digit makes it invalid: nothing is guessed.
    const std::string good = "2018-08-16T10:15:14+0800";
    for (std::size_t i = 0; i < good.size(); ++i) {
        for (const char bad : {'x', '/', ' ', '.', '\0'}) {
            std::string s = good;
            s[i] = bad;
            if (s == good) continue;
            BOOST_TEST_CONTEXT("damaged at " << i << " with code " << int(bad)) {
                BOOST_TEST(!parse_rds_time(s).has_value());
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(format_rds_time_uses_the_times_own_offset) {
    const sys_seconds t = utc(2026, 11, 27, 12, 0, 0);
    BOOST_TEST(format_rds_time(OffsetTime{t, 0}) == "2026-11-27T12:00:00+0000");
    BOOST_TEST(format_rds_time(OffsetTime{t, 480}) == "2026-11-27T20:00:00+0800");
    BOOST_TEST(format_rds_time(OffsetTime{t, -330}) == "2026-11-27T06:30:00-0530");
    BOOST_TEST(format_rds_time(OffsetTime{t, 840}) == "2026-11-28T02:00:00+1400");
    BOOST_TEST(format_rds_time(OffsetTime{utc(1970, 1, 1, 0, 0, 0), -60}) == "1969-12-31T23:00:00-0100");
}

BOOST_AUTO_TEST_CASE(format_log_time_is_rfc3339_utc_with_milliseconds) {
    const sys_time<nanoseconds> base = utc(2026, 11, 27, 12, 0, 0);
    struct Case {
        system_clock::time_point in;
        std::string_view out;
    };
    const Case cases[] = {
        {time_point_cast<system_clock::duration>(base + milliseconds{123}), "2026-11-27T12:00:00.123Z"},
        {time_point_cast<system_clock::duration>(base), "2026-11-27T12:00:00.000Z"},
        {time_point_cast<system_clock::duration>(base + nanoseconds{999'999'999}),
         "2026-11-27T12:00:00.999Z"},
        {time_point_cast<system_clock::duration>(base + milliseconds{7}), "2026-11-27T12:00:00.007Z"},
        {system_clock::time_point{}, "1970-01-01T00:00:00.000Z"},
        {system_clock::time_point{} - milliseconds{1}, "1969-12-31T23:59:59.999Z"},
        {time_point_cast<system_clock::duration>(sys_time<nanoseconds>(utc(2024, 2, 29, 23, 59, 59)) +
                                                 milliseconds{50}),
         "2024-02-29T23:59:59.050Z"},
    };
    for (const Case& c : cases) BOOST_TEST(format_log_time(c.in) == c.out);
    // Each thread keeps the date and time of day it wrote last: going back and forth between seconds (and
    // days) gives every time its own text.
    for (int round = 0; round < 2; ++round)
        for (const Case& c : cases) BOOST_TEST(format_log_time(c.in) == c.out);
    for (auto it = std::rbegin(cases); it != std::rend(cases); ++it)
        BOOST_TEST(format_log_time(it->in) == it->out);
}

BOOST_AUTO_TEST_CASE(http_dates_in_all_three_forms) {
    const sys_seconds now = utc(2024, 6, 15, 12, 0, 0);
    struct Case {
        std::string_view in;
        sys_seconds out;
    };
    const Case accepted_dates[] = {
        {"Sun, 06 Nov 1994 08:49:37 GMT", utc(1994, 11, 6, 8, 49, 37)},   // IMF-fixdate
        {"Sunday, 06-Nov-94 08:49:37 GMT", utc(1994, 11, 6, 8, 49, 37)},  // RFC 850
        {"Sun Nov  6 08:49:37 1994", utc(1994, 11, 6, 8, 49, 37)},        // asctime
        {"Sun Nov 06 08:49:37 1994", utc(1994, 11, 6, 8, 49, 37)},        // asctime, 2DIGIT day
        {"Fri, 01 Jan 3000 00:00:00 GMT", utc(3000, 1, 1, 0, 0, 0)},      // far future: no overflow
        {"Fri, 31 Dec 9999 23:59:59 GMT", utc(9999, 12, 31, 23, 59, 59)},
        {"Sat, 01 Jan 0000 00:00:00 GMT", utc(0, 1, 1, 0, 0, 0)},
        {"Thu, 29 Feb 2024 00:00:00 GMT", utc(2024, 2, 29, 0, 0, 0)},
        {"Tue, 31 Dec 2024 23:59:60 GMT", utc(2025, 1, 1, 0, 0, 0)},  // leap second: the next second
        {"Mon, 15 Jun 2024 12:00:00 GMT", now},                       // the day name is not checked
        // RFC 850 two-digit years around 2024: within 49 years before and 50 after.
        {"Monday, 01-Jan-74 00:00:00 GMT", utc(2074, 1, 1, 0, 0, 0)},
        {"Monday, 01-Jan-75 00:00:00 GMT", utc(1975, 1, 1, 0, 0, 0)},  // 2075 is more than 50 years ahead
        {"Monday, 01-Jan-00 00:00:00 GMT", utc(2000, 1, 1, 0, 0, 0)},
        {"Monday, 01-Jan-24 00:00:00 GMT", utc(2024, 1, 1, 0, 0, 0)},
    };
    for (const Case& c : accepted_dates) {
        BOOST_TEST_CONTEXT("input \"" << c.in << "\"") {
            const auto t = parse_http_date(c.in, now);
            BOOST_TEST_REQUIRE(t.has_value());
            BOOST_TEST(t->time_since_epoch().count() == c.out.time_since_epoch().count());
        }
    }
    // Near the end of a century the window moves forward: "01" in 2099 is 2101.
    const auto late = parse_http_date("Monday, 01-Jan-01 00:00:00 GMT", utc(2099, 1, 1, 0, 0, 0));
    BOOST_TEST_REQUIRE(late.has_value());
    BOOST_TEST(late->time_since_epoch().count() == utc(2101, 1, 1, 0, 0, 0).time_since_epoch().count());

    const std::string_view rejected_dates[] = {
        "",
        "Sun, 06 Nov 1994 08:49:37",
        "Sun, 06 Nov 1994 08:49:37 UTC",
        "Sun, 06 Nov 1994 08:49:37 GMT ",  // trailing space (the caller trims white space)
        " Sun, 06 Nov 1994 08:49:37 GMT",
        "sun, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06 nov 1994 08:49:37 GMT",
        "Sun, 6 Nov 1994 08:49:37 GMT",
        "Sun,  06 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 94 08:49:37 GMT",
        "Sun, 06 Nov 19940 08:49:37 GMT",
        "Sun, 31 Nov 1994 08:49:37 GMT",
        "Sun, 29 Feb 1900 08:49:37 GMT",
        "Sun, 00 Nov 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 1994 08:60:00 GMT",
        "Sun, 06 Nov 1994 08:49:61 GMT",
        "Sun, 06 Nov 1994 8:49:37 GMT",
        "Sunday, 06 Nov 1994 08:49:37 GMT",
        "Sun, 06-Nov-94 08:49:37 GMT",
        "Sunday, 06-Nov-1994 08:49:37 GMT",
        "Sun Nov  6 08:49:37 94",
        "Sun Nov 6 08:49:37 1994",
        "Sun Nov  6 08:49:37 1994 GMT",
        "Xyz, 06 Nov 1994 08:49:37 GMT",
        "1994-11-06T08:49:37Z",
        "Sun, 06 Nov 1994 08:49:37 GMT\0"sv,
    };
    for (const std::string_view in : rejected_dates) {
        BOOST_TEST_CONTEXT("input \"" << in << "\"") {
            BOOST_TEST(!parse_http_date(in, now).has_value());
        }
    }
}

// The fixed-place reading of RDS's own shape ("yyyy-mm-ddThh:mm:ss+hhmm") against the general reading: a
// leading space keeps a time off the fixed-place path, and changes nothing else. Random digits in every
// place (most of them out of range) and the edges of every range, both signs.
BOOST_AUTO_TEST_CASE(the_fixed_place_reading_agrees_with_the_general_one) {
    std::mt19937 rng(20261129);
    std::vector<std::string> inputs = {
        "1970-01-01T00:00:00+0000", "1969-12-31T23:59:59+0000", "2024-02-29T23:59:59-1400",
        "2023-02-29T00:00:00+0800", "2026-12-31T23:59:59+1400", "2026-12-31T23:59:60+0800",
        "2026-00-10T10:00:00+0800", "2026-13-10T10:00:00+0800", "2026-04-31T10:00:00+0800",
        "2026-04-00T10:00:00+0800", "2026-04-10T24:00:00+0800", "2026-04-10T10:60:00+0800",
        "2026-04-10T10:00:00+1401", "2026-04-10T10:00:00+0060", "2026-04-10T10:00:00-0000",
        "9999-12-31T23:59:59-1400"};
    for (int n = 0; n < 20000; ++n) {
        std::string s = "2026-11-30T04:10:45+0800";
        for (const std::size_t k :
             {0u, 1u, 2u, 3u, 5u, 6u, 8u, 9u, 11u, 12u, 14u, 15u, 17u, 18u, 20u, 21u, 22u, 23u})
            if (rng() % 3 == 0) s[k] = static_cast<char>('0' + rng() % 10);
        if (rng() % 2 == 0) s[19] = '-';
        inputs.push_back(s);
    }
    int accepted = 0;
    for (const std::string& s : inputs) {
        const std::optional<OffsetTime> fast = parse_rds_time(s);
        const std::optional<OffsetTime> general = parse_rds_time(" " + s);
        BOOST_TEST_CONTEXT("input \"" << s << "\"") {
            BOOST_TEST_REQUIRE(fast.has_value() == general.has_value());
            if (fast) {
                ++accepted;
                // Passed on as written exactly when it is what the canonical writer gives.
                BOOST_TEST(rdsgw::is_canonical_rds_time(s, *fast) == (format_rds_time(*fast) == s));
                BOOST_TEST(fast->utc.time_since_epoch().count() == general->utc.time_since_epoch().count());
                BOOST_TEST(fast->offset_minutes == general->offset_minutes);
            }
        }
    }
    BOOST_TEST(accepted > 1000);  // both outcomes are well represented
    BOOST_TEST(accepted < static_cast<int>(inputs.size()) - 1000);
}
