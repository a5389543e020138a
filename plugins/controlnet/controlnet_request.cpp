#include "controlnet_request.hpp"

#include <cmath>
#include <set>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::controlnet {
namespace {

using nlohmann::json;
using sdk::Error;
using sdk::ErrorCode;

constexpr const char* kRoot = "data.controlnet";

[[noreturn]] void invalid(const std::string& field, const std::string& why) {
  throw Error(ErrorCode::ValidationError, why, field);
}

/// A number field in [min, max]; absent or null keeps `out`.
void read_number(const json& object, const std::string& base, const char* key, double min, double max, double& out) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return;
  const std::string field = base + "." + key;
  if (!it->is_number() || !std::isfinite(it->get<double>()))
    invalid(field, "must be a number in [" + json(min).dump() + ", " + json(max).dump() + "]");
  const double value = it->get<double>();
  if (value < min || value > max)
    invalid(field, "must be in [" + json(min).dump() + ", " + json(max).dump() + "] (got " + it->dump() + ")");
  out = value;
}

/// A non-empty string field; returns false when absent or null.
bool read_name(const json& object, const std::string& base, const char* key, std::string& out) {
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return false;
  if (!it->is_string() || it->get<std::string>().empty()) invalid(base + "." + key, "must be a non-empty string");
  out = it->get<std::string>();
  return true;
}

/// Of two spellings of one field (`image` / `control_image`), the one given; both is a warning.
const char* pick_spelling(const json& unit, const std::string& base, const char* primary, const char* legacy,
                          std::vector<std::string>& warnings) {
  const bool has_primary = unit.contains(primary) && !unit[primary].is_null();
  const bool has_legacy = unit.contains(legacy) && !unit[legacy].is_null();
  if (has_primary && has_legacy)
    warnings.push_back(base + "." + legacy + " ignored: " + base + "." + primary + " given too");
  return has_primary || !has_legacy ? primary : legacy;
}

PreprocessorChoice read_preprocessor(const json& unit, const std::string& base) {
  PreprocessorChoice choice;
  choice.field = base + ".preprocessor";
  choice.name_field = choice.field;
  const auto it = unit.find("preprocessor");
  if (it == unit.end() || it->is_null()) return choice;
  if (it->is_string()) {
    choice.name = it->get<std::string>();
  } else if (it->is_object()) {
    // {"name": "canny", ...options}; the C# client spells the name "type"
    const char* key = it->contains("name") ? "name" : "type";
    choice.name_field = choice.field + "." + key;
    const auto name = it->find(key);
    if (name == it->end() || !name->is_string())
      invalid(choice.field + ".name", "is required: the preprocessor's name (a string, e.g. \"canny\")");
    choice.name = name->get<std::string>();
    choice.options = *it;
  } else {
    invalid(choice.field, "must be null, a preprocessor name or {\"name\": ..., options}");
  }
  if (choice.name.empty()) invalid(choice.name_field, "must be a preprocessor name, not empty");
  if (choice.name == "none") choice.name.clear();  // A1111's spelling of "no preprocessor"
  return choice;
}

/// Keys a unit may carry; `extra` are the container's own keys when the unit is the container.
void warn_unknown(const json& object, const std::string& base, const std::set<std::string>& known,
                  std::vector<std::string>& warnings) {
  for (const auto& [key, value] : object.items())
    if (!known.count(key)) warnings.push_back("unknown field '" + base + "." + key + "' ignored");
}

const std::set<std::string>& unit_keys() {
  static const std::set<std::string> kKeys = {"enabled", "model", "type", "image", "control_image",
                                             "conditioning_scale", "control_guidance_start",
                                             "control_guidance_end", "preprocessor"};
  return kKeys;
}

