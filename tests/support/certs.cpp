#include "support/certs.hpp"

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <stdexcept>

namespace rdsgw::test {

namespace {

struct Deleter {
    void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
    void operator()(X509* p) const { X509_free(p); }
    void operator()(BIGNUM* p) const { BN_free(p); }
    void operator()(X509_EXTENSION* p) const { X509_EXTENSION_free(p); }
    void operator()(std::FILE* f) const { std::fclose(f); }
};
using Key = std::unique_ptr<EVP_PKEY, Deleter>;
using Cert = std::unique_ptr<X509, Deleter>;

[[noreturn]] void fail(const std::string& what) {
    char buf[256] = {};
    ERR_error_string_n(ERR_get_error(), buf, sizeof buf);
    ERR_clear_error();
    throw std::runtime_error("certs: " + what + ": " + buf);
}

Key new_key() {
    Key k(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
    if (!k) fail("EVP_PKEY_Q_keygen");
    return k;
}

enum class Kind { ca, server, client };

struct CertSpec {
    std::string cn;
    Kind kind = Kind::server;
    std::string san;  // e.g. "DNS:localhost,IP:127.0.0.1"; empty for none
    long not_before_s = -3600;
    long not_after_s = 30L * 86400;
};

void add_ext(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
    std::unique_ptr<X509_EXTENSION, Deleter> ext(X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str()));
    if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) fail("extension " + value);
}

// A certificate for `key`, signed by (issuer, issuer_key), or self-signed when issuer is null.
Cert make_cert(EVP_PKEY* key, const CertSpec& spec, X509* issuer, EVP_PKEY* issuer_key) {
    Cert cert(X509_new());
    if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) fail("X509_new");
    std::unique_ptr<BIGNUM, Deleter> serial(BN_new());
    if (!serial || BN_rand(serial.get(), 63, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) != 1 ||
        BN_to_ASN1_INTEGER(serial.get(), X509_get_serialNumber(cert.get())) == nullptr)
        fail("serial number");
    if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), spec.not_before_s) == nullptr ||
        X509_gmtime_adj(X509_getm_notAfter(cert.get()), spec.not_after_s) == nullptr)
        fail("validity");
    if (X509_set_pubkey(cert.get(), key) != 1) fail("X509_set_pubkey");
    X509_NAME* name = X509_get_subject_name(cert.get());
    auto add_name = [&](const char* field, const std::string& v) {
        if (X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                       reinterpret_cast<const unsigned char*>(v.c_str()), -1, -1, 0) != 1)
            fail("subject name");
    };
    add_name("O", "rds-gateway tests");
    add_name("CN", spec.cn);
    X509* signer = issuer != nullptr ? issuer : cert.get();
    if (X509_set_issuer_name(cert.get(), X509_get_subject_name(signer)) != 1) fail("issuer name");

    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, signer, cert.get(), nullptr, nullptr, 0);
    add_ext(cert.get(), &ctx, NID_subject_key_identifier, "hash");
    add_ext(cert.get(), &ctx, NID_authority_key_identifier, "keyid:always");
    switch (spec.kind) {
        case Kind::ca:
            add_ext(cert.get(), &ctx, NID_basic_constraints, "critical,CA:TRUE");
            add_ext(cert.get(), &ctx, NID_key_usage, "critical,keyCertSign,cRLSign");
            break;
        case Kind::server:
            add_ext(cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE");
            add_ext(cert.get(), &ctx, NID_key_usage, "critical,digitalSignature");
            add_ext(cert.get(), &ctx, NID_ext_key_usage, "serverAuth");
            break;
        case Kind::client:
            add_ext(cert.get(), &ctx, NID_basic_constraints, "critical,CA:FALSE");
            add_ext(cert.get(), &ctx, NID_key_usage, "critical,digitalSignature");
            add_ext(cert.get(), &ctx, NID_ext_key_usage, "clientAuth");
            break;
    }
    if (!spec.san.empty()) add_ext(cert.get(), &ctx, NID_subject_alt_name, spec.san);
    if (X509_sign(cert.get(), issuer_key != nullptr ? issuer_key : key, EVP_sha256()) <= 0) fail("X509_sign");
    return cert;
}

std::unique_ptr<std::FILE, Deleter> open_file(const std::string& path, const char* mode) {
    std::unique_ptr<std::FILE, Deleter> f(std::fopen(path.c_str(), mode));
    if (!f) throw std::runtime_error("certs: cannot open " + path);
    return f;
}

