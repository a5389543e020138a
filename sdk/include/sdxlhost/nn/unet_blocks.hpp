#pragma once
/// @file unet_blocks.hpp
/// The layers the SDXL UNet and VAE (and a ControlNet encoder) are built from, as plain structs of
/// tensors run with `at::` functions (no torch::nn modules: they compile 2-3x slower, see
/// docs/models.md). Every parameter is bound by its diffusers key through a `WeightBinder`, so
/// loading is a name match and a model can list, read and patch its weights by those keys.
///
/// Thread-safety: a bound layer is immutable during `forward`; forwards may run concurrently.
/// Changing weights (WeightBinder::slots) must not overlap a forward.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "sdxlhost/nn/tensor_map.hpp"
#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::nn {

/// Records intermediate outputs of a forward by module name ("down_blocks.0"); may be empty.
using TraceFn = std::function<void(const std::string& name, const at::Tensor& value)>;

/// Binds parameters by name from a TensorMap: checks each exists with the expected shape, converts
/// it to the model's dtype/device (no copy when they already match) and remembers where it is
/// stored, so the owner can reach every parameter by its key afterwards.
class SDXLHOST_API WeightBinder {
 public:
  /// Makes a new parameter (random or constant) for a key and shape: builds models without a file.
  using Initializer =
      std::function<at::Tensor(const std::string& key, const std::vector<std::int64_t>& shape)>;

  /// @param weights  the tensors, keyed like the model's parameters (diffusers names)
  /// @param dtype    the dtype the model computes in
  /// @param device   the device the model computes on
  /// @param what     model name for messages ("unet")
  WeightBinder(const TensorMap& weights, at::ScalarType dtype, at::Device device, std::string what);
  /// A binder that creates every parameter with `init` instead of reading it.
  WeightBinder(Initializer init, at::ScalarType dtype, at::Device device, std::string what);

  /// Stores weights[key] in `slot` after checking its shape. Throws sdk::Error(ModelLoadError)
  /// naming the key when it is missing or shaped differently.
  void bind(const std::string& key, at::Tensor& slot, std::vector<std::int64_t> shape);
  /// True when `key` is present in the weights (always true when creating).
  bool has(const std::string& key) const;
  /// Throws sdk::Error(ModelLoadError) listing weights that no parameter took (a config that
  /// does not match the file). Nothing to check when creating.
  void check_all_used() const;
  /// Every bound parameter: key -> its storage in the model.
  const std::map<std::string, at::Tensor*>& slots() const { return slots_; }
  /// The dtype parameters are converted to.
  at::ScalarType dtype() const { return dtype_; }

 private:
  const TensorMap* weights_ = nullptr;
  Initializer init_;
  at::ScalarType dtype_;
  at::Device device_;
  std::string what_;
  std::map<std::string, at::Tensor*> slots_;
};

/// A fully connected layer (`x @ weight.T + bias`).
struct SDXLHOST_API Linear {
  at::Tensor weight;  ///< [out, in]
  at::Tensor bias;    ///< [out]; undefined when the layer has none
  /// Binds `prefix.weight` [out, in] and, when `with_bias`, `prefix.bias` [out].
  void bind(WeightBinder& b, const std::string& prefix, std::int64_t in, std::int64_t out,
            bool with_bias = true);
  /// x [..., in] -> [..., out].
  at::Tensor forward(const at::Tensor& x) const;
};

/// A 2-D convolution.
struct SDXLHOST_API Conv2d {
  at::Tensor weight;         ///< [out, in, k, k]
  at::Tensor bias;           ///< [out]
  std::int64_t stride = 1;   ///< same in both directions
  std::int64_t padding = 0;  ///< zero padding on every side
  /// Binds `prefix.weight` [out, in, k, k] and `prefix.bias` [out]; padding = k / 2 unless given.
  void bind(WeightBinder& b, const std::string& prefix, std::int64_t in, std::int64_t out,
            std::int64_t kernel, std::int64_t stride = 1, std::int64_t padding = -1);
  /// x (N, in, H, W) -> (N, out, H', W').
  at::Tensor forward(const at::Tensor& x) const;
};

/// Group normalisation with an affine transform.
struct SDXLHOST_API GroupNorm {
  at::Tensor weight;         ///< [channels]
  at::Tensor bias;           ///< [channels]
  std::int64_t groups = 32;  ///< channel groups
  double eps = 1e-5;         ///< added to the variance
  /// Binds `prefix.weight` / `prefix.bias` [channels]; throws when groups do not divide channels.
  void bind(WeightBinder& b, const std::string& prefix, std::int64_t channels, std::int64_t groups,
            double eps);
  /// x (N, C, ...) normalised per group.
  at::Tensor forward(const at::Tensor& x) const;
};

/// Layer normalisation over the last dimension.
struct SDXLHOST_API LayerNorm {
  at::Tensor weight;  ///< [dim]
  at::Tensor bias;    ///< [dim]
  double eps = 1e-5;  ///< added to the variance
  /// Binds `prefix.weight` / `prefix.bias` [dim].
  void bind(WeightBinder& b, const std::string& prefix, std::int64_t dim, double eps);
  /// x [..., dim] normalised over the last dimension.
  at::Tensor forward(const at::Tensor& x) const;
};

