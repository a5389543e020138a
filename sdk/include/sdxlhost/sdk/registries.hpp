#pragma once
/// @file registries.hpp
/// What plugins add to the host: stages, schedulers (by diffusers class name, plus aliases),
/// preprocessors, model patches, denoise hooks and model preloaders. One Registries object
/// belongs to one plugin set; a reload builds a new one while running jobs keep theirs.
/// Thread-safety: filled single-threaded while plugins initialise, then read-only and safe to
/// read from any thread.

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdxlhost/sdk/export.hpp"
#include "sdxlhost/sdk/hooks.hpp"
#include "sdxlhost/sdk/preprocessor.hpp"
#include "sdxlhost/sdk/scheduler.hpp"
#include "sdxlhost/sdk/stage.hpp"

namespace sdxlhost::sdk {

class ModelAccess;

/// An alias a user may type for a scheduler ("DPM++ 2M Karras"): a class plus option overrides.
struct SchedulerAlias {
  std::string class_name;  ///< diffusers class name it stands for ("DPMSolverMultistepScheduler")
  /// Config overrides the alias implies ({"use_karras_sigmas": true} for "... Karras").
  nlohmann::json overrides = nlohmann::json::object();
};

/// Loads model `name` of a kind into the cache ahead of use (the `load_model` message).
using ModelPreloader = std::function<void(ModelAccess& models, const std::string& name)>;

/// Everything the plugins of one plugin set registered, by kind.
class SDXLHOST_API Registries {
 public:
  // ---- written by plugins during initialize() ----------------------------------------------
  /// Adds a stage. Throws Error(PluginError) when a stage of that name exists.
  void add_stage(std::shared_ptr<Stage> stage);
  /// Adds a scheduler under its diffusers class name.
  void add_scheduler(const std::string& class_name, SchedulerFactory factory);
  /// Adds a user-facing alias (matched case-insensitively).
  void add_scheduler_alias(const std::string& alias, SchedulerAlias target);
  /// Adds a preprocessor under preprocessor->name().
  void add_preprocessor(std::shared_ptr<Preprocessor> preprocessor);
  /// Adds a model patch (LoRA); owners of weights apply every patch whose applies() is true.
  void add_model_patch(std::shared_ptr<ModelPatch> patch);
  /// Adds a denoise hook (ControlNet); the denoising loop calls every hook that applies.
  void add_denoise_hook(std::shared_ptr<DenoiseHook> hook);
  /// Registers how to preload models of `kind` ("checkpoints", "loras", ...).
  void add_model_preloader(const std::string& kind, ModelPreloader preloader);

  /// Records which plugin is registering (set by the host around each initialize()).
  void set_current_plugin(const std::string& plugin_name) { current_plugin_ = plugin_name; }

  // ---- read by the host and by stages -------------------------------------------------------
  /// All registered stages, in registration order (the planner orders them per request).
  const std::vector<std::shared_ptr<Stage>>& stages() const { return stages_; }
  /// Plugin that registered the stage of this name (empty when unknown).
  std::string stage_owner(const std::string& stage_name) const;

  /// Resolves a class name or alias to (class name, merged overrides). Throws
  /// Error(ValidationError, field) listing the known names when there is no such scheduler.
  SchedulerAlias resolve_scheduler(const std::string& name_or_alias,
                                   const std::string& field = "data.scheduler") const;
  /// Creates a scheduler: `base_config` (the model's scheduler_config.json or SDXL's defaults),
  /// then the alias' overrides, then `overrides` (the request's scheduler_options).
  std::unique_ptr<Scheduler> create_scheduler(const std::string& name_or_alias,
                                              const nlohmann::json& base_config,
                                              const nlohmann::json& overrides,
                                              const std::string& field = "data.scheduler") const;
  /// Class names, sorted.
  std::vector<std::string> scheduler_names() const;
  /// Alias -> class name + overrides.
  const std::map<std::string, SchedulerAlias>& scheduler_aliases() const { return aliases_; }

  /// The preprocessor of that name, or nullptr.
  std::shared_ptr<const Preprocessor> preprocessor(const std::string& name) const;
  /// Preprocessor names, sorted.
  std::vector<std::string> preprocessor_names() const;

  /// Registered model patches, in registration order.
  const std::vector<std::shared_ptr<ModelPatch>>& model_patches() const { return patches_; }
  /// Registered denoise hooks, in registration order (their residuals are summed).
  const std::vector<std::shared_ptr<DenoiseHook>>& denoise_hooks() const { return hooks_; }
  /// The preloader for `kind`, or nullptr.
  const ModelPreloader* model_preloader(const std::string& kind) const;

 private:
  std::string current_plugin_;
  std::vector<std::shared_ptr<Stage>> stages_;
  std::map<std::string, std::string> stage_owner_;
  std::map<std::string, SchedulerFactory> schedulers_;
  std::map<std::string, SchedulerAlias> aliases_;  // key: lower-cased alias
  std::map<std::string, std::shared_ptr<Preprocessor>> preprocessors_;
  std::vector<std::shared_ptr<ModelPatch>> patches_;
  std::vector<std::shared_ptr<DenoiseHook>> hooks_;
  std::map<std::string, ModelPreloader> preloaders_;
};

}  // namespace sdxlhost::sdk
