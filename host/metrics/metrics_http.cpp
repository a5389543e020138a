#include "host/metrics/metrics_http.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <chrono>
#include <utility>

#include "host/common/logging.hpp"
#include "host/metrics/metrics.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::host::metrics {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr auto kConnectionDeadline = std::chrono::seconds(10);

/// One HTTP exchange: read a request, answer it, close.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, const HttpHandlers& handlers) : stream_(std::move(socket)), handlers_(handlers) {}

  void start() {
    stream_.expires_after(kConnectionDeadline);
    http::async_read(stream_, buffer_, request_,
                     [self = shared_from_this()](beast::error_code error, std::size_t) { self->on_read(error); });
  }

 private:
  void on_read(beast::error_code error) {
    if (error) return;  // timed out or the client went away
    response_.version(request_.version());
    response_.keep_alive(false);
    response_.set(http::field::server, "sdxl-host");
    const std::string target(request_.target());
    const std::string path = target.substr(0, target.find('?'));
    if (request_.method() != http::verb::get && request_.method() != http::verb::head) {
      reply(http::status::method_not_allowed, "text/plain", "GET only\n");
    } else if (path == "/metrics") {
      reply(http::status::ok, kContentType, handlers_.metrics());
    } else if (path == "/healthz") {
      const bool ok = handlers_.healthy();
      reply(ok ? http::status::ok : http::status::service_unavailable, "text/plain", ok ? "ok\n" : "shutting down\n");
    } else if (path == "/readyz") {
      const bool ok = handlers_.ready();
      reply(ok ? http::status::ok : http::status::service_unavailable, "text/plain", ok ? "ready\n" : "not ready\n");
    } else {
      reply(http::status::not_found, "text/plain", "not found: /metrics, /healthz, /readyz\n");
    }
  }

  void reply(http::status status, const std::string& type, std::string body) {
    response_.result(status);
    response_.set(http::field::content_type, type);
    if (request_.method() == http::verb::head) {
      response_.content_length(body.size());
    } else {
      response_.body() = std::move(body);
      response_.prepare_payload();
    }
    http::async_write(stream_, response_, [self = shared_from_this()](beast::error_code, std::size_t) {
      beast::error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    });
  }

  beast::tcp_stream stream_;
  const HttpHandlers& handlers_;
  beast::flat_buffer buffer_;
  http::request<http::empty_body> request_;
  http::response<http::string_body> response_;
};

}  // namespace

std::pair<std::string, unsigned short> parse_listen(const std::string& listen, const std::string& field) {
  const auto colon = listen.rfind(':');
  auto bad = [&](const std::string& why) {
    return sdk::Error(sdk::ErrorCode::ValidationError, "'" + listen + "': " + why, field);
  };
  if (colon == std::string::npos || colon == 0) throw bad("must be host:port, e.g. 127.0.0.1:9464");
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  const std::string port_text = listen.substr(colon + 1);
  if (port_text.empty() || port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string::npos)
    throw bad("the port must be a number in [0, 65535]");
  const unsigned long port = std::stoul(port_text);
  if (port > 65535) throw bad("the port must be a number in [0, 65535]");
  beast::error_code error;
  asio::ip::make_address(host, error);
  if (error) throw bad("the host must be an IP address (127.0.0.1, ::1, 0.0.0.0)");
  return {host, static_cast<unsigned short>(port)};
}

struct HttpListener::Impl {
  asio::io_context io{1};
  tcp::acceptor acceptor{io};
  HttpHandlers handlers;
  std::thread thread;

  void accept() {
    acceptor.async_accept([this](beast::error_code error, tcp::socket socket) {
      if (error == asio::error::operation_aborted) return;
      if (!error) std::make_shared<Session>(std::move(socket), handlers)->start();
      accept();
    });
  }
};

HttpListener::HttpListener(const std::string& listen, HttpHandlers handlers) : impl_(std::make_unique<Impl>()) {
  const auto [host, port] = parse_listen(listen, "metrics.listen");
  impl_->handlers = std::move(handlers);
  const tcp::endpoint endpoint(asio::ip::make_address(host), port);
  beast::error_code error;
  impl_->acceptor.open(endpoint.protocol(), error);
  if (!error) impl_->acceptor.set_option(asio::socket_base::reuse_address(true), error);
  if (!error) impl_->acceptor.bind(endpoint, error);
  if (!error) impl_->acceptor.listen(asio::socket_base::max_listen_connections, error);
  if (error)
    throw sdk::Error(sdk::ErrorCode::ValidationError, "cannot listen on " + listen + ": " + error.message(),
                     "metrics.listen");
  impl_->accept();
  impl_->thread = std::thread([impl = impl_.get()] { impl->io.run(); });
  component_logger("metrics")->info("metrics on http://{}:{}/metrics (/healthz, /readyz)", host, this->port());
}

HttpListener::~HttpListener() {
  asio::post(impl_->io, [impl = impl_.get()] {
    beast::error_code ignored;
    impl->acceptor.close(ignored);
    impl->io.stop();
  });
  if (impl_->thread.joinable()) impl_->thread.join();
}

unsigned short HttpListener::port() const { return impl_->acceptor.local_endpoint().port(); }

}  // namespace sdxlhost::host::metrics