void write_key(const std::string& path, EVP_PKEY* key) {
    auto f = open_file(path, "wb");
    ::chmod(path.c_str(), 0600);
    if (PEM_write_PrivateKey(f.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) fail("write " + path);
}

void write_cert(const std::string& path, X509* cert) {
    auto f = open_file(path, "wb");
    if (PEM_write_X509(f.get(), cert) != 1) fail("write " + path);
}

Key read_key(const std::string& path) {
    auto f = open_file(path, "rb");
    Key k(PEM_read_PrivateKey(f.get(), nullptr, nullptr, nullptr));
    if (!k) fail("read " + path);
    return k;
}

Cert read_cert(const std::string& path) {
    auto f = open_file(path, "rb");
    Cert c(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
    if (!c) fail("read " + path);
    return c;
}

// Makes a key and a certificate signed by (issuer, issuer_key) and writes both; returns {cert, key}.
std::pair<std::string, std::string> issue(const std::string& dir, const std::string& stem,
                                          const CertSpec& spec, X509* issuer, EVP_PKEY* issuer_key) {
    const Key key = new_key();
    const Cert cert = make_cert(key.get(), spec, issuer, issuer_key);
    std::pair<std::string, std::string> paths{dir + "/" + stem + ".crt", dir + "/" + stem + ".key"};
    write_cert(paths.first, cert.get());
    write_key(paths.second, key.get());
    return paths;
}

constexpr const char* kLocalSan = "DNS:localhost,IP:127.0.0.1";

}  // namespace

Pki make_pki() {
    Pki pki;
    pki.owner = std::make_shared<TempDir>("rdsgw-pki");
    pki.dir = pki.owner->path();

    const Key ca_key = new_key();
    const Cert ca = make_cert(ca_key.get(), {"rds-gateway test CA", Kind::ca, "", -3600, 3650L * 86400},
                              nullptr, nullptr);
    pki.ca_cert = pki.dir + "/ca.crt";
    pki.ca_key = pki.dir + "/ca.key";
    write_cert(pki.ca_cert, ca.get());
    write_key(pki.ca_key, ca_key.get());

    const Key other_key = new_key();
    const Cert other = make_cert(other_key.get(), {"unrelated test CA", Kind::ca, "", -3600, 3650L * 86400},
                                 nullptr, nullptr);
    pki.other_ca_cert = pki.dir + "/other-ca.crt";
    pki.other_ca_key = pki.dir + "/other-ca.key";
    write_cert(pki.other_ca_cert, other.get());
    write_key(pki.other_ca_key, other_key.get());

    std::tie(pki.server_cert, pki.server_key) =
        issue(pki.dir, "server", {"localhost", Kind::server, kLocalSan}, ca.get(), ca_key.get());
    std::tie(pki.wrong_host_cert, pki.wrong_host_key) = issue(
        pki.dir, "wrong-host", {"wrong.example", Kind::server, "DNS:wrong.example"}, ca.get(), ca_key.get());
    std::tie(pki.expired_cert, pki.expired_key) =
        issue(pki.dir, "expired", {"localhost", Kind::server, kLocalSan, -2L * 86400, -86400}, ca.get(),
              ca_key.get());
    std::tie(pki.untrusted_server_cert, pki.untrusted_server_key) = issue(
        pki.dir, "untrusted-server", {"localhost", Kind::server, kLocalSan}, other.get(), other_key.get());
    return pki;
}

std::pair<std::string, std::string> Pki::client(const std::string& cn, bool by_other_ca) const {
    static std::atomic<int> counter{0};
    const Cert issuer = read_cert(by_other_ca ? other_ca_cert : ca_cert);
    const Key issuer_key = read_key(by_other_ca ? other_ca_key : ca_key);
    return issue(dir, "client-" + std::to_string(counter++), {cn, Kind::client, ""}, issuer.get(),
                 issuer_key.get());
}

std::pair<std::string, std::string> Pki::server_for(const std::string& dns_name) const {
    static std::atomic<int> counter{0};
    const Cert issuer = read_cert(ca_cert);
    const Key issuer_key = read_key(ca_key);
    return issue(dir, "server-" + std::to_string(counter++), {dns_name, Kind::server, "DNS:" + dns_name},
                 issuer.get(), issuer_key.get());
}

}  // namespace rdsgw::test
