// The status page (issue 19): status.json counts what /metrics counts, the page and its files are served from
// the admin listener (behind caller authentication when metrics_require_auth), nothing on them is secret; the
// Grafana dashboard and the alert rules use only metric names a real scrape has.
#define BOOST_TEST_MODULE status_page
#include <filesystem>
#include <regex>
#include <set>

#include "harness.hpp"

using namespace rdsgw::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

const std::string kToken = "TOKEN-recognizable-93f1c2";
const std::string kLimitedKey = "limited-key-recognizable-5511";

// Sum of the samples of `name` whose labels include every `label="value"` of `labels`.
double metric_sum(const std::string& text, const std::string& name,
                  const std::vector<std::string>& labels = {}) {
    std::istringstream in(text);
    std::string line;
    double sum = 0;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#' || line.compare(0, name.size(), name) != 0) continue;
        const char next = line.size() > name.size() ? line[name.size()] : '\0';
        if (next != ' ' && next != '{') continue;
        const auto space = line.rfind(' ');
        const std::string lbl = line.substr(name.size(), space - name.size());
        bool all = true;
        for (const auto& l : labels) all = all && lbl.find(l) != std::string::npos;
        if (all) sum += std::stod(line.substr(space + 1));
    }
    return sum;
}

// Metric names with at least one sample in a scrape (a histogram's _bucket/_sum/_count count as its name
// too).
std::set<std::string> sampled_names(const std::string& text) {
    std::set<std::string> names;
    std::istringstream in(text);
    std::string line;
    static const std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ])");
    while (std::getline(in, line)) {
        std::smatch m;
        if (line.empty() || line[0] == '#' || !std::regex_search(line, m, sample)) continue;
        names.insert(m[1]);
        for (std::string suffix : {"_bucket", "_sum", "_count"}) {
            const std::string n = m[1];
            if (n.size() > suffix.size() && n.compare(n.size() - suffix.size(), suffix.size(), suffix) == 0)
                names.insert(n.substr(0, n.size() - suffix.size()));
        }
    }
    return names;
}

