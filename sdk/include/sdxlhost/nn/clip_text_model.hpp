#pragma once
/// @file clip_text_model.hpp
/// CLIP text encoders as transformers defines them: `CLIPTextModel` (SDXL's text_encoder, CLIP
/// ViT-L/14, quick_gelu) and `CLIPTextModelWithProjection` (text_encoder_2, OpenCLIP ViT-bigG/14,
/// gelu, `text_projection`). One class serves both; the config says which.
///
/// Parameters are named exactly as the diffusers/transformers weight keys
/// (`text_model.encoder.layers.3.self_attn.q_proj.weight`, `text_projection.weight`), so loading is
/// a name match: every expected key must be present with the expected shape, and every key in
/// the weights must be used (single files are converted with key_map.hpp first).
///
/// Written as plain structs of at::Tensor with at:: ops rather than torch::nn modules: the same
/// names and structure, but the translation unit compiles without <torch/torch.h> (BUILD-NOTES:
/// 2-3x faster, a third of the memory), which matters on the 2-core build machines.
///
/// The parameters are one nn::PatchableWeights table, as the UNet's: a job patches a shared
/// encoder through a WeightOverlay over `patchable_weights()` and encodes with
/// `with_weights(overlay.changes())`, a copy sharing every unchanged tensor.
///
/// Thread-safety: `forward`, `with_weights` and reading the table are const and may run
/// concurrently; changing parameters in place (the table's add_delta / restore) must not overlap
/// any of them.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sdxlhost/nn/model_config.hpp"
#include "sdxlhost/nn/patchable_weights.hpp"
#include "sdxlhost/nn/tensor_map.hpp"
#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::nn {

/// What a CLIP text encoder returns for a batch of ids [B, T].
struct ClipTextOutput {
  /// num_hidden_layers + 1 tensors [B, T, H]: the embeddings, then each layer's output (before the
  /// final layer norm). SDXL uses hidden_states[-2] ("penultimate"); clip_skip picks another.
  std::vector<at::Tensor> hidden_states;
  at::Tensor last_hidden_state;  ///< final_layer_norm(hidden_states.back()) [B, T, H]
  at::Tensor pooler_output;      ///< last_hidden_state at the EOS position [B, H]
  at::Tensor text_embeds;        ///< text_projection(pooler_output) [B, P]; undefined without projection
};

/// A CLIP text encoder with or without projection.
class SDXLHOST_API ClipTextModel {
 public:
  /// Builds the model from diffusers-named `weights` (any float dtype; converted to `dtype` on
  /// `device`, kept as zero-copy views when they already match). Throws sdk::Error(ModelLoadError) naming
  /// the first missing, unexpected or wrongly shaped key. `text_model.embeddings.position_ids`
  /// (a buffer older files carry) is accepted and ignored.
  static std::shared_ptr<ClipTextModel> load(const TensorMap& weights, const ClipTextConfig& config,
                                             at::ScalarType dtype = at::kFloat,
                                             at::Device device = at::kCPU);
  /// Loads a diffusers `text_encoder/` or `text_encoder_2/` folder (config.json + model.safetensors).
  static std::shared_ptr<ClipTextModel> load_folder(const std::filesystem::path& folder,
                                                    at::ScalarType dtype = at::kFloat,
                                                    at::Device device = at::kCPU);

  /// Runs the encoder on int64 ids [B, T] (T <= max_position_embeddings, any device), on the
  /// weights' device; the outputs stay there.
  ClipTextOutput forward(const at::Tensor& input_ids) const;

  /// The config the model was built with.
  const ClipTextConfig& config() const { return config_; }
  /// Every parameter by its weight key. Pointers stay valid for the model's lifetime.
  std::vector<std::pair<std::string, at::Tensor*>> named_parameters();
  /// The patchable-parameter table (model patches: LoRA). Its component is "text_encoder_2" for
  /// an encoder with a projection (SDXL's OpenCLIP bigG, the refiner's only encoder) and
  /// "text_encoder" otherwise (CLIP ViT-L), the names LoRA files use.
  PatchableWeights& patchable_weights() { return weights_; }
  /// The table, read-only (what a WeightOverlay reads).
  const PatchableWeights& patchable_weights() const { return weights_; }
  /// A copy of this encoder with `replaced` (key -> tensor of the same shape, dtype and device)
  /// in place of those weights; every other parameter is the very same tensor and this model is
  /// left untouched. Throws sdk::Error(ValidationError) naming an unknown key or a misfit.
  std::shared_ptr<ClipTextModel> with_weights(const std::map<std::string, at::Tensor>& replaced) const;

  ClipTextModel(const ClipTextModel&) = delete;  // the table points into the object
  ClipTextModel& operator=(const ClipTextModel&) = delete;
  /// Every weight key and shape a model of `config` has (for coverage checks without weights).
  static std::map<std::string, std::vector<std::int64_t>> expected_shapes(const ClipTextConfig& config);

  struct Layer;  ///< one encoder layer (defined in the .cpp)

 private:
  ClipTextModel() = default;

  ClipTextConfig config_;
  at::Tensor token_embedding_;     // text_model.embeddings.token_embedding.weight
  at::Tensor position_embedding_;  // text_model.embeddings.position_embedding.weight
  std::vector<std::shared_ptr<Layer>> layers_;
  at::Tensor final_norm_weight_, final_norm_bias_;  // text_model.final_layer_norm.*
  at::Tensor text_projection_;                      // text_projection.weight (no bias)
  PatchableWeights weights_;                        // over the tensors above
};

}  // namespace sdxlhost::nn
