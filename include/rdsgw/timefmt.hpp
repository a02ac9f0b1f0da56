// Time parsing and formatting for RDS and IAM times. Pure functions.
#pragma once
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace rdsgw {

// An instant plus the UTC offset it was written with.
struct OffsetTime {
    std::chrono::sys_seconds utc;  // the instant (fractional seconds are truncated)
    int offset_minutes = 0;        // e.g. +480 for "+0800", 0 for "Z"
};

// Parses an RDS/IAM time deliberately. Accepts "yyyy-mm-ddThh:mm:ss" followed by "Z", "±hhmm" or "±hh:mm",
// with optional fractional seconds (".701000") before the zone, and surrounding ASCII white space.
// A numeric field written with extra leading zeros ("016") is accepted only when its value is in range.
// Rejects impossible dates/times (month 13, Feb 30, hour 24, minute 60, second 61...), offsets beyond
// ±14:00, a missing zone, and anything else. Never guesses.
// Precisely: the year is exactly four digits, 1970..9999; month, day, hour, minute and second are at least
// two digits (one digit alone is refused), any beyond the last two being '0'; seconds 60 (leap) is refused;
// the fraction has 1 to 9 digits and is truncated; 'T' and 'Z' are upper case only; the offset's hours and
// minutes are exactly two digits each, minutes < 60, at most 14:00 ("-0000" reads as "+0000"); white space
// means ' ', \t, \n, \r, \f, \v at either end only.
std::optional<OffsetTime> parse_rds_time(std::string_view text);

// Always "yyyy-mm-ddThh:mm:ss±hhmm" in the time's own offset ("+0000" for UTC). Meant for values from
// parse_rds_time; an offset beyond ±99:59 is written clamped.
std::string format_rds_time(const OffsetTime& t);
// The same into raw storage of at least kRdsTimeMax bytes; returns the end.
inline constexpr std::size_t kRdsTimeMax = 48;
char* put_rds_time(char* out, const OffsetTime& t);
// True when `text`, which parse_rds_time read as `t`, is already what format_rds_time writes for `t` (RDS's
// own shape "yyyy-mm-ddThh:mm:ss+hhmm", "-0000" aside): it can be passed on as it is.
bool is_canonical_rds_time(std::string_view text, const OffsetTime& t);

// An HTTP-date (RFC 9110 5.6.7): IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", and the two obsolete forms
// a recipient must accept, RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT" (the two-digit year is read as the
// year within 49 years before / 50 after `now`'s year, so one more than 50 years ahead is the century
// before) and asctime "Sun Nov  6 08:49:37 1994". Exact case and single spaces, as the grammar says; the
// day name must be one of the seven but is not checked against the date. Years 0000..9999 (the result is in
// seconds: no overflow); second 60 (a leap second) reads as the next second; impossible dates are refused.
std::optional<std::chrono::sys_seconds> parse_http_date(std::string_view text, std::chrono::sys_seconds now);

// RFC 3339 UTC with milliseconds, for logs: "2026-11-27T12:00:00.123Z".
std::string format_log_time(std::chrono::system_clock::time_point t);
// The same into raw storage (at most 32 bytes for any time a system_clock holds); returns the end.
char* put_log_time(char* out, std::chrono::system_clock::time_point t);

}  // namespace rdsgw