// The metric names a PromQL expression reads: identifiers that are not functions, keywords, label names (in
// matchers or grouping clauses), strings, durations, numbers or Grafana variables.
std::set<std::string> promql_names(std::string e) {
    e = std::regex_replace(e, std::regex(R"("([^"\\]|\\.)*")"), " ");
    e = std::regex_replace(e, std::regex(R"(\{[^}]*\})"), " ");
    e = std::regex_replace(e, std::regex(R"(\[[^\]]*\])"), " ");
    e = std::regex_replace(e, std::regex(R"(\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\))"),
                           " ");
    e = std::regex_replace(e, std::regex(R"(\$\{?\w+\}?)"), " ");
    static const std::set<std::string> keywords = {"and",  "or",  "unless", "offset",
                                                   "bool", "inf", "nan",    "Inf"};
    std::set<std::string> out;
    static const std::regex ident(R"([a-zA-Z_:][a-zA-Z0-9_:]*)");
    for (auto it = std::sregex_iterator(e.begin(), e.end(), ident); it != std::sregex_iterator(); ++it) {
        const auto pos = static_cast<std::size_t>(it->position());
        if (pos > 0 && (std::isdigit(static_cast<unsigned char>(e[pos - 1])) || e[pos - 1] == '.')) continue;
        auto after = e.find_first_not_of(" \t\n", pos + it->length());
        if (after != std::string::npos && e[after] == '(') continue;  // a function
        if (!keywords.count(it->str())) out.insert(it->str());
    }
    return out;
}

// Every "expr" of a Grafana dashboard, and the metric of each label_values() variable query.
void dashboard_queries(const json::value& v, std::vector<std::string>& exprs,
                       std::vector<std::string>& metrics) {
    if (v.is_array())
        for (const auto& x : v.as_array()) dashboard_queries(x, exprs, metrics);
    if (!v.is_object()) return;
    for (const auto& [k, x] : v.as_object()) {
        if (k == "expr" && x.is_string()) exprs.emplace_back(x.as_string());
        if ((k == "query" || k == "definition") && x.is_string()) {
            std::smatch m;
            std::string q(x.as_string());
            if (std::regex_search(q, m, std::regex(R"(label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*))")))
                metrics.push_back(m[1]);
        }
        dashboard_queries(x, exprs, metrics);
    }
}

// The expr of each rule in a Prometheus rules file (one-line values and `|` blocks).
std::vector<std::string> rule_exprs(const std::string& path) {
    std::ifstream in(path);
    BOOST_REQUIRE_MESSAGE(in, "cannot read " << path);
    std::vector<std::string> out;
    std::string line;
    std::size_t block_indent = std::string::npos;
    while (std::getline(in, line)) {
        const auto indent = line.find_first_not_of(' ');
        if (block_indent != std::string::npos) {
            if (indent != std::string::npos && indent > block_indent) {
                out.back() += "\n" + line;
                continue;
            }
            block_indent = std::string::npos;
        }
        if (indent == std::string::npos || line.compare(indent, 5, "expr:") != 0) continue;
        std::string value = line.substr(indent + 5);
        value.erase(0, value.find_first_not_of(' '));
        out.push_back(value == "|" || value == "|-" || value == ">-" ? std::string() : value);
        if (out.back().empty()) block_indent = indent;
    }
    return out;
}

json::value status_config(const MockServer& mock, const Pki& pki) {
    auto cfg = base_config(mock, &pki);
    auto& list = cfg.at("callers").at("list").as_array();
    list.push_back(json::object{{"name", "limited"},
                                {"api_key_sha256", json::array{rdsgw::sha256_hex(kLimitedKey)}},
                                {"projects", json::array{"*"}},
                                {"rate_per_s", 0.01},
                                {"burst", 1}});
    cfg.as_object()["log"] = {{"access", "off"}, {"level", "info"}};
    return cfg;
}

// 3 misses, 5 hits, a 401, the limited caller's hit and 429, an answer the contract refuses (502).
// Returns the download links' query strings the callers received.
std::vector<std::string> make_traffic(GatewayProc& gw, MockServer& mock) {
    std::vector<std::string> links;
    auto fetch = [&](const std::string& backup, const Headers& h) {
        auto r = gw.get(backup_path(backup), h);
        if (r.status != 200) return r.status;
        const json::value body = r.json();  // named: the range below must not outlive it
        for (const auto& f : body.at("files").as_array()) {
            std::string link(f.at("download_link").as_string());
            links.push_back(link.substr(link.find('?') + 1));
        }
        return r.status;
    };
    for (int i = 0; i < 3; ++i) BOOST_REQUIRE(fetch("stpage" + std::to_string(i), with_key()) == 200u);
    for (int i = 0; i < 5; ++i) BOOST_REQUIRE(fetch("stpage" + std::to_string(i % 3), with_key()) == 200u);
    BOOST_REQUIRE(fetch("stpage0", {}) == 401u);
    BOOST_REQUIRE(fetch("stpage0", {{"X-Api-Key", kLimitedKey}}) == 200u);
    BOOST_REQUIRE(fetch("stpage0", {{"X-Api-Key", kLimitedKey}}) == 429u);
    mock.configure(R"({"script":[{"body_mode":"bad_size"}]})");
    BOOST_REQUIRE(fetch("stpagebad", with_key()) == 502u);
    // A request is counted (metrics and status board) once its answer is written, so a connection's thread
    // may count it a moment after the client read it: wait until all twelve are counted in both.
    BOOST_REQUIRE(eventually(
        [&] {
            // (and the eleven of the two callers, counted last)
            const json::value s = gw.admin_get("/admin/status.json").json();
            const std::string m = gw.admin_get("/metrics").body;
            return s.at("total").at("requests").to_number<double>() >= 12.0 &&
                   metric_sum(m, "rdsgw_requests_total", {R"(route="backup_files")"}) >= 12.0 &&
                   metric_sum(m, "rdsgw_caller_requests_total") >= 11.0;
        },
        10s));
    return links;
}

}  // namespace

BOOST_AUTO_TEST_CASE(status_json_counts_what_metrics_count) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"auth":"static","static_token":")" + kToken + R"("})");
    GatewayProc gw(status_config(mock, pki), {{"RDS_AUTH_TOKEN", kToken}});
    const auto links = make_traffic(gw, mock);
    const auto st = gw.admin_get("/admin/status.json");
    BOOST_REQUIRE_EQUAL(st.status, 200u);
    BOOST_TEST(st.header("Content-Type") == "application/json");
    BOOST_TEST(st.header("Cache-Control") == "no-store");
    const json::value s = st.json();
    const std::string m = gw.admin_get("/metrics").body;
    const std::string bf = R"(route="backup_files")";
    const auto total = [&](const char* a, const char* b) {
        return s.at("total").at(a).at(b).to_number<double>();
    };
    const auto number = [&](const char* a) { return s.at("total").at(a).to_number<double>(); };

    BOOST_TEST(number("requests") == 12.0);
    BOOST_TEST(number("requests") == metric_sum(m, "rdsgw_requests_total", {bf}));
    BOOST_TEST(total("cache", "HIT") == 6.0);
    BOOST_TEST(total("cache", "HIT") == metric_sum(m, "rdsgw_requests_total", {bf, R"(cache="HIT")"}));
    BOOST_TEST(total("cache", "MISS") == 4.0);
    BOOST_TEST(total("cache", "MISS") == metric_sum(m, "rdsgw_requests_total", {bf, R"(cache="MISS")"}));
    BOOST_TEST(total("status", "2xx") == 9.0);
    BOOST_TEST(total("status", "4xx") == 1.0);  // the 401; the 429 is apart
    BOOST_TEST(total("status", "429") == 1.0);
    BOOST_TEST(total("status", "5xx") == 1.0);
    BOOST_TEST(number("throttled") ==
               metric_sum(m, "rdsgw_caller_rate_limited_total", {R"(caller="limited")"}));
    BOOST_TEST(number("throttled") == metric_sum(m, "rdsgw_rejected_requests_total", {R"(reason="rate")"}));
    BOOST_TEST(number("upstream_attempts") == metric_sum(m, "rdsgw_upstream_requests_total"));
    BOOST_TEST(number("upstream_fetches") == 4.0);
    BOOST_TEST(number("answers_refused") == 1.0);
    BOOST_TEST(s.at("upstream").at("answers_refused_total").at("contract").to_number<double>() ==
               metric_sum(m, "rdsgw_upstream_answers_refused_total", {R"(reason="contract")"}));
    BOOST_TEST(metric_sum(m, "rdsgw_upstream_answers_refused_total") == 1.0);
    BOOST_TEST(s.at("rates").at("upstream_calls_saved_total").to_number<double>() == 6.0);
    BOOST_TEST(s.at("rates").at("hit_ratio_total").to_number<double>() == 0.6);
    BOOST_TEST(s.at("cache").at("entries").to_number<double>() == metric_sum(m, "rdsgw_cache_entries"));
    BOOST_TEST(s.at("cache").at("bytes").to_number<double>() == metric_sum(m, "rdsgw_cache_bytes"));
    BOOST_TEST(s.at("upstream").at("latency_ms").at("samples").to_number<double>() == 4.0);
    BOOST_TEST(s.at("upstream").at("breakers").at(0).at("state").as_string() == "closed");
    BOOST_TEST(metric_sum(m, "rdsgw_circuit_breaker_state") == 0.0);
    BOOST_TEST(s.at("credential").at("kind").as_string() == "token");
    BOOST_TEST(s.at("credential").at("expiry").as_string() == "never");
    BOOST_TEST(s.at("version").as_string() == RDSGW_VERSION);
    // Callers by their configured names, with their own counts (9 requests of tester, 2 of limited).
    const auto& top = s.at("callers").at("top_by_requests").as_array();
    BOOST_REQUIRE_EQUAL(top.size(), 2u);
    BOOST_TEST(top[0].at("name").as_string() == "tester");
    BOOST_TEST(top[0].at("requests").to_number<double>() == 9.0);
    BOOST_TEST(top[0].at("requests").to_number<double>() ==
               metric_sum(m, "rdsgw_caller_requests_total", {R"(caller="tester")"}));
    BOOST_TEST(top[1].at("name").as_string() == "limited");
    const auto& throttled = s.at("callers").at("top_by_throttled").as_array();
    BOOST_REQUIRE_EQUAL(throttled.size(), 1u);
    BOOST_TEST(throttled[0].at("name").as_string() == "limited");
    BOOST_TEST(throttled[0].at("throttled").to_number<double>() == 1.0);
    // The series hold the same requests (they ended at most one second ago).
    BOOST_REQUIRE(eventually(
        [&] {
            const auto series =
                gw.admin_get("/admin/status.json").json().at("series").at("requests").as_array();
            double n = 0;
            for (const auto& v : series) n += v.to_number<double>();
            return n == 12.0;
        },
        10s));

    // Nothing secret in what the status page is made of or shows.
    std::vector<std::string> planted = {kToken, kApiKey, kLimitedKey, "Signature=", "AccessKeyId"};
    planted.insert(planted.end(), links.begin(), links.end());
    BOOST_TEST(links.size() >= 6u);
    for (const char* path : {"/admin/status.json", "/admin/status", "/admin/status/app.js"}) {
        const std::string body = gw.admin_get(path).body;
        for (const auto& secret : planted)
            BOOST_TEST(body.find(secret) == std::string::npos, path << ": " << secret);
    }
}

