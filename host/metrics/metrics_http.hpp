#pragma once
/// @file metrics_http.hpp
/// The optional HTTP listener (`metrics.listen`, off by default): GET /metrics (Prometheus text),
/// /healthz (200 while the process serves, 503 once it shuts down) and /readyz (200 when a
/// generation can be served). Boost.Beast on its own thread and io_context, so a slow scraper
/// never touches the pipe's I/O thread; each connection has a 10 s deadline.

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>

namespace sdxlhost::host::metrics {

struct HttpHandlers {
  std::function<std::string()> metrics;  ///< the /metrics body
  std::function<bool()> healthy;         ///< /healthz
  std::function<bool()> ready;           ///< /readyz
};

class HttpListener {
 public:
  /// Binds `listen` ("127.0.0.1:9464", "[::1]:9464", port 0 = any free port) and starts serving.
  /// Throws sdk::Error(ValidationError, "metrics.listen") when it cannot bind.
  HttpListener(const std::string& listen, HttpHandlers handlers);
  /// Stops accepting and joins the thread.
  ~HttpListener();

  /// The bound port (the chosen one when `listen` asked for port 0).
  unsigned short port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Splits "host:port" / "[v6]:port"; throws sdk::Error(ValidationError, field) when malformed.
std::pair<std::string, unsigned short> parse_listen(const std::string& listen, const std::string& field);

}  // namespace sdxlhost::host::metrics
