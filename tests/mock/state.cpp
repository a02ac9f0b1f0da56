// The mock's request handling: RDS backup-files, IAM tokens, and the /_mock control endpoints.
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <zlib.h>

#include <cctype>
#include <cstdio>
#include <optional>
#include <stdexcept>

#include <boost/url/parse.hpp>

#include "mock.hpp"
#include "rdsgw/signer.hpp"
#include "rdsgw/text.hpp"

namespace rdsgw::mock {

namespace json = boost::json;
using namespace std::chrono;

namespace {

// The response example of the API page, verbatim: typographic quotes, a full-width comma, a bad time.
constexpr std::string_view kDocExample = R"DOC({
   “files”: [
    {
        “name": “43e4feaab48f11e89039fa163ebaa7e4br01.xxx”,
        “size”: 2803,
        “download_link”:”https://obs.myhwclouds.com/rdsbucket.southchina.user.2/xxxxxx”,
        “link_expired_time”:” 2018-08-016T10:15:14+0800”
     }, 
     {
        “name": “43e4feaab48f11e89039fa163ebaa7e4br01.xxx”,
        “size”: 2803,
        “download_link”:”https://obs.myhwclouds.com/rdsbucket.southchina.user.2/xxxxxx”,
        “link_expired_time”:” 2018-08-016T10:15:14+0800”
     }
     ]，
    "bucket": "rdsbucket.op.svc.rds.1024.cn.north.1"
}
)DOC";

constexpr std::string_view kHtmlPage =
    "<!DOCTYPE html>\n<html><head><title>Welcome</title></head><body><h1>It works</h1>"
    "<p>This page is served by a captive portal.</p></body></html>\n";

std::string random_hex(std::size_t bytes) {
    std::string raw(bytes, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(raw.data()), static_cast<int>(bytes)) != 1)
        throw std::runtime_error("RAND_bytes failed");
    return hex_lower(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

std::string civil(sys_seconds t, const char* zone) {
    const auto day = floor<days>(t);
    const year_month_day ymd{day};
    const hh_mm_ss hms{t - day};
    char buf[64];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d%s", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                  static_cast<int>(hms.hours().count()), static_cast<int>(hms.minutes().count()),
                  static_cast<int>(hms.seconds().count()), zone);
    return buf;
}

Response make_response(unsigned status, std::string body, std::string_view content_type) {
    Response res{static_cast<http::status>(status), 11};
    res.set(http::field::server, "rds-mock");
    if (!content_type.empty()) res.set(http::field::content_type, content_type);
    res.body() = std::move(body);
    return res;
}

Response json_response(unsigned status, const json::value& body) {
    return make_response(status, json::serialize(body), "application/json");
}

Response error_json(unsigned status, std::string_view code, std::string_view msg) {
    return json_response(status, json::object{{"error_code", code}, {"error_msg", msg}});
}

// An RDS error answer shaped by the behaviour's error_body_mode.
Response rds_error(unsigned status, std::string_view code, std::string_view msg, const Behaviour& b) {
    Response res;
    if (b.error_body_mode == "html") {
        res = make_response(status,
                            "<html><head><title>" + std::to_string(status) +
                                "</title></head><body><h1>Error</h1></body></html>\n",
                            "text/html");
    } else if (b.error_body_mode == "empty") {
        res = make_response(status, "", "");
    } else {
        res = error_json(status, code, msg);
    }
    if (!b.retry_after.empty()) res.set(http::field::retry_after, b.retry_after);
    return res;
}

std::string_view get_string(const json::value* v) {
    return v != nullptr && v->is_string() ? std::string_view(v->get_string()) : std::string_view();
}