BOOST_AUTO_TEST_CASE(page_and_files_on_the_admin_listener) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    GatewayProc gw(base_config(mock, &pki), {{"RDS_AUTH_TOKEN", "t"}});
    const auto page = gw.admin_get("/admin/status");
    BOOST_REQUIRE_EQUAL(page.status, 200u);
    BOOST_TEST(page.header("Content-Type") == "text/html; charset=utf-8");
    BOOST_TEST(page.header("Content-Security-Policy").find("default-src 'none'") != std::string::npos);
    BOOST_TEST(page.header("Content-Security-Policy").find("connect-src 'self'") != std::string::npos);
    BOOST_TEST(page.body.find("status/chart.js") != std::string::npos);
    const auto chart = gw.admin_get("/admin/status/chart.js");
    BOOST_REQUIRE_EQUAL(chart.status, 200u);
    BOOST_TEST(chart.header("Content-Type") == "text/javascript; charset=utf-8");
    BOOST_TEST(chart.body.rfind("/*!\n * Chart.js v", 0) == 0u);
    BOOST_TEST(gw.admin_get("/admin/status/app.js").status == 200u);
    BOOST_TEST(gw.admin_get("/admin/status/app.css").header("Content-Type") == "text/css; charset=utf-8");
    // Unknown files, other methods, and the main listener.
    const auto missing = gw.admin_get("/admin/status/other.js");
    BOOST_TEST(missing.status == 404u);
    BOOST_TEST(missing.json().at("error_code").as_string() == "RDSGW.404");
    BOOST_TEST(send_raw(gw.admin_port,
                        "POST /admin/status.json HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
                        "Connection: close\r\n\r\n")
                   .rfind("HTTP/1.1 405", 0) == 0u);
    BOOST_TEST(gw.get("/admin/status", with_key()).status == 404u);
    BOOST_TEST(gw.get("/admin/status.json", with_key()).status == 404u);
    // The page's own requests are not the API's traffic.
    BOOST_TEST(gw.admin_get("/admin/status.json").json().at("total").at("requests").to_number<int>() == 0);
}