/// diffusers' ResnetBlock2D (time_scale_shift "default", output scale 1): norm1 -> SiLU -> conv1
/// (+ time_emb_proj(SiLU(temb))) -> norm2 -> SiLU -> conv2, plus the (1x1 conv) shortcut.
struct SDXLHOST_API ResnetBlock2D {
  GroupNorm norm1;       ///< on the input
  Conv2d conv1;          ///< 3x3, in -> out
  Linear time_emb_proj;  ///< unbound when the block takes no time embedding (VAE)
  GroupNorm norm2;       ///< after conv1 (+ time embedding)
  Conv2d conv2;          ///< 3x3, out -> out
  Conv2d conv_shortcut;  ///< 1x1; unbound when in == out
  /// Binds every part under `prefix` (diffusers names).
  /// @param temb_channels 0 = no time embedding
  void bind(WeightBinder& b, const std::string& prefix, std::int64_t in, std::int64_t out,
            std::int64_t temb_channels, std::int64_t groups, double eps);
  /// x (N, in, H, W) -> (N, out, H, W).
  /// @param temb (N, temb_channels) or undefined
  at::Tensor forward(const at::Tensor& x, const at::Tensor& temb) const;
};

/// diffusers' Attention (to_q/to_k/to_v/to_out.0) for sequences (N, L, C); heads split C.
struct SDXLHOST_API Attention {
  Linear to_q, to_k, to_v;  ///< projections of queries (from x) and keys/values (from context)
  Linear to_out;            ///< `to_out.0`
  std::int64_t heads = 1;   ///< channels are split into this many heads
  /// Binds `prefix.to_q/to_k/to_v/to_out.0`.
  /// @param query_dim   channels of the queries and of the output
  /// @param context_dim channels of the keys/values source (= query_dim for self-attention)
  /// @param qkv_bias    whether to_q/k/v have biases (the VAE's do, the UNet's do not)
  void bind(WeightBinder& b, const std::string& prefix, std::int64_t query_dim,
            std::int64_t context_dim, std::int64_t heads, bool qkv_bias);
  /// @param context undefined = self-attention
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context) const;
};

/// diffusers' BasicTransformerBlock: self-attention, cross-attention and a GEGLU feed-forward,
/// each after a LayerNorm and added back.
struct SDXLHOST_API BasicTransformerBlock {
  LayerNorm norm1, norm2, norm3;  ///< before self-attention, cross-attention, feed-forward
  Attention attn1;                ///< self-attention
  Attention attn2;                ///< cross-attention on the text embeddings
  Linear ff_in;   ///< ff.net.0.proj: dim -> 2 * 4 * dim (value | gate)
  Linear ff_out;  ///< ff.net.2: 4 * dim -> dim
  /// Binds every part under `prefix` (diffusers names).
  void bind(WeightBinder& b, const std::string& prefix, std::int64_t dim, std::int64_t context_dim,
            std::int64_t heads);
  /// x (N, L, dim) with context (N, T, context_dim) -> (N, L, dim).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context) const;
};

/// diffusers' Transformer2DModel (continuous input): GroupNorm(eps 1e-6) -> proj_in (linear or
/// 1x1 conv) -> `depth` BasicTransformerBlocks -> proj_out, added to the input.
struct SDXLHOST_API Transformer2D {
  GroupNorm norm;                          ///< eps 1e-6
  bool linear_projection = true;           ///< use_linear_projection (SDXL) vs 1x1 convs
  Linear proj_in_linear, proj_out_linear;  ///< bound when linear_projection
  Conv2d proj_in_conv, proj_out_conv;      ///< bound otherwise
  std::vector<BasicTransformerBlock> blocks;  ///< `transformer_blocks.i`
  /// Binds every part under `prefix` (diffusers names).
  void bind(WeightBinder& b, const std::string& prefix, std::int64_t channels,
            std::int64_t context_dim, std::int64_t heads, std::int64_t depth, bool linear_projection,
            std::int64_t groups);
  /// x (N, C, H, W) with context (N, T, context_dim) -> (N, C, H, W).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& context) const;
};

/// A stride-2 conv (`prefix.conv`). With `pad_right_bottom` (the VAE encoder: padding 0) the input
/// is first padded by one on the right and bottom, as diffusers does.
struct SDXLHOST_API Downsample2D {
  Conv2d conv;                    ///< 3x3, stride 2
  bool pad_right_bottom = false;  ///< VAE encoder style (padding 0 + one pixel right/bottom)
  /// Binds `prefix.conv`.
  void bind(WeightBinder& b, const std::string& prefix, std::int64_t channels,
            bool pad_right_bottom);
  /// Halves H and W (rounding up with padding 1).
  at::Tensor forward(const at::Tensor& x) const;
};

/// Nearest-neighbour 2x upsampling (or to `size`) followed by a 3x3 conv (`prefix.conv`).
struct SDXLHOST_API Upsample2D {
  Conv2d conv;  ///< 3x3 after the upsampling
  /// Binds `prefix.conv`.
  void bind(WeightBinder& b, const std::string& prefix, std::int64_t channels);
  /// @param size target (H, W); empty = twice the input
  at::Tensor forward(const at::Tensor& x, at::IntArrayRef size = {}) const;
};

/// diffusers' TimestepEmbedding: linear_1 -> SiLU -> linear_2.
struct SDXLHOST_API TimestepEmbedding {
  Linear linear_1, linear_2;  ///< in -> out -> out
  /// Binds `prefix.linear_1` / `prefix.linear_2`.
  void bind(WeightBinder& b, const std::string& prefix, std::int64_t in, std::int64_t out);
  /// x (N, in) -> (N, out).
  at::Tensor forward(const at::Tensor& x) const;
};

/// Sinusoidal features of `timesteps` (1-D, any float/int dtype) as diffusers'
/// get_timestep_embedding: exponent = -ln(10000) * i / (dim/2 - shift), [sin | cos] (or
/// [cos | sin] with `flip_sin_to_cos`), zero-padded when `dim` is odd. Float32 result (N, dim).
SDXLHOST_API at::Tensor timestep_features(const at::Tensor& timesteps, std::int64_t dim,
                                          bool flip_sin_to_cos, double shift);

}  // namespace sdxlhost::nn