// Checks the IAM password-token request body of RDS_API.md. Returns "" or what is wrong; `scope` is
// "id:<project id>", "name:<project name>" or "domain:<account>".
std::string check_iam_body(const json::value& body, std::string& password, std::string& scope) {
    boost::system::error_code ec;
    const json::value* methods = body.find_pointer("/auth/identity/methods", ec);
    if (methods == nullptr || !methods->is_array()) return "auth.identity.methods is missing";
    bool has_password = false;
    for (const auto& m : methods->get_array())
        if (m.is_string() && m.get_string() == "password") has_password = true;
    if (!has_password) return "auth.identity.methods must contain \"password\"";
    const auto* user = body.find_pointer("/auth/identity/password/user", ec);
    if (user == nullptr || !user->is_object()) return "auth.identity.password.user is missing";
    if (get_string(user->find_pointer("/domain/name", ec)).empty())
        return "auth.identity.password.user.domain.name is missing";
    if (get_string(user->find_pointer("/name", ec)).empty())
        return "auth.identity.password.user.name is missing";
    const auto* pw = user->find_pointer("/password", ec);
    if (pw == nullptr || !pw->is_string()) return "auth.identity.password.user.password is missing";
    password = std::string(pw->get_string());
    if (const auto* domain = body.find_pointer("/auth/scope/domain", ec); domain != nullptr) {
        const auto name = get_string(domain->find_pointer("/name", ec));
        if (name.empty()) return "auth.scope.domain needs a name";
        scope = "domain:" + std::string(name);
        return "";
    }
    const auto* project = body.find_pointer("/auth/scope/project", ec);
    if (project == nullptr || !project->is_object()) return "auth.scope.project is missing";
    const auto name = get_string(project->find_pointer("/name", ec));
    const auto id = get_string(project->find_pointer("/id", ec));
    if (name.empty() && id.empty()) return "auth.scope.project needs a name or an id";
    scope = id.empty() ? "name:" + std::string(name) : "id:" + std::string(id);
    return "";
}

// Splits a script entry into its action and a behaviour patch.
std::string take_action(json::object& entry) {
    std::string action;
    if (auto it = entry.find("action"); it != entry.end()) {
        action = std::string(it->value().get_string());
        entry.erase(it);
    }
    return action;
}

bool apply_action(std::string_view action, Reply& reply) {
    if (action == "reset") {
        reply.kind = Reply::Kind::reset;
    } else if (action == "hang") {
        reply.kind = Reply::Kind::hang;
    } else if (action == "close") {
        reply.kind = Reply::Kind::close;
    } else {
        return false;
    }
    return true;
}

// Self-describing IAM tokens: "MOCKTOKEN-<random>.<hex scope>.<issued us>.<expires s>.<mac>", so that any
// mock instance (one per region) accepts a token another instance's IAM side issued.
constexpr std::string_view kTokenKey = "rds-mock token key (a mock, not a secret)";

std::string hex_of(std::string_view raw) {
    return hex_lower(reinterpret_cast<const unsigned char*>(raw.data()), raw.size());
}

std::optional<std::string> unhex(std::string_view hex) {
    if (hex.size() % 2) return std::nullopt;
    std::string out;
    for (std::size_t i = 0; i < hex.size(); i += 2) {
        auto nib = [](char c) -> int {
            return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        };
        const int hi = nib(hex[i]), lo = nib(hex[i + 1]);
        if (hi < 0 || lo < 0) return std::nullopt;
        out.push_back(static_cast<char>(hi * 16 + lo));
    }
    return out;
}

std::string token_mac(std::string_view body) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    HMAC(EVP_sha256(), kTokenKey.data(), static_cast<int>(kTokenKey.size()),
         reinterpret_cast<const unsigned char*>(body.data()), body.size(), md, &len);
    return hex_of(std::string_view(reinterpret_cast<const char*>(md), 16));
}

std::string make_token(const std::string& scope, std::int64_t issued_us, std::int64_t expires_s) {
    std::string body = "MOCKTOKEN-" + random_hex(16) + "." + hex_of(scope) + "." + std::to_string(issued_us) +
                       "." + std::to_string(expires_s);
    return body + "." + token_mac(body);
}

struct TokenFacts {
    std::string scope;
    std::int64_t issued_us = 0, expires_s = 0;
};

std::optional<TokenFacts> read_token(std::string_view token) {
    const auto last = token.rfind('.');
    if (last == std::string_view::npos ||
        !constant_time_equal(token_mac(token.substr(0, last)), token.substr(last + 1)))
        return std::nullopt;
    std::vector<std::string_view> parts;
    for (std::string_view rest = token.substr(0, last);;) {
        const auto dot = rest.find('.');
        parts.push_back(rest.substr(0, dot));
        if (dot == std::string_view::npos) break;
        rest.remove_prefix(dot + 1);
    }
    if (parts.size() != 4) return std::nullopt;
    auto scope = unhex(parts[1]);
    if (!scope) return std::nullopt;
    TokenFacts f;
    f.scope = std::move(*scope);
    f.issued_us = std::stoll(std::string(parts[2]));
    f.expires_s = std::stoll(std::string(parts[3]));
    return f;
}

