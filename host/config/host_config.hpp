#pragma once
/// @file host_config.hpp
/// The host's one JSON configuration file, parsed into `HostConfig`. Every key has a default;
/// every value is validated when the file is loaded and again when `reload_config` / SIGHUP
/// reads it (a bad file is refused and the running config kept). Unknown keys give warnings.
/// The keys and defaults are documented in docs/configuration.md.

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdxlhost/sdk/request_parser.hpp"

namespace sdxlhost::host {

/// `limits.*`: bounds every request is validated against (the request's own bounds are the
/// SDK's RequestLimits, which the parser reads) and bounds of the transport.
struct Limits : sdk::RequestLimits {
  std::size_t max_message_bytes = 64u * 1024u * 1024u;  ///< longest accepted NDJSON line
  /// Bytes of answers queued for one client that does not read before it is disconnected
  /// (restart-only).
  std::size_t max_client_backlog_bytes = 256u * 1024u * 1024u;
  int max_json_depth = 64;                              ///< deepest accepted nesting of a line
  /// Most pixels a request image (any image a request or message carries) may announce in its
  /// header; larger ones are refused before decoding. PIL's decompression-bomb limit.
  std::uint64_t max_image_pixels = 89478485;
};

/// `queue.*`: job queue and executors.
struct QueueSettings {
  std::size_t max_pending = 64;     ///< queued (not running) jobs before QUEUE_FULL
  int progress_interval_ms = 250;   ///< minimum time between two progress events of a job
  /// A running job that sent no progress event for this long gets one repeating where it is
  /// (stage, step, detail) with the current elapsed_s; 0 = off.
  double progress_heartbeat_s = 2.0;
  int executors = 1;                ///< jobs run at once (one per device by default)
  double default_timeout_s = 300.0; ///< metadata.timeout when a request gives none
  double shutdown_grace_s = 30.0;   ///< how long shutdown waits for running jobs before cancelling
};

/// `cache.*`: the model cache.
struct CacheSettings {
  std::size_t max_models = 3;  ///< models kept loaded at most (the seed's model manager kept 3)
  std::uint64_t max_bytes = 0; ///< bytes kept loaded at most; 0 = unbounded
  double max_memory_fraction = 0.8;  ///< evict before a load would pass this share of RAM; 0 = off
};

/// `metrics.*`: the optional HTTP listener for Prometheus (metrics_http.hpp).
struct MetricsSettings {
  std::string listen;  ///< "127.0.0.1:9464"; empty = off (the default)
};

/// `cluster.*`: scale-out over a message broker (docs/scale-out.md). Restart-only.
struct ClusterSettings {
  /// standalone (serve the pipe and run jobs here) | gateway (serve the pipe, validate, publish
  /// jobs to the broker, relay answers) | worker (consume jobs from the broker and run them).
  std::string role = "standalone";
  std::string broker = "amqp://guest:guest@127.0.0.1:5672/";  ///< AMQP URL of the broker
  std::string jobs_queue = "sdxl.jobs";             ///< durable priority queue of jobs
  std::string cancel_exchange = "sdxl.cancel";      ///< fanout: gateway -> every worker
  std::string heartbeat_exchange = "sdxl.heartbeats";  ///< fanout: worker -> every gateway
  /// The gateway's reply queue; empty = "sdxl.replies.<hostname>.<pipe_name>".
  std::string reply_queue;
  std::string node_name;          ///< this process in logs and status; empty = <hostname>-<pid>
  double heartbeat_s = 2.0;       ///< how often a worker says what it serves
  double worker_timeout_s = 6.0;  ///< a worker silent for this long is no longer live
  double reconnect_max_s = 5.0;   ///< longest wait between two reconnect attempts
  double reply_queue_expires_s = 3600.0;  ///< a reply queue unused this long is deleted by the broker
};

/// `plugins.*`: which plugins load and with what settings.
struct PluginsConfig {
  std::filesystem::path dir;              ///< folder scanned for *.so / *.dll
  std::map<std::string, bool> enabled;    ///< plugins.enabled.<name>
  bool enable_unlisted = true;            ///< load plugins not named in `enabled`
  nlohmann::json config = nlohmann::json::object();  ///< plugins.config.<name> objects
  /// `plugins.run_dir` (restart): where the host keeps the private copies it loads plugins
  /// from; empty = `$XDG_RUNTIME_DIR/sdxl-host` or `${TMPDIR:-/tmp}/sdxl-host-<uid>`.
  std::filesystem::path run_dir;
};

/// What to do when a request needs a feature whose plugin is disabled or missing.
enum class DisabledFeaturePolicy { Error, Warn };

/// The whole configuration.
struct HostConfig {
  std::string pipe_name = "sdxl_host";  ///< pipe name, or an absolute socket path
  std::filesystem::path models_root = "models";   ///< one folder per sdk::kModelKinds entry
  std::filesystem::path output_root = "outputs";  ///< where images are saved (save_path is relative)
  PluginsConfig plugins;  ///< `plugins.*`
  Limits limits;          ///< `limits.*`
  QueueSettings queue;    ///< `queue.*`
  CacheSettings cache;    ///< `cache.*`
  MetricsSettings metrics;  ///< `metrics.*`
  ClusterSettings cluster;  ///< `cluster.*`
  std::string device = "cpu";      ///< cpu | cuda | cuda:N
  std::string dtype = "fp32";      ///< fp32 | bf16 | fp16 (float32 | bfloat16 | float16 accepted and normalized)
  int threads = 0;                 ///< intra-op threads; 0 = hardware_concurrency
  std::string log_level = "info";  ///< trace | debug | info | warn | error | critical | off
  DisabledFeaturePolicy on_disabled_feature = DisabledFeaturePolicy::Error;
  unsigned socket_mode = 0600;     ///< permission bits of the socket file
  std::filesystem::path source_file;  ///< the file it was read from (empty: defaults)

  /// The configuration as JSON (the file format, every key present), for `status`.
  nlohmann::json to_json() const;
};

/// Parses a configuration object. Relative paths are resolved against `base_dir`.
/// Throws sdk::Error(ValidationError) naming the key ("limits.max_steps") on a bad value;
/// appends one warning per unknown key to `warnings`.
HostConfig parse_config(const nlohmann::json& json, const std::filesystem::path& base_dir,
                        std::vector<std::string>& warnings);

/// Reads and parses the file at `path` (see parse_config). A missing or unreadable file, or one
/// that is not JSON, throws sdk::Error(ValidationError) naming the file.
HostConfig load_config(const std::filesystem::path& path, std::vector<std::string>& warnings);

/// The configuration with every default, paths resolved against `base_dir`.
HostConfig default_config(const std::filesystem::path& base_dir);

/// Wire/config spelling of a policy ("error" | "warn").
const char* to_string(DisabledFeaturePolicy policy);

}  // namespace sdxlhost::host
