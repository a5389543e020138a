#include "host/runtime/engine.hpp"

#include <algorithm>

#include "host/common/logging.hpp"
#include "host/common/memory.hpp"
#include "host/metrics/metrics.hpp"
#include "host/output/image_writer.hpp"
#include "host/runtime/threads.hpp"
#include "sdxlhost/nn/device_runtime.hpp"
#include "sdxlhost/nn/image_decode.hpp"
#include "sdxlhost/sdk/abi.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/models.hpp"
#include "sdxlhost/sdk/registries.hpp"

namespace sdxlhost::host::runtime {
namespace {

using nlohmann::json;
using sdk::Error;
using sdk::ErrorCode;

/// What cache.max_memory_fraction is a fraction of: on a CUDA device what the process can still
/// use there (driver's free memory + the allocator's unused cache); on a CPU the ModelStore's
/// default (MemAvailable).
std::function<std::uint64_t()> available_memory(const std::string& device) {
  if (device == "cpu") return {};
  return [device] {
    const auto memory = nn::device_memory(c10::Device(device));
    return memory ? static_cast<std::uint64_t>(std::max<std::int64_t>(memory->usable(), 0))
                  : std::uint64_t{0};  // unknown: the fraction check is off
  };
}

ModelStoreSettings model_settings(const HostConfig& config) {
  return {config.models_root, config.cache.max_models, config.cache.max_bytes, config.cache.max_memory_fraction,
          available_memory(config.device)};
}

json error_code_names() {
  json names = json::array();
  for (int code = 0; code <= static_cast<int>(ErrorCode::InternalError); ++code)
    names.push_back(sdk::to_string(static_cast<ErrorCode>(code)));
  return names;
}

/// Every registered preprocessor with its options (capabilities' `preprocessor_details`).
json preprocessor_details(const sdk::Registries& registries) {
  json details = json::array();
  for (const auto& name : registries.preprocessor_names()) details.push_back(registries.preprocessor(name)->describe());
  return details;
}

json stages_of(const sdk::Registries& registries) {
  json stages = json::array();
  for (const auto& stage : registries.stages())
    stages.push_back({{"name", stage->name()},
                      {"feature", stage->feature()},
                      {"plugin", registries.stage_owner(stage->name())},
                      {"order", stage->order()},
                      {"reads", stage->reads()},
                      {"writes", stage->writes()}});
  return stages;
}

/// Lists what differs between two configs among keys applied only at start.
void restart_only_changes(const HostConfig& before, const HostConfig& after, std::vector<std::string>& warnings) {
  json a = before.to_json(), b = after.to_json();
  for (const char* key : {"pipe_name", "socket_mode", "models_root", "cache", "metrics", "cluster", "device", "dtype", "threads"})
    if (a[key] != b[key]) warnings.push_back(std::string("config key '") + key + "' changed: takes effect after a restart");
  if (a["queue"]["executors"] != b["queue"]["executors"])
    warnings.push_back("config key 'queue.executors' changed: takes effect after a restart");
  if (a["limits"]["max_client_backlog_bytes"] != b["limits"]["max_client_backlog_bytes"])
    warnings.push_back("config key 'limits.max_client_backlog_bytes' changed: takes effect after a restart");
  if (a["plugins"]["run_dir"] != b["plugins"]["run_dir"])
    warnings.push_back("config key 'plugins.run_dir' changed: takes effect after a restart");
}

}  // namespace

PluginSettings plugin_settings(const HostConfig& config) {
  PluginSettings settings;
  settings.dir = config.plugins.dir;
  settings.enabled = config.plugins.enabled;
  settings.enable_unlisted = config.plugins.enable_unlisted;
  settings.plugin_configs = config.plugins.config;
  settings.device = config.device;
  settings.dtype = config.dtype;
  settings.run_dir = config.plugins.run_dir;
  return settings;
}

Engine::Engine(HostConfig config, const std::vector<std::string>& config_warnings)
    : config_(std::make_shared<const HostConfig>(std::move(config))),
      plugins_(std::make_unique<PluginManager>(plugin_settings(*config_))),
      models_(std::make_unique<ModelStore>(model_settings(*config_))),
      runner_(config_->queue.max_pending, config_->queue.executors) {
  auto log = component_logger("host");
  for (const auto& warning : config_warnings) log->warn("config: {}", warning);
  runner_.set_progress_heartbeat(config_->queue.progress_heartbeat_s);
  if (configure_allocator()) log->debug("malloc mmap threshold fixed at {} bytes (memory of unloaded models goes back)", kMmapThresholdBytes);
  nn::set_max_image_pixels(config_->limits.max_image_pixels);
  if (const std::size_t stale = remove_stale_temporaries(config_->output_root))
    log->info("removed {} temporary image file(s) left under output_root by a process that stopped", stale);
  plugins_->load();
}

Engine::~Engine() {
  if (shutdown_thread_.joinable()) shutdown_thread_.join();
  runner_.shutdown(0.0);
  models_->drop_all();
}

void Engine::start() { runner_.start(); }

std::shared_ptr<const PluginSet> Engine::plugins() const { return plugins_->current(); }

GenerationEnvironment Engine::environment() const {
  auto config = this->config();
  GenerationEnvironment environment;
  environment.plugins = plugins_->current();
  environment.models = models_.get();
  environment.output = OutputSettings{config->output_root};
  environment.on_disabled = planner_policy(config->on_disabled_feature);
  environment.device = config->device;
  environment.progress_interval_ms = config->queue.progress_interval_ms;
  return environment;
}

std::string Engine::cancel(const std::string& request_id) {
  return forwarder_ ? forwarder_->cancel(request_id) : runner_.cancel(request_id);
}

void Engine::drop_client(std::uint64_t client_id) {
  runner_.drop_connection(client_id);
  if (forwarder_) forwarder_->drop_connection(client_id);
}

json Engine::list_models() const {
  json models = models_->list_models();
  if (forwarder_) forwarder_->describe_models(models);
  return models;
}

double Engine::uptime_s() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
}

