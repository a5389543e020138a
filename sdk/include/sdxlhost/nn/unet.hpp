#pragma once
/// @file unet.hpp
/// SDXL's UNet2DConditionModel (diffusers), any size: the tiny test model, SDXL base and the
/// refiner load through the same code. The config comes from a diffusers `config.json`
/// (`UNetConfig::from_json`) or is inferred from the weights' shapes (`UNetConfig::infer`).
/// Parameters are bound by their diffusers keys, so loading is a name match on a TensorMap
/// (single-file checkpoints are renamed to diffusers keys by the key map first).
///
/// Extension points: `forward` takes optional ControlNet residuals (sdk::UNetResiduals, added to
/// the skip connections and the mid-block output as diffusers does), and the parameters are one
/// nn::PatchableWeights table: a job patches a shared model through a WeightOverlay over
/// `patchable_weights()` and computes with `with_weights(overlay.changes())`, a copy that shares
/// every unchanged tensor. The model is also an sdk::WeightTarget patched in place (`add_delta`,
/// `restore_weights`) for a model nothing else uses.
///
/// Thread-safety: `forward`, `with_weights` and reading the table are const and may run
/// concurrently; patching in place (`add_delta`, `restore_weights`) must not overlap them.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "sdxlhost/nn/tensor_map.hpp"
#include "sdxlhost/nn/patchable_weights.hpp"
#include "sdxlhost/nn/unet_blocks.hpp"
#include "sdxlhost/sdk/export.hpp"
#include "sdxlhost/sdk/hooks.hpp"

namespace sdxlhost::nn {

/// The UNet's architecture. Per-level lists are in down-block order (level 0 = full resolution).
struct SDXLHOST_API UNetConfig {
  std::int64_t in_channels = 4;                  ///< latent channels in
  std::int64_t out_channels = 4;                 ///< prediction channels out
  std::vector<std::int64_t> block_out_channels;  ///< channels per level
  std::int64_t layers_per_block = 2;             ///< resnets per down block (up blocks: + 1)
  std::vector<bool> down_attention;  ///< per level: CrossAttnDownBlock2D (true) or DownBlock2D
  std::vector<bool> up_attention;    ///< per up block (up order): CrossAttnUpBlock2D or UpBlock2D
  std::vector<std::int64_t> transformer_depth;     ///< per level: transformer blocks per attention
  std::vector<std::int64_t> up_transformer_depth;  ///< per up block (up order)
  std::int64_t mid_transformer_depth = 1;          ///< transformer blocks in the mid block
  std::vector<std::int64_t> attention_heads;       ///< per level: number of heads (diffusers'
                                                   ///< `attention_head_dim` is a head count)
  std::int64_t cross_attention_dim = 2048;  ///< width of encoder_hidden_states
  bool use_linear_projection = true;        ///< linear (SDXL) or 1x1-conv transformer projections
  bool mid_block_attention = true;  ///< UNetMidBlock2DCrossAttn
  /// `addition_embed_type` "text_time": pooled text embeds + sinusoidal time ids.
  bool text_time_embedding = true;
  std::int64_t addition_time_embed_dim = 256;                 ///< sinusoid width per time id
  std::int64_t projection_class_embeddings_input_dim = 2816;  ///< pooled + ids x the above
  std::int64_t norm_num_groups = 32;                          ///< GroupNorm groups everywhere
  double norm_eps = 1e-5;                                     ///< resnet / output norm eps
  bool flip_sin_to_cos = true;                                ///< sinusoids as [cos | sin]
  double freq_shift = 0;                                      ///< downscale_freq_shift

  /// Channels of the time embedding (4 x block_out_channels[0]).
  std::int64_t time_embed_dim() const { return block_out_channels.at(0) * 4; }
  /// Number of levels.
  std::size_t levels() const { return block_out_channels.size(); }
  /// Number of skip connections (= residuals a ControlNet gives for the down blocks).
  std::size_t skip_count() const;

  /// Reads a diffusers UNet2DConditionModel config.json. Throws sdk::Error(ModelLoadError)
  /// naming the key for missing, ill-typed or unsupported values (e.g. a block type this port
  /// does not implement).
  static UNetConfig from_json(const nlohmann::json& config);
  /// Infers the config from the weights' shapes (diffusers keys). Head counts and the time-id
  /// width are not visible in shapes: heads = channels / `head_dim` (64 in every SDXL model);
  /// addition_time_embed_dim = (add-embedding input - `pooled_dim`) / number of time ids, with 5
  /// ids when cross_attention_dim == pooled_dim (refiner: only the bigG encoder) and 6 otherwise;
  /// 256 when `pooled_dim` <= 0 (unknown), as diffusers' single-file loader assumes. The mid
  /// block's transformer depth is counted in its own weights (the refiner's is 4 while its last
  /// level has no attention). This is the only UNet config inference; `infer_unet_config`
  /// (model_config.hpp) returns its `to_json()`.
  /// Throws sdk::Error(ModelLoadError) when the weights are not a UNet of this family.
  static UNetConfig infer(const TensorMap& weights, std::int64_t head_dim = 64,
                          std::int64_t pooled_dim = 1280);
  /// The diffusers config.json for this config (writes what from_json reads).
  nlohmann::json to_json() const;
};

/// The SDXL UNet. Create with `load`; neither copyable nor movable (parameters are reached by
/// key through pointers into the object).
class SDXLHOST_API UNet2DConditionModel final : public sdk::WeightTarget {
 public:
  /// Binds `weights` (diffusers keys; every key must be used) to a model of `config`, converting
  /// to `dtype` on `device` (no copy when they already match). Throws sdk::Error(ModelLoadError)
  /// naming the key for missing, extra or mis-shaped weights.
  static std::shared_ptr<UNet2DConditionModel> load(const UNetConfig& config,
                                                    const TensorMap& weights,
                                                    at::ScalarType dtype = at::kFloat,
                                                    at::Device device = at::kCPU);