BOOST_AUTO_TEST_CASE(protected_like_metrics) {
    Pki pki = make_pki();
    MockServer mock(&pki);
    auto cfg = base_config(mock, &pki);
    cfg.at("callers").as_object()["metrics_require_auth"] = true;
    GatewayProc gw(cfg, {{"RDS_AUTH_TOKEN", "t"}});
    for (const char* path : {"/metrics", "/admin/status", "/admin/status.json", "/admin/status/chart.js"}) {
        const auto anonymous = get(gw.admin_port, path);
        BOOST_TEST(anonymous.status == 401u, path);
        BOOST_TEST(anonymous.body.find("RDSGW.401") != std::string::npos, path);
        BOOST_TEST(get(gw.admin_port, path, {{"X-Api-Key", "wrong-key"}}).status == 401u, path);
        BOOST_TEST(get(gw.admin_port, path, with_key()).status == 200u, path);
    }
}

BOOST_AUTO_TEST_CASE(breaker_and_latency_shown) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"latency_ms":40})");
    auto cfg = base_config(mock, &pki);
    cfg.as_object()["retry"] = {{"max_attempts", 1}, {"breaker_failures", 2}, {"breaker_open_ms", 600000}};
    GatewayProc gw(cfg, {{"RDS_AUTH_TOKEN", "t"}});
    for (int i = 0; i < 3; ++i)
        BOOST_REQUIRE(gw.get(backup_path("stlat" + std::to_string(i)), with_key()).status == 200u);
    auto s = gw.admin_get("/admin/status.json").json();
    // Every fetch took at least the mock's 40 ms; the quantile is interpolated inside a bucket whose
    // lower bound is 32 ms.
    BOOST_TEST(s.at("upstream").at("latency_ms").at("p50").to_number<double>() >= 32.0);
    BOOST_TEST(s.at("upstream").at("latency_ms").at("samples").to_number<int>() == 3);
    BOOST_TEST(s.at("upstream").at("attempts_per_fetch").to_number<double>() == 1.0);
    // Two failures open the breaker: status.json and /metrics both say so.
    mock.configure(R"({"status":500,"error_code":"DBS.108000","latency_ms":0})");
    for (int i = 0; i < 2; ++i)
        BOOST_TEST(gw.get(backup_path("stfail" + std::to_string(i)), with_key()).status == 500u);
    BOOST_TEST(gw.get(backup_path("stfail9"), with_key()).status == 503u);
    // Requests are counted once their answers are written: wait until all six are (see make_traffic).
    BOOST_TEST(eventually(
        [&] {
            s = gw.admin_get("/admin/status.json").json();
            return s.at("total").at("requests").to_number<int>() >= 6;
        },
        10s));
    BOOST_TEST(s.at("upstream").at("breakers").at(0).at("state").as_string() == "open");
    BOOST_TEST(metric_sum(gw.admin_get("/metrics").body, "rdsgw_circuit_breaker_state") == 2.0);
    BOOST_TEST(s.at("total").at("status").at("5xx").to_number<int>() == 3);
    // The fetch the breaker refused made no attempt: 6 fetches, 5 attempts.
    BOOST_TEST(s.at("total").at("upstream_fetches").to_number<int>() == 6);
    BOOST_TEST(s.at("total").at("upstream_attempts").to_number<int>() == 5);
    BOOST_TEST(s.at("rates").at("error_ratio_5xx").to_number<double>() == 0.5);
}

