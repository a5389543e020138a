#include "host/config/host_config.hpp"

#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "host/cluster/amqp.hpp"
#include "host/metrics/metrics_http.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/field_reader.hpp"

#ifndef SDXLHOST_DEFAULT_PLUGIN_DIR
#define SDXLHOST_DEFAULT_PLUGIN_DIR "plugins"
#endif

namespace sdxlhost::host {
namespace {

using nlohmann::json;
using sdk::Error;
using sdk::ErrorCode;

[[noreturn]] void bad_key(const std::string& key, const std::string& why) {
  throw Error(ErrorCode::ValidationError, why, key);
}

using Section = sdk::FieldReader;  // one config object; its path is the key prefix ("limits")

/// `name` as a path: empty is refused, relative paths are taken from `base_dir` (the config
/// file's folder).
void read_path(Section& section, const std::string& name, std::filesystem::path& out,
               const std::filesystem::path& base_dir) {
  std::string text;
  section.read_string(name, text);
  if (section.find(name) && text.empty()) bad_key(section.path_of(name), "must not be empty");
  if (!text.empty()) out = text;
  if (out.is_relative()) out = (base_dir / out).lexically_normal();
}

/// One warning per key of the section that no read asked for.
void warn_unknown_keys(const Section& section, std::vector<std::string>& warnings) {
  for (const auto& key : section.unknown_fields()) warnings.push_back("unknown config key '" + key + "' ignored");
}

const json& sub_object(Section& parent, const std::string& name, const json& empty) {
  const json* v = parent.find(name);
  return v ? *v : empty;
}

void read_limits(Section& root, Limits& limits, std::vector<std::string>& warnings) {
  static const json kEmpty = json::object();
  Section s(sub_object(root, "limits", kEmpty), "limits");
  s.read_int("max_message_bytes", limits.max_message_bytes, 1024, 1LL << 34);
  s.read_int("max_client_backlog_bytes", limits.max_client_backlog_bytes, 1024, 1LL << 40);
  s.read_int("min_width", limits.min_width, 8, 16384);
  s.read_int("max_width", limits.max_width, 8, 16384);
  s.read_int("min_height", limits.min_height, 8, 16384);
  s.read_int("max_height", limits.max_height, 8, 16384);
  s.read_int("max_steps", limits.max_steps, 1, 10000);
  s.read_number("min_guidance", limits.min_guidance, 0.0, 1000.0);
  s.read_number("max_guidance", limits.max_guidance, 0.0, 1000.0);
  s.read_int("max_batch", limits.max_batch, 1, 1024);
  s.read_int("max_json_depth", limits.max_json_depth, 2, 10000);
  s.read_number("max_timeout_s", limits.max_timeout_s, 0.001, 7 * 24 * 3600.0);
  s.read_int("max_image_pixels", limits.max_image_pixels, 64, 16384LL * 16384LL);
  if (limits.min_width > limits.max_width) bad_key("limits.min_width", "must not exceed limits.max_width");
  if (limits.min_height > limits.max_height)
    bad_key("limits.min_height", "must not exceed limits.max_height");
  if (limits.min_guidance > limits.max_guidance)
    bad_key("limits.min_guidance", "must not exceed limits.max_guidance");
  const std::pair<const char*, int> sizes[] = {{"limits.min_width", limits.min_width},
                                                {"limits.max_width", limits.max_width},
                                                {"limits.min_height", limits.min_height},
                                                {"limits.max_height", limits.max_height}};
  for (const auto& [key, value] : sizes)
    if (value % 8 != 0) bad_key(key, "must be a multiple of 8");
  warn_unknown_keys(s, warnings);
}

void read_queue(Section& root, QueueSettings& queue, std::vector<std::string>& warnings) {
  static const json kEmpty = json::object();
  Section s(sub_object(root, "queue", kEmpty), "queue");
  s.read_int("max_pending", queue.max_pending, 0, 1000000);
  s.read_int("progress_interval_ms", queue.progress_interval_ms, 0, 3600000);
  s.read_number("progress_heartbeat_s", queue.progress_heartbeat_s, 0.0, 3600.0);
  s.read_int("executors", queue.executors, 1, 64);
  s.read_number("default_timeout_s", queue.default_timeout_s, 0.001, 7 * 24 * 3600.0);
  s.read_number("shutdown_grace_s", queue.shutdown_grace_s, 0.0, 3600.0);
  warn_unknown_keys(s, warnings);
}

void read_cache(Section& root, CacheSettings& cache, std::vector<std::string>& warnings) {
  static const json kEmpty = json::object();
  Section s(sub_object(root, "cache", kEmpty), "cache");
  s.read_int("max_models", cache.max_models, 0, 1000);
  s.read_int("max_bytes", cache.max_bytes, 0, (1LL << 62));
  s.read_number("max_memory_fraction", cache.max_memory_fraction, 0.0, 1.0);
  warn_unknown_keys(s, warnings);
}

void read_metrics(Section& root, MetricsSettings& settings, std::vector<std::string>& warnings) {
  static const json kEmpty = json::object();
  Section s(sub_object(root, "metrics", kEmpty), "metrics");
  s.read_string("listen", settings.listen);
  if (!settings.listen.empty()) metrics::parse_listen(settings.listen, "metrics.listen");
  warn_unknown_keys(s, warnings);
}

void read_cluster(Section& root, ClusterSettings& cluster, std::vector<std::string>& warnings) {
  static const json kEmpty = json::object();
  Section s(sub_object(root, "cluster", kEmpty), "cluster");
  s.read_choice("role", cluster.role, {"standalone", "gateway", "worker"});
  s.read_string("broker", cluster.broker);
  host::cluster::parse_broker_url(cluster.broker, "cluster.broker");
  for (auto [name, value] : {std::pair<const char*, std::string*>{"jobs_queue", &cluster.jobs_queue},
                             {"cancel_exchange", &cluster.cancel_exchange},
                             {"heartbeat_exchange", &cluster.heartbeat_exchange}}) {
    s.read_string(name, *value);
    if (value->empty() || value->size() > 255) bad_key(s.path_of(name), "must be a name of 1..255 characters");
  }
  s.read_string("reply_queue", cluster.reply_queue);
  if (cluster.reply_queue.size() > 255) bad_key("cluster.reply_queue", "must be at most 255 characters");
  s.read_string("node_name", cluster.node_name);
  s.read_number("heartbeat_s", cluster.heartbeat_s, 0.1, 600.0);
  s.read_number("worker_timeout_s", cluster.worker_timeout_s, 0.2, 3600.0);
  s.read_number("reconnect_max_s", cluster.reconnect_max_s, 0.1, 600.0);
  s.read_number("reply_queue_expires_s", cluster.reply_queue_expires_s, 1.0, 7 * 24 * 3600.0);
  if (cluster.worker_timeout_s <= cluster.heartbeat_s)
    bad_key("cluster.worker_timeout_s", "must be longer than cluster.heartbeat_s");
  warn_unknown_keys(s, warnings);
}

void read_plugins(Section& root, PluginsConfig& plugins, const std::filesystem::path& base_dir,
                  std::vector<std::string>& warnings) {
  static const json kEmpty = json::object();
  Section s(sub_object(root, "plugins", kEmpty), "plugins");
  read_path(s, "dir", plugins.dir, base_dir);
  read_path(s, "run_dir", plugins.run_dir, base_dir);
  s.read_bool("enable_unlisted", plugins.enable_unlisted);
  if (const json* enabled = s.find("enabled")) {
    if (!enabled->is_object()) bad_key("plugins.enabled", "must be an object of name: true|false");
    for (const auto& [name, flag] : enabled->items()) {
      if (!flag.is_boolean()) bad_key("plugins.enabled." + name, "must be true or false");
      plugins.enabled[name] = flag.get<bool>();
    }
  }
  if (const json* config = s.find("config")) {
    if (!config->is_object()) bad_key("plugins.config", "must be an object of name: {settings}");
    for (const auto& [name, section] : config->items())
      if (!section.is_object()) bad_key("plugins.config." + name, "must be an object");
    plugins.config = *config;
  }
  warn_unknown_keys(s, warnings);
}

unsigned parse_socket_mode(const std::string& text) {
  if (text.empty() || text.size() > 4 || text.find_first_not_of("01234567") != std::string::npos)
    bad_key("socket_mode", "must be an octal permission string such as \"0600\"");
  unsigned mode = static_cast<unsigned>(std::stoul(text, nullptr, 8));
  if ((mode & 0600) != 0600) bad_key("socket_mode", "must give the owner read and write (0600)");
  if (mode & 0111) bad_key("socket_mode", "must not set execute bits");
  return mode;
}

void read_device(Section& root, HostConfig& config) {
  root.read_string("device", config.device);
  const std::string& d = config.device;
  bool cuda_index = d.rfind("cuda:", 0) == 0 && d.size() > 5 &&
                    d.find_first_not_of("0123456789", 5) == std::string::npos;
  if (d != "cpu" && d != "cuda" && !cuda_index)
    bad_key("device", "must be \"cpu\", \"cuda\" or \"cuda:N\"");
}

/// `dtype` in either spelling (fp32/float32, bf16/bfloat16, fp16/float16), stored as fp32|bf16|fp16.
void read_dtype(Section& root, HostConfig& config) {
  static const std::map<std::string, std::string> kSpellings = {
      {"fp32", "fp32"}, {"float32", "fp32"}, {"bf16", "bf16"},
      {"bfloat16", "bf16"}, {"fp16", "fp16"}, {"float16", "fp16"}};
  std::string text = config.dtype;
  root.read_string("dtype", text);
  const auto it = kSpellings.find(text);
  if (it == kSpellings.end())
    bad_key("dtype", "must be one of: fp32, bf16, fp16 (or float32, bfloat16, float16)");
  config.dtype = it->second;
}

/// Folders that do not exist are not an error (they may be created later) but worth a warning.
void warn_missing_folders(const HostConfig& config, std::vector<std::string>& warnings) {
  std::error_code ec;
  if (!std::filesystem::is_directory(config.plugins.dir, ec))
    warnings.push_back("plugins.dir " + config.plugins.dir.string() + " is not a folder: no plugin will load");
  if (!std::filesystem::is_directory(config.models_root, ec))
    warnings.push_back("models_root " + config.models_root.string() + " is not a folder: no model will resolve");
}

std::string mode_string(unsigned mode) {
  char buffer[8];
  std::snprintf(buffer, sizeof buffer, "%04o", mode);
  return buffer;
}

}  // namespace

const char* to_string(DisabledFeaturePolicy policy) {
  return policy == DisabledFeaturePolicy::Warn ? "warn" : "error";
}

HostConfig default_config(const std::filesystem::path& base_dir) {
  std::vector<std::string> ignored;
  return parse_config(json::object(), base_dir, ignored);
}

HostConfig parse_config(const json& document, const std::filesystem::path& base_dir,
                        std::vector<std::string>& warnings) {
  HostConfig config;
  config.plugins.dir = SDXLHOST_DEFAULT_PLUGIN_DIR;
  Section root(document, "");
  root.read_string("pipe_name", config.pipe_name);
  if (config.pipe_name.empty()) bad_key("pipe_name", "must not be empty");
  if (config.pipe_name.front() != '/' && config.pipe_name.find('/') != std::string::npos)
    bad_key("pipe_name", "must be a plain name or an absolute socket path");
  read_path(root, "models_root", config.models_root, base_dir);
  read_path(root, "output_root", config.output_root, base_dir);
  read_plugins(root, config.plugins, base_dir, warnings);
  read_limits(root, config.limits, warnings);
  read_queue(root, config.queue, warnings);
  read_cache(root, config.cache, warnings);
  read_metrics(root, config.metrics, warnings);
  read_cluster(root, config.cluster, warnings);
  read_device(root, config);
  read_dtype(root, config);
  root.read_int("threads", config.threads, 0, 1024);
  root.read_choice("log_level", config.log_level, {"critical", "debug", "error", "info", "off", "trace", "warn"});
  std::string policy = "error";
  root.read_choice("on_disabled_feature", policy, {"error", "warn"});
  config.on_disabled_feature =
      policy == "warn" ? DisabledFeaturePolicy::Warn : DisabledFeaturePolicy::Error;
  std::string mode = "0600";
  root.read_string("socket_mode", mode);
  config.socket_mode = parse_socket_mode(mode);
  if (config.queue.default_timeout_s > config.limits.max_timeout_s)
    bad_key("queue.default_timeout_s", "must not exceed limits.max_timeout_s");
  warn_unknown_keys(root, warnings);
  warn_missing_folders(config, warnings);
  return config;
}

HostConfig load_config(const std::filesystem::path& path, std::vector<std::string>& warnings) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::ValidationError, "cannot read config file " + path.string());
  std::stringstream text;
  text << in.rdbuf();
  json document = json::parse(text.str(), nullptr, /*allow_exceptions=*/false, /*comments=*/true);
  if (document.is_discarded())
    throw Error(ErrorCode::ValidationError, "config file " + path.string() + " is not valid JSON");
  std::filesystem::path base = std::filesystem::absolute(path).parent_path();
  HostConfig config = parse_config(document, base, warnings);
  config.source_file = std::filesystem::absolute(path);
  return config;
}

