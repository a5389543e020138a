#include "host/runtime/host_service.hpp"

#include <algorithm>
#include <set>

#include "host/common/client_text.hpp"
#include "host/common/logging.hpp"
#include "host/common/memory.hpp"
#include "host/metrics/metrics.hpp"
#include "host/output/image_writer.hpp"
#include "host/protocol/preprocess_request.hpp"
#include "host/protocol/request_parser.hpp"
#include "host/runtime/generation.hpp"
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
using protocol::Envelope;
using protocol::MessageType;
using sdk::Error;
using sdk::ErrorCode;

constexpr const char* kHostVersion = "0.1.0";

/// The names of the loaded plugins: `data.<name>` is that plugin's section of a request.
/// The top-level keys of `data` that belong to plugins: each loaded plugin's own section
/// (data.<name>) and the section of each feature a plugin declares (data.my_feature).
std::set<std::string> plugin_sections(const PluginSet& plugins) {
  std::set<std::string> names;
  for (const auto& record : plugins.records()) {
    if (record.state == "loaded") names.insert(record.name);
    for (const auto& feature : record.request_features)
      if (feature.field.rfind("data.", 0) == 0) names.insert(feature.field.substr(5, feature.field.find('.', 5) - 5));
  }
  return names;
}

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

protocol::EnvelopeLimits envelope_limits(const HostConfig& config) {
  return {config.limits.max_message_bytes, config.limits.max_json_depth};
}

bool is_model_kind(const std::string& kind) {
  return std::find(std::begin(sdk::kModelKinds), std::end(sdk::kModelKinds), kind) != std::end(sdk::kModelKinds);
}

std::string model_kind_list() {
  std::string list;
  for (const char* kind : sdk::kModelKinds) list += (list.empty() ? "" : ", ") + std::string(kind);
  return list;
}

