#pragma once
/// @file model_config.hpp
/// Model configs: read from a diffusers/transformers `config.json`, or inferred from the weights'
/// shapes when a single-file checkpoint has none. Nothing is hard-coded to one model size; the
/// rules for what shapes cannot tell (head counts, time-id count) are in docs/nn.md.
///
/// UNet and VAE configs are returned as the JSON a diffusers `config.json` would hold, so a model
/// is built from one representation whichever layout the weights came in.

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "sdxlhost/nn/tensor_map.hpp"
#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::nn {

/// transformers' CLIPTextConfig, the fields CLIPTextModel(WithProjection) uses.
struct SDXLHOST_API ClipTextConfig {
  std::int64_t vocab_size = 49408;            ///< token embedding rows
  std::int64_t hidden_size = 768;             ///< width of every hidden state
  std::int64_t intermediate_size = 3072;      ///< MLP inner width
  std::int64_t num_hidden_layers = 12;        ///< encoder layers
  std::int64_t num_attention_heads = 12;      ///< heads per layer
  std::int64_t max_position_embeddings = 77;  ///< longest input
  double layer_norm_eps = 1e-5;               ///< LayerNorm epsilon
  std::string hidden_act = "quick_gelu";  ///< "quick_gelu" (CLIP-L) or "gelu" (OpenCLIP bigG)
  std::int64_t projection_dim = 0;        ///< > 0 when the model has `text_projection`
  std::int64_t eos_token_id = 2;          ///< 2 (legacy configs): pooled at argmax(ids)

  /// Reads a transformers config.json object; missing keys keep the CLIP defaults above.
  /// Throws sdk::Error(ModelLoadError) for wrong types or impossible values.
  static ClipTextConfig from_json(const nlohmann::json& config);
  /// Infers the config from diffusers-named weights. `open_clip` selects gelu (the OpenCLIP bigG
  /// encoder) over quick_gelu (CLIP-L); heads = hidden / 64 (both SDXL encoders).
  static ClipTextConfig infer(const TensorMap& weights, bool open_clip);
  /// The transformers config.json for this config (what from_json reads back).
  nlohmann::json to_json() const;
};

/// `UNetConfig::infer(weights, 64, pooled_dim).to_json()` (unet.hpp: the one UNet config
/// inference; read its rules there): the inferred config as diffusers config.json JSON.
/// `pooled_dim` = the projection size of text_encoder_2 (6 time ids for the base, 5 for the
/// refiner); when <= 0, addition_time_embed_dim is 256 as diffusers' single-file loader assumes.
/// Throws sdk::Error(ModelLoadError) when the weights are not an SDXL-style UNet.
SDXLHOST_API nlohmann::json infer_unet_config(const TensorMap& weights, std::int64_t pooled_dim = -1);

/// `VaeConfig::infer(weights).to_json()` (vae.hpp): a diffusers AutoencoderKL config as JSON
/// (scaling_factor 0.13025 and force_upcast as SDXL's VAE; shapes cannot tell them).
SDXLHOST_API nlohmann::json infer_vae_config(const TensorMap& weights);

/// Number of time ids the UNet's add_embedding expects (6 base, 5 refiner), from its config.
SDXLHOST_API int unet_time_id_count(const nlohmann::json& unet_config, std::int64_t pooled_dim);

}  // namespace sdxlhost::nn