std::int64_t now_us() {
    return duration_cast<microseconds>(system_clock::now().time_since_epoch()).count();
}

}  // namespace

std::string format_beijing(sys_seconds t) {
    return civil(t + hours(8), "+0800");
}

std::string format_iam_time(system_clock::time_point t) {
    const auto secs = floor<seconds>(t);
    const auto us = duration_cast<microseconds>(t - secs).count();
    char frac[32];
    std::snprintf(frac, sizeof frac, ".%06lldZ", static_cast<long long>(us));
    return civil(sys_seconds{secs}, frac);
}

std::string gzip_compress(std::string_view data) {
    z_stream zs{};
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        throw std::runtime_error("deflateInit2 failed");
    std::string out(deflateBound(&zs, static_cast<uLong>(data.size())), '\0');
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    zs.avail_in = static_cast<uInt>(data.size());
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    const int rc = deflate(&zs, Z_FINISH);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    if (rc != Z_STREAM_END) throw std::runtime_error("deflate failed");
    return out;
}

State::State(Behaviour initial)
    : behaviour_(std::make_shared<const Behaviour>(std::move(initial))),
      last_rds_headers_(),
      last_iam_body_(nullptr),
      request_id_prefix_(random_hex(6)) {
    idle_close_ms_ = behaviour_->idle_close_ms;
}

std::string State::configure(const json::object& patch) {
    std::lock_guard lock(mu_);
    Behaviour next = *behaviour_;
    auto script = script_;
    auto iam_script = iam_script_;
    auto err = next.merge(patch, &script, &iam_script);
    if (!err.empty()) return err;
    idle_close_ms_ = next.idle_close_ms;
    behaviour_ = std::make_shared<const Behaviour>(std::move(next));
    script_ = std::move(script);
    iam_script_ = std::move(iam_script);
    return "";
}

void State::reset() {
    std::lock_guard lock(mu_);
    behaviour_ = std::make_shared<const Behaviour>();
    idle_close_ms_ = behaviour_->idle_close_ms;
    script_.clear();
    iam_script_.clear();
    rds_requests_ = iam_requests_ = tokens_issued_ = 0;
    last_rds_headers_.clear();
    last_rds_target_.clear();
    last_iam_body_ = nullptr;
    rds_by_backup_.clear();
    rds_by_project_.clear();
    tokens_by_scope_.clear();
    iam_project_lists_ = 0;
    connections_ = 0;
    tls_handshakes_ = 0;
    control_connections_ = 0;
    rds_ok_ = 0;
    rds_unauthorized_ = 0;
}

std::string State::next_request_id() {
    char buf[48];
    std::snprintf(buf, sizeof buf, "mock-%s-%llu", request_id_prefix_.c_str(),
                  static_cast<unsigned long long>(request_counter_.fetch_add(1, std::memory_order_relaxed)));
    return buf;
}

Reply State::handle(const Request& req, bool& control_seen) {
    const std::string_view target = req.target();
    const auto url = boost::urls::parse_origin_form(target);
    Reply reply;
    if (!url) {
        reply.response = error_json(400, "APIGW.0101", "malformed request target");
    } else {
        const auto path = url->encoded_path();
        const auto segs = url->segments();
        if (path.starts_with("/_mock/")) {
            if (!control_seen) {
                control_seen = true;
                control_connections_.fetch_add(1, std::memory_order_relaxed);
            }
            reply = handle_control(req, path);
        } else if (path == "/v3/auth/projects") {
            if (req.method() == http::verb::get)
                reply = handle_iam_projects(req);
            else
                reply.response = error_json(405, "APIGW.0101", "method not allowed");
        } else if (path == "/v3/auth/tokens") {
            if (req.method() == http::verb::post)
                reply = handle_iam(req);
            else
                reply.response = error_json(405, "APIGW.0101", "method not allowed");
        } else if (segs.size() == 3 && *segs.begin() == "v3" &&
                   *std::next(segs.begin(), 2) == "backup-files") {
            if (req.method() != http::verb::get) {
                reply.response = error_json(405, "APIGW.0101", "method not allowed");
            } else {
                const auto params = url->params();
                const auto it = params.find("backup_id");
                const bool has = it != params.end();
                const std::string backup_id = has ? std::string((*it).value) : std::string();
                reply = handle_rds(req, backup_id, has);
            }
        } else {
            reply.response =
                error_json(404, "APIGW.0101", "The API does not exist or has not been published.");
        }
    }
    if (!reply.response.count("X-Request-Id") && reply.kind == Reply::Kind::respond)
        reply.response.set("X-Request-Id", next_request_id());
    notify_waiters();
    return reply;
}