  /// A model of `config` whose parameters come from `init` (random weights for tests, tools
  /// and benchmarks).
  static std::shared_ptr<UNet2DConditionModel> create(const UNetConfig& config, const WeightBinder::Initializer& init,
                                    at::ScalarType dtype = at::kFloat, at::Device device = at::kCPU);
  /// Every parameter by its diffusers key (views of the model's tensors).
  TensorMap state_dict() const;

  UNet2DConditionModel(const UNet2DConditionModel&) = delete;
  UNet2DConditionModel& operator=(const UNet2DConditionModel&) = delete;
  ~UNet2DConditionModel() override;

  /// The noise prediction (N, out_channels, H, W), in the model's dtype.
  /// @param sample                 (N, in_channels, H, W)
  /// @param timestep               0-dim, (1,) or (N,): broadcast to the batch
  /// @param encoder_hidden_states  (N, L, cross_attention_dim)
  /// @param text_embeds            (N, pooled) pooled text embeds (text_time models)
  /// @param time_ids               (N, k): k x addition_time_embed_dim + pooled must equal the
  ///                               add-embedding input (6 ids for base, 5 for the refiner)
  /// @param residuals              optional ControlNet residuals: `down` has skip_count() tensors
  ///                               shaped like the skips, `mid` like the mid-block output
  /// @param trace                  optional: receives intermediates by diffusers module name
  /// Throws sdk::Error(ValidationError) for inputs whose shapes do not fit the model.
  at::Tensor forward(const at::Tensor& sample, const at::Tensor& timestep,
                     const at::Tensor& encoder_hidden_states, const at::Tensor& text_embeds,
                     const at::Tensor& time_ids, const sdk::UNetResiduals* residuals = nullptr,
                     const TraceFn& trace = {}) const;

  /// The config the model was built from.
  const UNetConfig& config() const { return config_; }
  /// The dtype parameters are held in.
  at::ScalarType dtype() const { return dtype_; }
  /// The device parameters live on.
  at::Device device() const { return device_; }
  /// Parameter keys (diffusers names), sorted.
  std::vector<std::string> parameter_names() const;
  /// Bytes held by the parameters.
  std::uint64_t parameter_bytes() const;

  // ---- sdk::WeightTarget -------------------------------------------------------------------
  /// "unet".
  std::string component() const override { return "unet"; }
  bool has(const std::string& key) const override;
  /// Every parameter key, sorted.
  std::vector<std::string> keys() const override;
  /// Throws sdk::Error(NotFound) for an unknown key.
  at::Tensor weight(const std::string& key) const override;
  /// weight += delta (in the model's dtype; a new tensor, the mapped file is never written).
  /// The first change of a key keeps the original for `restore_weights`. Throws
  /// sdk::Error(ValidationError) for an unknown key or a delta of another shape.
  void add_delta(const std::string& key, const at::Tensor& delta) override;
  /// Puts every weight changed by add_delta back; returns how many were restored.
  std::size_t restore_weights();
  /// Keys currently changed by add_delta.
  std::vector<std::string> patched_keys() const;
  /// The patchable-parameter table itself (set_weight, originals) for the owner of the model.
  PatchableWeights& patchable_weights() { return weights_; }
  /// The table, read-only (what a WeightOverlay reads).
  const PatchableWeights& patchable_weights() const { return weights_; }
  /// A copy of this model with `replaced` (key -> tensor of the same shape, dtype and device, as
  /// a WeightOverlay makes them) in place of those weights. Every other parameter is the very
  /// same tensor (no copy: the copy costs the replaced tensors' bytes and a small structure), and
  /// this model is left untouched. Throws sdk::Error(ValidationError) naming an unknown key or a
  /// tensor that does not fit.
  std::shared_ptr<UNet2DConditionModel> with_weights(const std::map<std::string, at::Tensor>& replaced) const;

  /// Stores every convolution weight in channels-last (NHWC) memory order and runs forward in it
  /// (the output is returned in the default order): the same values, in the layout cuDNN's
  /// tensor-core kernels read directly on a GPU (docs/gpu.md, setting `channels_last`). Call
  /// before any weight is patched. Throws sdk::Error(InternalError) when weights are patched.
  void use_channels_last();
  /// True after use_channels_last().
  bool channels_last() const { return channels_last_; }

  struct Blocks;  ///< the layers (defined in unet.cpp)

 private:
  UNet2DConditionModel(UNetConfig config, at::ScalarType dtype, at::Device device);

  UNetConfig config_;
  at::ScalarType dtype_;
  at::Device device_;
  std::unique_ptr<Blocks> blocks_;
  std::map<std::string, at::Tensor*> slots_;
  PatchableWeights weights_;  ///< over slots_: patches and their originals
  bool channels_last_ = false;
};

}  // namespace sdxlhost::nn
