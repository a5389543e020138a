#pragma once
/// @file controlnet.hpp
/// diffusers' ControlNetModel for SDXL UNets: the UNet's encoder half (conv_in, time and
/// text_time embeddings, down blocks, mid block: the UNetEncoder of unet_encoder.hpp, shared with
/// UNet2DConditionModel) plus
/// the conditioning embedding of the control image and one zero convolution per skip connection
/// (`controlnet_down_blocks.*`) and for the mid block (`controlnet_mid_block`). Its output is the
/// residuals the UNet adds to its skips and mid-block output (sdk::UNetResiduals).
///
/// The config comes from a diffusers `config.json` (`ControlNetConfig::from_json`) or is inferred
/// from the weights' shapes (`ControlNetConfig::infer`); parameters are bound by diffusers keys.
///
/// Thread-safety: `forward` is const and may run concurrently.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "sdxlhost/nn/tensor_map.hpp"
#include "sdxlhost/nn/unet.hpp"
#include "sdxlhost/nn/unet_blocks.hpp"
#include "sdxlhost/sdk/export.hpp"
#include "sdxlhost/sdk/hooks.hpp"

namespace sdxlhost::nn {

/// A ControlNet's architecture: the UNet encoder's config plus the conditioning embedding.
struct SDXLHOST_API ControlNetConfig {
  /// conv_in, embeddings, down and mid blocks (the up-block fields are unused).
  UNetConfig unet;
  /// Channels of the conditioning embedding's convs; one stride-2 step per entry after the first.
  std::vector<std::int64_t> conditioning_embedding_out_channels{16, 32, 96, 256};
  std::int64_t conditioning_channels = 3;  ///< channels of the control image
  bool bgr_conditioning = false;           ///< controlnet_conditioning_channel_order "bgr"

  /// Reads a diffusers ControlNetModel config.json. Throws sdk::Error(ModelLoadError) naming the
  /// key for missing, ill-typed or unsupported values (e.g. global_pool_conditions true).
  static ControlNetConfig from_json(const nlohmann::json& config);
  /// Infers the config from the weights' shapes (diffusers keys); heads and the time-id width as
  /// UNetConfig::infer. Throws sdk::Error(ModelLoadError) when the weights are not a ControlNet.
  static ControlNetConfig infer(const TensorMap& weights, std::int64_t head_dim = 64,
                                std::int64_t pooled_dim = 1280);
};

/// An SDXL ControlNet. Create with `load`; neither copyable nor movable.
class SDXLHOST_API ControlNetModel final {
 public:
  /// Binds `weights` (diffusers keys; every key must be used) to a model of `config`, converting
  /// to `dtype` on `device`. Throws sdk::Error(ModelLoadError) naming the key for missing, extra
  /// or mis-shaped weights.
  static std::shared_ptr<ControlNetModel> load(const ControlNetConfig& config,
                                               const TensorMap& weights,
                                               at::ScalarType dtype = at::kFloat,
                                               at::Device device = at::kCPU);

  ControlNetModel(const ControlNetModel&) = delete;
  ControlNetModel& operator=(const ControlNetModel&) = delete;
  ~ControlNetModel();

  /// The residuals for a UNet of the same encoder, already multiplied by `conditioning_scale`:
  /// `down` has unet.skip_count() tensors, `mid` is shaped like the mid-block output; in the
  /// model's dtype, on its device.
  /// @param sample                 (N, in_channels, H, W) latents
  /// @param timestep               0-dim, (1,) or (N,)
  /// @param encoder_hidden_states  (N, L, cross_attention_dim)
  /// @param text_embeds            (N, pooled) pooled text embeds (text_time models)
  /// @param time_ids               (N, k) as UNet2DConditionModel::forward
  /// @param controlnet_cond        (N, conditioning_channels, 8H', 8W') control image in [0, 1],
  ///                               whose embedding has the latents' size
  /// @param conditioning_scale     multiplies every residual
  /// @param trace                  optional: "controlnet_cond_embedding" and block outputs
  /// Throws sdk::Error(ValidationError) for inputs whose shapes do not fit the model.
  sdk::UNetResiduals forward(const at::Tensor& sample, const at::Tensor& timestep,
                             const at::Tensor& encoder_hidden_states,
                             const at::Tensor& text_embeds, const at::Tensor& time_ids,
                             const at::Tensor& controlnet_cond, double conditioning_scale,
                             const TraceFn& trace = {}) const;

  /// The config the model was built from.
  const ControlNetConfig& config() const { return config_; }
  /// The dtype parameters are held in.
  at::ScalarType dtype() const { return dtype_; }
  /// The device parameters live on.
  at::Device device() const { return device_; }
  /// Parameter keys (diffusers names), sorted.
  std::vector<std::string> parameter_names() const;

  struct Blocks;  ///< the layers (defined in controlnet.cpp)

 private:
  ControlNetModel(ControlNetConfig config, at::ScalarType dtype, at::Device device);

  ControlNetConfig config_;
  at::ScalarType dtype_;
  at::Device device_;
  std::unique_ptr<Blocks> blocks_;
  std::map<std::string, at::Tensor*> slots_;
};

}  // namespace sdxlhost::nn
