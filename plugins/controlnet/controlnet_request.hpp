#pragma once
/// @file controlnet_request.hpp
/// `data.controlnet` of a request -> the ControlNet units to run. Three shapes are accepted:
///   {"enabled": true, "units": [unit, ...], "guess_mode": false}   several (MultiControlNet)
///   [unit, ...]                                                     the same, as an array
///   {"enabled": true, "type": T, "control_image": ..., ...}         the seed's single form
/// with unit = {"model" | "type", "image" | "control_image", "conditioning_scale",
/// "control_guidance_start", "control_guidance_end", "preprocessor", "enabled"}.
/// Every field is checked here with its path (`data.controlnet.units[1].control_guidance_end`);
/// what needs the models or the preprocessors (names that exist, image bytes that decode,
/// preprocessor options) is checked when the job runs (prepare_stage.hpp).
/// Thread-safety: pure functions.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "controlnet_settings.hpp"

namespace sdxlhost::controlnet {

/// Largest conditioning_scale accepted (A1111's "control weight" range is 0..2).
inline constexpr double kMaxConditioningScale = 2.0;

/// The preprocessor a unit asks for.
struct PreprocessorChoice {
  std::string name;                                ///< registered name ("canny"); empty: none
  nlohmann::json options = nlohmann::json::object();  ///< the options object as sent (may hold "name")
  std::string field;                               ///< path of the preprocessor field
  std::string name_field;                          ///< path of its name (".preprocessor" or ".preprocessor.name")
};

/// One ControlNet unit.
struct ControlUnit {
  std::string model;                ///< models_root/controlnet/NAME
  std::string image;                ///< base64 PNG/JPEG control image (or photo to preprocess)
  double conditioning_scale = 1.0;  ///< multiplies the unit's residuals, in [0, kMaxConditioningScale]
  double guidance_start = 0.0;      ///< fraction of the steps where the unit starts acting
  double guidance_end = 1.0;        ///< fraction of the steps where it stops; start < end
  PreprocessorChoice preprocessor;  ///< name empty: the image is the control map already
  std::string field;                ///< path of the unit ("data.controlnet.units[1]")
  std::string model_field;          ///< path of its model name ("...model" or "...type")
  std::string image_field;          ///< path of its image ("...image" or "...control_image")
};

/// The parsed `data.controlnet`.
struct ControlNetRequest {
  std::vector<ControlUnit> units;     ///< the enabled units, in request order (residuals summed in it)
  bool guess_mode = false;            ///< diffusers' guess_mode (ControlNet sees the conditional half only)
  std::vector<std::string> warnings;  ///< unknown keys, ignored duplicates
};

/// Parses and validates `controlnet` (the request's `data.controlnet`; null gives no units).
/// Throws sdk::Error(ValidationError) naming the field at fault.
ControlNetRequest parse_controlnet_request(const nlohmann::json& controlnet, const ControlNetSettings& settings);

}  // namespace sdxlhost::controlnet
