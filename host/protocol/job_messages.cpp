// The messages that become jobs (inference_request, image messages, load_model, preprocess) and the
// ones that act on jobs or models (cancel, unload_model): parsed and checked here on the request
// thread, then queued on the engine or, on a gateway, handed to its JobForwarder.
#include <algorithm>

#include "host/graph/planner.hpp"
#include "host/models/model_store.hpp"
#include "host/output/image_writer.hpp"
#include "host/plugins/plugin_manager.hpp"
#include "host/protocol/dispatcher.hpp"
#include "host/protocol/preprocess_request.hpp"
#include "host/protocol/request_parser.hpp"
#include "host/runtime/generation.hpp"
#include "sdxlhost/nn/image_decode.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/models.hpp"
#include "sdxlhost/sdk/registries.hpp"

namespace sdxlhost::host::protocol {
namespace {

using nlohmann::json;
using runtime::Job;
using runtime::JobWork;
using sdk::Error;
using sdk::ErrorCode;

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

/// The preprocessor a preprocess request names, from the current plugin set: FEATURE_DISABLED
/// when no enabled plugin registers any, VALIDATION_ERROR listing the known names when it is not
/// one of them.
std::shared_ptr<const sdk::Preprocessor> find_preprocessor(const sdk::Registries& registries,
                                                           const PreprocessRequest& request) {
  const auto names = registries.preprocessor_names();
  if (names.empty())
    throw Error(ErrorCode::FeatureDisabled,
                "no enabled plugin provides preprocessors (enable one that does under plugins.enabled)",
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

}  // namespace

json Dispatcher::handle_inference(const Client& client, Envelope& envelope, bool& queued, const std::string& line) {
  auto config = engine_.config();
  auto plugins = engine_.plugins();
  auto request = std::make_shared<sdk::GenerationRequest>(parse_generation_request(
      envelope.data, envelope.request_id, config->limits, config->queue.default_timeout_s, envelope.warnings,
      plugin_sections(*plugins)));
  runtime::check_model_names(*request, engine_.models());
  runtime::check_init_image(*request, config->limits);
  OnDisabledFeature policy = runtime::planner_policy(config->on_disabled_feature);
  if (request->dry_run) return runtime::dry_run_data(*request, *plugins, policy, envelope.warnings);
  {
    std::vector<std::string> ignored;  // the executor plans again with the set current then
    Plan plan = plan_request(*plugins, *request, policy, ignored);
    if (engine_.forwarder()) {
      std::set<std::string> features;
      for (const auto& stage : plan.stages) features.insert(stage->feature());
      forward(client, envelope, "generation", request->metadata.priority, request->metadata.timeout_s,
              std::move(features), line);
      queued = true;
      return nullptr;
    }
  }
  std::shared_ptr<const sdk::GenerationRequest> frozen = request;
  submit(client, envelope, "generation", request->metadata.priority, request->metadata.timeout_s,
         [engine = &engine_, frozen](Job& job) { return runtime::run_generation(job, frozen, engine->environment()); });
  queued = true;
  return nullptr;
}

json Dispatcher::handle_image_message(const Client& client, Envelope& envelope, bool& queued,
                                      const std::string& line) {
  const sdk::ImageMessage& message = *envelope.image_message;
  auto config = engine_.config();
  auto parsed = message.parse(envelope.data, envelope.request_id, config->limits, config->queue.default_timeout_s,
                              envelope.warnings);
  // refuse bad options / a disabled feature now
  Plan plan = runtime::plan_image_message(*engine_.plugins(), parsed.request, message);
  if (engine_.forwarder()) {
    std::set<std::string> features;
    for (const auto& stage : plan.stages) features.insert(stage->feature());
    forward(client, envelope, message.message_type, parsed.request.metadata.priority,
            parsed.request.metadata.timeout_s, std::move(features), line);
    queued = true;
    return nullptr;
  }
  std::shared_ptr<const sdk::GenerationRequest> request =
      std::make_shared<sdk::GenerationRequest>(std::move(parsed.request));
  submit(client, envelope, message.message_type, request->metadata.priority, request->metadata.timeout_s,
         [engine = &engine_, request, image = std::move(parsed.image), &message](Job& job) {
           return runtime::run_image_message(job, request, image, message, engine->environment());
         });
  queued = true;
  return nullptr;
}

void Dispatcher::forward(const Client& client, const Envelope& envelope, const std::string& kind,
                         const std::string& priority, double timeout_s, std::set<std::string> features,
                         const std::string& line, bool every_worker) {
  if (!client.connection)  // worker and CLI hosts have no forwarder: only a line client gets here
    throw Error(ErrorCode::InternalError, "a gateway forwards jobs of pipe and stdio clients only");
  runtime::ForwardedJob job;
  job.every_worker = every_worker;
  job.request_id = envelope.request_id;
  job.kind = kind;
  job.priority = runtime::priority_from_string(priority);
  job.timeout_s = timeout_s;
  job.line = line;
  job.features = std::move(features);
  job.connection = client.connection;
  job.warnings = envelope.warnings;
  engine_.forwarder()->forward(std::move(job));
}

void Dispatcher::submit(const Client& client, const Envelope& envelope, const std::string& kind,
                        const std::string& priority, double timeout_s, JobWork work) {
  auto job = std::make_shared<Job>(envelope.request_id, kind, runtime::priority_from_string(priority), timeout_s,
                                   client.sink, std::move(work), client.id);
  job->warnings = envelope.warnings;
  engine_.submit(job);
}

json Dispatcher::handle_cancel(const Envelope& envelope) {
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
  std::string state = engine_.cancel(target);
  if (state.empty()) throw Error(ErrorCode::NotFound, "no queued or running job '" + target + "'", "data.request_id");
  return {{"cancelled", true}, {"request_id", target}, {"state", state}};
}

json Dispatcher::handle_load_model(const Client& client, Envelope& envelope, bool& queued, const std::string& line) {
  auto [kind, name] = model_reference(envelope.data);
  engine_.models().resolve(kind, name, "data.name");
  auto plugins = engine_.plugins();
  if (!plugins->registries().model_preloader(kind))
    throw Error(ErrorCode::FeatureDisabled, "no enabled plugin can load models of kind '" + kind + "'", "data.kind");
  double timeout = engine_.config()->queue.default_timeout_s;
  if (engine_.forwarder()) {  // a gateway has no cache: every worker loads it into its own
    forward(client, envelope, "load_model", "normal", timeout, {}, line, /*every_worker=*/true);
    queued = true;
    return nullptr;
  }
  submit(client, envelope, "load_model", "normal", timeout, [engine = &engine_, kind = kind, name = name](Job&) {
    // Through the plugin set, so the cached model anchors the code of the plugin that made it.
    engine->plugins()->preload_model(kind, engine->models(), name);
    return json{{"kind", kind}, {"name", name}, {"loaded", true}, {"cache", engine->models().stats()}};
  });
  queued = true;
  return nullptr;
}

json Dispatcher::handle_unload_model(const Client& client, Envelope& envelope, bool& queued,
                                     const std::string& line) {
  auto [kind, name] = model_reference(envelope.data);
  if (engine_.forwarder()) {  // every worker unloads it from its own cache
    engine_.models().resolve(kind, name, "data.name");
    forward(client, envelope, "unload_model", "normal", engine_.config()->queue.default_timeout_s, {}, line,
            /*every_worker=*/true);
    queued = true;
    return nullptr;
  }
  bool unloaded = engine_.models().unload(kind, name, "data.name");
  return {{"kind", kind}, {"name", name}, {"unloaded", unloaded}, {"cache", engine_.models().stats()}};
}

json Dispatcher::handle_preprocess(const Client& client, Envelope& envelope, bool& queued, const std::string& line) {
  auto request = parse_preprocess_request(envelope.data, envelope.warnings);
  auto plugins = engine_.plugins();
  auto preprocessor = find_preprocessor(plugins->registries(), request);
  const double timeout = engine_.config()->queue.default_timeout_s;
  if (engine_.forwarder()) {
    forward(client, envelope, "preprocess", "normal", timeout, {"preprocessor:" + request.name}, line);
    queued = true;
    return nullptr;
  }
  // The job holds the plugin set, so the preprocessor's library stays loaded while it runs.
  submit(client, envelope, "preprocess", "normal", timeout,
         [plugins, preprocessor, request = std::move(request)](Job&) {
           const sdk::Image input = nn::decode_base64_image(request.image, "data.image");
           const sdk::Image output = preprocessor->apply(input, request.options, "data.preprocessor");
           return json{{"preprocessor", request.name},
                       {"options", preprocessor->resolve_options(request.options, {"name", "type"})},
                       {"image", base64_encode(encode_image(output, "png", 100, {}))},
                       {"format", "png"},
                       {"width", output.width},
                       {"height", output.height},
                       {"channels", output.channels}};
         });
  queued = true;
  return nullptr;
}

}  // namespace sdxlhost::host::protocol
