#define BOOST_TEST_MODULE sealed
#include <boost/test/unit_test.hpp>

#include "rdsgw/sealed.hpp"

using namespace rdsgw;

namespace {

SealKey key(const std::string& id, unsigned char fill) {
    SealKey k;
    k.id = id;
    k.key.fill(fill);
    return k;
}

Sealer sealer(std::vector<SealKey> keys) {
    return Sealer(std::move(keys));
}

AnswerFields sample_fields() {
    AnswerFields a;
    a.status = 200;
    a.body =
        R"({"files":[{"name":"backup-2024.tar","download_link":"https://obs.example.com/b?token=SECRET"}]})";
    a.upstream_request_id = "req-42";
    a.earliest_expiry = SysClock::time_point(std::chrono::milliseconds(1'900'000'000'123LL));
    a.stored_at = SysClock::time_point(std::chrono::milliseconds(1'800'000'000'456LL));
    return a;
}

const CachedAnswer& sample() {
    static const AnswerPtr a = CachedAnswer::make(sample_fields());
    return *a;
}

const std::string kAad = "97b026aa\nc0c9f155";

}  // namespace

BOOST_AUTO_TEST_CASE(round_trip_and_no_plaintext_in_the_value) {
    Sealer s = sealer({key("k1", 1)});
    const std::string plain = serialize_answer(sample());
    const std::string sealed = s.seal(plain, kAad);
    BOOST_TEST(sealed.find("SECRET") == std::string::npos);
    BOOST_TEST(sealed.find("backup-2024") == std::string::npos);
    BOOST_TEST(sealed.find("obs.example.com") == std::string::npos);
    BOOST_TEST(sealed.size() == 1 + 1 + 2 + 12 + plain.size() + 16);
    auto opened = s.open(sealed, kAad);
    BOOST_REQUIRE(opened);
    BOOST_TEST(*opened == plain);
    // Two seals of the same value differ (fresh nonce).
    BOOST_TEST(s.seal(plain, kAad) != sealed);
}

BOOST_AUTO_TEST_CASE(tampering_fails) {
    Sealer s = sealer({key("k1", 1)});
    const std::string sealed = s.seal("hello world", kAad);
    for (std::size_t i = 0; i < sealed.size(); ++i) {
        std::string t = sealed;
        t[i] = static_cast<char>(t[i] ^ 0x01);
        BOOST_TEST(!s.open(t, kAad), "flipped byte " << i);
    }
    BOOST_TEST(!s.open(sealed.substr(0, sealed.size() - 1), kAad));
    BOOST_TEST(!s.open(sealed + "x", kAad));
    BOOST_TEST(!s.open("", kAad));
    BOOST_TEST(!s.open(std::string(1, '\x01'), kAad));
    BOOST_TEST(!s.open(std::string("\x01\x00", 2), kAad));
}

BOOST_AUTO_TEST_CASE(wrong_aad_or_wrong_key_fails) {
    Sealer s = sealer({key("k1", 1)});
    const std::string sealed = s.seal("hello world", kAad);
    BOOST_TEST(!s.open(sealed, kAad + "x"));
    BOOST_TEST(!s.open(sealed, ""));
    Sealer other_key_same_id = sealer({key("k1", 2)});
    BOOST_TEST(!other_key_same_id.open(sealed, kAad));
    Sealer other_id = sealer({key("k9", 1)});
    BOOST_TEST(!other_id.open(sealed, kAad));
}

BOOST_AUTO_TEST_CASE(rotation_first_key_seals_all_keys_open) {
    Sealer old_only = sealer({key("k1", 1)});
    Sealer rotated = sealer({key("k2", 2), key("k1", 1)});
    const std::string by_old = old_only.seal("v-old", kAad);
    const std::string by_new = rotated.seal("v-new", kAad);
    BOOST_TEST(rotated.sealing_key_id() == "k2");
    BOOST_TEST(by_new.substr(1, 3) == std::string("\x02k2", 3));
    BOOST_TEST(rotated.open(by_old, kAad).value_or("") == "v-old");
    BOOST_TEST(rotated.open(by_new, kAad).value_or("") == "v-new");
    BOOST_TEST(!old_only.open(by_new, kAad));  // an instance not yet given k2 cannot read its values
}

BOOST_AUTO_TEST_CASE(bad_key_sets_are_refused_without_the_key) {
    BOOST_CHECK_THROW(sealer({}), std::invalid_argument);
    BOOST_CHECK_THROW(sealer({key("k1", 1), key("k1", 2)}), std::invalid_argument);
    BOOST_CHECK_THROW(sealer({key("", 1)}), std::invalid_argument);
    BOOST_CHECK_THROW(sealer({key("has space", 1)}), std::invalid_argument);
    BOOST_CHECK_THROW(sealer({key(std::string(33, 'a'), 1)}), std::invalid_argument);
    BOOST_TEST(valid_key_id("k-1.2_x"));
    BOOST_TEST(!valid_key_id("k/1"));
}

BOOST_AUTO_TEST_CASE(key_material_hex_and_base64) {
    const std::string hex = "000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F";
    auto k = parse_key_material(" " + hex + "\n");
    BOOST_REQUIRE(k);
    for (unsigned i = 0; i < 32; ++i) BOOST_TEST((*k)[i] == i);
    // base64 of the same 32 bytes, with and without padding
    const std::string b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    auto b = parse_key_material(b64);
    BOOST_REQUIRE(b);
    BOOST_TEST((*b == *k));
    auto nopad = parse_key_material(b64.substr(0, 43));
    BOOST_REQUIRE(nopad);
    BOOST_TEST((*nopad == *k));
    for (const char* bad :
         {"", "abc", "zz0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
          "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh==", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8*",
          "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd", "0001020304"}) {
        BOOST_TEST(!parse_key_material(bad), bad);
    }
}

BOOST_AUTO_TEST_CASE(answer_serialization_round_trip) {
    const CachedAnswer& a = sample();
    auto back = parse_answer(serialize_answer(a));
    BOOST_REQUIRE(back);
    BOOST_TEST(back->status() == a.status());
    BOOST_TEST(back->body() == a.body());
    BOOST_TEST(back->upstream_request_id() == a.upstream_request_id());
    BOOST_TEST((back->earliest_expiry() == a.earliest_expiry()));
    BOOST_TEST((back->stored_at() == a.stored_at()));

    auto neg =
        CachedAnswer::make({.status = 404, .body = R"({"error_code":"DBS.200019","error_msg":"not found"})"});
    auto nb = parse_answer(serialize_answer(*neg));
    BOOST_REQUIRE(nb);
    BOOST_TEST(nb->status() == 404u);
    BOOST_TEST((nb->earliest_expiry() == SysClock::time_point::max()));
}

BOOST_AUTO_TEST_CASE(malformed_answers_are_refused) {
    const std::string good = serialize_answer(sample());
    for (std::size_t n = 0; n < good.size(); ++n)
        BOOST_TEST(!parse_answer(good.substr(0, n)), "prefix " << n);
    BOOST_TEST(!parse_answer(good + "x"));
    std::string bad_format = good;
    bad_format[0] = 0x02;
    BOOST_TEST(!parse_answer(bad_format));
    AnswerFields s500 = sample_fields();
    s500.status = 500;
    BOOST_TEST(!parse_answer(serialize_answer(*CachedAnswer::make(s500))));
    std::string huge_len = good;
    huge_len[19] = '\xff';  // the request id's length
    huge_len[20] = '\xff';
    huge_len[21] = '\xff';
    huge_len[22] = '\x7f';
    BOOST_TEST(!parse_answer(huge_len));
}