// Every metric the Grafana dashboard and the alert rules query is in a real scrape of a gateway that served
// some traffic (the names, not their meaning: promtool test rules checks the rules' logic).
BOOST_AUTO_TEST_CASE(dashboard_and_rules_use_real_metric_names) {
    Pki pki = make_pki();
    MockServer mock(&pki, R"({"auth":"static","static_token":")" + kToken + R"("})");
    GatewayProc gw(status_config(mock, pki), {{"RDS_AUTH_TOKEN", kToken}});
    make_traffic(gw, mock);
    const auto scraped = sampled_names(gw.admin_get("/metrics").body);
    BOOST_TEST(scraped.count("rdsgw_upstream_answers_refused_total") == 1u);

    std::ifstream f(std::string(RDSGW_SOURCE_DIR) + "/conf/grafana/rds-gateway.json");
    BOOST_REQUIRE(f);
    const json::value dash = parse_json(std::string(std::istreambuf_iterator<char>(f), {}));
    BOOST_TEST(dash.at("schemaVersion").to_number<int>() >= 36);
    BOOST_TEST(dash.at("__inputs").at(0).at("name").as_string() == "DS_PROMETHEUS");
    std::vector<std::string> exprs, variable_metrics;
    dashboard_queries(dash, exprs, variable_metrics);
    BOOST_TEST(exprs.size() >= 20u);
    BOOST_TEST(variable_metrics.size() >= 1u);
    std::set<std::string> used(variable_metrics.begin(), variable_metrics.end());
    for (const auto& e : exprs) {
        const auto names = promql_names(e);
        BOOST_TEST(!names.empty(), "no metric in dashboard query: " << e);
        used.insert(names.begin(), names.end());
    }
    for (const auto& panel : dash.at("panels").as_array()) {
        if (panel.at("type").as_string() == "row") continue;
        BOOST_TEST(panel.at("datasource").at("uid").as_string() == "${DS_PROMETHEUS}");
    }
    for (const auto& e :
         rule_exprs(std::string(RDSGW_SOURCE_DIR) + "/conf/prometheus/rds-gateway.rules.yml")) {
        const auto names = promql_names(e);
        BOOST_TEST(!names.empty(), "no metric in rule: " << e);
        for (const auto& n : names)
            if (n != "up") used.insert(n);  // `up` is Prometheus' own
    }
    BOOST_TEST_MESSAGE("metric names used by the dashboard and the rules: " << used.size());
    BOOST_TEST(used.size() >= 15u);
    for (const auto& n : used) BOOST_TEST(scraped.count(n) == 1u, "not in the scrape: " << n);
    // The extraction itself: names, not functions, labels, variables or keywords.
    BOOST_TEST(
        (promql_names(R"(histogram_quantile(0.99, sum by (le) (rate(a_bucket{x=~"$v"}[$__rate_interval]))) )"
                      R"(> 2 and on (instance) b offset 15m unless c{d="e"} > 1e300)") ==
         std::set<std::string>{"a_bucket", "b", "c"}));
}
