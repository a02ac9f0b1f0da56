// The one place that talks to IAM: token issue (POST /v3/auth/tokens) and the project list
// (GET /v3/auth/projects). One client per process; its connection pool lives on one executor (worker 0's),
// and every call must run there.
#pragma once
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "rdsgw/config.hpp"
#include "rdsgw/iam.hpp"
#include "rdsgw/upstream.hpp"

namespace rdsgw {

class Proxy;

class IamClient {
  public:
    struct Options {
        std::string ca_file;  // auth.iam.ca_file, else upstream.ca_file
        std::chrono::milliseconds connect_timeout{2000};
        std::chrono::milliseconds request_timeout{10000};
        std::shared_ptr<Proxy> proxy;  // null: direct (its credentials are re-read by reload())
        bool with_password = true;     // iam mode: the password is read (and re-read on SIGHUP)
    };
    IamClient(IamConfig cfg, Options opts);
    // Parses the endpoint, builds the TLS context and reads the password; false with `why`.
    bool init(std::string& why);
    bool reload(std::string& why);  // SIGHUP: the password and the proxy's credentials
    void start(boost::asio::any_io_executor ex);
    void release_io();
    boost::asio::any_io_executor executor() const { return ex_; }
    const Endpoint& endpoint() const { return ep_; }
    const IamConfig& config() const { return cfg_; }

    // A token for `scope`; false with `err` (never a secret).
    boost::asio::awaitable<bool> issue_token(const IamScope& scope, IamToken& out, std::string& err);
    // The account's projects. `authorize` adds the credential to the request (a token or a signature);
    // it may wait (for a token).
    using Authorize = std::function<boost::asio::awaitable<bool>(UpstreamRequest&, std::string& why)>;
    boost::asio::awaitable<bool> list_projects(const Authorize& authorize, std::size_t max,
                                               std::vector<IamProject>& out, std::string& err);

  private:
    boost::asio::awaitable<UpstreamResponse> send(const UpstreamRequest& req);

    IamConfig cfg_;
    Options opts_;
    Endpoint ep_;
    std::shared_ptr<boost::asio::ssl::context> tls_;
    boost::asio::any_io_executor ex_;
    std::unique_ptr<ConnectionPool> pool_;
    mutable std::mutex mu_;
    std::string password_;
};

}  // namespace rdsgw