Reply State::handle_rds(const Request& req, std::string_view backup_id, bool has_backup_id) {
    json::object headers;
    for (const auto& f : req) {
        std::string name(f.name_string());
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        headers[name] = f.value();
    }

    std::string project;
    if (const auto url = boost::urls::parse_origin_form(req.target()); url && url->segments().size() == 3)
        project = *std::next(url->segments().begin());
    std::shared_ptr<const Behaviour> snapshot;
    std::optional<json::object> entry;
    {
        std::lock_guard lock(mu_);
        ++rds_requests_;
        ++rds_by_backup_[std::string(backup_id)];
        ++rds_by_project_[project];
        last_rds_headers_.swap(headers);  // the previous headers are freed after the lock
        last_rds_target_.assign(req.target());
        snapshot = behaviour_;
        if (!script_.empty()) {
            entry = std::move(script_.front());
            script_.pop_front();
        }
    }

    Reply reply;
    const Behaviour* b = snapshot.get();
    Behaviour one_shot;
    if (entry) {
        const auto action = take_action(*entry);
        one_shot = *snapshot;
        one_shot.merge(*entry, nullptr, nullptr);  // validated when configured
        b = &one_shot;
        if (apply_action(action, reply)) {
            reply.delay = milliseconds(b->latency_ms);
            if (b->hold) reply.hold = hold_until_release();
            // "hang" with raw_answer: those bytes (the start of an answer), then nothing more.
            if (reply.kind == Reply::Kind::hang) reply.raw_answer = b->raw_answer;
            return reply;
        }
    }
    reply.delay = milliseconds(b->latency_ms);
    if (b->hold) reply.hold = hold_until_release();

    auto finish = [&](Response res) {
        if (res.result_int() == 401) rds_unauthorized_.fetch_add(1, std::memory_order_relaxed);
        if (res.result_int() == 200) rds_ok_.fetch_add(1, std::memory_order_relaxed);
        if (b->gzip && !res.body().empty()) {
            res.body() = gzip_compress(res.body());
            res.set(http::field::content_encoding, "gzip");
        }
        reply.response = std::move(res);
        reply.raw_before = b->raw_before;
        reply.raw_after = b->raw_after;
        reply.raw_answer = b->raw_answer;
        return std::move(reply);
    };

    if (b->status != 0) return finish(rds_error(b->status, b->error_code, b->error_msg, *b));
    std::string code, msg;
    if (!check_auth(req, *b, code, msg, project)) {
        Behaviour rds_shape = *b;
        rds_shape.error_body_mode = "rds";
        rds_shape.retry_after.clear();
        return finish(rds_error(code == "APIGW.0302" ? 403 : 401, code, msg, rds_shape));
    }
    if (!b->served_projects.empty() && !b->served_projects.count(project))
        return finish(error_json(403, "DBS.200010", "the project is not in this region"));
    if (!has_backup_id || backup_id.empty())
        return finish(error_json(400, "DBS.200001", "backup_id is required"));
    if (b->missing_backups.count(std::string(backup_id)))
        return finish(error_json(404, "DBS.200002", "backup not found"));

    const std::string& mode = b->body_mode;
    if (mode == "doc_example")
        return finish(make_response(200, std::string(kDocExample), "application/json"));
    if (mode == "not_json") return finish(make_response(200, "this is not JSON {", "application/json"));
    if (mode == "html") return finish(make_response(200, std::string(kHtmlPage), "text/html"));
    if (mode == "empty") return finish(make_response(200, "", "application/json"));
    if (mode == "array") return finish(make_response(200, "[]", "application/json"));
    if (mode == "custom") return finish(make_response(200, b->custom_body, "application/json"));

    const auto now = floor<seconds>(system_clock::now());
    const auto expiry = now + seconds(b->link_lifetime_s);
    const bool bad_time = mode == "bad_time";
    const std::string time_text = bad_time ? "2018-13-01T00:00:00+0800" : format_beijing(expiry);
    const std::string other_text =
        bad_time ? time_text : format_beijing(now + seconds(b->link_lifetime_s / 2));
    const std::string expires_epoch = std::to_string(expiry.time_since_epoch().count());
    json::array files;
    files.reserve(static_cast<std::size_t>(b->files));
    for (int i = 0; i < b->files; ++i) {
        const std::string name = std::string(backup_id) + "_" + std::to_string(i) + ".qp";
        json::object f;
        f["name"] = name;
        f["size"] = mode == "bad_size" ? std::int64_t{-5} : std::int64_t{2803} + i;
        f["download_link"] = "https://obs.cn-north-4.myhuaweicloud.com/" + b->bucket + "/" + name +
                             "?AccessKeyId=MOCKAK&Expires=" + expires_epoch + "&Signature=mocksig" +
                             std::to_string(link_counter_.fetch_add(1, std::memory_order_relaxed));
        if (b->expiry_field == "link_expired_time" || b->expiry_field == "both" ||
            b->expiry_field == "both_different")
            f["link_expired_time"] = time_text;
        if (b->expiry_field == "link_expired_link" || b->expiry_field == "both")
            f["link_expired_link"] = time_text;
        if (b->expiry_field == "both_different") f["link_expired_link"] = other_text;
        f["database_name"] = "";
        files.emplace_back(std::move(f));
    }
    return finish(json_response(200, json::object{{"files", std::move(files)}, {"bucket", b->bucket}}));
}

