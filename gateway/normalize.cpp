// The response contract: see include/rdsgw/normalize.hpp.
//
// Shape of the work: one SAX parse (Boost.JSON basic_parser) builds the DOM into a monotonic arena while
// recording every object's member count; a walk over the DOM rejects objects that had duplicate keys
// (Boost keeps the last of them silently); then one pass validates each field and writes the canonical
// answer straight into the output string (no second DOM, no copies of unknown values).
#include "rdsgw/normalize.hpp"

#include "rdsgw/text.hpp"
#include "rdsgw/timefmt.hpp"

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>
#include <boost/url/grammar/ci_string.hpp>
#include <boost/url/parse.hpp>
#include <boost/url/url_view.hpp>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <charconv>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace rdsgw {
namespace {

namespace json = boost::json;
namespace urls = boost::urls;
namespace chr = std::chrono;

// ---------------------------------------------------------------------------------------------------------
// Parsing: Boost.JSON's own value-building handler, plus a record of each object's member count as parsed.

struct CountingBuilder {
    static constexpr std::size_t max_object_size = json::object::max_size();
    static constexpr std::size_t max_array_size = json::array::max_size();
    static constexpr std::size_t max_key_size = json::string::max_size();
    static constexpr std::size_t max_string_size = json::string::max_size();

    json::value_stack st;
    std::vector<std::size_t>* counts;  // member counts of objects, in post-order (order of closing)
    bool number_overflow = false;      // a number too large for a double

    CountingBuilder(std::vector<std::size_t>* c, unsigned char* temp, std::size_t temp_size)
        : st(json::storage_ptr(), temp, temp_size), counts(c) {}

    bool on_document_begin(json::error_code&) { return true; }
    bool on_document_end(json::error_code&) { return true; }
    bool on_object_begin(json::error_code&) { return true; }
    bool on_object_end(std::size_t n, json::error_code&) {
        counts->push_back(n);
        st.push_object(n);
        return true;
    }
    bool on_array_begin(json::error_code&) { return true; }
    bool on_array_end(std::size_t n, json::error_code&) {
        st.push_array(n);
        return true;
    }
    bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
        st.push_chars(s);
        return true;
    }
    bool on_key(json::string_view s, std::size_t, json::error_code&) {
        st.push_key(s);
        return true;
    }
    bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
        st.push_chars(s);
        return true;
    }
    bool on_string(json::string_view s, std::size_t, json::error_code&) {
        st.push_string(s);
        return true;
    }
    // Boost.JSON 1.81 reads some decimal numbers 1 ulp off; a passed-through number must keep its value,
    // so doubles are re-read exactly from their text with std::from_chars (found by fuzz_normalize).
    std::string number_text;
    bool on_number_part(json::string_view s, json::error_code&) {
        number_text.append(s.data(), s.size());
        return true;
    }
    bool on_int64(std::int64_t i, json::string_view, json::error_code&) {
        number_text.clear();
        st.push_int64(i);
        return true;
    }
    bool on_uint64(std::uint64_t u, json::string_view, json::error_code&) {
        number_text.clear();
        st.push_uint64(u);
        return true;
    }
    // The text of every double, in document order: a passed-through number is written as it was spelled,
    // and a "size" written with a fraction or an exponent is told from an integer beyond 64 bits.
    std::vector<std::string> double_texts;
    bool on_double(double d, json::string_view s, json::error_code& ec) {
        number_text.append(s.data(), s.size());
        double exact = 0;
        const char* end = number_text.data() + number_text.size();
        auto [ptr, err] = std::from_chars(number_text.data(), end, exact);
        if (err == std::errc() && ptr == end) d = exact;
        double_texts.push_back(number_text);
        number_text.clear();
        // Boost.JSON reads 1e400 as infinity, which it would write back as "Infinity": not JSON.
        if (!std::isfinite(d)) {
            number_overflow = true;
            ec = json::error::exponent_overflow;
            return false;
        }
        st.push_double(d);
        return true;
    }
    bool on_bool(bool b, json::error_code&) {
        st.push_bool(b);
        return true;
    }
    bool on_null(json::error_code&) {
        st.push_null();
        return true;
    }
    bool on_comment_part(json::string_view, json::error_code&) { return true; }
    bool on_comment(json::string_view, json::error_code&) { return true; }
};

// Strict RFC 8259 JSON (no comments, no trailing commas, valid UTF-8 only), nesting depth <= 32, every
// number finite as a double. On failure returns nothing and sets `reason`. The value is built in `sp`'s
// storage; `double_texts` receives the text of each double in document order.
std::optional<json::value> parse_counting(std::string_view body, json::storage_ptr sp,
                                          std::vector<std::size_t>& counts,
                                          std::vector<std::string>& double_texts, const char*& reason) {
    unsigned char temp[2048];
    json::basic_parser<CountingBuilder> p(json::parse_options{}, &counts, temp, sizeof temp);
    p.handler().st.reset(std::move(sp));
    json::error_code ec;
    const std::size_t n = p.write_some(false, body.data(), body.size(), ec);
    if (ec || n != body.size()) {
        reason = p.handler().number_overflow ? "number out of range" : "not valid JSON";
        return std::nullopt;
    }
    double_texts = std::move(p.handler().double_texts);
    return p.handler().st.release();  // moved, so it keeps the arena's storage
}

// ---------------------------------------------------------------------------------------------------------
// JSON paths of errors. Paths are built only when an error is reported.

struct Seg {
    const Seg* parent = nullptr;  // nullptr: this is the root
    std::string_view key;         // member name, when !is_index
    std::size_t index = 0;
    bool is_index = false;
};

