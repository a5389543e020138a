#pragma once
/// @file host_service.hpp
/// The host behind every transport: takes lines from clients, parses the envelope, dispatches
/// each message type (inference_request, cancel, ping, capabilities, list_models, load_model,
/// unload_model, status, reload_config, shutdown, preprocess, upscale) and answers on the connection that
/// asked. Generation, model preloads and preprocessing are queued on the JobRunner; everything
/// else is answered at once. Owns the running config, the plugin manager and the model store.
/// Thread-safety: the MessageHandler calls come from one I/O thread at a time; reload_config,
/// request_shutdown and status may be called from any thread.

#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/config/host_config.hpp"
#include "host/models/model_store.hpp"
#include "host/plugins/plugin_manager.hpp"
#include "host/protocol/envelope.hpp"
#include "host/runtime/generation.hpp"
#include "host/runtime/job_forwarder.hpp"
#include "host/runtime/job_runner.hpp"
#include "host/transport/connection.hpp"

namespace sdxlhost::host::runtime {

/// The plugin manager's settings from a host config (dir, feature flags, per-plugin configs,
/// and the top-level device/dtype every plugin receives). One place, so serve and the CLI agree.
PluginSettings plugin_settings(const HostConfig& config);

/// Dispatches messages to the queue, the plugin manager and the model store.
class HostService : public transport::MessageHandler {
 public:
  /// Loads the plugins of `config`; `config_warnings` (unknown keys) are logged.
  explicit HostService(HostConfig config, const std::vector<std::string>& config_warnings = {});
  /// Shuts down (no grace) if request_shutdown/shutdown was not called.
  ~HostService() override;

  /// Starts the executors.
  void start();

  // ---- transport::MessageHandler ------------------------------------------------------------
  /// Parses the envelope and dispatches it (answers at once, or queues a job).
  void on_line(const std::shared_ptr<transport::Connection>& connection, std::string&& line) override;
  /// Answers MESSAGE_TOO_LARGE.
  void on_oversized(const std::shared_ptr<transport::Connection>& connection, std::size_t bytes) override;
  /// Drops the client's queued jobs and cancels its running ones.
  void on_disconnect(const std::shared_ptr<transport::Connection>& connection) override;

  /// Re-reads the config file and applies what can change while running (plugins, limits,
  /// queue.max_pending, progress interval, log level, on_disabled_feature, output_root).
  /// Throws sdk::Error(ValidationError) and keeps the running config when the file is bad.
  /// Returns the reload_config response data; `warnings` gets unknown keys and restart-only
  /// changes.
  nlohmann::json reload_config(std::vector<std::string>& warnings);

  /// Called once, from the shutdown thread, after the queue drained (the transport owner then
  /// stops serving). Set before start().
  void set_on_stopped(std::function<void()> on_stopped) { on_stopped_ = std::move(on_stopped); }
  /// Called with the new limits.max_message_bytes after a reload (transports update framing).
  void set_on_limits_changed(std::function<void(std::size_t)> fn) { on_limits_changed_ = std::move(fn); }
  /// How `status` learns the number of connected clients (the transport's count). Set before
  /// start(); without it `status` reports 0.
  void set_client_count(std::function<std::size_t()> fn) { client_count_ = std::move(fn); }
  /// Gateway mode (cluster.role = gateway): validated jobs (generation, upscale, preprocess)
  /// go to `forwarder` instead of the local executors, and cancel, status, capabilities,
  /// list_models and readiness include it. Set before start(); it must outlive the service.
  void set_job_forwarder(JobForwarder* forwarder) { forwarder_ = forwarder; }
  /// Begins a graceful shutdown on a thread of its own: new work is refused, queued jobs are
  /// answered SHUTTING_DOWN, running jobs get queue.shutdown_grace_s; then on_stopped runs.
  /// With `drain`, the queued and running jobs are first allowed to finish (stdin closed).
  void request_shutdown(const std::string& reason, bool drain = false);
  /// Waits for a requested shutdown to finish.
  void wait_stopped();
  /// True once a shutdown was requested.
  bool stopping() const { return runner_.shutting_down() || shutdown_requested_.load(); }

  /// The running configuration.
  std::shared_ptr<const HostConfig> config() const;
  /// The `status` response data.
  nlohmann::json status() const;
  /// The `capabilities` response data.
  nlohmann::json capabilities() const;
  /// Every metric in the Prometheus text format (/metrics and the `metrics` message).
  std::string metrics_text() const;
  /// /readyz: not shutting down, a generation can be planned with the loaded plugins and
  /// models_root has a checkpoint.
  bool ready() const;
  /// The plugin manager (for `sdxl-host plugins`).
  PluginManager& plugin_manager() { return *plugins_; }

 private:
  using ConnectionPtr = std::shared_ptr<transport::Connection>;

  void dispatch(const ConnectionPtr& connection, protocol::Envelope& envelope, const std::string& line);
  nlohmann::json handle_inference(const ConnectionPtr& connection, protocol::Envelope& envelope, bool& queued,
                                  const std::string& line);
  nlohmann::json handle_upscale(const ConnectionPtr& connection, protocol::Envelope& envelope, bool& queued,
                                const std::string& line);
  /// Gateway mode: hands a validated job to the forwarder (which answers it).
  void forward(const ConnectionPtr& connection, const protocol::Envelope& envelope, const std::string& kind,
               const std::string& priority, double timeout_s, std::set<std::string> features,
               const std::string& line, bool every_worker = false);
  GenerationEnvironment environment() const;
  nlohmann::json handle_cancel(const protocol::Envelope& envelope);
  nlohmann::json handle_load_model(const ConnectionPtr& connection, protocol::Envelope& envelope, bool& queued,
                                   const std::string& line);
  nlohmann::json handle_unload_model(const ConnectionPtr& connection, protocol::Envelope& envelope, bool& queued,
                                     const std::string& line);
  nlohmann::json handle_preprocess(const ConnectionPtr& connection, protocol::Envelope& envelope, bool& queued,
                                   const std::string& line);
  nlohmann::json ping() const;
  void reply(const ConnectionPtr& connection, const nlohmann::json& message) const;

  mutable std::mutex config_mutex_;
  std::shared_ptr<const HostConfig> config_;
  std::unique_ptr<PluginManager> plugins_;
  std::unique_ptr<ModelStore> models_;
  JobRunner runner_;
  std::chrono::steady_clock::time_point started_at_ = std::chrono::steady_clock::now();
  std::function<void()> on_stopped_;
  std::function<void(std::size_t)> on_limits_changed_;
  std::function<std::size_t()> client_count_;
  JobForwarder* forwarder_ = nullptr;
  std::atomic<bool> shutdown_requested_{false};
  std::thread shutdown_thread_;
};

}  // namespace sdxlhost::host::runtime
