// Time parsing and formatting for RDS and IAM times. See include/rdsgw/timefmt.hpp.
#include "rdsgw/timefmt.hpp"

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace rdsgw {
namespace {

namespace chr = std::chrono;

constexpr bool is_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}
constexpr bool is_space(char c) noexcept {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

// A cursor over the trimmed text. Every reader returns false (and leaves the cursor anywhere) on mismatch.
struct Cursor {
    std::string_view s;
    std::size_t i = 0;

    bool done() const noexcept { return i == s.size(); }
    bool eat(char c) noexcept {
        if (i < s.size() && s[i] == c) {
            ++i;
            return true;
        }
        return false;
    }
    // Exactly `n` digits.
    bool fixed(std::size_t n, int& out) noexcept {
        if (s.size() - i < n) return false;
        int v = 0;
        for (std::size_t k = 0; k < n; ++k) {
            const char c = s[i + k];
            if (!is_digit(c)) return false;
            v = v * 10 + (c - '0');
        }
        i += n;
        out = v;
        return true;
    }
    bool eat(std::string_view word) noexcept {
        if (s.substr(i, word.size()) != word) return false;
        i += word.size();
        return true;
    }
    // One of `words` (all of the same length): its index, or -1.
    template <std::size_t N>
    int one_of(const std::string_view (&words)[N]) noexcept {
        for (std::size_t k = 0; k < N; ++k)
            if (eat(words[k])) return static_cast<int>(k);
        return -1;
    }
    // A two-digit field that may carry extra leading zeros ("016" is 16), whose value must lie in [lo, hi]
    // (hi < 100). One digit alone ("8") is refused: the format is zero-padded.
    bool field(int lo, int hi, int& out) noexcept {
        const std::size_t start = i;
        while (i < s.size() && is_digit(s[i])) ++i;
        const std::size_t n = i - start;
        if (n < 2) return false;
        for (std::size_t k = start; k + 2 < i; ++k)
            if (s[k] != '0') return false;  // more than two significant digits: out of range
        const int v = (s[i - 2] - '0') * 10 + (s[i - 1] - '0');
        if (v < lo || v > hi) return false;
        out = v;
        return true;
    }
};

// Writes `v` (0..99) as two digits.
inline char* put2(char* p, unsigned v) noexcept {
    p[0] = static_cast<char>('0' + v / 10);
    p[1] = static_cast<char>('0' + v % 10);
    return p + 2;
}

// Writes "yyyy-mm-ddThh:mm:ss" of a day and time of day; the year is written with at least four digits.
char* put_date_time(char* p, chr::sys_days day, chr::seconds tod) noexcept {
    const chr::year_month_day ymd{day};
    int y = static_cast<int>(ymd.year());
    if (y < 0) {
        *p++ = '-';
        y = -y;
    }
    if (y >= 10000) {
        char tmp[8];
        int n = 0;
        while (y > 0) {
            tmp[n++] = static_cast<char>('0' + y % 10);
            y /= 10;
        }
        while (n > 0) *p++ = tmp[--n];
    } else {
        p = put2(p, static_cast<unsigned>(y / 100));
        p = put2(p, static_cast<unsigned>(y % 100));
    }
    *p++ = '-';
    p = put2(p, static_cast<unsigned>(ymd.month()));
    *p++ = '-';
    p = put2(p, static_cast<unsigned>(ymd.day()));
    *p++ = 'T';
    const auto secs = static_cast<unsigned>(tod.count());
    p = put2(p, secs / 3600);
    *p++ = ':';
    p = put2(p, secs / 60 % 60);
    *p++ = ':';
    p = put2(p, secs % 60);
    return p;
}

constexpr std::string_view kDayNames[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
constexpr std::string_view kLongDayNames[] = {"Monday", "Tuesday",  "Wednesday", "Thursday",
                                              "Friday", "Saturday", "Sunday"};
constexpr std::string_view kMonthNames[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// "hh:mm:ss" of an HTTP-date (second 60 allowed: a leap second).
bool http_time(Cursor& c, chr::seconds& out) noexcept {
    int h = 0, m = 0, sec = 0;
    if (!c.fixed(2, h) || !c.eat(':') || !c.fixed(2, m) || !c.eat(':') || !c.fixed(2, sec)) return false;
    if (h > 23 || m > 59 || sec > 60) return false;
    out = chr::hours{h} + chr::minutes{m} + chr::seconds{sec};
    return true;
}

std::optional<chr::sys_seconds> civil_seconds(int y, int month_index, int d, chr::seconds tod) {
    const chr::year_month_day ymd{chr::year{y}, chr::month{static_cast<unsigned>(month_index + 1)},
                                  chr::day{static_cast<unsigned>(d)}};
    if (!ymd.ok()) return std::nullopt;
    return chr::sys_days{ymd} + tod;
}

// The long day name is tried first: "Sun" is a prefix of "Sunday".
bool day_name(Cursor& c, bool& long_form) noexcept {
    long_form = c.one_of(kLongDayNames) >= 0;
    return long_form || c.one_of(kDayNames) >= 0;
}

}  // namespace

std::optional<chr::sys_seconds> parse_http_date(std::string_view text, chr::sys_seconds now) {
    Cursor c{text};
    bool long_form = false;
    int y = 0, mon = 0, d = 0;
    chr::seconds tod{};
    if (!day_name(c, long_form)) return std::nullopt;
    if (long_form) {  // rfc850-date: "Sunday, 06-Nov-94 08:49:37 GMT"
        if (!c.eat(", ") || !c.fixed(2, d) || !c.eat('-') || (mon = c.one_of(kMonthNames)) < 0 ||
            !c.eat('-') || !c.fixed(2, y) || !c.eat(' ') || !http_time(c, tod) || !c.eat(" GMT"))
            return std::nullopt;
        const int this_year = static_cast<int>(chr::year_month_day{chr::floor<chr::days>(now)}.year());
        y += this_year - this_year % 100;
        if (y > this_year + 50) y -= 100;
        if (y < this_year - 49) y += 100;
    } else if (c.eat(',')) {  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
        if (!c.eat(' ') || !c.fixed(2, d) || !c.eat(' ') || (mon = c.one_of(kMonthNames)) < 0 ||
            !c.eat(' ') || !c.fixed(4, y) || !c.eat(' ') || !http_time(c, tod) || !c.eat(" GMT"))
            return std::nullopt;
    } else {  // asctime-date: "Sun Nov  6 08:49:37 1994"
        if (!c.eat(' ') || (mon = c.one_of(kMonthNames)) < 0 || !c.eat(' ')) return std::nullopt;
        if (!(c.eat(' ') ? c.fixed(1, d) : c.fixed(2, d))) return std::nullopt;
        if (!c.eat(' ') || !http_time(c, tod) || !c.eat(' ') || !c.fixed(4, y)) return std::nullopt;
    }
    if (!c.done()) return std::nullopt;
    return civil_seconds(y, mon, d, tod);
}

namespace {
std::optional<OffsetTime> offset_time(int year, int month, int day, int hour, int minute, int second,
                                      int offset) {
    const chr::year_month_day ymd{chr::year{year}, chr::month{static_cast<unsigned>(month)},
                                  chr::day{static_cast<unsigned>(day)}};
    if (!ymd.ok()) return std::nullopt;  // Feb 30, Feb 29 of a common year, Apr 31...
    OffsetTime t;
    t.utc = chr::sys_days{ymd} + chr::hours{hour} + chr::minutes{minute} + chr::seconds{second} -
            chr::minutes{offset};
    t.offset_minutes = offset;
    return t;
}
}  // namespace

namespace {
// The separators of "yyyy-mm-ddThh:mm:ss+hhmm" in their places (the digits are the caller's to check).
bool rds_shape(std::string_view text) {
    return text.size() == 24 && text[4] == '-' && text[7] == '-' && text[10] == 'T' && text[13] == ':' &&
           text[16] == ':' && (text[19] == '+' || text[19] == '-');
}
}  // namespace

// Given that parse_rds_time accepted `text`, its separators in these places leave room for digits only
// (four, then exactly two per field, no fraction, no colon in the offset), so the text reads back as written
// but for a zero offset spelled "-0000", which is written "+0000".
bool is_canonical_rds_time(std::string_view text, const OffsetTime& t) {
    return rds_shape(text) && (text[19] == '+' || t.offset_minutes != 0);
}

std::optional<OffsetTime> parse_rds_time(std::string_view text) {
    // The shape RDS sends, "2020-01-01T08:00:00+0800", read at fixed places (about a third of the general
    // reading's cost; two per cache miss). Only a success is taken from here: anything else, valid or not,
    // goes to the general reading below, which gives every verdict.
    if (rds_shape(text)) {
        static constexpr std::uint8_t kDigits[] = {0,  1,  2,  3,  5,  6,  8,  9,  11,
                                                   12, 14, 15, 17, 18, 20, 21, 22, 23};
        bool digits = true;
        for (const std::uint8_t k : kDigits) digits &= is_digit(text[k]);
        const auto two = [&](std::size_t k) { return (text[k] - '0') * 10 + (text[k + 1] - '0'); };
        if (digits) {
            const int year = two(0) * 100 + two(2), month = two(5), day = two(8), hour = two(11),
                      minute = two(14), second = two(17), oh = two(20), om = two(22);
            if (year >= 1970 && month >= 1 && month <= 12 && day >= 1 && day <= 31 && hour <= 23 &&
                minute <= 59 && second <= 59 && om < 60 && oh * 60 + om <= 14 * 60)
                if (auto t = offset_time(year, month, day, hour, minute, second,
                                         (text[19] == '+' ? 1 : -1) * (oh * 60 + om)))
                    return t;
        }
    }

    while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
    while (!text.empty() && is_space(text.back())) text.remove_suffix(1);

    Cursor c{text};
    int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
    if (!c.fixed(4, year) || year < 1970) return std::nullopt;  // four digits, so also <= 9999
    if (!c.eat('-') || !c.field(1, 12, month)) return std::nullopt;
    if (!c.eat('-') || !c.field(1, 31, day)) return std::nullopt;
    if (!c.eat('T') || !c.field(0, 23, hour)) return std::nullopt;
    if (!c.eat(':') || !c.field(0, 59, minute)) return std::nullopt;
    if (!c.eat(':') || !c.field(0, 59, second)) return std::nullopt;  // no leap seconds
    if (c.eat('.')) {
        // Fractional seconds: 1 to 9 digits, truncated.
        const std::size_t start = c.i;
        while (c.i < c.s.size() && is_digit(c.s[c.i])) ++c.i;
        const std::size_t n = c.i - start;
        if (n < 1 || n > 9) return std::nullopt;
    }

    int offset = 0;
    if (!c.eat('Z')) {
        int sign = 0;
        if (c.eat('+'))
            sign = 1;
        else if (c.eat('-'))
            sign = -1;
        else
            return std::nullopt;  // no zone
        int oh = 0, om = 0;
        if (!c.fixed(2, oh)) return std::nullopt;
        c.eat(':');  // "+hh:mm" or "+hhmm"
        if (!c.fixed(2, om)) return std::nullopt;
        if (om >= 60 || oh * 60 + om > 14 * 60) return std::nullopt;
        offset = sign * (oh * 60 + om);
    }
    if (!c.done()) return std::nullopt;
    return offset_time(year, month, day, hour, minute, second, offset);
}

char* put_rds_time(char* out, const OffsetTime& t) {
    const chr::sys_seconds local = t.utc + chr::minutes{t.offset_minutes};
    const chr::sys_days day = chr::floor<chr::days>(local);
    char* p = put_date_time(out, day, local - day);
    const long long off = t.offset_minutes;
    *p++ = off < 0 ? '-' : '+';
    const unsigned long long a = static_cast<unsigned long long>(off < 0 ? -off : off);
    // Offsets from parse_rds_time are within +-14:00; clamp anything larger to keep to four digits.
    const unsigned long long hh = a / 60 > 99 ? 99 : a / 60;
    p = put2(p, static_cast<unsigned>(hh));
    p = put2(p, static_cast<unsigned>(a % 60));
    return p;
}

std::string format_rds_time(const OffsetTime& t) {
    char buf[kRdsTimeMax];
    return std::string(buf, put_rds_time(buf, t));
}

std::string format_log_time(std::chrono::system_clock::time_point t) {
    char buf[48];
    return std::string(buf, put_log_time(buf, t));
}

char* put_log_time(char* out, std::chrono::system_clock::time_point t) {
    const auto ms = chr::floor<chr::milliseconds>(t);
    const auto sec = chr::floor<chr::seconds>(ms);
    // Every access-log line asks for the time; within one second only the milliseconds change, so each
    // thread keeps the date and time of day it wrote last.
    struct Memo {
        chr::sys_seconds sec = chr::sys_seconds::min();
        char text[40]{};
        std::size_t size = 0;
    };
    thread_local Memo memo;
    if (memo.sec != sec) {
        const chr::sys_days day = chr::floor<chr::days>(sec);
        memo.size = static_cast<std::size_t>(put_date_time(memo.text, day, sec - day) - memo.text);
        memo.sec = sec;
    }
    std::memcpy(out, memo.text, memo.size);
    char* p = out + memo.size;
    const auto milli = static_cast<unsigned>((ms - sec).count());
    *p++ = '.';
    *p++ = static_cast<char>('0' + milli / 100);
    p = put2(p, milli % 100);
    *p++ = 'Z';
    return p;
}

}  // namespace rdsgw