bool State::token_valid(std::string_view token, std::string& scope) {
    const auto now = system_clock::now();
    std::lock_guard lock(mu_);
    if (const auto t = tokens_.find(std::string(token)); t != tokens_.end()) {
        scope = t->second.scope;
        return !t->second.revoked && now < t->second.expires;
    }
    // Issued by another instance.
    const auto f = read_token(token);
    if (!f) return false;
    scope = f->scope;
    if (f->issued_us <= revoked_before_us_) return false;
    if (f->scope.rfind("id:", 0) == 0) {
        const auto r = revoked_before_by_project_.find(f->scope.substr(3));
        if (r != revoked_before_by_project_.end() && f->issued_us <= r->second) return false;
    }
    return duration_cast<seconds>(now.time_since_epoch()).count() < f->expires_s;
}

bool State::scope_covers(const Behaviour& b, std::string_view scope, std::string_view project) const {
    if (scope == "id:" + std::string(project)) return true;
    if (scope.rfind("name:", 0) != 0) return false;
    for (const auto& p : b.iam_projects) {
        const auto& o = p.as_object();
        if (o.at("name").as_string() == scope.substr(5) && o.at("id").as_string() == project) return true;
    }
    return false;
}

bool State::check_auth(const Request& req, const Behaviour& b, std::string& code, std::string& msg,
                       std::string_view project) {
    code = "APIGW.0307";
    msg = "The token must be updated.";
    if (b.auth == "none") return true;
    if (b.auth == "static") {
        const auto it = req.find("X-Auth-Token");
        return it != req.end() && !b.static_token.empty() && constant_time_equal(it->value(), b.static_token);
    }
    if (b.auth == "iam") {
        const auto it = req.find("X-Auth-Token");
        std::string scope;
        if (it == req.end() || !token_valid(it->value(), scope)) return false;
        if (b.strict_scope && !project.empty() && !scope_covers(b, scope, project)) {
            code = "APIGW.0302";
            msg = "The token is not scoped to this project.";
            return false;
        }
        return true;
    }
    // aksk
    code = "APIGW.0301";
    msg = "Incorrect IAM authentication information: verify aksk signature fail";
    const auto auth_it = req.find(http::field::authorization);
    if (auth_it == req.end()) return false;
    const auto parsed = parse_sdk_authorization(auth_it->value());
    if (!parsed || b.ak.empty() || parsed->access_key != b.ak) return false;
    bool has_host = false, has_date = false;
    for (const auto& h : parsed->signed_headers) {
        has_host = has_host || h == "host";
        has_date = has_date || h == "x-sdk-date";
    }
    if (!has_host || !has_date) return false;
    const auto date_it = req.find("X-Sdk-Date");
    if (date_it == req.end()) return false;
    const auto when = parse_sdk_date(date_it->value());
    if (!when) return false;
    const auto skew = system_clock::now() - *when;
    if (skew > minutes(15) || skew < -minutes(15)) {
        msg = "Incorrect IAM authentication information: X-Sdk-Date is too far from the server time";
        return false;
    }
    SignableRequest sr;
    sr.method = std::string(req.method_string());
    const std::string_view target = req.target();
    const auto q = target.find('?');
    sr.path = std::string(target.substr(0, q));
    sr.query = q == std::string_view::npos ? std::string() : std::string(target.substr(q + 1));
    for (const auto& name : parsed->signed_headers) {
        const auto it = req.find(name);
        if (it == req.end()) return false;
        sr.headers.emplace_back(name, std::string(it->value()));
    }
    sr.body = req.body();
    return constant_time_equal(compute_signature(sr, b.sk), parsed->signature);
}

