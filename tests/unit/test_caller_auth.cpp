#define BOOST_TEST_MODULE caller_auth
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "rdsgw/caller_auth.hpp"
#include "rdsgw/signer.hpp"

using namespace rdsgw;
using namespace std::chrono;

namespace {

constexpr const char* kProject = "97b026aa9cc4417888c14c84a1ad9860";
constexpr const char* kTarget =
    "/v3/97b026aa9cc4417888c14c84a1ad9860/backup-files?backup_id=c0c9f155c7b7423a9d30f0175998b63bbr01";
constexpr const char* kHost = "gw.internal:8443";
const std::string kRestoreKey = "restore-key-0123456789";
const std::string kAuditKey = "audit-key-abcdef";
const std::string kAuditKey2 = "audit-key-rotated";
const std::string kRestoreAk = "RESTOREAK0000000001";
const std::string kRestoreSk = "restore-secret-key-000000000000000000";
const std::string kAuditAk = "AUDITAK000000000002";
const std::string kAuditSk = "audit-secret-key-11111111111111111111";

const system_clock::time_point kNow = sys_days{2026y / November / 27} + 12h;

CallerRegistry make_registry() {
    CallerDef restore;
    restore.name = "restore-svc";
    restore.api_key_sha256 = {sha256_hex(kRestoreKey)};
    restore.access_key = kRestoreAk;
    restore.secret_key = kRestoreSk;
    restore.cert_subjects = {"CN=restore-svc,O=Example"};
    restore.projects = {"*"};
    restore.rate_per_s = 2;
    restore.burst = 3;
    CallerDef audit;
    audit.name = "audit-svc";
    audit.api_key_sha256 = {sha256_hex(kAuditKey), sha256_hex(kAuditKey2)};
    audit.access_key = kAuditAk;
    audit.secret_key = kAuditSk;
    audit.projects = {kProject, "0123456789abcdef0123456789abcdef"};
    audit.rate_per_s = 1;
    audit.burst = 0;  // capacity max(1, rate) = 1
    return CallerRegistry({restore, audit});
}

using Headers = std::vector<std::pair<std::string_view, std::string_view>>;

// A request as received, owning its strings.
struct Req {
    std::string method = "GET";
    std::string target = kTarget;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string tls_subject;
    system_clock::time_point now = kNow;

    Headers views;  // rebuilt by input()
    AuthInput input() {
        views.clear();
        for (const auto& [n, v] : headers) views.emplace_back(n, v);
        AuthInput in;
        in.method = method;
        in.target = target;
        in.headers = views;
        in.tls_subject = tls_subject;
        in.now = now;
        return in;
    }
};

// A request signed by a client the way the SDKs do it.
Req signed_request(const std::string& ak, const std::string& sk, system_clock::time_point date = kNow,
                   std::string target = kTarget) {
    Req r;
    r.target = target;
    r.headers = {{"Host", kHost}, {"X-Sdk-Date", sdk_date(date)}, {"X-Project-Id", kProject}};
    SignableRequest s;
    s.method = r.method;
    const auto q = target.find('?');
    s.path = target.substr(0, q);
    s.query = q == std::string::npos ? "" : target.substr(q + 1);
    for (const auto& h : r.headers) s.headers.push_back(h);
    r.headers.emplace_back("Authorization", authorization_header(s, ak, sk));
    r.headers.emplace_back("Accept", "application/json");  // not signed
    return r;
}

void set_header(Req& r, const std::string& name, const std::string& value) {
    for (auto& h : r.headers)
        if (h.first == name) h.second = value;
}

void check_fails(const AuthOutcome& o, const std::string& reason) {
    BOOST_TEST(o.caller == nullptr);
    BOOST_TEST(o.status == 401u);
    BOOST_TEST(o.reason == reason);
    BOOST_TEST(o.method.empty());
}

}  // namespace

BOOST_AUTO_TEST_SUITE(api_keys)

BOOST_AUTO_TEST_CASE(missing_credentials) {
    const auto reg = make_registry();
    Req r;
    r.headers = {{"Host", kHost}, {"Accept", "*/*"}};
    check_fails(reg.authenticate(r.input()), "missing credentials");
    AuthInput no_headers;
    no_headers.method = "GET";
    no_headers.target = kTarget;
    check_fails(reg.authenticate(no_headers), "missing credentials");
}

BOOST_AUTO_TEST_CASE(x_api_key_and_bearer) {
    const auto reg = make_registry();
    Req r;
    r.headers = {{"X-Api-Key", kRestoreKey}};
    auto o = reg.authenticate(r.input());
    BOOST_TEST_REQUIRE(o.caller != nullptr);
    BOOST_TEST(o.caller->name() == "restore-svc");
    BOOST_TEST(o.status == 0u);
    BOOST_TEST(o.method == "api_key");

    r.headers = {{"authorization", "Bearer " + kAuditKey}};
    o = reg.authenticate(r.input());
    BOOST_TEST_REQUIRE(o.caller != nullptr);
    BOOST_TEST(o.caller->name() == "audit-svc");
    BOOST_TEST(o.method == "api_key");

    // Second accepted key of the same caller (rotation), header names in any case, scheme in any case.
    r.headers = {{"x-api-key", kAuditKey2}};
    o = reg.authenticate(r.input());
    BOOST_TEST_REQUIRE(o.caller != nullptr);
    BOOST_TEST(o.caller->name() == "audit-svc");
    r.headers = {{"AUTHORIZATION", "bearer  " + kRestoreKey}};
    o = reg.authenticate(r.input());
    BOOST_TEST_REQUIRE(o.caller != nullptr);
    BOOST_TEST(o.caller->name() == "restore-svc");
}

