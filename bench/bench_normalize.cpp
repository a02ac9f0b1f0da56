// Micro-benchmarks of the response contract (runs on every cache miss) and of the time parser.
// BM_ParseAndSerializeOnly is a reference point, not a feature: Boost.JSON's own parse + serialize of the
// same answer, i.e. the least any "build a json::value, then serialize it" design would cost.
#include "rdsgw/normalize.hpp"
#include "rdsgw/secret_scan.hpp"
#include "rdsgw/text.hpp"
#include "rdsgw/timefmt.hpp"

#include <benchmark/benchmark.h>
#include <boost/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace {

// A realistic answer: pre-signed OBS links with their query, like the ones RDS sends.
std::string make_answer(int files) {
    std::string s = "{\"files\":[";
    for (int i = 0; i < files; ++i) {
        if (i) s += ',';
        const std::string id = "43e4feaab48f11e89039fa163ebaa7e4br01_" + std::to_string(i);
        s +=
            "{\"name\":\"" + id +
            ".qp\",\"size\":2803,\"download_link\":\"https://rdsbucket.southchina.user.2.obs.cn-south-1."
            "myhuaweicloud.com/" +
            id +
            ".qp?AccessKeyId=HPUAEXAMPLEAK0000001&Expires=1534385714&x-obs-security-token=gQpjbi1ub3J0aC00"
            "iZZ5pGnYx0wdtBgkqhkiG9w0BBwKgggr8MIIK-AIBATENMAsGCWCGSAFlAwQCATCCCR4GCSqGSIb3DQEHAaCCCQ8Egg&"
            "Signature=8MuDpYrMCz3Ubw%2FmQkOKMOBkr9c%3D\",\"link_expired_time\":\"2018-08-16T10:15:14+0800\","
            "\"database_name\":\"db_" +
            std::to_string(i) + "\"}";
    }
    return s + "],\"bucket\":\"rdsbucket.op.svc.rds.1024.cn.north.1\"}";
}

void BM_Normalize(benchmark::State& state) {
    const std::string body = make_answer(static_cast<int>(state.range(0)));
    rdsgw::NormalizeOptions opts;
    opts.link_host_suffixes = {"myhuaweicloud.com"};
    const auto now = std::chrono::system_clock::now();
    for (auto _ : state) {
        auto r = rdsgw::normalize_backup_files(body, now, opts);
        benchmark::DoNotOptimize(r);
        if (r.index() != 0) state.SkipWithError("normalize failed");
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * body.size()));
    state.counters["body_bytes"] = static_cast<double>(body.size());
}
BENCHMARK(BM_Normalize)->Arg(1)->Arg(50);

void BM_ParseAndSerializeOnly(benchmark::State& state) {
    const std::string body = make_answer(static_cast<int>(state.range(0)));
    for (auto _ : state) {
        unsigned char buf[4096];
        boost::json::monotonic_resource mr(buf, sizeof buf);
        const boost::json::value v = boost::json::parse(body, &mr);
        std::string out = boost::json::serialize(v);
        benchmark::DoNotOptimize(out);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_ParseAndSerializeOnly)->Arg(1)->Arg(50);

void BM_ParseRdsTime(benchmark::State& state) {
    const std::string text = " 2018-08-016T10:15:14+0800";
    for (auto _ : state) {
        auto t = rdsgw::parse_rds_time(text);
        benchmark::DoNotOptimize(t);
    }
}
BENCHMARK(BM_ParseRdsTime);

void BM_FormatRdsTime(benchmark::State& state) {
    const auto t = *rdsgw::parse_rds_time("2018-08-16T10:15:14+0800");
    for (auto _ : state) {
        auto s = rdsgw::format_rds_time(t);
        benchmark::DoNotOptimize(s);
    }
}
BENCHMARK(BM_FormatRdsTime);

void BM_RedactLink(benchmark::State& state) {
    const std::string link =
        "https://rdsbucket.obs.cn-south-1.myhuaweicloud.com/x.qp?AccessKeyId=AK&Expires=1&Signature=S%3D";
    for (auto _ : state) {
        auto s = rdsgw::redact_link(link);
        benchmark::DoNotOptimize(s);
    }
}
BENCHMARK(BM_RedactLink);

// The credential check runs on every miss (rdsgw::find_secret): a ~1 KB answer and the three secrets an
// IAM-mode gateway holds across a rotation (current token, previous token, security token). Arg 0: a plain
// answer (no backslash: raw scan only); 1: the same answer with JSON escapes (raw scan, then every string
// decoded); 2: no secrets configured.
void BM_FindSecret(benchmark::State& state) {
    std::string body = make_answer(2);
    if (state.range(0) == 1) body.insert(body.find("\"bucket\""), "\"note\":\"caf\\u00e9 \\/ \\\"x\\\"\",");
    const std::string token(2400, 'T'), previous(2400, 'P'), security(700, 'S');  // IAM tokens are KBs long
    std::vector<std::string_view> secrets = {token, previous, security};
    if (state.range(0) == 2) secrets.clear();
    for (auto _ : state) {
        auto m = rdsgw::find_secret(body, secrets);
        benchmark::DoNotOptimize(m);
        if (m) state.SkipWithError("unexpected match");
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * body.size()));
    state.counters["body_bytes"] = static_cast<double>(body.size());
}
BENCHMARK(BM_FindSecret)->Arg(0)->Arg(1)->Arg(2);

// Short secrets (a 40-byte static token, so memmem's search cannot stop on length): the raw scan's cost.
void BM_FindSecretShortTokens(benchmark::State& state) {
    const std::string body = make_answer(2);
    const std::string a(40, 'a'), b(40, 'b'), c(40, 'c');
    const std::vector<std::string_view> secrets = {a, b, c};
    for (auto _ : state) {
        auto m = rdsgw::find_secret(body, secrets);
        benchmark::DoNotOptimize(m);
    }
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * body.size()));
}
BENCHMARK(BM_FindSecretShortTokens);

// The one JSON string escaper (text.hpp) on what the access log writes per request (hit path): a request
// id, a client address, a caller name, a project and a backup id; and on a name that needs escapes.
void BM_JsonEscapeAccessLogValues(benchmark::State& state) {
    const std::string_view values[] = {"7d6e9cc5e31bc3d00000000000000001", "127.0.0.1", "restore-svc",
                                       "97b026aa9cc4417888c14c84a1ad9860",
                                       "c0c9f155c7b7423a9d30f0175998b63bbr01"};
    std::string out;
    out.reserve(256);
    for (auto _ : state) {
        out.clear();
        for (const std::string_view v : values) rdsgw::json_escape_append(out, v);
        benchmark::DoNotOptimize(out.data());
    }
}
BENCHMARK(BM_JsonEscapeAccessLogValues);

void BM_JsonEscapeMixed(benchmark::State& state) {
    const std::string v = "\xe5\xa4\x87\xe4\xbb\xbd \"db\"\t\xff.qp";
    std::string out;
    out.reserve(256);
    for (auto _ : state) {
        out.clear();
        rdsgw::json_escape_append(out, v);
        benchmark::DoNotOptimize(out.data());
    }
}
BENCHMARK(BM_JsonEscapeMixed);

}  // namespace

BENCHMARK_MAIN();
