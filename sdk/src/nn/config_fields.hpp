#pragma once
// Internal to sdxlhost_nn: reading fields of a diffusers/transformers config.json.
#include <nlohmann/json.hpp>

#include <string>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::nn::detail {

/// Throws sdk::Error(ModelLoadError) "<model> config: '<key>' <message>".
[[noreturn]] inline void config_field_error(const char* model, const std::string& key, const std::string& message) {
  throw sdk::Error(sdk::ErrorCode::ModelLoadError, std::string(model) + " config: '" + key + "' " + message);
}

/// config[key] as T; `fallback` when absent or null; a config_field_error for the wrong type.
template <class T>
T config_value_or(const nlohmann::json& config, const std::string& key, T fallback, const char* model) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const nlohmann::json::exception&) {
    config_field_error(model, key, "has the wrong type: " + it->dump());
  }
}

}  // namespace sdxlhost::nn::detail
