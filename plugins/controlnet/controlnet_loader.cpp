#include "controlnet_loader.hpp"

#include <ATen/ATen.h>

#include <fstream>

#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::controlnet {
namespace {

namespace fs = std::filesystem;
using sdk::Error;
using sdk::ErrorCode;

[[noreturn]] void load_error(const fs::path& path, const std::string& why) {
  throw Error(ErrorCode::ModelLoadError, "ControlNet '" + path.string() + "': " + why);
}

nlohmann::json parse_config(const std::string& text, const fs::path& source) {
  nlohmann::json config = nlohmann::json::parse(text, nullptr, false);
  if (config.is_discarded() || !config.is_object()) load_error(source, "the config is not a JSON object");
  return config;
}

/// The weights file of a diffusers folder: the full-precision one, else the fp16 variant.
fs::path folder_weights(const fs::path& folder) {
  for (const char* name : {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors"})
    if (fs::is_regular_file(folder / name)) return folder / name;
  load_error(folder, "no diffusion_pytorch_model[.fp16].safetensors in the folder");
}

std::uint64_t parameter_bytes(const nn::TensorMap& weights, at::ScalarType dtype) {
  std::uint64_t bytes = 0;
  for (const auto& [name, tensor] : weights) bytes += static_cast<std::uint64_t>(tensor.numel()) * at::elementSize(dtype);
  return bytes;
}

/// Runs `load`; an error without a field (the nn readers do not know the request) names `field`.
template <class Load>
auto naming_field(const std::string& field, Load&& load) -> decltype(load()) {
  try {
    return load();
  } catch (const Error& e) {
    if (!e.field().empty()) throw;
    throw Error(e.code(), e.message(), field);
  }
}

/// The model and the bytes its parameters take in the settings' dtype (for the cache budget).
std::pair<std::shared_ptr<nn::ControlNetModel>, std::uint64_t> load_with_bytes(const fs::path& path,
                                                                               const ControlNetSettings& settings) {
  nlohmann::json config;
  fs::path weights_path = path;
  if (fs::is_directory(path)) {
    std::ifstream in(path / "config.json");
    if (!in) load_error(path, "no config.json in the folder");
    config = parse_config(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()),
                          path / "config.json");
    weights_path = folder_weights(path);
  }
  const auto file = nn::SafetensorsFile::open(weights_path);
  const nn::TensorMap weights = file->tensors();
  if (config.is_null()) {
    const auto& metadata = file->metadata();
    const auto it = metadata.find(kConfigMetadataKey);
    if (it != metadata.end()) config = parse_config(it->second, weights_path);
  }
  const nn::ControlNetConfig parsed =
      config.is_null() ? nn::ControlNetConfig::infer(weights) : nn::ControlNetConfig::from_json(config);
  if (parsed.conditioning_channels != 3)
    load_error(path, "conditioning_channels is " + std::to_string(parsed.conditioning_channels) +
                         "; control images are RGB (3 channels)");
  return {nn::ControlNetModel::load(parsed, weights, settings.scalar_type(), settings.torch_device()),
          parameter_bytes(weights, settings.scalar_type())};
}

}  // namespace

std::shared_ptr<nn::ControlNetModel> load_controlnet_file(const fs::path& path, const ControlNetSettings& settings) {
  return load_with_bytes(path, settings).first;
}

std::shared_ptr<nn::ControlNetModel> load_controlnet(sdk::ModelAccess& models, const std::string& name,
                                                     const ControlNetSettings& settings, const std::string& field) {
  return models.load_as<nn::ControlNetModel>(
      sdk::kControlnet, name, settings.cache_variant(), field, [&](const fs::path& path) {
        return naming_field(field, [&] { return load_with_bytes(path, settings); });
      });
}

}  // namespace sdxlhost::controlnet