// A member name from the body is shown in a path only when it is a plain identifier; anything else is
// written as "<key>" so that no arbitrary text from the body reaches an error message or a log.
bool plain_key(std::string_view k) {
    if (k.empty() || k.size() > 64) return false;
    for (const char c : k)
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-'))
            return false;
    return true;
}

void append_path(std::string& out, const Seg* s) {
    if (s == nullptr) return;  // the root
    append_path(out, s->parent);
    if (s->is_index) {
        out += '[';
        out += std::to_string(s->index);
        out += ']';
    } else {
        if (!out.empty()) out += '.';
        out += plain_key(s->key) ? s->key : std::string_view("<key>");
    }
}

std::string file_path(std::size_t i) {
    std::string p = "files[";
    p += std::to_string(i);
    p += ']';
    return p;
}

std::string file_field_path(std::size_t i, std::string_view field) {
    std::string p = file_path(i);
    p += '.';
    p += field;
    return p;
}

NormalizeError fail(std::string path, const char* reason) {
    return NormalizeError{std::move(path), reason};
}

// ---------------------------------------------------------------------------------------------------------
// Duplicate keys. An object whose DOM size is smaller than the member count seen by the parser had a
// duplicate key. Objects are compared in post-order, the order in which the parser closed them. When no key
// is duplicated anywhere both sequences are equal; when one is, they differ at that object, or (only if the
// dropped earlier value itself held objects) at an object inside the duplicated member. Linear time.
//
// The same walk visits the doubles in document order, the order in which the parser read them, and pairs
// each with its text (when there is no duplicate key; with one, the answer is refused anyway).

// The text of each double in the DOM, as the body spelled it.
using NumberTexts = std::unordered_map<const json::value*, std::string_view>;

struct DuplicateCheck {
    DuplicateCheck(const std::vector<std::size_t>& c, const std::vector<std::string>& t, NumberTexts& n)
        : counts(c), texts(t), numbers(n) {}

    const std::vector<std::size_t>& counts;
    const std::vector<std::string>& texts;
    NumberTexts& numbers;
    std::size_t next = 0, next_text = 0;
    std::string bad_path;

    bool walk(const json::value& v, const Seg* seg) {
        if (v.is_double()) {
            if (next_text < texts.size()) numbers.emplace(&v, texts[next_text]);
            ++next_text;
        } else if (const json::object* o = v.if_object()) {
            for (const auto& kv : *o) {
                const Seg child{seg, kv.key(), 0, false};
                if (!walk(kv.value(), &child)) return false;
            }
            if (next >= counts.size() || counts[next] != o->size()) return report(seg);
            ++next;
        } else if (const json::array* a = v.if_array()) {
            for (std::size_t i = 0; i < a->size(); ++i) {
                const Seg child{seg, {}, i, true};
                if (!walk((*a)[i], &child)) return false;
            }
        }
        return true;
    }
    bool report(const Seg* seg) {
        append_path(bad_path, seg);
        return false;
    }
};

// ---------------------------------------------------------------------------------------------------------
// Output: compact JSON written directly. Strings taken from the DOM are valid UTF-8 (the parser refuses
// anything else); json_escape_append (text.hpp) escapes them as Boost.JSON's serializer would.

class Writer {
  public:
    explicit Writer(std::string& out) : out_(out) {}
    std::string& out() { return out_; }

    void raw(std::string_view s) { out_.append(s); }
    void ch(char c) { out_.push_back(c); }

    void string(std::string_view s) { json_escape_append(out_, s); }

    // `"key":`
    void key(std::string_view k) {
        string(k);
        out_.push_back(':');
    }

    void integer(std::int64_t v) {
        char buf[24];
        const auto r = std::to_chars(buf, buf + sizeof buf, v);
        out_.append(buf, r.ptr);
    }

    // The body's own spelling of each double (see DuplicateCheck); without it doubles are re-spelled.
    void set_numbers(const NumberTexts* n) { numbers_ = n; }
    std::string_view number_text(const json::value& v) const {
        if (numbers_ == nullptr) return {};
        const auto it = numbers_->find(&v);
        return it == numbers_->end() ? std::string_view() : it->second;
    }

    // Any value, for fields passed through unchanged: strings escaped as Boost.JSON's serializer does,
    // numbers as the body spelled them (integers: their value, which is their spelling but for "-0").
    void value(const json::value& v) {
        switch (v.kind()) {
            case json::kind::string:
                return string(v.get_string());
            case json::kind::int64:
                return integer(v.get_int64());
            case json::kind::uint64:
                return unsigned_integer(v.get_uint64());
            case json::kind::double_:
                return real(v);
            case json::kind::bool_:
                return raw(v.get_bool() ? "true" : "false");
            case json::kind::null:
                return raw("null");
            case json::kind::array:
                return array(v.get_array());
            case json::kind::object:
                return object(v.get_object());
        }
    }

    // ',"key":value' for each member of `o` whose key `wanted` says to pass through, in their order.
    template <class Pred>
    void other_members(const json::object& o, Pred wanted) {
        for (const auto& kv : o) {
            if (!wanted(std::string_view(kv.key()))) continue;
            out_.push_back(',');
            key(kv.key());
            value(kv.value());
        }
    }