BOOST_AUTO_TEST_CASE(wrong_key) {
    const auto reg = make_registry();
    Req r;
    r.headers = {{"X-Api-Key", kRestoreKey + "x"}};
    auto o = reg.authenticate(r.input());
    check_fails(o, "invalid credentials");
    BOOST_TEST(o.reason.find(kRestoreKey) == std::string::npos);
    r.headers = {{"Authorization", "Bearer " + sha256_hex(kRestoreKey)}};  // the hash is not the key
    check_fails(reg.authenticate(r.input()), "invalid credentials");
}

// Known and unknown API keys take the same work: one hash, compared with every accepted hash.
BOOST_AUTO_TEST_CASE(known_and_unknown_keys_cost_one_hash) {
    const auto reg = make_registry();
    for (const std::string& key : {kRestoreKey, kAuditKey2, std::string("no-such-key-0123456789")}) {
        Req r;
        r.headers = {{"X-Api-Key", key}};
        const std::uint64_t before = detail::auth_work().api_key_hashes;
        const auto o = reg.authenticate(r.input());
        BOOST_TEST((o.caller != nullptr) == (key != "no-such-key-0123456789"));
        BOOST_TEST(detail::auth_work().api_key_hashes - before == 1u);
    }
}

// A key this thread verified before against the same registry is found again without hashing; an unknown
// key is hashed every time (nothing is remembered of a failure); another registry (a reload) starts afresh
// and no longer knows a key it does not list.
BOOST_AUTO_TEST_CASE(verified_keys_are_remembered_per_thread_and_registry) {
    const auto reg = make_registry();
    Req known, unknown;
    known.headers = {{"X-Api-Key", kRestoreKey}};
    unknown.headers = {{"X-Api-Key", "no-such-key-0123456789"}};
    BOOST_TEST(reg.authenticate(known.input()).caller != nullptr);
    auto before = detail::auth_work().api_key_hashes;
    for (int i = 0; i < 3; ++i) {
        const auto o = reg.authenticate(known.input());
        BOOST_REQUIRE(o.caller != nullptr);
        BOOST_TEST(o.caller->name() == "restore-svc");
    }
    BOOST_TEST(detail::auth_work().api_key_hashes - before == 0u);
    before = detail::auth_work().api_key_hashes;
    for (int i = 0; i < 3; ++i) check_fails(reg.authenticate(unknown.input()), "invalid credentials");
    BOOST_TEST(detail::auth_work().api_key_hashes - before == 3u);
    // A key that differs in its last byte or its length is not taken for the remembered one.
    Req near;
    near.headers = {{"X-Api-Key", kRestoreKey.substr(0, kRestoreKey.size() - 1) + "X"}};
    check_fails(reg.authenticate(near.input()), "invalid credentials");
    near.headers = {{"X-Api-Key", kRestoreKey + "0"}};
    check_fails(reg.authenticate(near.input()), "invalid credentials");
    // The reloaded list without restore-svc: its remembered key authenticates nobody.
    CallerDef audit;
    audit.name = "audit-svc";
    audit.api_key_sha256 = {sha256_hex(kAuditKey)};
    audit.projects = {"*"};
    const CallerRegistry reloaded({audit});
    before = detail::auth_work().api_key_hashes;
    check_fails(reloaded.authenticate(known.input()), "invalid credentials");
    BOOST_TEST(detail::auth_work().api_key_hashes - before == 1u);
    // And the old registry still knows it (another registry's remembered keys were wiped, so it hashes).
    BOOST_TEST(reg.authenticate(known.input()).caller != nullptr);
}

BOOST_AUTO_TEST_CASE(malformed) {
    const auto reg = make_registry();
    Req r;
    for (const auto& hs : std::vector<std::vector<std::pair<std::string, std::string>>>{
             {{"X-Api-Key", ""}},
             {{"X-Api-Key", "  "}},
             {{"Authorization", "Bearer"}},
             {{"Authorization", "Bearer   "}},
             {{"Authorization", "Basic dXNlcjpwYXNz"}},
             {{"Authorization", "Token " + kRestoreKey}},
             {{"Authorization", "SDK-HMAC-SHA256 garbage"}},
             {{"X-Api-Key", kRestoreKey}, {"X-Api-Key", kRestoreKey}},
             {{"Authorization", "Bearer " + kRestoreKey}, {"Authorization", "Bearer " + kRestoreKey}},
         }) {
        r.headers = hs;
        check_fails(reg.authenticate(r.input()), "malformed credentials");
    }
}

