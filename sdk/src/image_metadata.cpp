// Infotext entries and model_info of an image's metadata (see image_metadata.hpp).
#include "sdxlhost/sdk/image_metadata.hpp"

#include <cstdio>

namespace sdxlhost::sdk {
namespace {

constexpr const char* kInfotext = "infotext";
constexpr const char* kPostprocessInfotext = "postprocess_infotext";

std::string entry_text(const std::string& key, const nlohmann::json& value) {
  return key + ": " + (value.is_string() ? value.get<std::string>() : value.dump());
}

void append(std::string& text, const std::string& entry) {
  if (!text.empty()) text += ", ";
  text += entry;
}

}  // namespace

void add_infotext(nlohmann::json& metadata, const std::string& key, nlohmann::json value) {
  if (!metadata.is_object()) metadata = nlohmann::json::object();
  nlohmann::json& entries = metadata[kInfotext];
  if (!entries.is_object()) entries = nlohmann::json::object();
  entries[key] = std::move(value);
}

void add_postprocess_infotext(nlohmann::json& metadata, const std::string& key, const std::string& value) {
  if (!metadata.is_object()) metadata = nlohmann::json::object();
  nlohmann::json& entries = metadata[kPostprocessInfotext];
  if (!entries.is_array()) entries = nlohmann::json::array();
  entries.push_back(nlohmann::json::array({key, value}));
}

std::string recorded_infotext(const nlohmann::json& metadata) {
  std::string text;
  if (!metadata.is_object()) return text;
  if (auto it = metadata.find(kInfotext); it != metadata.end() && it->is_object())
    for (const auto& [key, value] : it->items()) append(text, entry_text(key, value));
  if (auto it = metadata.find(kPostprocessInfotext); it != metadata.end() && it->is_array())
    for (const auto& entry : *it)
      if (entry.is_array() && entry.size() == 2 && entry[0].is_string())
        append(text, entry_text(entry[0].get<std::string>(), entry[1]));
  return text;
}

std::string infotext_number(double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%.15g", value);
  std::string out = text;
  if (out.find_first_of(".eEn") == std::string::npos) out += ".0";
  return out;
}

nlohmann::json default_model_info(const GenerationRequest& request) {
  return {{"base_model", request.models.base}, {"refiner_model", ""}, {"vae_model", request.models.vae}};
}

}  // namespace sdxlhost::sdk