  private:
    void unsigned_integer(std::uint64_t v) {
        char buf[24];
        const auto r = std::to_chars(buf, buf + sizeof buf, v);
        out_.append(buf, r.ptr);
    }
    void real(const json::value& v) {
        const std::string_view text = number_text(v);
        if (!text.empty()) return raw(text);
        out_.append(json::serialize(v));  // not reached: every double has its text
    }
    void array(const json::array& a) {
        out_.push_back('[');
        for (std::size_t i = 0; i < a.size(); ++i) {
            if (i != 0) out_.push_back(',');
            value(a[i]);
        }
        out_.push_back(']');
    }
    void object(const json::object& o) {
        out_.push_back('{');
        bool first = true;
        for (const auto& kv : o) {
            if (!first) out_.push_back(',');
            first = false;
            key(kv.key());
            value(kv.value());
        }
        out_.push_back('}');
    }

    std::string& out_;
    const NumberTexts* numbers_ = nullptr;
};

// ---------------------------------------------------------------------------------------------------------
// Field rules.

enum class FileField {
    name,
    size,
    download_link,
    link_expired_time,
    link_expired_link,
    database_name,
    other
};

FileField classify(std::string_view k) {
    switch (k.size()) {
        case 4:
            if (k == "name") return FileField::name;
            if (k == "size") return FileField::size;
            break;
        case 13:
            if (k == "download_link") return FileField::download_link;
            if (k == "database_name") return FileField::database_name;
            break;
        case 17:
            if (k == "link_expired_time") return FileField::link_expired_time;
            if (k == "link_expired_link") return FileField::link_expired_link;
            break;
        default:
            break;
    }
    return FileField::other;
}

// "size": a non-negative integer in the int64 range, as a JSON integer literal or a string of ASCII digits.
// A number with a fraction or an exponent is refused whatever its value (2803.0, 0.99999999999999999 and
// 9007199254740993.0 would be rounded by a double); `text` is the body's spelling of a double. Returns a
// reason on failure.
const char* check_size(const json::value& v, std::string_view text, std::int64_t& out) {
    constexpr std::int64_t max = std::numeric_limits<std::int64_t>::max();
    switch (v.kind()) {
        case json::kind::int64:
            if (v.get_int64() < 0) return "negative";
            out = v.get_int64();
            return nullptr;
        case json::kind::uint64:
            if (v.get_uint64() > static_cast<std::uint64_t>(max)) return "out of range";
            out = static_cast<std::int64_t>(v.get_uint64());
            return nullptr;
        case json::kind::double_:
            // An integer literal is a double only beyond the 64-bit ranges.
            if (text.empty() || text.find_first_of(".eE") != std::string_view::npos) return "not an integer";
            return text.front() == '-' ? "negative" : "out of range";
        case json::kind::string: {
            const json::string& s = v.get_string();
            if (s.empty()) return "not an integer";
            for (const char c : s)
                if (c < '0' || c > '9') return "not an integer";
            const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
            if (r.ec == std::errc::result_out_of_range) return "out of range";
            if (r.ec != std::errc() || r.ptr != s.data() + s.size()) return "not an integer";
            return nullptr;
        }
        default:
            return "not an integer";
    }
}

// Bytes of a file name that need a closer look: controls, DEL, '/', '\\' and every non-ASCII byte.
constexpr ByteSet kNameLook([](unsigned char c) {
    return c < 0x20 || c == 0x7f || c == '/' || c == '\\' || c >= 0x80;
});

// Why a non-ASCII character may not be in a file name, or nullptr: C1 controls and the line and paragraph
// separators; Unicode's Bidi_Control characters (they make a name display other than it is); characters
// that look like '/' or '\\'.
const char* check_name_char(char32_t cp) {
    if ((cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029) return "contains a control character";
    if (cp == 0x061C || cp == 0x200E || cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) ||
        (cp >= 0x2066 && cp <= 0x2069))
        return "contains a bidirectional control character";
    switch (cp) {
        case 0x2044:  // FRACTION SLASH
        case 0x2215:  // DIVISION SLASH
        case 0x29F8:  // BIG SOLIDUS
        case 0xFF0F:  // FULLWIDTH SOLIDUS
        case 0x2216:  // SET MINUS
        case 0x29F5:  // REVERSE SOLIDUS OPERATOR
        case 0x29F9:  // BIG REVERSE SOLIDUS
        case 0xFE68:  // SMALL REVERSE SOLIDUS
        case 0xFF3C:  // FULLWIDTH REVERSE SOLIDUS
            return "contains a look-alike of a path separator";
        default:
            return nullptr;
    }
}

}  // namespace

bool detail::name_is_plain(std::string_view s) {
    std::size_t i = 0;
#if defined(__SSE2__)
    // Printable ASCII is 0x20..0x7e: as signed bytes, greater than 0x1f (bytes >= 0x80 are negative) and
    // not 0x7f.
    const __m128i low = _mm_set1_epi8(0x1f), del = _mm_set1_epi8(0x7f), slash = _mm_set1_epi8('/'),
                  back = _mm_set1_epi8('\\');
    for (; i + 16 <= s.size(); i += 16) {
        const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s.data() + i));
        const __m128i bad = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(x, del), _mm_cmpeq_epi8(x, slash)),
                                         _mm_cmpeq_epi8(x, back));
        const __m128i ok = _mm_andnot_si128(bad, _mm_cmpgt_epi8(x, low));
        if (_mm_movemask_epi8(ok) != 0xffff) return false;
    }
#endif
    bool clean = true;
    for (; i < s.size(); ++i) clean &= !kNameLook(static_cast<unsigned char>(s[i]));
    return clean;
}

