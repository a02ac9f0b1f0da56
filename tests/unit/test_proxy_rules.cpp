// The egress proxy's pure rules: the proxy URL, the no_proxy list, the CONNECT request and Basic credentials.
#define BOOST_TEST_MODULE proxy_rules
#include <boost/test/unit_test.hpp>
#include <cstdlib>

#include "rdsgw/proxy.hpp"

using namespace rdsgw;

BOOST_AUTO_TEST_CASE(proxy_urls) {
    std::string host, port, why;
    BOOST_TEST(parse_proxy_url("http://proxy.corp:8080", host, port, why));
    BOOST_TEST(host == "proxy.corp");
    BOOST_TEST(port == "8080");
    BOOST_TEST(parse_proxy_url("http://proxy.corp", host, port, why));
    BOOST_TEST(port == "3128");
    BOOST_TEST(parse_proxy_url("http://[::1]:3128", host, port, why));
    BOOST_TEST(host == "::1");
    for (const char* bad : {"https://proxy:3128", "proxy:3128", "", "http://"})
        BOOST_TEST(!parse_proxy_url(bad, host, port, why), bad);
}

BOOST_AUTO_TEST_CASE(no_proxy_entries) {
    const std::vector<std::string> list = {"localhost", ".internal.example", "10.0.0.0/8", "fd00::/8",
                                           "192.168.1.7"};
    BOOST_TEST(no_proxy_matches("localhost", list));
    BOOST_TEST(no_proxy_matches("LOCALHOST", list));
    BOOST_TEST(!no_proxy_matches("localhost.evil.example", list));
    BOOST_TEST(no_proxy_matches("internal.example", list));
    BOOST_TEST(no_proxy_matches("iam.internal.example", list));
    BOOST_TEST(!no_proxy_matches("notinternal.example", list));
    BOOST_TEST(no_proxy_matches("10.1.2.3", list));
    BOOST_TEST(!no_proxy_matches("11.1.2.3", list));
    BOOST_TEST(no_proxy_matches("fd12::1", list));
    BOOST_TEST(!no_proxy_matches("fe80::1", list));
    BOOST_TEST(no_proxy_matches("192.168.1.7", list));
    BOOST_TEST(!no_proxy_matches("rds.cn-north-4.myhuaweicloud.com", list));
    BOOST_TEST(!no_proxy_matches("10.example", list));  // a CIDR range matches literal addresses only
    BOOST_TEST(no_proxy_matches("anything", {"*"}));
    BOOST_TEST(!no_proxy_matches("anything", {}));
}

BOOST_AUTO_TEST_CASE(connect_request_and_credentials) {
    BOOST_TEST(connect_request("rds.cn-north-4.myhuaweicloud.com", "443", "") ==
               "CONNECT rds.cn-north-4.myhuaweicloud.com:443 HTTP/1.1\r\n"
               "Host: rds.cn-north-4.myhuaweicloud.com:443\r\n\r\n");
    BOOST_TEST(connect_request("::1", "8443", "Basic eA==") ==
               "CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\nProxy-Authorization: Basic eA==\r\n\r\n");
    // RFC 7617's example.
    BOOST_TEST(basic_authorization("Aladdin:open sesame") == "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
    BOOST_TEST(basic_authorization("a:") == "Basic YTo=");
}

BOOST_AUTO_TEST_CASE(proxy_objects) {
    std::string why;
    ProxyConfig none;
    BOOST_TEST(Proxy::make(none, why) == nullptr);
    BOOST_TEST(why.empty());

    ProxyConfig cfg;
    cfg.url = "http://proxy.corp:3128";
    cfg.no_proxy = {".corp"};
    auto p = Proxy::make(cfg, why);
    BOOST_REQUIRE(p);
    BOOST_TEST(p->authorization().empty());
    BOOST_TEST(p->applies_to("rds.cn-north-4.myhuaweicloud.com"));
    BOOST_TEST(!p->applies_to("iam.corp"));
    BOOST_TEST(p->describe() == "proxy.corp:3128");

    cfg.credentials.env = "RDSGW_TEST_PROXY_CRED";
    ::unsetenv("RDSGW_TEST_PROXY_CRED");
    BOOST_TEST(Proxy::make(cfg, why) == nullptr);
    BOOST_TEST(why.find("upstream.proxy.credentials") != std::string::npos);
    ::setenv("RDSGW_TEST_PROXY_CRED", "nocolon", 1);
    BOOST_TEST(Proxy::make(cfg, why) == nullptr);
    BOOST_TEST(why.find("nocolon") == std::string::npos);  // never the secret
    ::setenv("RDSGW_TEST_PROXY_CRED", "user:s3cret", 1);
    p = Proxy::make(cfg, why);
    BOOST_REQUIRE(p);
    BOOST_TEST(p->authorization() == basic_authorization("user:s3cret"));
    ::setenv("RDSGW_TEST_PROXY_CRED", "user:other", 1);
    BOOST_TEST(p->reload(why));
    BOOST_TEST(p->authorization() == basic_authorization("user:other"));
    ::unsetenv("RDSGW_TEST_PROXY_CRED");
    BOOST_TEST(!p->reload(why));
    BOOST_TEST(p->authorization() == basic_authorization("user:other"));  // the old one stays
}
