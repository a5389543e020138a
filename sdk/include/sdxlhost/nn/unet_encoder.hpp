#pragma once
/// @file unet_encoder.hpp
/// The encoder half shared by UNet2DConditionModel and ControlNetModel: the time (and text_time)
/// embeddings, conv_in, the down blocks and the mid block, bound by diffusers keys from a
/// UNetConfig. Callers run conv_in themselves, so a ControlNet can add its control image first.
///
/// Thread-safety: a bound encoder is immutable during its forwards; they may run concurrently.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "sdxlhost/nn/unet.hpp"
#include "sdxlhost/nn/unet_blocks.hpp"
#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::nn {

/// A down block: resnets (+ a transformer after each) and an optional stride-2 downsampler.
struct SDXLHOST_API UNetDownBlock {
  std::vector<ResnetBlock2D> resnets;     ///< down_blocks.i.resnets.j
  std::vector<Transformer2D> attentions;  ///< down_blocks.i.attentions.j; empty without attention
  bool has_downsampler = false;           ///< every level but the last
  Downsample2D downsampler;               ///< down_blocks.i.downsamplers.0
};

/// Embeddings, conv_in, down blocks and mid block of an SDXL UNet (or a ControlNet).
struct SDXLHOST_API UNetEncoder {
  /// Called once per skip connection, in order, with the skip's channel count.
  using SkipFn = std::function<void(std::int64_t channels)>;

  TimestepEmbedding time_embedding;   ///< time_embedding
  TimestepEmbedding add_embedding;    ///< add_embedding (text_time models only)
  Conv2d conv_in;                     ///< conv_in
  std::vector<UNetDownBlock> down;    ///< down_blocks.i
  ResnetBlock2D mid_resnet_0;         ///< mid_block.resnets.0
  Transformer2D mid_attention;        ///< mid_block.attentions.0
  ResnetBlock2D mid_resnet_1;         ///< mid_block.resnets.1

  /// Binds the embeddings and conv_in.
  void bind_stem(WeightBinder& b, const UNetConfig& c);
  /// Binds the down blocks, then the mid block; `on_skip` (may be empty) is called after each
  /// layer whose output becomes a skip (not for conv_in's, the first skip).
  void bind_body(WeightBinder& b, const UNetConfig& c, const SkipFn& on_skip = {});

  /// Throws sdk::Error(ValidationError) with "<component> input: ..." when the sample,
  /// encoder_hidden_states or timestep do not fit `c`.
  static void check_inputs(const UNetConfig& c, const at::Tensor& sample,
                           const at::Tensor& encoder_hidden_states, const at::Tensor& timestep,
                           const std::string& component);
  /// The time embedding (+ the text_time added embedding) for `batch` samples, in `options`.
  /// `trace` receives time_proj, time_embedding, add_time_proj and add_embedding. Throws
  /// sdk::Error(ValidationError) for text_embeds/time_ids that do not fit `c`.
  at::Tensor embed(const UNetConfig& c, const at::Tensor& timestep, const at::Tensor& text_embeds,
                   const at::Tensor& time_ids, std::int64_t batch, const at::TensorOptions& options,
                   const std::string& component, const TraceFn& trace = {}) const;
  /// Runs the down blocks on `sample` (conv_in's output, updated to the last block's output);
  /// returns the skips, conv_in's output first. `trace` receives down_blocks.i.
  std::vector<at::Tensor> forward_down(at::Tensor& sample, const at::Tensor& emb,
                                       const at::Tensor& context, const TraceFn& trace = {}) const;
  /// The mid block's output; `trace` receives mid_block.
  at::Tensor forward_mid(const at::Tensor& sample, const at::Tensor& emb,
                         const at::Tensor& context, const TraceFn& trace = {}) const;
};

}  // namespace sdxlhost::nn
