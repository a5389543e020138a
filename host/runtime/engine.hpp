#pragma once
/// @file engine.hpp
/// The host's engine: the running config, the plugin manager, the model store, the job runner
/// (or, on a gateway, the JobForwarder that takes jobs to workers), reload and shutdown. It does
/// no I/O and knows no wire: jobs report to their JobSink, and the answers it builds (status,
/// capabilities, reload) are the `data` of a response, which the protocol dispatcher
/// (protocol/dispatcher.hpp) frames for the client.
/// Thread-safety: every method may be called from any thread; set_* before start().

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/config/host_config.hpp"
#include "host/runtime/generation.hpp"
#include "host/runtime/job.hpp"
#include "host/runtime/job_forwarder.hpp"
#include "host/runtime/job_runner.hpp"

namespace sdxlhost::host::runtime {

/// The host's version (ping and capabilities).
inline constexpr const char* kHostVersion = "0.1.0";

/// The plugin manager's settings from a host config (dir, feature flags, per-plugin configs,
/// and the top-level device/dtype every plugin receives). One place, so serve and the CLI agree.
PluginSettings plugin_settings(const HostConfig& config);

/// Plugins, models, runner; no I/O.
class Engine {
 public:
  /// Loads the plugins of `config`; `config_warnings` (unknown keys) are logged.
  explicit Engine(HostConfig config, const std::vector<std::string>& config_warnings = {});
  /// Shuts down (no grace) if request_shutdown was not called.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Starts the executors.
  void start();

  /// The running configuration.
  std::shared_ptr<const HostConfig> config() const;
  /// The plugin manager (for `sdxl-host plugins` and the describe answers).
  PluginManager& plugin_manager() { return *plugins_; }
  /// The current plugin snapshot (what a job started now would run with).
  std::shared_ptr<const PluginSet> plugins() const;
  /// The model store.
  ModelStore& models() { return *models_; }
  /// What a generation needs from the host now (plugin snapshot, model store, output, policy).
  GenerationEnvironment environment() const;

  /// Gateway mode (cluster.role = gateway): jobs go to `forwarder` instead of the local
  /// executors, and status, capabilities, models and readiness include it. Set before start();
  /// it must outlive the engine.
  void set_job_forwarder(JobForwarder* forwarder) { forwarder_ = forwarder; }
  /// The forwarder, or null on a standalone host or a worker.
  JobForwarder* forwarder() const { return forwarder_; }

  /// Queues a job on the local executors (see JobRunner::submit for the errors).
  void submit(std::shared_ptr<Job> job) { runner_.submit(std::move(job)); }
  /// Cancels a job (local or forwarded): "queued", "running", or "" when there is none.
  std::string cancel(const std::string& request_id);
  /// The client `client_id` went away: its queued jobs are dropped, running ones cancelled.
  void drop_client(std::uint64_t client_id);

  /// Re-reads the config file and applies what can change while running (plugins, limits,
  /// queue.max_pending, progress interval, log level, on_disabled_feature, output_root).
  /// Throws sdk::Error(ValidationError) and keeps the running config when the file is bad.
  /// Returns the reload_config answer's data; `warnings` gets unknown keys and restart-only
  /// changes.
  nlohmann::json reload_config(std::vector<std::string>& warnings);
  /// Called once, from the shutdown thread, after the queue drained. Set before start().
  void set_on_stopped(std::function<void()> on_stopped) { on_stopped_ = std::move(on_stopped); }
  /// Called with the new limits.max_message_bytes after a reload (transports update framing).
  void set_on_limits_changed(std::function<void(std::size_t)> fn) { on_limits_changed_ = std::move(fn); }
  /// How `status` learns the number of connected clients (the transport's count).
  void set_client_count(std::function<std::size_t()> fn) { client_count_ = std::move(fn); }
  /// Begins a graceful shutdown on a thread of its own: new work is refused, queued jobs are
  /// answered SHUTTING_DOWN, running jobs get queue.shutdown_grace_s; then on_stopped runs.
  /// With `drain`, the queued and running jobs are first allowed to finish.
  void request_shutdown(const std::string& reason, bool drain = false);
  /// Waits for a requested shutdown to finish.
  void wait_stopped();
  /// True once a shutdown was requested.
  bool stopping() const { return runner_.shutting_down() || shutdown_requested_.load(); }

  /// The `status` answer's data.
  nlohmann::json status() const;
  /// The `capabilities` answer's data, except `message_types` (the dispatcher's).
  nlohmann::json capabilities() const;
  /// The `list_models` answer's data.
  nlohmann::json list_models() const;
  /// Every metric in the Prometheus text format (/metrics and the `metrics` message).
  std::string metrics_text() const;
  /// /readyz: not shutting down, a generation can be planned with the loaded plugins and
  /// models_root has a checkpoint (a gateway: a live worker is ready).
  bool ready() const;
  /// Seconds since the engine was made.
  double uptime_s() const;

 private:
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