BOOST_AUTO_TEST_CASE(two_credentials_are_refused_not_ranked) {
    const auto reg = make_registry();
    Req r;
    // Authorization and X-Api-Key naming different callers: neither wins (it was Authorization, silently).
    r.headers = {{"Authorization", "Bearer " + kAuditKey}, {"X-Api-Key", kRestoreKey}};
    check_fails(reg.authenticate(r.input()), "malformed credentials");
    r.headers = {{"X-Api-Key", kRestoreKey}, {"authorization", "bearer " + kAuditKey}};
    check_fails(reg.authenticate(r.input()), "malformed credentials");
    // A wrong Bearer key with a right X-Api-Key, and a signature with a key: refused the same way.
    r.headers = {{"Authorization", "Bearer wrong"}, {"X-Api-Key", kRestoreKey}};
    check_fails(reg.authenticate(r.input()), "malformed credentials");
    Req s = signed_request(kRestoreAk, kRestoreSk);
    s.headers.emplace_back("X-Api-Key", kAuditKey);
    check_fails(reg.authenticate(s.input()), "malformed credentials");
    // One key sent in both headers is one credential.
    r.headers = {{"Authorization", "Bearer " + kAuditKey}, {"X-Api-Key", " " + kAuditKey}};
    const auto o = reg.authenticate(r.input());
    BOOST_TEST_REQUIRE(o.caller != nullptr);
    BOOST_TEST(o.caller->name() == "audit-svc");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(sdk_signatures)

BOOST_AUTO_TEST_CASE(signed_request_passes) {
    const auto reg = make_registry();
    Req r = signed_request(kRestoreAk, kRestoreSk);
    auto o = reg.authenticate(r.input());
    BOOST_TEST_REQUIRE(o.caller != nullptr, o.reason);
    BOOST_TEST(o.caller->name() == "restore-svc");
    BOOST_TEST(o.method == "sdk_signature");
    BOOST_TEST(o.status == 0u);

    r = signed_request(kAuditAk, kAuditSk);
    o = reg.authenticate(r.input());
    BOOST_TEST_REQUIRE(o.caller != nullptr, o.reason);
    BOOST_TEST(o.caller->name() == "audit-svc");
}

BOOST_AUTO_TEST_CASE(within_clock_skew) {
    const auto reg = make_registry();
    for (const minutes off : {-minutes(15), -minutes(14), minutes(14), minutes(15)}) {
        Req r = signed_request(kRestoreAk, kRestoreSk, kNow + off);
        BOOST_TEST(reg.authenticate(r.input()).caller != nullptr);
    }
}

BOOST_AUTO_TEST_CASE(date_outside_skew) {
    const auto reg = make_registry();
    for (const seconds off : {-minutes(15) - seconds(1), minutes(15) + seconds(1), seconds(-hours(24))}) {
        Req r = signed_request(kRestoreAk, kRestoreSk, kNow + off);
        check_fails(reg.authenticate(r.input()), "invalid credentials");
    }
    // A narrower configured skew.
    const CallerRegistry strict({make_registry().find("restore-svc")->def()}, seconds(30));
    Req r = signed_request(kRestoreAk, kRestoreSk, kNow + seconds(31));
    check_fails(strict.authenticate(r.input()), "invalid credentials");
    r = signed_request(kRestoreAk, kRestoreSk, kNow + seconds(30));
    BOOST_TEST(strict.authenticate(r.input()).caller != nullptr);
}

BOOST_AUTO_TEST_CASE(altered_requests_fail) {
    const auto reg = make_registry();
    Req r = signed_request(kRestoreAk, kRestoreSk);
    r.target =
        "/v3/0123456789abcdef0123456789abcdef/backup-files?backup_id=c0c9f155c7b7423a9d30f0175998b63bbr01";
    check_fails(reg.authenticate(r.input()), "invalid credentials");

    r = signed_request(kRestoreAk, kRestoreSk);
    r.target =
        "/v3/97b026aa9cc4417888c14c84a1ad9860/backup-files?backup_id=c0c9f155c7b7423a9d30f0175998b63bbr03";
    check_fails(reg.authenticate(r.input()), "invalid credentials");

    r = signed_request(kRestoreAk, kRestoreSk);
    r.target = "/v3/97b026aa9cc4417888c14c84a1ad9860/backup-files";  // query dropped
    check_fails(reg.authenticate(r.input()), "invalid credentials");

    r = signed_request(kRestoreAk, kRestoreSk);
    set_header(r, "Host", "gw.internal:8444");
    check_fails(reg.authenticate(r.input()), "invalid credentials");

    r = signed_request(kRestoreAk, kRestoreSk);
    set_header(r, "X-Project-Id", "0123456789abcdef0123456789abcdef");
    check_fails(reg.authenticate(r.input()), "invalid credentials");

    r = signed_request(kRestoreAk, kRestoreSk);
    r.method = "DELETE";
    check_fails(reg.authenticate(r.input()), "invalid credentials");

    r = signed_request(kRestoreAk, kRestoreSk);
    set_header(r, "X-Sdk-Date", sdk_date(kNow + seconds(1)));  // still in skew, but signed differently
    check_fails(reg.authenticate(r.input()), "invalid credentials");

    // An unsigned header may change freely.
    r = signed_request(kRestoreAk, kRestoreSk);
    set_header(r, "Accept", "text/plain");
    BOOST_TEST(reg.authenticate(r.input()).caller != nullptr);
}

BOOST_AUTO_TEST_CASE(equivalent_encodings_pass) {
    // The canonical form is what is signed: a differently-encoded but equal target verifies.
    const auto reg = make_registry();
    Req r = signed_request(kRestoreAk, kRestoreSk, kNow, "/v3/p/backup-files?b=2&a=%7E");
    r.target = "/v3/%70/backup-files?a=~&b=2";
    BOOST_TEST(reg.authenticate(r.input()).caller != nullptr);
}

BOOST_AUTO_TEST_CASE(wrong_secret_or_unknown_access_key) {
    const auto reg = make_registry();
    Req r = signed_request(kRestoreAk, kRestoreSk + "x");
    auto o = reg.authenticate(r.input());
    check_fails(o, "invalid credentials");
    r = signed_request(kRestoreAk, kAuditSk);  // another caller's SK
    check_fails(reg.authenticate(r.input()), "invalid credentials");
    r = signed_request("UNKNOWNAK", kRestoreSk);
    o = reg.authenticate(r.input());
    check_fails(o, "invalid credentials");
    BOOST_TEST(o.reason.find("UNKNOWNAK") == std::string::npos);
    r = signed_request(kRestoreAk.substr(1), kRestoreSk);  // prefix of a real AK
    check_fails(reg.authenticate(r.input()), "invalid credentials");
}

BOOST_AUTO_TEST_CASE(malformed_signed_requests) {
    const auto reg = make_registry();
    const auto auth_of = [](const Req& r) {
        for (const auto& h : r.headers)
            if (h.first == "Authorization") return h.second;
        return std::string();
    };

    // X-Sdk-Date not signed (the client signs only host).
    {
        Req r;
        r.headers = {{"Host", kHost}, {"X-Sdk-Date", sdk_date(kNow)}};
        SignableRequest s;
        s.method = "GET";
        s.path = "/v3/97b026aa9cc4417888c14c84a1ad9860/backup-files";
        s.query = "backup_id=c0c9f155c7b7423a9d30f0175998b63bbr01";
        s.headers = {{"Host", kHost}};
        r.headers.emplace_back("Authorization", authorization_header(s, kRestoreAk, kRestoreSk));
        check_fails(reg.authenticate(r.input()), "malformed credentials");
    }
    // Host not signed.
    {
        Req r = signed_request(kRestoreAk, kRestoreSk);
        const std::string a = auth_of(r);
        const auto sig = a.substr(a.find("Signature="));
        set_header(
            r, "Authorization",
            "SDK-HMAC-SHA256 Access=" + kRestoreAk + ", SignedHeaders=x-project-id;x-sdk-date, " + sig);
        check_fails(reg.authenticate(r.input()), "malformed credentials");
    }
    // A signed header missing from the request.
    {
        Req r = signed_request(kRestoreAk, kRestoreSk);
        std::erase_if(r.headers, [](const auto& h) { return h.first == "X-Project-Id"; });
        check_fails(reg.authenticate(r.input()), "malformed credentials");
    }
    // Unparseable X-Sdk-Date.
    {
        Req r = signed_request(kRestoreAk, kRestoreSk);
        set_header(r, "X-Sdk-Date", "2026-11-27T12:00:00Z");
        check_fails(reg.authenticate(r.input()), "malformed credentials");
    }
    // Two X-Sdk-Date headers.
    {
        Req r = signed_request(kRestoreAk, kRestoreSk);
        r.headers.emplace_back("X-Sdk-Date", sdk_date(kNow));
        check_fails(reg.authenticate(r.input()), "malformed credentials");
    }
    // Duplicate name in SignedHeaders.
    {
        Req r = signed_request(kRestoreAk, kRestoreSk);
        const std::string a = auth_of(r);
        const auto sig = a.substr(a.find("Signature="));
        set_header(r, "Authorization",
                   "SDK-HMAC-SHA256 Access=" + kRestoreAk + ", SignedHeaders=host;host;x-sdk-date, " + sig);
        check_fails(reg.authenticate(r.input()), "malformed credentials");
    }
    // Truncated signature.
    {
        Req r = signed_request(kRestoreAk, kRestoreSk);
        std::string a = auth_of(r);
        a.pop_back();
        set_header(r, "Authorization", a);
        check_fails(reg.authenticate(r.input()), "malformed credentials");
    }
}

BOOST_AUTO_TEST_CASE(reason_never_contains_signature) {
    const auto reg = make_registry();
    Req r = signed_request(kRestoreAk, kRestoreSk + "x");
    const auto o = reg.authenticate(r.input());
    check_fails(o, "invalid credentials");
    for (const auto& h : r.headers) {
        if (h.first != "Authorization") continue;
        const auto sig = h.second.substr(h.second.find("Signature=") + 10);
        BOOST_TEST(sig.size() == 64u);
        BOOST_TEST(o.reason.find(sig) == std::string::npos);
    }
}

// Issue 14: an unknown access key was answered before any signature work, so response times told which
// keys exist. Now every path that reaches the signature computes one: counted, not timed.
BOOST_AUTO_TEST_CASE(unknown_access_key_costs_one_signature_like_a_wrong_one) {
    const auto reg = make_registry();
    const CallerRegistry no_access_keys({});
    struct Case {
        std::string label;
        const CallerRegistry* registry;
        Req req;
        bool ok;
    };
    std::vector<Case> cases = {
        {"valid", &reg, signed_request(kRestoreAk, kRestoreSk), true},
        {"wrong signature", &reg, signed_request(kRestoreAk, kRestoreSk + "x"), false},
        {"unknown access key", &reg, signed_request("UNKNOWNAK0000000001", kRestoreSk), false},
        {"unknown access key signed with the stand-in key", &reg,
         signed_request("UNKNOWNAK0000000001", "dummy-secret-key-for-unknown-access-keys"), false},
        {"no caller has an access key", &no_access_keys, signed_request(kRestoreAk, kRestoreSk), false},
    };
    for (auto& c : cases) {
        const std::uint64_t before = detail::auth_work().signatures;
        const auto o = c.registry->authenticate(c.req.input());
        BOOST_TEST((o.caller != nullptr) == c.ok, c.label);
        if (!c.ok) BOOST_TEST(o.reason == "invalid credentials", c.label);
        BOOST_TEST(detail::auth_work().signatures - before == 1u, c.label);
    }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(mtls)

BOOST_AUTO_TEST_CASE(mapped_subject) {
    const auto reg = make_registry();
    Req r;
    r.tls_subject = "CN=restore-svc,O=Example";
    const auto o = reg.authenticate(r.input());
    BOOST_TEST_REQUIRE(o.caller != nullptr);
    BOOST_TEST(o.caller->name() == "restore-svc");
    BOOST_TEST(o.method == "mtls");
}

BOOST_AUTO_TEST_CASE(mapped_subject_wins_over_other_credentials) {
    const auto reg = make_registry();
    Req r;
    r.tls_subject = "CN=restore-svc,O=Example";
    r.headers = {{"X-Api-Key", kAuditKey}};
    const auto o = reg.authenticate(r.input());
    BOOST_TEST_REQUIRE(o.caller != nullptr);
    BOOST_TEST(o.caller->name() == "restore-svc");
    BOOST_TEST(o.method == "mtls");
}

BOOST_AUTO_TEST_CASE(unmapped_subject_falls_through) {
    const auto reg = make_registry();
    Req r;
    r.tls_subject = "CN=someone-else,O=Example";
    r.headers = {{"X-Api-Key", kAuditKey}};
    auto o = reg.authenticate(r.input());
    BOOST_TEST_REQUIRE(o.caller != nullptr);
    BOOST_TEST(o.caller->name() == "audit-svc");
    BOOST_TEST(o.method == "api_key");

    r = signed_request(kAuditAk, kAuditSk);
    r.tls_subject = "CN=someone-else,O=Example";
    o = reg.authenticate(r.input());
    BOOST_TEST_REQUIRE(o.caller != nullptr);
    BOOST_TEST(o.method == "sdk_signature");

    // Subject alone, not mapped: a credential was presented and it is not accepted.
    r = Req();
    r.tls_subject = "CN=someone-else,O=Example";
    check_fails(reg.authenticate(r.input()), "invalid credentials");
    // Subjects are compared exactly.
    r.tls_subject = "cn=restore-svc,O=Example";
    check_fails(reg.authenticate(r.input()), "invalid credentials");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(registry)

BOOST_AUTO_TEST_CASE(find_and_size) {
    const auto reg = make_registry();
    BOOST_TEST(reg.size() == 2u);
    BOOST_TEST_REQUIRE(reg.find("audit-svc") != nullptr);
    BOOST_TEST(reg.find("audit-svc")->name() == "audit-svc");
    BOOST_TEST(reg.find("nobody") == nullptr);
    const CallerRegistry empty({});
    Req r;
    r.headers = {{"X-Api-Key", kRestoreKey}};
    check_fails(empty.authenticate(r.input()), "invalid credentials");
}

BOOST_AUTO_TEST_CASE(upper_case_hashes_accepted) {
    CallerDef d;
    d.name = "x";
    std::string h = sha256_hex("k");
    for (char& c : h) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    d.api_key_sha256 = {h};
    const CallerRegistry reg({d});
    Req r;
    r.headers = {{"X-Api-Key", "k"}};
    BOOST_TEST(reg.authenticate(r.input()).caller != nullptr);
}

// Config validation refuses all of these with a message naming the key (test_config). The registry, also
// built on SIGHUP, never throws: it lets no ambiguous or broken credential authenticate anyone.
BOOST_AUTO_TEST_CASE(ambiguous_or_broken_definitions_are_not_used) {
    CallerDef a;
    a.name = "a";
    a.access_key = "AK";
    a.secret_key = "SUPERSECRET";
    a.api_key_sha256 = {sha256_hex("shared-key"), sha256_hex("key-a")};
    a.cert_subjects = {"CN=shared", "CN=a"};
    a.projects = {"*"};
    CallerDef b = a;  // same AK, one shared key, one shared subject
    b.name = "b";
    b.api_key_sha256 = {sha256_hex("shared-key"), "not-a-hash", sha256_hex("key-b")};
    b.cert_subjects = {"CN=shared"};
    CallerDef a2 = a;  // repeats the name "a"
    a2.access_key = "AK2";
    a2.secret_key = "SK2";
    a2.api_key_sha256 = {sha256_hex("key-a2")};
    a2.cert_subjects.clear();
    CallerDef c;  // an access key without its secret key
    c.name = "c";
    c.access_key = "AKC";
    c.api_key_sha256 = {sha256_hex("key-c")};
    c.projects = {"*"};
    std::optional<CallerRegistry> reg;
    BOOST_REQUIRE_NO_THROW(reg.emplace(std::vector<CallerDef>{a, b, a2, c}));
    BOOST_TEST(reg->size() == 3u);

    const auto who = [&](Req r) {
        const auto o = reg->authenticate(r.input());
        return o.caller ? o.caller->name() : "401 " + o.reason;
    };
    const auto key = [](const std::string& k) {
        Req r;
        r.headers = {{"X-Api-Key", k}};
        return r;
    };
    const auto subject = [](const std::string& s) {
        Req r;
        r.tls_subject = s;
        return r;
    };
    BOOST_TEST(who(key("shared-key")) == "401 invalid credentials");
    BOOST_TEST(who(key("key-a")) == "a");
    BOOST_TEST(who(key("key-b")) == "b");
    BOOST_TEST(who(key("key-a2")) == "401 invalid credentials");  // the repeated definition is not used
    BOOST_TEST(who(key("key-c")) == "c");
    BOOST_TEST(who(subject("CN=shared")) == "401 invalid credentials");
    BOOST_TEST(who(subject("CN=a")) == "a");
    BOOST_TEST(who(signed_request("AK", "SUPERSECRET")) == "401 invalid credentials");
    BOOST_TEST(who(signed_request("AK2", "SK2")) == "401 invalid credentials");
    BOOST_TEST(who(signed_request("AKC", "")) == "401 invalid credentials");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(permissions)

BOOST_AUTO_TEST_CASE(may_read) {
    const auto reg = make_registry();
    const Caller* restore = reg.find("restore-svc");
    const Caller* audit = reg.find("audit-svc");
    BOOST_TEST(restore->may_read(kProject));
    BOOST_TEST(restore->may_read("anything"));
    BOOST_TEST(audit->may_read(kProject));
    BOOST_TEST(audit->may_read("0123456789abcdef0123456789abcdef"));
    BOOST_TEST(!audit->may_read("ffffffffffffffffffffffffffffffff"));
    BOOST_TEST(!audit->may_read("97b026aa9cc4417888c14c84a1ad986"));   // prefix
    BOOST_TEST(!audit->may_read("97B026AA9CC4417888C14C84A1AD9860"));  // exact, case-sensitive
    BOOST_TEST(!audit->may_read(""));
    CallerDef none;
    none.name = "none";
    BOOST_TEST(!Caller(none).may_read(kProject));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(rate_limits)

const steady_clock::time_point kT0 = steady_clock::time_point{} + hours(1000);

BOOST_AUTO_TEST_CASE(burst_then_refused_then_refilled) {
    const auto reg = make_registry();
    const Caller* c = reg.find("restore-svc");  // 2/s, burst 3
    double retry = -1;
    for (int i = 0; i < 3; ++i) {
        BOOST_TEST(c->try_acquire(kT0, retry), "request " << i);
        BOOST_TEST(retry == 0.0);
    }
    BOOST_TEST(!c->try_acquire(kT0, retry));
    BOOST_TEST(retry > 0.0);
    BOOST_TEST(retry == 0.5, boost::test_tools::tolerance(1e-9));
    // A quarter of a second later: half a token, still refused, a quarter second to wait.
    BOOST_TEST(!c->try_acquire(kT0 + milliseconds(250), retry));
    BOOST_TEST(retry == 0.25, boost::test_tools::tolerance(1e-9));
    // Half a second after the start: one token.
    BOOST_TEST(c->try_acquire(kT0 + milliseconds(500), retry));
    BOOST_TEST(!c->try_acquire(kT0 + milliseconds(500), retry));
    // Long idle: refills up to the burst, not beyond.
    const auto later = kT0 + seconds(100);
    for (int i = 0; i < 3; ++i) BOOST_TEST(c->try_acquire(later, retry));
    BOOST_TEST(!c->try_acquire(later, retry));
}

// Callers allowed more than 1,000 requests a second are served from per-thread leases of the shared bucket.
CallerDef fast_caller(double rate, double burst) {
    CallerDef d;
    d.name = "fast";
    d.rate_per_s = rate;
    d.burst = burst;
    return d;
}

int drain(const Caller& c,
          steady_clock::time_point at) {  // requests admitted at `at` until the first refusal
    double retry = 0;
    int n = 0;
    while (n < 1000000 && c.try_acquire(at, retry)) ++n;
    return n;
}

double hw_threads() {
    return std::max(1u, std::thread::hardware_concurrency());
}

BOOST_AUTO_TEST_CASE(lease_sizes) {
    BOOST_TEST(Caller(fast_caller(500, 100)).lease_size() == 1u);     // slow: every token from the bucket
    BOOST_TEST(Caller(fast_caller(64000, 1e6)).lease_size() == 64u);  // at most 64
    BOOST_TEST(Caller(fast_caller(10000, 1e6)).lease_size() == 10u);  // a millisecond of the rate
    BOOST_TEST(Caller(fast_caller(0, 0)).lease_size() == 1u);         // unlimited
    // A sixteenth of the capacity over the machine's threads.
    const double by_capacity = std::floor(6400 / (16 * hw_threads()));
    BOOST_TEST(Caller(fast_caller(1e7, 6400)).lease_size() == (by_capacity >= 64 ? 64u
                                                               : by_capacity >= 2
                                                                   ? static_cast<unsigned>(by_capacity)
                                                                   : 1u));
}

BOOST_AUTO_TEST_CASE(leases_spend_the_bucket_exactly) {
    // One thread: exactly the burst, then a refusal that says when a token is back.
    const Caller one(fast_caller(64000, 6400));
    BOOST_TEST(drain(one, kT0) == 6400);
    double retry = 0;
    BOOST_TEST(!one.try_acquire(kT0, retry));
    BOOST_TEST(retry > 0.0);
    // Two threads on one bucket: every token is spent once, none twice.
    const Caller two(fast_caller(64000, 6400));
    int a = 0, b = 0;
    std::thread ta([&] { a = drain(two, kT0); });
    std::thread tb([&] { b = drain(two, kT0); });
    ta.join();
    tb.join();
    BOOST_TEST(a + b == 6400);
}

int drain_elsewhere(const Caller& c, steady_clock::time_point at) {  // on a thread of its own (own leases)
    int n = 0;
    std::thread t([&] { n = drain(c, at); });
    t.join();
    return n;
}

BOOST_AUTO_TEST_CASE(the_rest_of_an_old_lease_goes_back_to_the_bucket) {
    const Caller c(fast_caller(64000, 1e6));  // leases of 64
    double retry = 0;
    // This thread takes one request's token: a lease of 64, 63 of them set aside. Another thread gets the
    // rest.
    BOOST_TEST(c.try_acquire(kT0, retry));
    BOOST_TEST(drain_elsewhere(c, kT0) == 1e6 - 64);
    // 1/64 s later the bucket has refilled 1,000 tokens. This thread's lease is past its 1 ms life: its next
    // request hands the 63 back and takes a new lease of 64, so 1,000 + 63 - 64 remain for the others (936
    // if the 63 were lost).
    const auto later = kT0 + microseconds(15625);
    BOOST_TEST(c.try_acquire(later, retry));
    BOOST_TEST(drain_elsewhere(c, later) == 1000 + 63 - 64);
}

BOOST_AUTO_TEST_CASE(tokens_in_a_lease_count_against_the_burst) {
    // A bucket that refills completely within a lease's life: what one thread holds in its lease must not
    // be handed out again by the bucket, or a burst could reach capacity + a lease per thread.
    const double burst = 1024 * hw_threads();  // leases of 64
    const Caller c(fast_caller(2000 * burst, burst));
    BOOST_REQUIRE(c.lease_size() == 64u);
    double retry = 0;
    BOOST_TEST(c.try_acquire(kT0, retry));  // this thread: 63 set aside
    BOOST_TEST(drain_elsewhere(c, kT0) == burst - 64);
    // 0.6 ms later the bucket would be full again; the lease is still live. Together the other thread and
    // this one's lease get exactly the burst (a bucket blind to the lease gave burst + 63).
    const auto t1 = kT0 + microseconds(600);
    const int others = drain_elsewhere(c, t1);
    const int mine = drain(c, t1);
    BOOST_TEST(others == burst - 63);
    BOOST_TEST(mine == 63);
    BOOST_TEST(others + mine == burst);
}

BOOST_AUTO_TEST_CASE(burst_below_one_uses_rate) {
    CallerDef d;
    d.name = "x";
    d.rate_per_s = 5;
    d.burst = 0;
    const Caller c(d);
    double retry = 0;
    int passed = 0;
    while (passed < 100 && c.try_acquire(kT0, retry)) ++passed;
    BOOST_TEST(passed == 5);
    BOOST_TEST(retry == 0.2, boost::test_tools::tolerance(1e-9));

    d.rate_per_s = 0.5;  // capacity max(1, 0.5) = 1
    const Caller slow(d);
    BOOST_TEST(slow.try_acquire(kT0, retry));
    BOOST_TEST(!slow.try_acquire(kT0, retry));
    BOOST_TEST(retry == 2.0, boost::test_tools::tolerance(1e-9));
    BOOST_TEST(!slow.try_acquire(kT0 + seconds(1), retry));
    BOOST_TEST(slow.try_acquire(kT0 + seconds(2), retry));
}

BOOST_AUTO_TEST_CASE(unlimited) {
    CallerDef d;
    d.name = "x";
    d.rate_per_s = 0;
    d.burst = 1;
    const Caller c(d);
    double retry = -1;
    int passed = 0;
    for (int i = 0; i < 10000; ++i) passed += c.try_acquire(kT0, retry) ? 1 : 0;
    BOOST_TEST(passed == 10000);
    BOOST_TEST(retry == 0.0);
}

BOOST_AUTO_TEST_CASE(time_going_backwards_refills_nothing) {
    CallerDef d;
    d.name = "x";
    d.rate_per_s = 1;
    d.burst = 1;
    const Caller c(d);
    double retry = 0;
    BOOST_TEST(c.try_acquire(kT0, retry));
    BOOST_TEST(!c.try_acquire(kT0 - seconds(10), retry));
    BOOST_TEST(!c.try_acquire(kT0 + milliseconds(500), retry));
    BOOST_TEST(retry == 0.5, boost::test_tools::tolerance(1e-9));
}

BOOST_AUTO_TEST_CASE(callers_are_independent) {
    const auto reg = make_registry();
    const Caller* restore = reg.find("restore-svc");
    const Caller* audit = reg.find("audit-svc");  // 1/s, capacity 1
    double retry = 0;
    BOOST_TEST(audit->try_acquire(kT0, retry));
    BOOST_TEST(!audit->try_acquire(kT0, retry));
    BOOST_TEST(retry == 1.0, boost::test_tools::tolerance(1e-9));
    // The other caller's bucket is untouched.
    for (int i = 0; i < 3; ++i) BOOST_TEST(restore->try_acquire(kT0, retry));
    BOOST_TEST(!restore->try_acquire(kT0, retry));
    BOOST_TEST(audit->try_acquire(kT0 + seconds(1), retry));
}

BOOST_AUTO_TEST_CASE(concurrent_acquires_grant_exactly_the_burst) {
    CallerDef d;
    d.name = "x";
    d.rate_per_s = 1;
    d.burst = 1000;
    const Caller c(d);
    std::atomic<int> granted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            double retry = 0;
            for (int i = 0; i < 500; ++i)
                if (c.try_acquire(kT0, retry)) ++granted;
        });
    for (auto& t : threads) t.join();
    BOOST_TEST(granted.load() == 1000);
}

BOOST_AUTO_TEST_SUITE_END()

// SIGHUP builds a new registry; adopt_rate_state carries each surviving caller's bucket into it.
BOOST_AUTO_TEST_SUITE(reload_keeps_rate_state)

const steady_clock::time_point kT0 = steady_clock::time_point{} + hours(1000);

CallerDef limited(const std::string& name, double rate, double burst) {
    CallerDef d;
    d.name = name;
    d.api_key_sha256 = {sha256_hex(name + "-key")};
    d.projects = {"*"};
    d.rate_per_s = rate;
    d.burst = burst;
    return d;
}

// How many requests pass at one instant (no refill), up to `limit`.
int grants_at(const Caller& c, steady_clock::time_point now, int limit = 1000) {
    double retry = 0;
    int n = 0;
    while (n < limit && c.try_acquire(now, retry)) ++n;
    return n;
}

BOOST_AUTO_TEST_CASE(drained_bucket_stays_drained) {
    const auto before = make_registry();
    const Caller* old = before.find("restore-svc");  // 2/s, burst 3
    BOOST_TEST(grants_at(*old, kT0) == 3);
    const auto after = make_registry();  // same config re-read
    after.adopt_rate_state(before, kT0);
    const Caller* c = after.find("restore-svc");
    double retry = 0;
    BOOST_TEST(!c->try_acquire(kT0, retry));  // without adopting, the fresh bucket would grant 3 here
    BOOST_TEST(retry == 0.5, boost::test_tools::tolerance(1e-9));
    BOOST_TEST(c->try_acquire(kT0 + milliseconds(500), retry));  // refills at 2/s as before
    BOOST_TEST(!c->try_acquire(kT0 + milliseconds(500), retry));
    // The untouched caller carries its full bucket (capacity 1).
    BOOST_TEST(grants_at(*after.find("audit-svc"), kT0) == 1);
}

BOOST_AUTO_TEST_CASE(partial_level_and_time_since_last_request_carry_over) {
    const CallerRegistry before({limited("a", 2, 10)});
    BOOST_TEST(grants_at(*before.find("a"), kT0, 7) == 7);  // 3 left at kT0
    const CallerRegistry after({limited("a", 2, 10)});
    after.adopt_rate_state(before, kT0 + seconds(1));  // +2 tokens at the old rate: 5
    BOOST_TEST(grants_at(*after.find("a"), kT0 + seconds(1)) == 5);
}

BOOST_AUTO_TEST_CASE(new_callers_start_full_removed_callers_dropped) {
    const CallerRegistry before({limited("a", 1, 2), limited("gone", 1, 2)});
    BOOST_TEST(grants_at(*before.find("a"), kT0) == 2);
    BOOST_TEST(grants_at(*before.find("gone"), kT0) == 2);
    const CallerRegistry after({limited("a", 1, 2), limited("new", 1, 4)});
    after.adopt_rate_state(before, kT0);
    BOOST_TEST(grants_at(*after.find("a"), kT0) == 0);
    BOOST_TEST(grants_at(*after.find("new"), kT0) == 4);
    BOOST_TEST(after.find("gone") == nullptr);
    BOOST_TEST(after.size() == 2u);
}

BOOST_AUTO_TEST_CASE(raised_burst_and_rate_give_back_nothing) {
    const CallerRegistry before({limited("a", 2, 3)});
    BOOST_TEST(grants_at(*before.find("a"), kT0) == 3);
    const CallerRegistry after({limited("a", 10, 50)});
    // 100 ms after draining: 0.2 tokens at the old rate, not the new burst of 50.
    after.adopt_rate_state(before, kT0 + milliseconds(100));
    const Caller* c = after.find("a");
    double retry = 0;
    BOOST_TEST(!c->try_acquire(kT0 + milliseconds(100), retry));
    BOOST_TEST(retry == 0.08, boost::test_tools::tolerance(1e-9));  // 0.8 token at the new 10/s
    BOOST_TEST(grants_at(*c, kT0 + milliseconds(180)) == 1);
    // From then on the new rate and burst apply.
    BOOST_TEST(grants_at(*c, kT0 + milliseconds(180) + seconds(1)) == 10);
    BOOST_TEST(grants_at(*c, kT0 + seconds(100)) == 50);
}

BOOST_AUTO_TEST_CASE(unused_bucket_is_capped_at_the_smaller_burst) {
    const CallerRegistry before({limited("a", 1, 3), limited("b", 1, 3)});  // never used: full
    const CallerRegistry after({limited("a", 1, 1), limited("b", 1, 8)});
    after.adopt_rate_state(before, kT0);
    BOOST_TEST(grants_at(*after.find("a"), kT0) == 1);  // lowered burst caps the level
    BOOST_TEST(grants_at(*after.find("b"), kT0) == 3);  // raised burst: what was there, no more
}

BOOST_AUTO_TEST_CASE(unlimited_on_either_side) {
    // Unlimited before: nothing was counted, the newly limited bucket starts full.
    const CallerRegistry before({limited("a", 0, 0), limited("b", 1, 2)});
    BOOST_TEST(grants_at(*before.find("a"), kT0) == 1000);
    BOOST_TEST(grants_at(*before.find("b"), kT0) == 2);
    const CallerRegistry after({limited("a", 1, 2), limited("b", 0, 0)});
    after.adopt_rate_state(before, kT0);
    BOOST_TEST(grants_at(*after.find("a"), kT0) == 2);
    BOOST_TEST(grants_at(*after.find("b"), kT0) == 1000);  // unlimited now, whatever the old level
}

BOOST_AUTO_TEST_CASE(reload_time_before_last_request_refills_nothing) {
    const CallerRegistry before({limited("a", 1, 2)});
    BOOST_TEST(grants_at(*before.find("a"), kT0) == 2);
    const CallerRegistry after({limited("a", 1, 2)});
    after.adopt_rate_state(before, kT0 - seconds(10));
    BOOST_TEST(grants_at(*after.find("a"), kT0) == 0);
    BOOST_TEST(grants_at(*after.find("a"), kT0 + seconds(1)) == 1);
}

BOOST_AUTO_TEST_CASE(adopt_while_previous_serves_requests) {
    const CallerRegistry before({limited("a", 1, 1000)});
    const Caller& old = *before.find("a");
    std::atomic<int> granted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&] {
            double retry = 0;
            for (int i = 0; i < 150; ++i)
                if (old.try_acquire(kT0, retry)) ++granted;
        });
    // Adopting concurrently with those requests is data-race free (run under ThreadSanitizer in CI), and
    // carries a level between what the bucket had before and after those requests.
    for (int i = 0; i < 50; ++i) {
        const CallerRegistry mid({limited("a", 1, 1000)});
        mid.adopt_rate_state(before, kT0);
        const int level = grants_at(*mid.find("a"), kT0, 2000);
        BOOST_TEST(level <= 1000);
        BOOST_TEST(level >= 400);  // 600 taken at most
    }
    for (auto& t : threads) t.join();
    BOOST_TEST(granted.load() == 600);
    const CallerRegistry after({limited("a", 1, 1000)});
    after.adopt_rate_state(before, kT0);
    BOOST_TEST(grants_at(*after.find("a"), kT0, 2000) == 400);
}

BOOST_AUTO_TEST_SUITE_END()