Reply State::handle_iam(const Request& req) {
    boost::system::error_code ec;
    json::value body = json::parse(req.body(), ec);
    if (ec) body = nullptr;

    std::shared_ptr<const Behaviour> snapshot;
    std::optional<json::object> entry;
    {
        std::lock_guard lock(mu_);
        ++iam_requests_;
        last_iam_body_ = body;
        snapshot = behaviour_;
        if (!iam_script_.empty()) {
            entry = std::move(iam_script_.front());
            iam_script_.pop_front();
        }
    }

    Reply reply;
    Behaviour b = *snapshot;
    unsigned fail_status = b.iam_fail_status;
    int latency = b.iam_latency_ms;
    if (entry) {
        const auto action = take_action(*entry);
        b.merge(*entry, nullptr, nullptr);
        if (entry->contains("status")) fail_status = b.status;
        if (entry->contains("latency_ms")) latency = b.latency_ms;
        if (entry->contains("iam_fail_status")) fail_status = b.iam_fail_status;
        if (entry->contains("iam_latency_ms")) latency = b.iam_latency_ms;
        reply.delay = milliseconds(latency);
        if (apply_action(action, reply)) return reply;
    }
    reply.delay = milliseconds(latency);

    if (fail_status != 0) {
        const bool scripted_code = entry && entry->contains("error_code");
        const bool scripted_msg = entry && entry->contains("error_msg");
        reply.response = error_json(fail_status,
                                    scripted_code        ? b.error_code
                                    : fail_status == 401 ? "APIGW.0301"
                                                         : "IAM.0001",
                                    scripted_msg ? b.error_msg : "mock IAM error");
        if (!b.retry_after.empty()) reply.response.set(http::field::retry_after, b.retry_after);
        return reply;
    }
    std::string password, scope;
    const std::string problem =
        body.is_null() ? "the body is not JSON" : check_iam_body(body, password, scope);
    if (!problem.empty()) {
        reply.response = error_json(400, "IAM.0002", "malformed token request: " + problem);
        return reply;
    }
    if (!b.iam_password.empty() && !constant_time_equal(password, b.iam_password)) {
        reply.response = error_json(401, "APIGW.0301", "Incorrect IAM authentication information");
        return reply;
    }

    const auto now = system_clock::now();
    const auto expires = now + seconds(b.token_lifetime_s);
    std::string token =
        make_token(scope, now_us(), duration_cast<seconds>(expires.time_since_epoch()).count());
    {
        std::lock_guard lock(mu_);
        tokens_[token] = TokenInfo{expires, false, scope};
        ++tokens_issued_;
        ++tokens_by_scope_[scope];
    }
    reply.response =
        json_response(201, json::object{{"token", json::object{{"expires_at", format_iam_time(expires)},
                                                               {"issued_at", format_iam_time(now)},
                                                               {"methods", json::array{"password"}}}}});
    reply.response.set("X-Subject-Token", token);
    return reply;
}

Reply State::handle_iam_projects(const Request& req) {
    std::shared_ptr<const Behaviour> b;
    {
        std::lock_guard lock(mu_);
        ++iam_project_lists_;
        b = behaviour_;
    }
    Reply reply;
    reply.delay = milliseconds(b->iam_latency_ms);
    if (b->iam_fail_status != 0) {
        reply.response = error_json(b->iam_fail_status, "IAM.0001", "mock IAM error");
        return reply;
    }
    std::string code, msg;
    bool ok = check_auth(req, *b, code, msg);
    if (ok && b->auth == "aksk" && !b->domain_id.empty()) {
        const auto d = req.find("X-Domain-Id");
        ok = d != req.end() && d->value() == b->domain_id;
    }
    if (!ok) {
        reply.response = error_json(401, code, msg);
        return reply;
    }
    reply.response = json_response(
        200, json::object{{"links", json::object{{"self", "https://iam.mock/v3/auth/projects"}}},
                          {"projects", b->iam_projects}});
    return reply;
}

