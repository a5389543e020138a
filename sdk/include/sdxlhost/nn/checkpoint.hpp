#pragma once
/// @file checkpoint.hpp
/// Opening SDXL weights as users have them, into diffusers-named components with their configs:
///
///  - a diffusers pipeline folder (`unet/`, `vae/`, `text_encoder/`, `text_encoder_2/`, each with
///    config.json and `diffusion_pytorch_model.safetensors` / `model.safetensors`, an `.fp16`
///    variant, or shards listed in `*.safetensors.index.json`);
///  - an LDM/SGM single file (`sd_xl_base_1.0.safetensors`, refiner): split and renamed with
///    key_map.hpp; configs inferred from the shapes (model_config.hpp), unless the file's
///    `__metadata__` holds `sdxlhost.config.<folder>` (a config.json text, e.g. for tiny test
///    models whose head counts shapes cannot tell);
///  - one component alone (a VAE file in either layout, or a component folder).
///
/// Tensors are zero-copy views on the mapped files (safetensors.hpp).

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdxlhost/nn/key_map.hpp"
#include "sdxlhost/nn/tensor_map.hpp"
#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::nn {

/// The metadata key prefix under which a single file may carry a component's config.json text.
inline constexpr const char* kConfigMetadataPrefix = "sdxlhost.config.";

/// Weights of a pipeline or part of one, by component, in diffusers names.
struct CheckpointWeights {
  KeyLayout layout = KeyLayout::Diffusers;          ///< layout of the source
  std::map<Component, TensorMap> components;        ///< only the components present
  std::map<Component, nlohmann::json> configs;      ///< config.json contents (read or inferred)
  std::vector<std::string> ignored;                 ///< single-file keys no component used
};

/// Opens a diffusers pipeline folder or an LDM/SGM single `.safetensors` file. Throws
/// sdk::Error(ModelLoadError) naming the path when it is neither, or a file is invalid.
SDXLHOST_API CheckpointWeights open_checkpoint(const std::filesystem::path& path);

/// Opens one component: a diffusers component folder, or a single file holding only that
/// component in either layout (bare keys, or under its LDM prefix). The config comes from the
/// folder's config.json, the file's metadata, or the shapes.
SDXLHOST_API CheckpointWeights open_component(Component component, const std::filesystem::path& path);

/// Writes diffusers-named components as one LDM/SGM single file with each config in the metadata
/// (`sdxlhost.config.<folder>`), e.g. for test checkpoints. Throws sdk::Error(OutputError).
SDXLHOST_API void write_single_file_checkpoint(const std::filesystem::path& path, const CheckpointWeights& weights);

}  // namespace sdxlhost::nn