std::shared_ptr<const HostConfig> Engine::config() const {
  std::lock_guard<std::mutex> lock(config_mutex_);
  return config_;
}

json Engine::capabilities() const {
  auto plugins = plugins_->current();
  const auto& registries = plugins->registries();
  json aliases = json::object();
  for (const auto& [alias, target] : registries.scheduler_aliases())
    aliases[alias] = {{"class_name", target.class_name}, {"overrides", target.overrides}};
  auto config = this->config();
  json kinds = json::array();
  for (const char* kind : sdk::kModelKinds)
    if (registries.model_preloader(kind)) kinds.push_back(kind);
  json capabilities = {{"host", {{"name", "sdxl-host"}, {"version", kHostVersion}, {"abi_version", sdk::kAbiVersion},
                    {"build_id", sdk::kBuildId}}},
          {"error_codes", error_code_names()},
          {"plugins", plugins->describe()},
          {"stages", stages_of(registries)},
          {"schedulers", registries.scheduler_names()},
          {"scheduler_aliases", aliases},
          {"preprocessors", registries.preprocessor_names()},
          {"preprocessor_details", preprocessor_details(registries)},
          {"preloadable_model_kinds", kinds},
          {"output_formats", {"png", "jpeg", "webp"}},
          {"limits", config->to_json()["limits"]},
          {"on_disabled_feature", to_string(config->on_disabled_feature)},
          {"device", config->device},
          {"dtype", config->dtype},
          {"cpu", cpu_report()}};
  if (forwarder_) forwarder_->describe_capabilities(capabilities);
  return capabilities;
}