json::object State::stats() const {
    json::object by_backup, by_project, by_scope;
    std::lock_guard lock(mu_);
    for (const auto& [id, n] : rds_by_backup_) by_backup[id] = n;
    for (const auto& [id, n] : rds_by_project_) by_project[id] = n;
    for (const auto& [id, n] : tokens_by_scope_) by_scope[id] = n;
    return json::object{{"rds_requests", rds_requests_},
                        {"iam_requests", iam_requests_},
                        {"connections", connections_.load()},
                        {"tls_handshakes", tls_handshakes_.load()},
                        {"open_connections", open_connections_.load()},
                        {"control_connections", control_connections_.load()},
                        {"rds_ok", rds_ok_.load()},
                        {"rds_unauthorized", rds_unauthorized_.load()},
                        {"waiters", waiter_count_.load()},
                        {"held", held_.load()},
                        {"releases", releases_.load()},
                        {"last_rds_headers", last_rds_headers_},
                        {"last_rds_target", last_rds_target_},
                        {"last_iam_body", last_iam_body_},
                        {"tokens_issued", tokens_issued_},
                        {"script_pending", script_.size()},
                        {"iam_script_pending", iam_script_.size()},
                        {"rds_by_backup", std::move(by_backup)},
                        {"rds_by_project", std::move(by_project)},
                        {"tokens_by_scope", std::move(by_scope)},
                        {"iam_project_lists", iam_project_lists_}};
}

Reply State::handle_control(const Request& req, std::string_view path) {
    Reply reply;
    const auto method = req.method();
    if (path == "/_mock/stats" && method == http::verb::get) {
        reply.response = json_response(200, stats());
    } else if (path == "/_mock/config" && method == http::verb::get) {
        json::object cfg;
        {
            std::lock_guard lock(mu_);
            cfg = behaviour_->to_json();
        }
        reply.response = json_response(200, cfg);
    } else if (path == "/_mock/config" && method == http::verb::post) {
        boost::system::error_code ec;
        const json::value patch = json::parse(req.body(), ec);
        if (ec || !patch.is_object()) {
            reply.response = error_json(400, "MOCK.400", "the body must be a JSON object");
        } else if (auto err = configure(patch.get_object()); !err.empty()) {
            reply.response = error_json(400, "MOCK.400", err);
        } else {
            reply.response = json_response(200, json::object{{"ok", true}});
        }
    } else if (path == "/_mock/wait" && method == http::verb::get) {
        reply = parse_wait(req);
    } else if (path == "/_mock/release" && method == http::verb::post) {
        const auto n = releases_.fetch_add(1) + 1;
        reply.response = json_response(200, json::object{{"ok", true}, {"releases", n}});
    } else if (path == "/_mock/reset" && method == http::verb::post) {
        reset();
        reply.response = json_response(200, json::object{{"ok", true}});
    } else if (path == "/_mock/revoke" && method == http::verb::post) {
        // Every token issued so far, or (body {"project_id": "..."}) those scoped to that project, also
        // tokens other instances issued.
        std::string project;
        boost::system::error_code ec;
        if (const json::value v = json::parse(req.body(), ec); !ec && v.is_object())
            if (const auto* p = v.get_object().if_contains("project_id"); p && p->is_string())
                project = std::string(p->get_string());
        std::size_t n = 0;
        {
            std::lock_guard lock(mu_);
            for (auto& [token, info] : tokens_) {
                if (!project.empty() && info.scope != "id:" + project) continue;
                info.revoked = true;
                ++n;
            }
            if (project.empty())
                revoked_before_us_ = now_us();
            else
                revoked_before_by_project_[project] = now_us();
        }
        reply.response = json_response(200, json::object{{"ok", true}, {"revoked", n}});
    } else {
        reply.response = error_json(404, "MOCK.404", "unknown control endpoint");
    }
    return reply;
}

