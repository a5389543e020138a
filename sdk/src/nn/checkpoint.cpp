// Opening SDXL weights (diffusers folders, LDM/SGM single files, single components).
#include "sdxlhost/nn/checkpoint.hpp"

#include <ATen/ATen.h>

#include <fstream>
#include <set>
#include <sstream>

#include "sdxlhost/nn/model_config.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/nn/unet.hpp"
#include "sdxlhost/nn/vae.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::nn {
namespace {

namespace fs = std::filesystem;
using sdk::Error;
using sdk::ErrorCode;

/// Head width of every SDXL attention (heads are not visible in shapes; docs/nn.md).
constexpr std::int64_t kSdxlHeadDim = 64;

constexpr Component kComponents[] = {Component::Unet, Component::Vae, Component::TextEncoder,
                                     Component::TextEncoder2};

[[noreturn]] void load_error(const fs::path& path, const std::string& what) {
  throw Error(ErrorCode::ModelLoadError, "'" + path.string() + "': " + what);
}

nlohmann::json read_json_file(const fs::path& path) {
  std::ifstream in(path);
  if (!in) load_error(path, "cannot be opened");
  nlohmann::json json = nlohmann::json::parse(in, nullptr, false);
  if (json.is_discarded() || !json.is_object()) load_error(path, "is not a JSON object");
  return json;
}

const char* weight_stem(Component component) {
  return component == Component::Unet || component == Component::Vae ? "diffusion_pytorch_model" : "model";
}

/// Shards listed in a `*.safetensors.index.json` (`weight_map`: key -> file in the same folder).
TensorMap open_shards(const fs::path& index_path) {
  const nlohmann::json index = read_json_file(index_path);
  auto map_it = index.find("weight_map");
  if (map_it == index.end() || !map_it->is_object()) load_error(index_path, "has no 'weight_map' object");
  std::map<std::string, std::shared_ptr<const SafetensorsFile>> shards;
  TensorMap out(index_path.string());
  for (const auto& [key, file_json] : map_it->items()) {
    if (!file_json.is_string()) load_error(index_path, "shard of '" + key + "' is not a file name");
    const std::string file = file_json.get<std::string>();
    if (file.empty() || file.find('/') != std::string::npos || file.find('\\') != std::string::npos || file == "..")
      load_error(index_path, "shard name '" + file + "' is not a plain file name");
    auto& shard = shards[file];
    if (!shard) shard = SafetensorsFile::open(index_path.parent_path() / file);
    out.set(key, shard->tensor(key));
  }
  return out;
}

TensorMap open_folder_weights(const fs::path& folder, Component component) {
  const std::string stem = weight_stem(component);
  for (const std::string variant : {"", ".fp16"}) {
    const fs::path single = folder / (stem + variant + ".safetensors");
    if (fs::is_regular_file(single)) return SafetensorsFile::open(single)->tensors();
    const fs::path index = folder / (stem + variant + ".safetensors.index.json");
    if (fs::is_regular_file(index)) return open_shards(index);
  }
  if (fs::exists(folder / (stem + ".bin")))
    load_error(folder, "only .safetensors weights are read (" + stem + ".bin is a pickle; convert it)");
  load_error(folder, "no " + stem + ".safetensors (or .fp16 / sharded variant)");
}

/// A config carried in the file's metadata (`sdxlhost.config.<folder>`), or null.
nlohmann::json metadata_config(const std::map<std::string, std::string>& metadata, Component component,
                               const fs::path& path) {
  auto it = metadata.find(std::string(kConfigMetadataPrefix) + component_folder(component));
  if (it == metadata.end()) return nullptr;
  nlohmann::json config = nlohmann::json::parse(it->second, nullptr, false);
  if (config.is_discarded() || !config.is_object())
    load_error(path, std::string("metadata config of ") + component_folder(component) + " is not a JSON object");
  return config;
}

std::int64_t pooled_dim_of(const std::map<Component, TensorMap>& components) {
  auto it = components.find(Component::TextEncoder2);
  if (it == components.end()) return -1;
  const at::Tensor* projection = it->second.find("text_projection.weight");
  return projection != nullptr && projection->dim() == 2 ? projection->size(0) : -1;
}

nlohmann::json inferred_config(Component component, const TensorMap& weights, std::int64_t pooled_dim) {
  switch (component) {
    case Component::Unet: return UNetConfig::infer(weights, kSdxlHeadDim, pooled_dim).to_json();
    case Component::Vae: return VaeConfig::infer(weights).to_json();
    case Component::TextEncoder: return ClipTextConfig::infer(weights, false).to_json();
    case Component::TextEncoder2: return ClipTextConfig::infer(weights, true).to_json();
  }
  return nullptr;
}

/// Fills every present component's config from the metadata, else from the shapes.
void fill_configs(CheckpointWeights& out, const std::map<std::string, std::string>& metadata, const fs::path& path) {
  const std::int64_t pooled = pooled_dim_of(out.components);
  for (const auto& [component, weights] : out.components) {
    nlohmann::json config = metadata_config(metadata, component, path);
    out.configs[component] = config.is_null() ? inferred_config(component, weights, pooled) : std::move(config);
  }
}

}  // namespace

