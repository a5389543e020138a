// Request features and model references of the request schema (see request_features.hpp).
#include "sdxlhost/sdk/request_features.hpp"

#include "sdxlhost/sdk/models.hpp"

namespace sdxlhost::sdk {
namespace {

/// The value at a dotted path below request.data ("output.upscale"); null when absent.
nlohmann::json data_field(const nlohmann::json& data, const std::string& path) {
  const nlohmann::json* at = &data;
  for (std::size_t from = 0;;) {
    const std::size_t dot = path.find('.', from);
    if (!at->is_object()) return nullptr;
    auto it = at->find(path.substr(from, dot == std::string::npos ? std::string::npos : dot - from));
    if (it == at->end()) return nullptr;
    at = &*it;
    if (dot == std::string::npos) return *at;
    from = dot + 1;
  }
}

}  // namespace

bool option_requested(const nlohmann::json& value) {
  if (value.is_null()) return false;
  if (value.is_boolean()) return value.get<bool>();
  if (value.is_string()) return !value.get<std::string>().empty();
  if (value.is_object() || value.is_array()) {
    if (value.empty()) return false;
    if (value.is_object() && value.contains("enabled") && value["enabled"].is_boolean())
      return value["enabled"].get<bool>();
  }
  return true;
}

nlohmann::json request_field(const GenerationRequest& request, const std::string& field) {
  // The typed members win: a request built in code (tests, embedding) has no request.data.
  if (field == "data.lora.enabled") return request.lora_enabled;
  if (field == "data.controlnet") return request.controlnet;
  if (field == "data.models.refiner") return request.models.refiner;
  if (field == "data.output.upscale") return request.output.upscale;
  const std::string prefix = "data.";
  if (field.rfind(prefix, 0) != 0) return nullptr;
  return data_field(request.data, field.substr(prefix.size()));
}

bool feature_requested(const RequestFeature& feature, const GenerationRequest& request) {
  return option_requested(request_field(request, feature.field));
}

const std::vector<RequestFeature>& request_schema_features() {
  static const std::vector<RequestFeature> kFeatures = {{"lora", "data.lora.enabled"},
                                                        {"controlnet", "data.controlnet"},
                                                        {"refiner", "data.models.refiner"},
                                                        {"upscaler", "data.output.upscale"}};
  return kFeatures;
}

std::vector<ModelReference> model_references(const GenerationRequest& request) {
  std::vector<ModelReference> out;
  if (!request.models.base.empty()) out.push_back({kCheckpoints, request.models.base, "data.models.base"});
  if (!request.models.refiner.empty()) out.push_back({kCheckpoints, request.models.refiner, "data.models.refiner"});
  if (!request.models.vae.empty()) out.push_back({kVae, request.models.vae, "data.models.vae"});
  for (std::size_t i = 0; i < request.loras.size(); ++i)
    out.push_back({kLoras, request.loras[i].name, "data.lora.models[" + std::to_string(i) + "].name"});
  return out;
}

}  // namespace sdxlhost::sdk
