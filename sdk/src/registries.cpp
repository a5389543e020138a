#include "sdxlhost/sdk/registries.hpp"

#include <algorithm>
#include <cctype>
#include <utility>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::sdk {
namespace {

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return text;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ", ") + item;
  return out;
}

}  // namespace

void Registries::add_stage(std::shared_ptr<Stage> stage) {
  if (!stage) throw Error(ErrorCode::PluginError, "add_stage: null stage");
  const std::string name = stage->name();
  if (stage_owner_.count(name))
    throw Error(ErrorCode::PluginError,
                "stage '" + name + "' is already provided by plugin '" + stage_owner_[name] + "'");
  stage_owner_[name] = current_plugin_;
  stages_.push_back(std::move(stage));
}

std::string Registries::stage_owner(const std::string& stage_name) const {
  auto it = stage_owner_.find(stage_name);
  return it == stage_owner_.end() ? std::string() : it->second;
}

void Registries::add_scheduler(const std::string& class_name, SchedulerFactory factory) {
  if (schedulers_.count(class_name))
    throw Error(ErrorCode::PluginError, "scheduler '" + class_name + "' is already registered");
  schedulers_[class_name] = std::move(factory);
}

void Registries::add_scheduler_alias(const std::string& alias, SchedulerAlias target) {
  aliases_[lower(alias)] = std::move(target);
}

void Registries::add_preprocessor(std::shared_ptr<Preprocessor> preprocessor) {
  if (!preprocessor) throw Error(ErrorCode::PluginError, "add_preprocessor: null preprocessor");
  const std::string name = preprocessor->name();
  if (preprocessors_.count(name))
    throw Error(ErrorCode::PluginError, "preprocessor '" + name + "' is already registered");
  preprocessors_[name] = std::move(preprocessor);
}

void Registries::add_model_patch(std::shared_ptr<ModelPatch> patch) {
  patches_.push_back(std::move(patch));
}

void Registries::add_denoise_hook(std::shared_ptr<DenoiseHook> hook) {
  hooks_.push_back(std::move(hook));
}

void Registries::add_model_preloader(const std::string& kind, ModelPreloader preloader) {
  preloaders_[kind] = std::move(preloader);
}

SchedulerAlias Registries::resolve_scheduler(const std::string& name_or_alias,
                                             const std::string& field) const {
  if (schedulers_.count(name_or_alias)) return SchedulerAlias{name_or_alias, nlohmann::json::object()};
  auto alias = aliases_.find(lower(name_or_alias));
  if (alias != aliases_.end() && schedulers_.count(alias->second.class_name)) return alias->second;
  std::vector<std::string> known = scheduler_names();
  for (const auto& [name, target] : aliases_)
    if (schedulers_.count(target.class_name)) known.push_back("\"" + name + "\"");
  throw Error(ErrorCode::ValidationError,
              "unknown scheduler '" + name_or_alias + "'; known: " +
                  (known.empty() ? std::string("none (is the schedulers plugin enabled?)") : join(known)),
              field);
}

std::unique_ptr<Scheduler> Registries::create_scheduler(const std::string& name_or_alias,
                                                        const nlohmann::json& base_config,
                                                        const nlohmann::json& overrides,
                                                        const std::string& field) const {
  const SchedulerAlias target = resolve_scheduler(name_or_alias, field);
  nlohmann::json config = base_config.is_object() ? base_config : nlohmann::json::object();
  config.update(target.overrides);
  if (overrides.is_object()) config.update(overrides);
  return schedulers_.at(target.class_name)(config);
}

std::vector<std::string> Registries::scheduler_names() const {
  std::vector<std::string> names;
  for (const auto& [name, factory] : schedulers_) names.push_back(name);
  return names;
}

std::shared_ptr<const Preprocessor> Registries::preprocessor(const std::string& name) const {
  auto it = preprocessors_.find(name);
  return it == preprocessors_.end() ? nullptr : it->second;
}

std::vector<std::string> Registries::preprocessor_names() const {
  std::vector<std::string> names;
  for (const auto& [name, p] : preprocessors_) names.push_back(name);
  return names;
}

const ModelPreloader* Registries::model_preloader(const std::string& kind) const {
  auto it = preloaders_.find(kind);
  return it == preloaders_.end() ? nullptr : &it->second;
}

}  // namespace sdxlhost::sdk