const char* detail::check_file_name(std::string_view s) {
    if (s.empty()) return "empty";
    if (s == "." || s == "..") return "a dot segment";
    if (name_is_plain(s)) return nullptr;
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c < 0x20 || c == 0x7f) return "contains a control character";
        if (c == '/' || c == '\\') return "contains a path separator";
        if (c < 0x80) {
            ++i;
            continue;
        }
        const char32_t cp = decode_utf8(s, i);
        if (cp == kInvalidUtf8) return "not valid UTF-8";
        if (const char* why = check_name_char(cp)) return why;
    }
    return nullptr;
}

namespace {

using detail::check_file_name;

const char* check_name(const json::value& v) {
    const json::string* s = v.if_string();
    if (s == nullptr) return "not a string";
    return check_file_name(std::string_view(*s));
}

constexpr ByteSet kDnsChar([](unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
});
bool host_name_chars(std::string_view h) {
    return kDnsChar.span(h, 0) == h.size();
}

// `host` equals `suffix` or ends in "." + suffix, ASCII case-insensitively. A leading "." on the suffix is
// ignored; an empty suffix matches nothing.
bool host_matches(std::string_view host, std::string_view suffix) {
    if (!suffix.empty() && suffix.front() == '.') suffix.remove_prefix(1);
    if (suffix.empty() || host.size() < suffix.size()) return false;
    const std::string_view tail = host.substr(host.size() - suffix.size());
    if (!urls::grammar::ci_is_equal(tail, suffix)) return false;
    return host.size() == suffix.size() || host[host.size() - suffix.size() - 1] == '.';
}

// Characters RFC 3986 allows in a path segment (pchar without pct-encoded): unreserved, sub-delims, ':', '@'.
constexpr bool pchar_table_entry(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~' || c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' ||
           c == ')' || c == '*' || c == '+' || c == ',' || c == ';' || c == '=' || c == ':' || c == '@';
}
// For the part of a link after the authority: pchar, '/' and '?' (what needs no further look).
constexpr ByteSet kLinkRest([](unsigned char c) { return pchar_table_entry(c) || c == '/' || c == '?'; });

}  // namespace

// kLinkRest is printable ASCII (0x21..0x7e) but for '"', '#', '%', '<', '>', '[', '\\', ']', '^', '`', '{',
// '|' and '}'; sixteen bytes at a time, that is the printable range, three excluded ranges and four single
// bytes.
std::size_t detail::link_rest_span(std::string_view s, std::size_t i) {
#if defined(__SSE2__)
    const auto in = [](__m128i x, char lo, char hi) {  // lo <= x <= hi, for ASCII lo and hi
        return _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8(static_cast<char>(lo - 1))),
                             _mm_cmplt_epi8(x, _mm_set1_epi8(static_cast<char>(hi + 1))));
    };
    const auto eq = [](__m128i x, char c) { return _mm_cmpeq_epi8(x, _mm_set1_epi8(c)); };
    for (; i + 16 <= s.size(); i += 16) {
        const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(s.data() + i));
        const __m128i bad = _mm_or_si128(_mm_or_si128(_mm_or_si128(in(x, '"', '#'), in(x, '[', '^')),
                                                      _mm_or_si128(in(x, '{', '}'), eq(x, '%'))),
                                         _mm_or_si128(_mm_or_si128(eq(x, '<'), eq(x, '>')), eq(x, '`')));
        const int ok = _mm_movemask_epi8(_mm_andnot_si128(bad, in(x, '!', '~')));
        if (ok != 0xffff) return i + static_cast<std::size_t>(__builtin_ctz(~ok & 0xffff));
    }
#endif
    return kLinkRest.span(s, i);
}

namespace {

// A label that resolvers read as a number (WHATWG URL's "ends in a number"; inet_aton's parts): decimal or
// octal digits, or "0x" and hex digits (also none).
bool numeric_label(std::string_view l) {
    if (l.size() >= 2 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X')) {
        for (const char c : l.substr(2))
            if (!is_hex_digit(c)) return false;
        return true;
    }
    if (l.empty()) return false;
    for (const char c : l)
        if (c < '0' || c > '9') return false;
    return true;
}

}  // namespace

// A port after "host:" (digits only, as both link parsers read it): 1-65535, written without a leading zero.
// An empty port (RFC 3986 allows "host:/", meaning the default) and port 0 are refused: no real link has
// them, and clients disagree on what they mean.
const char* detail::check_link_port(std::string_view p) {
    if (p.empty()) return "empty port";
    if (p.size() > 5 || p.front() == '0') return "port out of range";
    unsigned v = 0;
    for (const char c : p) {
        if (c < '0' || c > '9') return "port out of range";
        v = v * 10 + static_cast<unsigned>(c - '0');
    }
    return v > 65535 ? "port out of range" : nullptr;
}

// Which hosts a caller may be sent to. Boost.URL reads only the dotted-quad form as IPv4; every other form
// a resolver takes for an address (inet_aton: 1 to 4 parts, each decimal, 0x-hex or 0-octal, as in 127.1,
// 0x7f.1, 2130706433, 017700000001) ends in a numeric label, and that is refused whatever the labels before
// it. localhost and *.localhost are loopback by RFC 6761; single labels are resolved through search domains
// to internal hosts; a trailing dot escapes link_host_suffixes' matching and search-domain rules.
const char* detail::check_link_host(std::string_view h) {
    if (h.empty()) return "no host";
    if (!host_name_chars(h)) return "host is not a DNS name";
    if (h.back() == '.') return "host ends in a dot";
    if (h.front() == '.' || h.find("..") != std::string_view::npos) return "host is not a DNS name";
    const std::size_t dot = h.rfind('.');
    const std::string_view last = dot == std::string_view::npos ? h : h.substr(dot + 1);
    if (numeric_label(last)) return "host is an IP address";
    if (urls::grammar::ci_is_equal(last, std::string_view("localhost"))) return "host is localhost";
    if (dot == std::string_view::npos) return "host is a single label";
    return nullptr;
}