/// data.kind (default "checkpoints") and data.name of load_model / unload_model.
std::pair<std::string, std::string> model_reference(const json& data) {
  std::string kind = sdk::kCheckpoints;
  if (auto it = data.find("kind"); it != data.end() && !it->is_null()) {
    if (!it->is_string()) throw Error(ErrorCode::ValidationError, "must be a string", "data.kind");
    kind = it->get<std::string>();
  }
  if (!is_model_kind(kind)) throw Error(ErrorCode::ValidationError, "must be one of: " + model_kind_list(), "data.kind");
  auto name = data.find("name");
  if (name != data.end() && !name->is_null() && !name->is_string())
    throw Error(ErrorCode::ValidationError,
                std::string("must be a string (a model name under models_root/") + kind + "), got " + name->type_name(),
                "data.name");
  if (name == data.end() || name->is_null() || name->get<std::string>().empty())
    throw Error(ErrorCode::ValidationError, "is required (a model name under models_root/" + kind + ")",
                "data.name");
  return {kind, name->get<std::string>()};
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

/// The preprocessor a preprocess request names, from the current plugin set: FEATURE_DISABLED
/// when no enabled plugin registers any, VALIDATION_ERROR listing the known names when it is not
/// one of them.
std::shared_ptr<const sdk::Preprocessor> find_preprocessor(const sdk::Registries& registries,
                                                           const protocol::PreprocessRequest& request) {
  const auto names = registries.preprocessor_names();
  if (names.empty())
    throw Error(ErrorCode::FeatureDisabled,
                "no enabled plugin provides preprocessors (enable one, e.g. plugins.enabled.controlnet)",
                request.name_field);
  auto preprocessor = registries.preprocessor(request.name);
  if (!preprocessor) {
    std::string known;
    for (const auto& name : names) known += (known.empty() ? "" : ", ") + name;
    throw Error(ErrorCode::ValidationError, "unknown preprocessor '" + request.name + "' (known: " + known + ")",
                request.name_field);
  }
  return preprocessor;
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

HostService::HostService(HostConfig config, const std::vector<std::string>& config_warnings)
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

HostService::~HostService() {
  if (shutdown_thread_.joinable()) shutdown_thread_.join();
  runner_.shutdown(0.0);
  models_->drop_all();
}

void HostService::start() { runner_.start(); }

std::shared_ptr<const HostConfig> HostService::config() const {
  std::lock_guard<std::mutex> lock(config_mutex_);
  return config_;
}

void HostService::reply(const ConnectionPtr& connection, const json& message) const {
  if (connection) connection->send(protocol::to_line(message));
}

void HostService::on_line(const ConnectionPtr& connection, std::string&& line) {
  auto config = this->config();
  Envelope envelope;
  try {
    envelope = protocol::parse_envelope(line, envelope_limits(*config));
  } catch (const protocol::EnvelopeError& error) {
    component_logger("protocol")->info("client {}: refused line of {} bytes: {}", connection->id(), line.size(),
                                       error.what());
    reply(connection, protocol::error_response(error.request_id(), error));
    return;
  } catch (const std::exception& error) {  // e.g. bad_alloc: answer, never take the I/O thread down
    component_logger("protocol")->error("client {}: line of {} bytes failed: {}", connection->id(), line.size(),
                                        error.what());
    reply(connection, protocol::error_response("", Error(ErrorCode::InternalError, client_message(error))));
    return;
  }
  dispatch(connection, envelope, line);
}

void HostService::on_oversized(const ConnectionPtr& connection, std::size_t bytes) {
  auto limit = config()->limits.max_message_bytes;
  component_logger("protocol")->warn("client {}: line over {} bytes refused", connection->id(), limit);
  reply(connection, protocol::error_response(
                        "", Error(ErrorCode::MessageTooLarge,
                                  "message exceeds limits.max_message_bytes (" + std::to_string(limit) +
                                      " bytes; " + std::to_string(bytes) + " read before refusing)")));
}

void HostService::on_disconnect(const ConnectionPtr& connection) {
  component_logger("transport")->debug("client {} went away", connection->id());
  runner_.drop_connection(connection->id());
  if (forwarder_) forwarder_->drop_connection(connection->id());
}

void HostService::dispatch(const ConnectionPtr& connection, Envelope& envelope, const std::string& line) {
  auto log = component_logger("protocol");
  log->debug("[{}] {} from client {}", envelope.request_id, protocol::to_string(envelope.type), connection->id());
  try {
    bool queued = false;
    json data;
    bool busy_refused = stopping() && envelope.type != MessageType::Ping && envelope.type != MessageType::Status &&
                        envelope.type != MessageType::Capabilities;
    if (busy_refused) throw Error(ErrorCode::ShuttingDown, "the host is shutting down");
    switch (envelope.type) {
      case MessageType::InferenceRequest: data = handle_inference(connection, envelope, queued, line); break;
      case MessageType::Cancel: data = handle_cancel(envelope); break;
      case MessageType::Ping: data = ping(); break;
      case MessageType::Capabilities: data = capabilities(); break;
      case MessageType::ListModels:
        data = models_->list_models();
        if (forwarder_) forwarder_->describe_models(data);
        break;
      case MessageType::LoadModel: data = handle_load_model(connection, envelope, queued, line); break;
      case MessageType::UnloadModel: data = handle_unload_model(connection, envelope, queued, line); break;
      case MessageType::Status: data = status(); break;
      case MessageType::ReloadConfig: data = reload_config(envelope.warnings); break;
      case MessageType::Shutdown: data = {{"shutting_down", true}}; break;
      case MessageType::Preprocess: data = handle_preprocess(connection, envelope, queued, line); break;
      case MessageType::Upscale: data = handle_upscale(connection, envelope, queued, line); break;
      case MessageType::Metrics: data = {{"content_type", metrics::kContentType}, {"text", metrics_text()}}; break;
    }
    if (queued) return;  // the job answers when it ends
    metrics::Registry::global().count_response(protocol::to_string(envelope.type), "OK");
    reply(connection, protocol::success_response(envelope.request_id, std::move(data), envelope.warnings));
    if (envelope.type == MessageType::Shutdown) request_shutdown("shutdown message from client " + std::to_string(connection->id()));
  } catch (const Error& error) {
    log->info("[{}] {} refused: {} ({})", envelope.request_id, protocol::to_string(envelope.type), error.what(),
              sdk::to_string(error.code()));
    metrics::Registry::global().count_response(protocol::to_string(envelope.type), sdk::to_string(error.code()));
    reply(connection, protocol::error_response(envelope.request_id, error, envelope.warnings));
  } catch (const std::exception& error) {
    log->error("[{}] {} failed: {}", envelope.request_id, protocol::to_string(envelope.type), error.what());
    metrics::Registry::global().count_response(protocol::to_string(envelope.type), "INTERNAL_ERROR");
    reply(connection, protocol::error_response(envelope.request_id, Error(ErrorCode::InternalError, client_message(error)),
                                               envelope.warnings));
  }
}

json HostService::handle_inference(const ConnectionPtr& connection, Envelope& envelope, bool& queued,
                                   const std::string& line) {
  auto config = this->config();
  auto plugins = plugins_->current();
  auto request = std::make_shared<sdk::GenerationRequest>(protocol::parse_generation_request(
      envelope.data, envelope.request_id, config->limits, config->queue.default_timeout_s, envelope.warnings,
      plugin_sections(*plugins)));
  check_model_names(*request, *models_);
  check_init_image(*request, config->limits);
  OnDisabledFeature policy = planner_policy(config->on_disabled_feature);
  if (request->dry_run) return dry_run_data(*request, *plugins, policy, envelope.warnings);
  {
    std::vector<std::string> ignored;  // the executor plans again with the set current then
    Plan plan = plan_request(*plugins, *request, policy, ignored);
    if (forwarder_) {
      std::set<std::string> features;
      for (const auto& stage : plan.stages) features.insert(stage->feature());
      forward(connection, envelope, "generation", request->metadata.priority, request->metadata.timeout_s,
              std::move(features), line);
      queued = true;
      return nullptr;
    }
  }
  std::shared_ptr<const sdk::GenerationRequest> frozen = request;
  JobWork work = [this, frozen](Job& job) {
    auto config = this->config();
    GenerationEnvironment environment;
    environment.plugins = plugins_->current();
    environment.models = models_.get();
    environment.output = OutputSettings{config->output_root};
    environment.on_disabled = planner_policy(config->on_disabled_feature);
    environment.device = config->device;
    environment.progress_interval_ms = config->queue.progress_interval_ms;
    return run_generation(job, frozen, environment);
  };
  auto job = std::make_shared<Job>(envelope.request_id, "generation", priority_from_string(request->metadata.priority),
                                   request->metadata.timeout_s, connection, std::move(work));
  job->warnings = envelope.warnings;
  runner_.submit(job);
  queued = true;
  return nullptr;
}

GenerationEnvironment HostService::environment() const {
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

json HostService::handle_upscale(const ConnectionPtr& connection, Envelope& envelope, bool& queued,
                                 const std::string& line) {
  auto config = this->config();
  auto parsed = protocol::parse_upscale_request(envelope.data, envelope.request_id, config->limits,
                                                config->queue.default_timeout_s, envelope.warnings);
  Plan plan = plan_upscale(*plugins_->current(), parsed.request);  // refuse bad options / a disabled upscaler now
  if (forwarder_) {
    std::set<std::string> features;
    for (const auto& stage : plan.stages) features.insert(stage->feature());
    forward(connection, envelope, "upscale", parsed.request.metadata.priority, parsed.request.metadata.timeout_s,
            std::move(features), line);
    queued = true;
    return nullptr;
  }
  std::shared_ptr<const sdk::GenerationRequest> request =
      std::make_shared<sdk::GenerationRequest>(std::move(parsed.request));
  JobWork work = [this, request, image = std::move(parsed.image)](Job& job) {
    return run_upscale(job, request, image, environment());
  };
  auto job = std::make_shared<Job>(envelope.request_id, "upscale", priority_from_string(request->metadata.priority),
                                   request->metadata.timeout_s, connection, std::move(work));
  job->warnings = envelope.warnings;
  runner_.submit(job);
  queued = true;
  return nullptr;
}

void HostService::forward(const ConnectionPtr& connection, const Envelope& envelope, const std::string& kind,
                          const std::string& priority, double timeout_s, std::set<std::string> features,
                          const std::string& line, bool every_worker) {
  ForwardedJob job;
  job.every_worker = every_worker;
  job.request_id = envelope.request_id;
  job.kind = kind;
  job.priority = priority_from_string(priority);
  job.timeout_s = timeout_s;
  job.line = line;
  job.features = std::move(features);
  job.connection = connection;
  job.warnings = envelope.warnings;
  forwarder_->forward(std::move(job));
}

json HostService::handle_cancel(const Envelope& envelope) {
  std::string target;
  for (const char* key : {"request_id", "target_request_id"}) {
    auto it = envelope.data.find(key);
    if (it == envelope.data.end() || it->is_null()) continue;
    if (it->is_number_integer()) target = it->dump();  // the envelope accepts integer ids too
    else if (it->is_string()) target = it->get<std::string>();
    else
      throw Error(ErrorCode::ValidationError,
                  std::string("must be a string (the request_id of the job to cancel), got ") + it->type_name(),
                  std::string("data.") + key);
  }
  if (target.empty())
    throw Error(ErrorCode::ValidationError, "is required: the request_id of the job to cancel", "data.request_id");
  std::string state = forwarder_ ? forwarder_->cancel(target) : runner_.cancel(target);
  if (state.empty()) throw Error(ErrorCode::NotFound, "no queued or running job '" + target + "'", "data.request_id");
  return {{"cancelled", true}, {"request_id", target}, {"state", state}};
}

json HostService::handle_load_model(const ConnectionPtr& connection, Envelope& envelope, bool& queued,
                                    const std::string& line) {
  auto [kind, name] = model_reference(envelope.data);
  models_->resolve(kind, name, "data.name");
  auto plugins = plugins_->current();
  if (!plugins->registries().model_preloader(kind))
    throw Error(ErrorCode::FeatureDisabled, "no enabled plugin can load models of kind '" + kind + "'", "data.kind");
  double timeout = config()->queue.default_timeout_s;
  if (forwarder_) {  // a gateway has no cache: every worker loads it into its own
    forward(connection, envelope, "load_model", "normal", timeout, {}, line, /*every_worker=*/true);
    queued = true;
    return nullptr;
  }
  JobWork work = [this, kind = kind, name = name](Job&) {
    // Through the plugin set, so the cached model anchors the code of the plugin that made it.
    plugins_->current()->preload_model(kind, *models_, name);
    return json{{"kind", kind}, {"name", name}, {"loaded", true}, {"cache", models_->stats()}};
  };
  auto job = std::make_shared<Job>(envelope.request_id, "load_model", Priority::Normal, timeout, connection,
                                   std::move(work));
  job->warnings = envelope.warnings;
  runner_.submit(job);
  queued = true;
  return nullptr;
}

json HostService::handle_unload_model(const ConnectionPtr& connection, Envelope& envelope, bool& queued,
                                      const std::string& line) {
  auto [kind, name] = model_reference(envelope.data);
  if (forwarder_) {  // every worker unloads it from its own cache
    models_->resolve(kind, name, "data.name");
    forward(connection, envelope, "unload_model", "normal", config()->queue.default_timeout_s, {}, line,
            /*every_worker=*/true);
    queued = true;
    return nullptr;
  }
  bool unloaded = models_->unload(kind, name, "data.name");
  return {{"kind", kind}, {"name", name}, {"unloaded", unloaded}, {"cache", models_->stats()}};
}

json HostService::handle_preprocess(const ConnectionPtr& connection, Envelope& envelope, bool& queued,
                                    const std::string& line) {
  auto request = protocol::parse_preprocess_request(envelope.data, envelope.warnings);
  auto plugins = plugins_->current();
  auto preprocessor = find_preprocessor(plugins->registries(), request);
  if (forwarder_) {
    forward(connection, envelope, "preprocess", "normal", config()->queue.default_timeout_s,
            {"preprocessor:" + request.name}, line);
    queued = true;
    return nullptr;
  }
  // The job holds the plugin set, so the preprocessor's library stays loaded while it runs.
  JobWork work = [plugins, preprocessor, request = std::move(request)](Job&) {
    const sdk::Image input = nn::decode_base64_image(request.image, "data.image");
    const sdk::Image output = preprocessor->apply(input, request.options, "data.preprocessor");
    return json{{"preprocessor", request.name},
                {"options", preprocessor->resolve_options(request.options, {"name", "type"})},
                {"image", base64_encode(encode_image(output, "png", 100, {}))},
                {"format", "png"},
                {"width", output.width},
                {"height", output.height},
                {"channels", output.channels}};
  };
  auto job = std::make_shared<Job>(envelope.request_id, "preprocess", Priority::Normal,
                                   config()->queue.default_timeout_s, connection, std::move(work));
  job->warnings = envelope.warnings;
  runner_.submit(job);
  queued = true;
  return nullptr;
}

json HostService::ping() const {
  return {{"pong", true},
          {"version", kHostVersion},
          {"uptime_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count()}};
}

json HostService::capabilities() const {
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
          {"message_types", protocol::message_type_names()},
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

bool HostService::ready() const {
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

std::string HostService::metrics_text() const {
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
  live.uptime_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count();
  live.ready = ready();
  return metrics::Registry::global().render(live);
}

json HostService::status() const {
  json runner = runner_.describe();
  json status = {{"queue", runner["queue"]},
                 {"running", runner["running"]},
                 {"executors", runner["executors"]},
                 {"clients", client_count_ ? client_count_() : 0},
                 {"memory", process_memory()},
                 {"cpu", cpu_report()},
                 {"models", models_->stats()},
                 {"uptime_s", std::chrono::duration<double>(std::chrono::steady_clock::now() - started_at_).count()},
                 {"shutting_down", stopping()},
                 {"config_file", config()->source_file.string()}};
  // a CUDA device's own memory (allocator and driver); absent on a CPU, whose memory is `memory`
  if (json device = device_memory(config()->device); !device.is_null()) status["device_memory"] = std::move(device);
  if (forwarder_) forwarder_->describe_status(status);
  return status;
}

json HostService::reload_config(std::vector<std::string>& warnings) {
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

void HostService::request_shutdown(const std::string& reason, bool drain) {
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

void HostService::wait_stopped() {
  if (shutdown_thread_.joinable()) shutdown_thread_.join();
}

}  // namespace sdxlhost::host::runtime