CheckpointWeights open_checkpoint(const fs::path& path) {
  CheckpointWeights out;
  if (fs::is_directory(path)) {
    out.layout = KeyLayout::Diffusers;
    for (Component component : kComponents) {
      const fs::path folder = path / component_folder(component);
      if (!fs::is_directory(folder)) continue;
      out.configs[component] = read_json_file(folder / "config.json");
      out.components[component] = open_folder_weights(folder, component);
    }
    if (out.components.empty())
      load_error(path, "is not a diffusers pipeline folder (no unet/, vae/, text_encoder/ or text_encoder_2/)");
    return out;
  }
  auto file = SafetensorsFile::open(path);
  const TensorMap all = file->tensors();
  if (detect_ldm_prefixes(all.names()).prefix.empty())
    load_error(path, "is not an SDXL single-file checkpoint (no model.diffusion_model., first_stage_model. or "
                     "conditioner.embedders. keys)");
  SplitCheckpoint split = ldm_checkpoint_to_diffusers(all);
  out.layout = KeyLayout::Ldm;
  out.components = std::move(split.components);
  out.ignored = std::move(split.ignored);
  fill_configs(out, file->metadata(), path);
  return out;
}

CheckpointWeights open_component(Component component, const fs::path& path) {
  CheckpointWeights out;
  if (fs::is_directory(path)) {
    out.configs[component] = read_json_file(path / "config.json");
    out.components[component] = open_folder_weights(path, component);
    return out;
  }
  auto file = SafetensorsFile::open(path);
  const TensorMap all = file->tensors();
  const LdmPrefixes prefixes = detect_ldm_prefixes(all.names());
  if (!prefixes.prefix.empty()) {
    SplitCheckpoint split = ldm_checkpoint_to_diffusers(all);
    auto it = split.components.find(component);
    if (it == split.components.end())
      load_error(path, std::string("holds no ") + component_folder(component) + " weights");
    out.layout = KeyLayout::Ldm;
    out.components[component] = std::move(it->second);
    out.ignored = std::move(split.ignored);
  } else {
    out.layout = detect_key_layout(all.names());
    if (out.layout == KeyLayout::Ldm) {
      const KeyMap map = KeyMap::for_component(component, KeyLayout::Ldm, all.names());
      out.components[component] = map.to_diffusers(all, &out.ignored);
    } else {
      out.components[component] = all;
    }
  }
  fill_configs(out, file->metadata(), path);
  return out;
}

void write_single_file_checkpoint(const fs::path& path, const CheckpointWeights& weights) {
  std::map<std::string, std::string> metadata = {{"format", "pt"}};
  for (const auto& [component, config] : weights.configs)
    metadata[std::string(kConfigMetadataPrefix) + component_folder(component)] = config.dump();
  write_safetensors(path, diffusers_to_ldm_checkpoint(weights.components), metadata);
}

}  // namespace sdxlhost::nn