namespace {}  // namespace

namespace detail {

// Why our own scanner beside Boost.URL: parse_uri costs about 6,000 instructions per link (a tenth of a
// whole cache miss). Nearly every real link has one plain shape; for it this scan reaches the same verdict
// in a few hundred. Anything else (upper-case scheme, userinfo, IP literals in brackets, odd characters)
// goes to Boost.URL, which stays the reference: fuzz/fuzz_link.cpp checks that the two always agree.
//
// The plain shape: "https://" (or "http://" when allowed), a host of [A-Za-z][A-Za-z0-9._-]*, an optional ":"
// and digits, then path, query and fragment made of pchar, pct-encoded, "/" and (after the path) "?". Returns
// the host when the link has that shape.
std::optional<std::string_view> plain_link_host(std::string_view s, bool allow_http) {
    std::size_t i = 0;
    if (s.starts_with("https://"))
        i = 8;
    else if (allow_http && s.starts_with("http://"))
        i = 7;
    else
        return std::nullopt;
    const std::size_t host_begin = i;
    // A host must start with a letter here: Boost.URL reads a leading dotted quad as an IPv4 host even when
    // more name follows ("10.0.0.1.example.com"); such links go to the reference, which refuses them.
    if (i == s.size() || !((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z'))) return std::nullopt;
    i = kDnsChar.span(s, i);
    const std::string_view host = s.substr(host_begin, i - host_begin);
    if (check_link_host(host) != nullptr) return std::nullopt;  // the reference gives the reason
    if (i < s.size() && s[i] == ':') {
        const std::size_t port_begin = ++i;
        while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
        if (check_link_port(s.substr(port_begin, i - port_begin)) != nullptr) return std::nullopt;
    }
    if (i < s.size() && s[i] != '/' && s[i] != '?' && s[i] != '#') return std::nullopt;
    bool fragment = false;
    while ((i = link_rest_span(s, i)) < s.size()) {
        const char c = s[i];
        if (c == '%') {
            if (i + 2 >= s.size() || !is_hex_digit(s[i + 1]) || !is_hex_digit(s[i + 2])) return std::nullopt;
            i += 3;
        } else if (c == '#' && !fragment) {
            fragment = true;
            ++i;
        } else {
            return std::nullopt;
        }
    }
    return host;
}

namespace {
const char* host_verdict(const urls::url_view& u) {
    const std::string_view host = u.encoded_host();
    if (host.empty()) return "no host";
    switch (u.host_type()) {
        case urls::host_type::name:
            return check_link_host(host);
        case urls::host_type::ipv4:
        case urls::host_type::ipv6:
            return "host is an IP address";
        default:
            return "host is not a DNS name or an IP address";
    }
}
}  // namespace

// The verdict on one download link from Boost.URL and check_link_host (the reference for plain_link_host).
const char* check_link_reference(std::string_view s, bool allow_http) {
    // RFC 3986 leaves no room for white space, control characters, '"', '\\' or non-ASCII bytes in a URI,
    // so a link accepted here needs no JSON escape.
    const auto r = urls::parse_uri(s);
    if (!r) {
        for (const char ch : s) {
            const auto c = static_cast<unsigned char>(ch);
            if (c <= 0x20 || c == 0x7f) return "contains white space or a control character";
        }
        return "not an absolute URL";
    }
    const urls::url_view& u = *r;
    const urls::scheme id = u.scheme_id();
    if (!(id == urls::scheme::https || (allow_http && id == urls::scheme::http)))
        return allow_http ? "scheme is not https or http" : "scheme is not https";
    if (!u.has_authority()) return "no host";
    // Boost.URL 1.81 accepts text right after the authority that does not start a path: it reads
    // "https://10.0.0.1.example.com/x" as host 10.0.0.1 and path ".example.com/x". RFC 3986 wants the path
    // after an authority empty or starting with "/"; refusing the rest keeps the host the one a client uses.
    if (const std::string_view path = u.encoded_path(); !path.empty() && path.front() != '/')
        return "not an absolute URL";
    if (u.has_userinfo()) return "userinfo not allowed";
    if (const char* why = host_verdict(u)) return why;
    return u.has_port() ? check_link_port(u.port()) : nullptr;
}

const char* check_link(std::string_view s, bool allow_http, std::string_view& host) {
    if (auto h = plain_link_host(s, allow_http)) {
        host = *h;
        return nullptr;
    }
    if (const char* why = check_link_reference(s, allow_http)) return why;
    host = urls::parse_uri(s)->encoded_host();
    return nullptr;
}

}  // namespace detail

namespace {

const char* check_link_text(std::string_view s, const NormalizeOptions& opts) {
    std::string_view host;
    if (const char* why = detail::check_link(s, opts.allow_http_links, host)) return why;
    if (!opts.link_host_suffixes.empty()) {
        bool ok = false;
        for (const std::string& suffix : opts.link_host_suffixes)
            if (host_matches(host, suffix)) {
                ok = true;
                break;
            }
        if (!ok) return "host not allowed";
    }
    return nullptr;
}

const char* check_link(const json::value& v, const NormalizeOptions& opts) {
    const json::string* s = v.if_string();
    if (s == nullptr) return "not a string";
    return check_link_text(std::string_view(*s), opts);
}

chr::system_clock::time_point to_time_point(chr::sys_seconds t) {
    constexpr auto max_s = chr::floor<chr::seconds>(chr::system_clock::time_point::max()).time_since_epoch();
    constexpr auto min_s = chr::ceil<chr::seconds>(chr::system_clock::time_point::min()).time_since_epoch();
    if (t.time_since_epoch() >= max_s) return chr::system_clock::time_point::max();
    if (t.time_since_epoch() <= min_s) return chr::system_clock::time_point::min();
    return chr::system_clock::time_point(
        chr::duration_cast<chr::system_clock::duration>(t.time_since_epoch()));
}

// A file's canonical form up to its unknown members (the one place for it; both paths use it): the opening
// brace and the known fields in their fixed order. The link is a valid URI and the time is digits, '-', ':',
// 'T' and '+': neither needs an escape. The name and the database name are escaped by json_escape_append
// (the string grows by the text, not by the worst case); the pieces between them are written into room made
// for them up front (RawOut: no capacity check per piece), then trimmed to what was written.
void write_known_fields(Writer& w, std::string_view name, std::int64_t size, std::string_view link,
                        std::string_view when, const std::string_view* db, const NormalizeOptions& opts) {
    w.raw("{\"name\":");
    w.string(name);
    std::string& out = w.out();
    const std::size_t at = out.size();
    const std::size_t bound = 128 + link.size() + 2 * when.size();
    out.resize(at + bound);
    RawOut o(out.data() + at);
    o.lit(",\"size\":");
    o.advance(std::to_chars(o.end(), o.end() + 20, size).ptr);
    o.lit(",\"download_link\":\"");
    o.raw(link);
    o.lit("\",\"link_expired_time\":\"");
    o.raw(when);
    if (opts.emit_legacy_expiry_field) {
        o.lit("\",\"link_expired_link\":\"");
        o.raw(when);
    }
    o.ch('"');
    RDSGW_INVARIANT(o.end() <= out.data() + at + bound);
    out.resize(static_cast<std::size_t>(o.end() - out.data()));
    if (db != nullptr) {
        w.raw(",\"database_name\":");
        w.string(*db);
    }
}

// Validates files[i] and writes its canonical form. Returns a failure or nothing.
std::optional<NormalizeError> write_file(const json::value& fv, std::size_t i, const NormalizeOptions& opts,
                                         Writer& w, chr::sys_seconds& expiry) {
    const json::object* f = fv.if_object();
    if (f == nullptr) return fail(file_path(i), "not an object");

    const json::value* known[static_cast<int>(FileField::other)] = {};
    for (const auto& kv : *f)
        if (const FileField c = classify(kv.key()); c != FileField::other)
            known[static_cast<int>(c)] = &kv.value();
    const json::value* name = known[static_cast<int>(FileField::name)];
    const json::value* size = known[static_cast<int>(FileField::size)];
    const json::value* link = known[static_cast<int>(FileField::download_link)];
    const json::value* exp_time = known[static_cast<int>(FileField::link_expired_time)];
    const json::value* exp_link = known[static_cast<int>(FileField::link_expired_link)];
    const json::value* db = known[static_cast<int>(FileField::database_name)];

    if (name == nullptr) return fail(file_field_path(i, "name"), "missing");
    if (const char* why = check_name(*name)) return fail(file_field_path(i, "name"), why);

    std::int64_t kb = 0;
    if (size == nullptr) return fail(file_field_path(i, "size"), "missing");
    if (const char* why = check_size(*size, w.number_text(*size), kb))
        return fail(file_field_path(i, "size"), why);

    if (link == nullptr) return fail(file_field_path(i, "download_link"), "missing");
    if (const char* why = check_link(*link, opts)) return fail(file_field_path(i, "download_link"), why);

    // Expiry: "link_expired_time", or its misnamed twin "link_expired_link"; when both, the same instant.
    if (exp_time == nullptr && exp_link == nullptr)
        return fail(file_field_path(i, "link_expired_time"), "missing");
    std::optional<OffsetTime> t;
    if (exp_time != nullptr) {
        const json::string* s = exp_time->if_string();
        if (s == nullptr) return fail(file_field_path(i, "link_expired_time"), "not a string");
        t = parse_rds_time(*s);
        if (!t) return fail(file_field_path(i, "link_expired_time"), "not a valid time");
    }
    if (exp_link != nullptr) {
        const json::string* s = exp_link->if_string();
        if (s == nullptr) return fail(file_field_path(i, "link_expired_link"), "not a string");
        const std::optional<OffsetTime> l = parse_rds_time(*s);
        if (!l) return fail(file_field_path(i, "link_expired_link"), "not a valid time");
        if (t && t->utc != l->utc)
            return fail(file_field_path(i, "link_expired_link"), "differs from link_expired_time");
        if (!t) t = l;
    }

    if (db != nullptr && !db->is_string()) return fail(file_field_path(i, "database_name"), "not a string");

    const std::string when = format_rds_time(*t);
    expiry = t->utc;

    const std::string_view db_text = db != nullptr ? std::string_view(db->get_string()) : std::string_view();
    write_known_fields(w, name->get_string(), kb, link->get_string(), when,
                       db != nullptr ? &db_text : nullptr, opts);
    if (!opts.drop_unknown_fields)
        w.other_members(*f, [](std::string_view k) { return classify(k) == FileField::other; });
    w.ch('}');
    return std::nullopt;
}

// ---------------------------------------------------------------------------------------------------------
// The fast path. Nearly every real answer has one plain shape: an object with "files" (an array of objects
// with only the documented fields, the size an integer) and maybe "bucket", no duplicate or unknown
// members. For it, PlainReader reads the bytes once, validates and writes the canonical answer as it goes,
// without a DOM or a general JSON parser (a parser's every token passes through its resumable state machine;
// this shape needs none of that). Anything else (another shape, an unknown member, a string with an escape
// or a byte outside printable ASCII, a number that is not a plain non-negative integer, any failed rule)
// makes it give up, and the general path decides, so every error message still comes from one place and
// every JSON subtlety is Boost.JSON's. fuzz/fuzz_normalize.cpp checks that where the fast path answers, the
// general path gives the same bytes.

struct PlainSlot {
    std::string_view view;
    bool set = false;
};

class PlainReader {
  public:
    PlainReader(std::string_view in, const NormalizeOptions& o, NormalizedAnswer& a)
        : p_(in.data()), end_(in.data() + in.size()), opts_(o), ans_(a), w_(a.body) {}

    // The whole answer; false: not the plain shape (or a failed rule), the general path decides.
    bool read() {
        if (!eat('{')) return false;
        w_.raw("{\"files\":[");
        bool seen_files = false;
        PlainSlot bucket;
        do {
            std::string_view key;
            if (!string(key) || !eat(':')) return false;
            if (key == "files" && !seen_files) {
                seen_files = true;
                if (!files()) return false;
            } else if (key == "bucket" && !bucket.set) {
                bucket.set = true;
                if (!string(bucket.view)) return false;
            } else {
                return false;
            }
        } while (eat(','));
        if (!eat('}')) return false;
        skip_ws();
        if (p_ != end_ || !seen_files) return false;
        w_.ch(']');
        if (bucket.set) {
            w_.raw(",\"bucket\":");
            w_.string(bucket.view);
        }
        w_.ch('}');
        ans_.file_count = files_;
        ans_.earliest_expiry = files_ == 0 ? chr::system_clock::time_point::max() : to_time_point(earliest_);
        return true;
    }

  private:
    const char* p_;
    const char* const end_;
    const NormalizeOptions& opts_;
    NormalizedAnswer& ans_;
    Writer w_;
    // The file being read: its fields as they came (views into the input), its size (-1: none yet).
    PlainSlot name_, link_, exp_time_, exp_link_, db_;
    std::int64_t size_ = -1;
    chr::sys_seconds earliest_ = chr::sys_seconds::max();
    std::size_t files_ = 0;

    void skip_ws() {  // JSON's white space: space, tab, line feed, carriage return
        while (p_ != end_ && static_cast<unsigned char>(*p_) <= ' ' &&
               (*p_ == ' ' || *p_ == '\t' || *p_ == '\n' || *p_ == '\r'))
            ++p_;
    }
    bool eat(char c) {
        skip_ws();
        if (p_ == end_ || *p_ != c) return false;
        ++p_;
        return true;
    }
    // A string that needs no decoding (json_plain_span, text.hpp): its text, a view into the input.
    bool string(std::string_view& out) {
        if (!eat('"')) return false;
        const char* const begin = p_;
        p_ += json_plain_span(std::string_view(p_, static_cast<std::size_t>(end_ - p_)), 0);
        if (p_ == end_ || *p_ != '"') return false;  // an escape, a control, non-ASCII or no end: declined
        out = std::string_view(begin, static_cast<std::size_t>(p_ - begin));
        ++p_;
        return true;
    }
    // A non-negative integer literal of at most 18 digits (so within int64); JSON allows no leading zero.
    // Whatever follows the digits ('.', 'e', more digits) fails the caller's next structural check.
    bool integer(std::int64_t& out) {
        skip_ws();
        const char* const begin = p_;
        std::int64_t v = 0;
        while (p_ != end_ && *p_ >= '0' && *p_ <= '9' && p_ - begin < 18) v = v * 10 + (*p_++ - '0');
        const std::ptrdiff_t n = p_ - begin;
        if (n == 0 || (n > 1 && *begin == '0')) return false;
        out = v;
        return true;
    }
    bool files() {
        if (!eat('[')) return false;
        if (eat(']')) return true;
        do {
            if (!file()) return false;
        } while (eat(','));
        return eat(']');
    }
    bool file() {
        if (!eat('{')) return false;
        for (PlainSlot* sl : {&name_, &link_, &exp_time_, &exp_link_, &db_}) sl->set = false;
        size_ = -1;
        unsigned seen = 0;  // bits of FileField
        do {
            std::string_view key;
            if (!string(key) || !eat(':')) return false;
            const FileField field = classify(key);
            const unsigned bit = 1u << static_cast<unsigned>(field);
            if (field == FileField::other || (seen & bit) != 0) return false;
            seen |= bit;
            PlainSlot* slot = nullptr;
            switch (field) {
                case FileField::size:
                    if (!integer(size_)) return false;
                    continue;  // to the loop's condition
                case FileField::name:
                    slot = &name_;
                    break;
                case FileField::download_link:
                    slot = &link_;
                    break;
                case FileField::link_expired_time:
                    slot = &exp_time_;
                    break;
                case FileField::link_expired_link:
                    slot = &exp_link_;
                    break;
                default:
                    slot = &db_;
                    break;
            }
            if (!string(slot->view)) return false;
            slot->set = true;
        } while (eat(','));
        return eat('}') && finish_file();
    }
    // Validates the file just read and writes its canonical form.
    bool finish_file() {
        if (!name_.set || check_file_name(name_.view) != nullptr) return false;
        if (size_ < 0) return false;
        if (!link_.set || check_link_text(link_.view, opts_) != nullptr) return false;
        std::optional<OffsetTime> t;
        if (exp_time_.set && !(t = parse_rds_time(exp_time_.view))) return false;
        if (exp_link_.set) {
            const std::optional<OffsetTime> l = parse_rds_time(exp_link_.view);
            if (!l || (t && t->utc != l->utc)) return false;
            if (!t) t = l;
        }
        if (!t) return false;
        // The time as RDS wrote it when that is already the canonical form (nearly always), else rewritten.
        const std::string_view given = exp_time_.set ? exp_time_.view : exp_link_.view;
        char when_text[kRdsTimeMax];
        const std::string_view when =
            is_canonical_rds_time(given, *t)
                ? given
                : std::string_view(when_text,
                                   static_cast<std::size_t>(put_rds_time(when_text, *t) - when_text));
        if (t->utc < earliest_) earliest_ = t->utc;
        if (files_++ != 0) w_.ch(',');
        write_known_fields(w_, name_.view, size_, link_.view, when, db_.set ? &db_.view : nullptr, opts_);
        w_.ch('}');
        return true;
    }
};

}  // namespace

namespace detail {

bool normalize_plain(std::string_view body, const NormalizeOptions& opts, NormalizedAnswer& out) {
    if (body.size() > opts.max_body_bytes) return false;
    out.body.clear();
    // The canonical answer is about the input's size, more with the legacy field (about 60 bytes a file);
    // write_known_fields makes room for a few hundred bytes before it trims to what it wrote.
    out.body.reserve(body.size() + body.size() / 4 + 512);
    return PlainReader(body, opts, out).read();
}

}  // namespace detail

namespace {}  // namespace

std::string NormalizeError::message() const {
    std::string m = "invalid upstream answer";
    if (!path.empty()) {
        m += " at ";
        m += path;
    }
    m += ": ";
    m += reason;
    return m;
}

NormalizeResult normalize_backup_files(std::string_view body, std::chrono::system_clock::time_point now,
                                       const NormalizeOptions& opts) {
    (void)now;  // no policy depends on it yet; see the header
    if (NormalizedAnswer ans; detail::normalize_plain(body, opts, ans)) return ans;
    return detail::normalize_reference(body, opts);
}

NormalizeResult detail::normalize_reference(std::string_view body, const NormalizeOptions& opts) {
    if (body.size() > opts.max_body_bytes) return fail("", "body too large");

    // The DOM lives in an arena sized from the body: one or two allocations for the whole parse.
    json::monotonic_resource arena(body.size() * 2 + 1024);
    std::vector<std::size_t> counts;
    counts.reserve(16);
    std::vector<std::string> double_texts;
    const char* bad_json = "";
    const std::optional<json::value> parsed = parse_counting(body, &arena, counts, double_texts, bad_json);
    if (!parsed) return fail("", bad_json);
    const json::value& doc = *parsed;
    const json::object* top = doc.if_object();
    if (top == nullptr) return fail("", "not a JSON object");

    NumberTexts numbers;
    DuplicateCheck dup(counts, double_texts, numbers);
    if (!dup.walk(doc, nullptr) || dup.next != counts.size())
        return fail(std::move(dup.bad_path), "duplicate key");

    const json::value* files_v = nullptr;
    const json::value* bucket = nullptr;
    for (const auto& kv : *top) {
        if (kv.key() == "files")
            files_v = &kv.value();
        else if (kv.key() == "bucket")
            bucket = &kv.value();
    }
    if (files_v == nullptr) return fail("files", "missing");
    const json::array* files = files_v->if_array();
    if (files == nullptr) return fail("files", "not an array");
    if (bucket != nullptr && !bucket->is_string()) return fail("bucket", "not a string");

    NormalizedAnswer ans;
    ans.body.reserve(body.size() + 64 + (opts.emit_legacy_expiry_field ? 48 * files->size() : 0));
    Writer w(ans.body);
    w.set_numbers(&numbers);
    chr::sys_seconds earliest = chr::sys_seconds::max();
    w.raw("{\"files\":[");
    for (std::size_t i = 0; i < files->size(); ++i) {
        if (i != 0) w.ch(',');
        chr::sys_seconds expiry{};
        if (auto err = write_file((*files)[i], i, opts, w, expiry)) return std::move(*err);
        if (expiry < earliest) earliest = expiry;
    }
    w.ch(']');
    if (bucket != nullptr) {
        w.raw(",\"bucket\":");
        w.string(bucket->get_string());
    }
    if (!opts.drop_unknown_fields)
        w.other_members(*top, [](std::string_view k) { return k != "files" && k != "bucket"; });
    w.ch('}');

    ans.file_count = files->size();
    ans.earliest_expiry = files->empty() ? chr::system_clock::time_point::max() : to_time_point(earliest);
    return ans;
}

bool is_rds_error_body(std::string_view body) {
    unsigned char buf[4096];
    json::monotonic_resource arena(buf, sizeof buf);
    json::error_code ec;
    const json::value v = json::parse(body, ec, &arena);
    if (ec) return false;
    const json::object* o = v.if_object();
    if (o == nullptr) return false;
    const json::value* code = o->if_contains("error_code");
    const json::value* msg = o->if_contains("error_msg");
    return code != nullptr && code->is_string() && msg != nullptr && msg->is_string();
}

std::string redact_link(std::string_view link) {
    const auto r = urls::parse_uri(link);
    if (!r || !r->has_authority()) return "<invalid link>";
    const urls::url_view& u = *r;
    std::string out;
    const std::string_view scheme = u.scheme();
    const std::string_view host_port = u.encoded_host_and_port();
    const std::string_view path = u.encoded_path();
    out.reserve(scheme.size() + 3 + host_port.size() + path.size());
    out.append(scheme).append("://").append(host_port).append(path);
    return out;
}

}  // namespace rdsgw
