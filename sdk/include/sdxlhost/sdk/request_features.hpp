#pragma once
/// @file request_features.hpp
/// Which request field asks for which feature, and which fields name models. The host plans a
/// request from these declarations and names no feature itself: a feature the request asks for
/// whose plugin is disabled, failed or missing is FEATURE_DISABLED naming the declared field (or
/// a warning under `on_disabled_feature: "warn"`).
///
/// A feature applies when its field is set: present and not null, false, "", an empty object or
/// array, or an object whose "enabled" is false (option_requested). Two sources declare them:
///   - the SDK, for the fields GenerationRequest types (request.hpp; request_schema_features()):
///     known even when no plugin for them is installed;
///   - a plugin, for a request section of its own, in PluginInfo::request_features
///     ({"my_feature", "data.my_feature"}). PluginInfo is read from disabled plugins too, so the
///     host recognises a request for a feature that is switched off, and the section is passed
///     to plugins in request.data without an "unknown field" warning. Adding a feature touches
///     its plugin only.
/// Thread-safety: pure functions over immutable data.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdxlhost/sdk/export.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::sdk {

/// The feature of the stages that generate images (named when no enabled plugin does).
inline constexpr const char* kImageGenerationFeature = "sdxl";

/// One feature a request can ask for. Plain data: the host keeps it after it unloads the library
/// of a disabled plugin that declared it.
struct RequestFeature {
  /// The name `plugins.enabled.<name>` switches, or that a plugin lists in PluginInfo::provides
  /// or returns from Stage::feature().
  std::string name;
  /// The dotted wire path whose value asks for it ("data.my_feature"), named in errors and
  /// warnings.
  std::string field;
};

/// The one reading of an optional feature's value (`enabled` is interpreted here only): asked
/// for unless it is null, false, "", an empty object or array, or an object whose "enabled" is
/// false.
SDXLHOST_API bool option_requested(const nlohmann::json& value);

/// The value of the dotted wire path `field` ("data.output.upscale") in `request`: the typed
/// member for the fields GenerationRequest types, else the value in `request.data`; null when
/// absent.
SDXLHOST_API nlohmann::json request_field(const GenerationRequest& request, const std::string& field);

/// True when `request` asks for `feature`: option_requested(request_field(request, feature.field)).
SDXLHOST_API bool feature_requested(const RequestFeature& feature, const GenerationRequest& request);

/// The features of the fields GenerationRequest types, in wire order: lora
/// (data.lora.enabled), controlnet (data.controlnet), refiner (data.models.refiner), upscaler
/// (data.output.upscale).
SDXLHOST_API const std::vector<RequestFeature>& request_schema_features();

/// A model a request names: checked to exist before the job is queued.
struct ModelReference {
  std::string kind;   ///< folder under models_root (models.hpp: kCheckpoints, ...)
  std::string name;
  std::string field;  ///< "data.lora.models[0].name"
};

/// Every model the typed fields of `request` name (base, refiner and VAE checkpoints, LoRAs).
SDXLHOST_API std::vector<ModelReference> model_references(const GenerationRequest& request);

}  // namespace sdxlhost::sdk
