#pragma once
// Internal to sdxlhost_nn: reading fields of a diffusers/transformers config.json with the SDK's
// field reader, worded "<model> config: '<key>' <message>" (MODEL_LOAD_ERROR without a field: the
// host names the request field that chose the model).
#include <nlohmann/json.hpp>

#include <string>

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/field_reader.hpp"

namespace sdxlhost::nn::detail {

/// A reader of `config` (an object) for errors about `model`'s config.json.
inline sdk::FieldReader config_reader(const nlohmann::json& config, const char* model) {
  sdk::FieldErrors errors;
  errors.code = sdk::ErrorCode::ModelLoadError;
  errors.prefix = std::string(model) + " config: ";
  errors.key_in_message = true;
  errors.field_in_error = false;
  return sdk::FieldReader(config, "", errors);
}

/// Throws sdk::Error(ModelLoadError) "<model> config: '<key>' <message>".
[[noreturn]] inline void config_field_error(const char* model, const std::string& key, const std::string& message) {
  static const nlohmann::json kNoConfig = nlohmann::json::object();
  config_reader(kNoConfig, model).fail(key, message);
}

/// config[key] as T; `fallback` when absent or null (or when `config` is no object); a
/// config_field_error for the wrong type.
template <class T>
T config_value_or(const nlohmann::json& config, const std::string& key, T fallback, const char* model) {
  if (!config.is_object()) return fallback;
  return config_reader(config, model).value_or<T>(key, std::move(fallback));
}

}  // namespace sdxlhost::nn::detail
