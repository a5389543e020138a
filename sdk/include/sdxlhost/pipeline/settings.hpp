#pragma once
/// @file settings.hpp
/// Where a plugin that runs SDXL pipelines (sdxl, refiner) puts its models: device, dtype, the
/// tokenizer folder for single-file checkpoints and VAE tiling. Read from the plugin's own config
/// section (`plugins.config.<plugin>`), so two plugins may run their models differently.
/// Thread-safety: immutable after from_json; shared by all jobs of the plugin.

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "sdxlhost/nn/vae.hpp"
#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::pipeline {

/// `plugins.config.<plugin>`: where models run.
struct SDXLHOST_API PipelineSettings {
  std::string device = "cpu";      ///< "cpu" or "cuda:N"
  std::string dtype = "fp32";      ///< fp32 | bf16 | fp16
  std::string tokenizer_dir;       ///< tokenizer/ + tokenizer_2/ for single-file checkpoints
  /// > 0: VAE encode/decode images larger than this tiled (px); 0: never. 1024 by default: the
  /// VAE's mid-block attention holds (latent pixels)^2 scores, 1 GiB at 1024x1024 (untiled, as
  /// diffusers), 5.1 GiB at 1536, 16 GiB at 2048.
  int vae_tile_size = 1024;
  int vae_tile_overlap = 64;       ///< overlap between VAE tiles (px)
  int patched_sets = 2;            ///< patched weight sets (LoRA combinations) kept per pipeline
  bool channels_last = false;      ///< UNet in channels-last memory order (for GPUs; docs/gpu.md)
  /// The VAE tiling for an image of `height` x `width`, or nullopt to run untiled.
  std::optional<nn::VaeTiling> tiling_for(std::int64_t height, std::int64_t width) const;
  /// The dtype named by `dtype`.
  at::ScalarType scalar_type() const;
  /// The device named by `device`.
  at::Device torch_device() const;
  /// Reads a plugin config section (null: defaults). Throws sdk::Error(ValidationError,
  /// "plugins.config.<plugin>.<key>") for a bad value.
  static PipelineSettings from_json(const nlohmann::json& config, const std::string& plugin = "sdxl");
};

}  // namespace sdxlhost::pipeline