/// Reads one unit; returns false when it says "enabled": false.
bool read_unit(const json& object, const std::string& base, const ControlNetSettings& settings, ControlUnit& unit,
               std::vector<std::string>& warnings) {
  if (!object.is_object()) invalid(base, "must be an object (a ControlNet unit)");
  if (const auto it = object.find("enabled"); it != object.end() && !it->is_null()) {
    if (!it->is_boolean()) invalid(base + ".enabled", "must be true or false");
    if (!it->get<bool>()) return false;
  }
  unit.field = base;
  const char* model_key = pick_spelling(object, base, "model", "type", warnings);
  unit.model_field = base + "." + model_key;
  std::string name;
  if (!read_name(object, base, model_key, name))
    invalid(base + ".model", "is required: a ControlNet under models_root/controlnet (or \"type\")");
  if (std::string(model_key) == "type") {
    const auto mapped = settings.types.find(name);  // else the type is the model's name
    if (mapped != settings.types.end()) name = mapped->second;
  }
  unit.model = name;
  const char* image_key = pick_spelling(object, base, "image", "control_image", warnings);
  unit.image_field = base + "." + image_key;
  if (!read_name(object, base, image_key, unit.image))
    invalid(base + ".image", "is required: the control image as base64 PNG or JPEG");
  read_number(object, base, "conditioning_scale", 0.0, kMaxConditioningScale, unit.conditioning_scale);
  read_number(object, base, "control_guidance_start", 0.0, 1.0, unit.guidance_start);
  read_number(object, base, "control_guidance_end", 0.0, 1.0, unit.guidance_end);
  if (unit.guidance_start >= unit.guidance_end)
    invalid(base + ".control_guidance_end",
            "must be greater than control_guidance_start (" + json(unit.guidance_start).dump() + " >= " +
                json(unit.guidance_end).dump() + ")");
  unit.preprocessor = read_preprocessor(object, base);
  return true;
}

void read_units(const json& units, const std::string& base, const ControlNetSettings& settings,
                ControlNetRequest& request) {
  if (!units.is_array()) invalid(base, "must be an array of ControlNet units");
  if (units.empty()) invalid(base, "must hold at least one unit");
  if (units.size() > static_cast<std::size_t>(settings.max_units))
    invalid(base, "at most " + std::to_string(settings.max_units) + " units (plugins.config.controlnet.max_units)");
  for (std::size_t i = 0; i < units.size(); ++i) {
    const std::string field = base + "[" + std::to_string(i) + "]";
    ControlUnit unit;
    if (read_unit(units[i], field, settings, unit, request.warnings)) {
      warn_unknown(units[i], field, unit_keys(), request.warnings);
      request.units.push_back(std::move(unit));
    }
  }
}

void read_guess_mode(const json& object, ControlNetRequest& request) {
  const auto it = object.find("guess_mode");
  if (it == object.end() || it->is_null()) return;
  if (!it->is_boolean()) invalid(std::string(kRoot) + ".guess_mode", "must be true or false");
  request.guess_mode = it->get<bool>();
}

}  // namespace

ControlNetRequest parse_controlnet_request(const json& controlnet, const ControlNetSettings& settings) {
  ControlNetRequest request;
  if (controlnet.is_null()) return request;
  if (controlnet.is_array()) {
    read_units(controlnet, kRoot, settings, request);
    return request;
  }
  if (!controlnet.is_object()) invalid(kRoot, "must be an object or an array of units");
  if (const auto it = controlnet.find("enabled"); it != controlnet.end() && !it->is_null()) {
    if (!it->is_boolean()) invalid(std::string(kRoot) + ".enabled", "must be true or false");
    if (!it->get<bool>()) return request;
  }
  read_guess_mode(controlnet, request);
  if (controlnet.contains("units")) {
    read_units(controlnet["units"], std::string(kRoot) + ".units", settings, request);
    warn_unknown(controlnet, kRoot, {"enabled", "units", "guess_mode"}, request.warnings);
    return request;
  }
  ControlUnit unit;  // the seed's single form: the object is the unit
  read_unit(controlnet, kRoot, settings, unit, request.warnings);
  std::set<std::string> keys = unit_keys();
  keys.insert("guess_mode");
  warn_unknown(controlnet, kRoot, keys, request.warnings);
  request.units.push_back(std::move(unit));
  return request;
}

}  // namespace sdxlhost::controlnet
