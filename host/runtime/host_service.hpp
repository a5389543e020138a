#pragma once
/// @file host_service.hpp
/// One host, assembled: the engine (plugins, models, runner; engine.hpp) and the protocol
/// dispatcher in front of it (protocol/dispatcher.hpp). It is the MessageHandler the line
/// transports call; other transports (a cluster worker, `sdxl-host generate`) post lines to
/// dispatcher() with their own JobSink. serve, generate and the tests build a host from this.
/// Thread-safety: as Engine and Dispatcher (any thread; set_* before start()).

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "host/config/host_config.hpp"
#include "host/protocol/dispatcher.hpp"
#include "host/runtime/engine.hpp"
#include "host/transport/connection.hpp"

namespace sdxlhost::host::runtime {

/// Engine + dispatcher.
class HostService : public transport::MessageHandler {
 public:
  /// Loads the plugins of `config`; `config_warnings` (unknown keys) are logged.
  explicit HostService(HostConfig config, const std::vector<std::string>& config_warnings = {});
  /// Stops the dispatcher (lines still queued are dropped), then the engine (no grace, if
  /// request_shutdown was not called).
  ~HostService() override;

  /// Starts the executors.
  void start() { engine_.start(); }
  /// The engine.
  Engine& engine() { return engine_; }
  /// The dispatcher.
  protocol::Dispatcher& dispatcher() { return dispatcher_; }

  // ---- transport::MessageHandler: queued on the dispatcher's request thread ------------------
  void on_line(const std::shared_ptr<transport::Connection>& connection, std::string&& line) override {
    dispatcher_.on_line(connection, std::move(line));
  }
  void on_oversized(const std::shared_ptr<transport::Connection>& connection, std::size_t bytes) override {
    dispatcher_.on_oversized(connection, bytes);
  }
  void on_disconnect(const std::shared_ptr<transport::Connection>& connection) override {
    dispatcher_.on_disconnect(connection);
  }

  /// The input ended for good (stdin closed): once the lines already queued are handled, a
  /// shutdown that first lets the queued and running jobs finish.
  void end_of_input(const std::string& reason);

  /// See Engine.
  void set_on_stopped(std::function<void()> fn) { engine_.set_on_stopped(std::move(fn)); }
  /// See Engine.
  void set_on_limits_changed(std::function<void(std::size_t)> fn) { engine_.set_on_limits_changed(std::move(fn)); }
  /// See Engine.
  void set_client_count(std::function<std::size_t()> fn) { engine_.set_client_count(std::move(fn)); }
  /// See Engine.
  void set_job_forwarder(JobForwarder* forwarder) { engine_.set_job_forwarder(forwarder); }
  /// See Engine.
  void request_shutdown(const std::string& reason, bool drain = false) { engine_.request_shutdown(reason, drain); }
  /// See Engine.
  void wait_stopped() { engine_.wait_stopped(); }
  /// See Engine.
  bool ready() const { return engine_.ready(); }

 private:
  Engine engine_;
  protocol::Dispatcher dispatcher_;
};

}  // namespace sdxlhost::host::runtime