std::optional<std::int64_t> State::counter(std::string_view name) const {
    auto atomic_value = [](const auto& a) { return static_cast<std::int64_t>(a.load()); };
    if (name == "connections") return atomic_value(connections_);
    if (name == "tls_handshakes") return atomic_value(tls_handshakes_);
    if (name == "open_connections") return atomic_value(open_connections_);
    if (name == "control_connections") return atomic_value(control_connections_);
    if (name == "rds_ok") return atomic_value(rds_ok_);
    if (name == "rds_unauthorized") return atomic_value(rds_unauthorized_);
    if (name == "waiters") return atomic_value(waiter_count_);
    if (name == "held") return atomic_value(held_);
    if (name == "releases") return atomic_value(releases_);
    std::lock_guard lock(mu_);
    if (name == "rds_requests") return static_cast<std::int64_t>(rds_requests_);
    if (name == "iam_requests") return static_cast<std::int64_t>(iam_requests_);
    if (name == "tokens_issued") return static_cast<std::int64_t>(tokens_issued_);
    return std::nullopt;
}

WaitFor State::hold_until_release() const {
    return WaitFor{"releases", static_cast<std::int64_t>(releases_.load()) + 1, milliseconds(120'000)};
}

Reply State::parse_wait(const Request& req) const {
    Reply reply;
    const auto url = boost::urls::parse_origin_form(req.target());
    WaitFor w;
    bool has_counter = false, has_mark = false;
    std::string problem;
    auto number = [&](std::string_view key, std::string_view v, std::int64_t hi, std::int64_t& out) {
        std::int64_t n = 0;
        bool ok = !v.empty() && v.size() <= 15;
        for (char c : v) {
            ok = ok && c >= '0' && c <= '9';
            n = n * 10 + (c - '0');
        }
        if (!ok || n > hi)
            problem = std::string(key) + " must be an integer in [0, " + std::to_string(hi) + "]";
        out = n;
    };
    for (const auto& p : url->params()) {
        if (p.key == "counter") {
            w.counter = p.value;
            has_counter = true;
        } else if (p.key == "at_least") {
            number(p.key, p.value, 1'000'000'000'000, w.at_least);
            has_mark = true;
        } else if (p.key == "timeout_ms") {
            std::int64_t t = 0;
            number(p.key, p.value, 120'000, t);
            w.timeout = milliseconds(t);
        } else {
            problem = "unknown parameter " + p.key;
        }
    }
    if (problem.empty() && (!has_counter || !has_mark)) problem = "counter and at_least are required";
    if (problem.empty() && !counter(w.counter)) problem = "unknown counter " + w.counter;
    if (!problem.empty()) {
        reply.response = error_json(400, "MOCK.400", problem);
        return reply;
    }
    reply.kind = Reply::Kind::wait;
    reply.wait = std::move(w);
    return reply;
}

void State::add_waiter(const std::shared_ptr<rdsgw::Waker>& w, const WaitFor& what) {
    {
        std::lock_guard lock(waiters_mu_);
        waiters_.push_back(Waiter{w, what});
        waiter_count_.store(waiters_.size());
    }
    // The counter may be there already (a notify before the push found no waiter), and "waiters" changed.
    notify_waiters();
}

void State::remove_waiter(const std::shared_ptr<rdsgw::Waker>& w) {
    std::lock_guard lock(waiters_mu_);
    std::erase_if(waiters_, [&](const Waiter& x) {
        const auto p = x.waker.lock();
        return !p || p == w;
    });
    waiter_count_.store(waiters_.size());
}

void State::notify_waiters() {
    if (waiter_count_.load() == 0) return;
    std::lock_guard lock(waiters_mu_);
    for (const auto& x : waiters_) {
        if (counter(x.what.counter).value_or(0) < x.what.at_least) continue;
        if (const auto p = x.waker.lock()) p->fire();
    }
}

Response State::wait_answer(const WaitFor& what, bool reached) const {
    if (reached) return json_response(200, stats());
    const std::int64_t value = counter(what.counter).value_or(0);
    return json_response(
        408, json::object{{"error_code", "MOCK.408"},
                          {"error_msg", what.counter + " is " + std::to_string(value) + " after " +
                                            std::to_string(what.timeout.count()) + " ms, not yet " +
                                            std::to_string(what.at_least)},
                          {"value", value}});
}

}  // namespace rdsgw::mock
