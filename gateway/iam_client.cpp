#include "rdsgw/iam_client.hpp"

#include <boost/asio.hpp>

#include "rdsgw/proxy.hpp"

namespace rdsgw {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;
using sys = std::chrono::system_clock;

IamClient::IamClient(IamConfig cfg, Options opts) : cfg_(std::move(cfg)), opts_(std::move(opts)) {}

bool IamClient::init(std::string& why) {
    if (!Endpoint::parse(cfg_.endpoint, ep_, why)) {
        why = "auth.iam.endpoint: " + why;
        return false;
    }
    if (ep_.tls && !(tls_ = make_client_tls_context(opts_.ca_file, why))) return false;
    return reload(why);
}

bool IamClient::reload(std::string& why) {
    if (opts_.proxy && !opts_.proxy->reload(why)) return false;
    if (!opts_.with_password) return true;
    std::string pw;
    if (!load_secret(cfg_.password, pw, why)) {
        why = "auth.iam.password: " + why;
        return false;
    }
    std::lock_guard lk(mu_);
    password_ = std::move(pw);
    return true;
}

void IamClient::start(asio::any_io_executor ex) {
    ex_ = ex;
    PoolOptions po;
    po.connect_timeout = opts_.connect_timeout;
    po.max_idle = 2;
    po.proxy = opts_.proxy;
    pool_ = std::make_unique<ConnectionPool>(ex, ep_, tls_, po, nullptr);
}

void IamClient::release_io() {
    pool_.reset();
}

asio::awaitable<UpstreamResponse> IamClient::send(const UpstreamRequest& req) {
    if (!pool_) {
        UpstreamResponse r;
        r.error = UpstreamResponse::Error::connect;
        r.error_detail = "IAM client not started";
        co_return r;
    }
    UpstreamResponse res;
    co_await pool_->exchange(req, steady::now() + opts_.request_timeout, res);
    co_return res;
}

asio::awaitable<bool> IamClient::issue_token(const IamScope& scope, IamToken& out, std::string& err) {
    UpstreamRequest req;
    req.method = "POST";
    req.target = "/v3/auth/tokens?nocatalog=true";
    req.headers.emplace_back("Content-Type", "application/json;charset=utf8");
    req.headers.emplace_back("Accept", "application/json");
    req.headers.emplace_back("Accept-Encoding", "identity");
    {
        std::lock_guard lk(mu_);
        req.body = iam_token_request_body(cfg_, password_, scope);
    }
    UpstreamResponse res = co_await send(req);
    if (res.error != UpstreamResponse::Error::none) {
        err = res.error_detail;
        co_return false;
    }
    co_return parse_token_answer(res.status, res.subject_token, res.body, sys::now(),
                                 std::chrono::seconds(cfg_.min_validity_s), out, err);
}

asio::awaitable<bool> IamClient::list_projects(const Authorize& authorize, std::size_t max,
                                               std::vector<IamProject>& out, std::string& err) {
    UpstreamRequest req;
    req.target = "/v3/auth/projects";
    req.headers.emplace_back("Accept", "application/json");
    req.headers.emplace_back("Accept-Encoding", "identity");
    if (!co_await authorize(req, err)) co_return false;
    UpstreamResponse res = co_await send(req);
    if (res.error != UpstreamResponse::Error::none) {
        err = res.error_detail;
        co_return false;
    }
    if (res.status != 200) {
        err = "IAM answered HTTP " + std::to_string(res.status) + " to the project list";
        co_return false;
    }
    co_return parse_projects_answer(res.body, max, out, err);
}

}  // namespace rdsgw
