#include "controlnet_request.hpp"

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/field_reader.hpp"

namespace sdxlhost::controlnet {
namespace {

using nlohmann::json;
using sdk::Error;
using sdk::ErrorCode;
using sdk::FieldReader;

constexpr const char* kRoot = "data.controlnet";

/// An error of a value no FieldReader reads: `data.controlnet` itself and the units array (a
/// reader reads objects; both may be arrays).
[[noreturn]] void invalid(const std::string& field, const std::string& why) {
  throw Error(ErrorCode::ValidationError, why, field);
}

/// A non-empty string field; returns false when absent or null.
bool read_name(FieldReader& unit, const std::string& key, std::string& out) {
  if (!unit.find(key)) return false;
  unit.read_string(key, out);
  if (out.empty()) unit.fail(key, "must be a non-empty string");
  return true;
}

/// Of two spellings of one field (`image` / `control_image`), the one given; both is a warning.
std::string pick_spelling(FieldReader& unit, const std::string& primary, const std::string& legacy,
                          std::vector<std::string>& warnings) {
  const bool has_primary = unit.find(primary) != nullptr;
  const bool has_legacy = unit.find(legacy) != nullptr;
  if (has_primary && has_legacy)
    warnings.push_back(unit.path_of(legacy) + " ignored: " + unit.path_of(primary) + " given too");
  return has_primary || !has_legacy ? primary : legacy;
}

PreprocessorChoice read_preprocessor(FieldReader& unit) {
  PreprocessorChoice choice;
  choice.field = unit.path_of("preprocessor");
  choice.name_field = choice.field;
  const json* value = unit.find("preprocessor");
  if (!value) return choice;
  if (value->is_string()) {
    choice.name = value->get<std::string>();
  } else if (value->is_object()) {
    // {"name": "canny", ...options}; the C# client spells the name "type". The options are the
    // preprocessor's to check (Preprocessor::apply), so unknown keys are not reported here.
    FieldReader preprocessor(*value, choice.field, unit.errors());
    const char* key = value->contains("name") ? "name" : "type";
    choice.name_field = preprocessor.path_of(key);
    const json* name = preprocessor.find(key);
    if (!name || !name->is_string())
      preprocessor.fail("name", "is required: the preprocessor's name (a string, e.g. \"canny\")");
    choice.name = name->get<std::string>();
    choice.options = *value;
  } else {
    unit.fail("preprocessor", "must be null, a preprocessor name or {\"name\": ..., options}");
  }
  if (choice.name.empty()) invalid(choice.name_field, "must be a preprocessor name, not empty");
  if (choice.name == "none") choice.name.clear();  // A1111's spelling of "no preprocessor"
  return choice;
}

/// Appends "unknown field 'PATH' ignored" for each key `reader` did not read.
void warn_unknown(const FieldReader& reader, std::vector<std::string>& warnings) {
  for (const auto& path : reader.unknown_fields()) warnings.push_back("unknown field '" + path + "' ignored");
}

/// Reads one unit (`reader` over its object); returns false when it says "enabled": false.
/// Every key a unit may carry is read here, so the reader's unknown fields are the unit's.
bool read_unit(FieldReader& reader, const ControlNetSettings& settings, ControlUnit& unit,
               std::vector<std::string>& warnings) {
  bool enabled = true;
  reader.read_bool("enabled", enabled);
  if (!enabled) return false;
  unit.field = reader.path();
  const std::string model_key = pick_spelling(reader, "model", "type", warnings);
  unit.model_field = reader.path_of(model_key);
  std::string name;
  if (!read_name(reader, model_key, name))
    reader.fail("model", "is required: a ControlNet under models_root/controlnet (or \"type\")");
  if (model_key == "type") {
    const auto mapped = settings.types.find(name);  // else the type is the model's name
    if (mapped != settings.types.end()) name = mapped->second;
  }
  unit.model = name;
  const std::string image_key = pick_spelling(reader, "image", "control_image", warnings);
  unit.image_field = reader.path_of(image_key);
  if (!read_name(reader, image_key, unit.image))
    reader.fail("image", "is required: the control image as base64 PNG or JPEG");
  reader.read_number("conditioning_scale", unit.conditioning_scale, 0.0, kMaxConditioningScale);
  reader.read_number("control_guidance_start", unit.guidance_start, 0.0, 1.0);
  reader.read_number("control_guidance_end", unit.guidance_end, 0.0, 1.0);
  if (unit.guidance_start >= unit.guidance_end)
    reader.fail("control_guidance_end", "must be greater than control_guidance_start (" +
                                            json(unit.guidance_start).dump() + " >= " +
                                            json(unit.guidance_end).dump() + ")");
  unit.preprocessor = read_preprocessor(reader);
  return true;
}

void read_units(const json& units, const std::string& base, const ControlNetSettings& settings,
                ControlNetRequest& request) {
  if (!units.is_array()) invalid(base, "must be an array of ControlNet units");
  if (units.empty()) invalid(base, "must hold at least one unit");
  if (units.size() > static_cast<std::size_t>(settings.max_units))
    invalid(base, "at most " + std::to_string(settings.max_units) + " units (plugins.config.controlnet.max_units)");
  for (std::size_t i = 0; i < units.size(); ++i) {
    FieldReader reader(units[i], base + "[" + std::to_string(i) + "]");  // "must be an object"
    ControlUnit unit;
    if (read_unit(reader, settings, unit, request.warnings)) {
      warn_unknown(reader, request.warnings);
      request.units.push_back(std::move(unit));
    }
  }
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
  FieldReader reader(controlnet, kRoot);
  bool enabled = true;
  reader.read_bool("enabled", enabled);
  if (!enabled) return request;
  reader.read_bool("guess_mode", request.guess_mode);
  if (const json* units = reader.find_raw("units")) {
    read_units(*units, reader.path_of("units"), settings, request);
    warn_unknown(reader, request.warnings);
    return request;
  }
  ControlUnit unit;  // the seed's single form: the object is the unit
  read_unit(reader, settings, unit, request.warnings);
  warn_unknown(reader, request.warnings);
  request.units.push_back(std::move(unit));
  return request;
}

}  // namespace sdxlhost::controlnet
