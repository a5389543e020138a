#pragma once
/// @file attention.hpp
/// Scaled dot-product attention as one function for every model (text encoders, UNet, VAE,
/// ControlNet). Where the linked libtorch has the public `at::scaled_dot_product_attention`
/// (2.x: fused / flash kernels on CUDA) it is used; otherwise (libtorch 1.13) the explicit path
/// `softmax(q k^T * scale + mask) v` runs, which is what diffusers' `AttnProcessor` and
/// transformers' "eager" CLIP attention compute. Both agree to float32 rounding (tests/nn).
///
/// Thread-safety: stateless; call from any thread.

#include <ATen/core/Tensor.h>

#include <c10/util/Optional.h>

#include <cstdint>

#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::nn {

/// Which implementation `scaled_dot_product_attention` uses.
enum class AttentionBackend {
  Auto,      ///< the library's fused SDPA when available, else Math
  Math,      ///< explicit matmul + softmax + matmul (always available)
  Fused,     ///< libtorch's SDPA: public at::scaled_dot_product_attention (>= 2.0) or, on 1.13,
             ///< the private at::_scaled_dot_product_attention (only for testing agreement)
};

/// Options of one attention call.
struct AttentionOptions {
  /// Added to the scores (float, broadcastable to [..., Tq, Tk]) or, when bool, true = attend.
  c10::optional<at::Tensor> mask;
  /// Causal masking (query i attends to keys 0..i), as CLIP's text encoders use.
  bool causal = false;
  /// Multiplier of q k^T; default 1 / sqrt(head_dim).
  c10::optional<double> scale;
  /// Implementation choice; Auto unless a test compares them.
  AttentionBackend backend = AttentionBackend::Auto;
  /// Math path: largest score matrix [..., Tq, Tk] computed at once; bigger ones are computed in
  /// slices of query rows (same result, bounded memory; e.g. SDXL at 1024x1024 has 4096-token
  /// self-attention). 0 = no limit.
  std::int64_t max_scores_bytes = kDefaultMaxScoresBytes;
  /// Default slice budget: 256 MiB of scores.
  static constexpr std::int64_t kDefaultMaxScoresBytes = 256ll * 1024 * 1024;
};

/// softmax(q k^T * scale + mask) v for q [..., Tq, D], k [..., Tk, D], v [..., Tk, Dv]
/// (typically [batch, heads, tokens, head_dim]). Returns [..., Tq, Dv].
SDXLHOST_API at::Tensor scaled_dot_product_attention(const at::Tensor& q, const at::Tensor& k,
                                                     const at::Tensor& v,
                                                     const AttentionOptions& options = {});

/// True when the linked libtorch has the public fused `at::scaled_dot_product_attention` (>= 2.0),
/// which Auto then uses.
SDXLHOST_API bool has_public_sdpa();

/// True when some fused SDPA (public, or the private 1.13 one) can be selected with Fused.
SDXLHOST_API bool has_fused_sdpa();

}  // namespace sdxlhost::nn