bool Engine::ready() const {
  if (stopping()) return false;
  if (forwarder_) return forwarder_->ready();  // a gateway runs nothing: ready when a worker is
  const json models = models_->list_models();
  if (!models.contains("checkpoints") || models["checkpoints"].empty()) return false;
  try {  // the loaded plugins can plan a plain generation with a checkpoint that is there
    sdk::GenerationRequest probe;
    probe.models.base = models["checkpoints"][0].is_string() ? models["checkpoints"][0].get<std::string>()
                                                             : models["checkpoints"][0].value("name", "");
    std::vector<std::string> warnings;
    plan_request(*plugins_->current(), probe, OnDisabledFeature::Error, warnings);
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

std::string Engine::metrics_text() const {
  metrics::LiveState live;
  const json runner = runner_.describe();
  live.queue_depth = runner["queue"].value("depth", 0);
  live.running_jobs = runner["running"].size();
  live.clients = client_count_ ? client_count_() : 0;
  const json cache = models_->stats();
  live.cache_models = cache.value("loaded_models", 0);
  live.cache_bytes = cache.value("loaded_bytes", std::uint64_t{0});
  live.cache_max_bytes = cache.value("max_bytes", std::uint64_t{0});
  live.cache_hits = cache.value("hits", std::uint64_t{0});
  live.cache_misses = cache.value("misses", std::uint64_t{0});
  live.cache_evictions = cache.value("evictions", std::uint64_t{0});
  for (const auto& plugin : plugins_->describe())
    live.plugins.emplace_back(plugin.value("name", ""), plugin.value("state", ""));
  const json memory = process_memory();
  live.resident_bytes = memory.value("rss_bytes", std::uint64_t{0});
  live.peak_resident_bytes = memory.value("peak_rss_bytes", std::uint64_t{0});
  const json device = device_memory(config()->device);
  if (!device.is_null()) live.device_memory_bytes = device["allocated_bytes"].get<std::int64_t>();
  live.uptime_s = uptime_s();
  live.ready = ready();
  return metrics::Registry::global().render(live);
}

json Engine::status() const {
  json runner = runner_.describe();
  json status = {{"queue", runner["queue"]},
                 {"running", runner["running"]},
                 {"executors", runner["executors"]},
                 {"clients", client_count_ ? client_count_() : 0},
                 {"memory", process_memory()},
                 {"cpu", cpu_report()},
                 {"models", models_->stats()},
                 {"uptime_s", uptime_s()},
                 {"shutting_down", stopping()},
                 {"config_file", config()->source_file.string()}};
  // a CUDA device's own memory (allocator and driver); absent on a CPU, whose memory is `memory`
  if (json device = device_memory(config()->device); !device.is_null()) status["device_memory"] = std::move(device);
  if (forwarder_) forwarder_->describe_status(status);
  return status;
}

json Engine::reload_config(std::vector<std::string>& warnings) {
  auto current = config();
  if (current->source_file.empty())
    throw Error(ErrorCode::ValidationError, "the host was started without a config file; nothing to reload");
  std::vector<std::string> load_warnings;
  HostConfig next;
  try {
    next = load_config(current->source_file, load_warnings);
  } catch (const Error& error) {
    component_logger("config")->error("reload refused, running config kept: {}", error.what());
    throw Error(error.code(), std::string("reload refused, running config kept: ") + error.message(), error.field());
  }
  restart_only_changes(*current, next, load_warnings);
  // Restart-only values stay as they run now.
  next.pipe_name = current->pipe_name;
  next.socket_mode = current->socket_mode;
  next.models_root = current->models_root;
  next.cache = current->cache;
  next.metrics = current->metrics;
  next.cluster = current->cluster;
  next.device = current->device;
  next.dtype = current->dtype;
  next.threads = current->threads;
  next.queue.executors = current->queue.executors;
  next.limits.max_client_backlog_bytes = current->limits.max_client_backlog_bytes;
  next.plugins.run_dir = current->plugins.run_dir;
  nn::set_max_image_pixels(next.limits.max_image_pixels);
  plugins_->reconfigure(plugin_settings(next));
  set_log_level(next.log_level);
  runner_.set_max_pending(next.queue.max_pending);
  runner_.set_progress_heartbeat(next.queue.progress_heartbeat_s);
  auto shared = std::make_shared<const HostConfig>(std::move(next));
  {
    std::lock_guard<std::mutex> lock(config_mutex_);
    config_ = shared;
  }
  if (on_limits_changed_) on_limits_changed_(shared->limits.max_message_bytes);
  auto log = component_logger("config");
  for (const auto& warning : load_warnings) log->warn("reload: {}", warning);
  log->info("config reloaded from {}", shared->source_file.string());
  warnings.insert(warnings.end(), load_warnings.begin(), load_warnings.end());
  return {{"reloaded", true}, {"config", shared->to_json()}, {"plugins", plugins_->describe()}};
}

void Engine::request_shutdown(const std::string& reason, bool drain) {
  if (shutdown_requested_.exchange(true)) return;
  component_logger("host")->info("shutting down: {}{}", reason, drain ? " (finishing queued work first)" : "");
  double grace = config()->queue.shutdown_grace_s;
  shutdown_thread_ = std::thread([this, grace, drain] {
    if (drain) runner_.wait_idle();
    runner_.shutdown(grace);
    if (forwarder_) forwarder_->shutdown();
    if (on_stopped_) on_stopped_();
  });
}

void Engine::wait_stopped() {
  if (shutdown_thread_.joinable()) shutdown_thread_.join();
}

}  // namespace sdxlhost::host::runtime