nlohmann::json HostConfig::to_json() const {
  json enabled = json::object();
  for (const auto& [name, flag] : plugins.enabled) enabled[name] = flag;
  return {
      {"pipe_name", pipe_name},
      {"models_root", models_root.string()},
      {"output_root", output_root.string()},
      {"plugins",
       {{"dir", plugins.dir.string()},
        {"enabled", enabled},
        {"enable_unlisted", plugins.enable_unlisted},
        {"config", plugins.config},
        {"run_dir", plugins.run_dir.string()}}},
      {"limits",
       {{"max_message_bytes", limits.max_message_bytes},
        {"max_client_backlog_bytes", limits.max_client_backlog_bytes},
        {"min_width", limits.min_width},
        {"max_width", limits.max_width},
        {"min_height", limits.min_height},
        {"max_height", limits.max_height},
        {"max_steps", limits.max_steps},
        {"min_guidance", limits.min_guidance},
        {"max_guidance", limits.max_guidance},
        {"max_batch", limits.max_batch},
        {"max_json_depth", limits.max_json_depth},
        {"max_timeout_s", limits.max_timeout_s},
        {"max_image_pixels", limits.max_image_pixels}}},
      {"queue",
       {{"max_pending", queue.max_pending},
        {"progress_interval_ms", queue.progress_interval_ms},
        {"progress_heartbeat_s", queue.progress_heartbeat_s},
        {"executors", queue.executors},
        {"default_timeout_s", queue.default_timeout_s},
        {"shutdown_grace_s", queue.shutdown_grace_s}}},
      {"cache", {{"max_models", cache.max_models}, {"max_bytes", cache.max_bytes},
                 {"max_memory_fraction", cache.max_memory_fraction}}},
      {"metrics", {{"listen", metrics.listen}}},
      {"cluster",
       {{"role", cluster.role},
        {"broker", host::cluster::parse_broker_url(cluster.broker, "cluster.broker").display()},  // no password
        {"jobs_queue", cluster.jobs_queue},
        {"cancel_exchange", cluster.cancel_exchange},
        {"heartbeat_exchange", cluster.heartbeat_exchange},
        {"reply_queue", cluster.reply_queue},
        {"node_name", cluster.node_name},
        {"heartbeat_s", cluster.heartbeat_s},
        {"worker_timeout_s", cluster.worker_timeout_s},
        {"reconnect_max_s", cluster.reconnect_max_s},
        {"reply_queue_expires_s", cluster.reply_queue_expires_s}}},
      {"device", device},
      {"dtype", dtype},
      {"threads", threads},
      {"log_level", log_level},
      {"on_disabled_feature", host::to_string(on_disabled_feature)},
      {"socket_mode", mode_string(socket_mode)},
  };
}

}  // namespace sdxlhost::host
