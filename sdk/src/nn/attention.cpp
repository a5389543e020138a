// Scaled dot-product attention: libtorch's SDPA where public (>= 2.0), explicit softmax otherwise.
#include "sdxlhost/nn/attention.hpp"

#include <ATen/ATen.h>
#include <torch/csrc/api/include/torch/version.h>

#include <cmath>
#include <limits>

#include "sdxlhost/sdk/error.hpp"

#if TORCH_VERSION_MAJOR >= 2
#define SDXLHOST_HAS_PUBLIC_SDPA 1
#else
#define SDXLHOST_HAS_PUBLIC_SDPA 0
#endif
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define SDXLHOST_SDPA_HAS_SCALE 1
#else
#define SDXLHOST_SDPA_HAS_SCALE 0
#endif
// libtorch 1.13 has a private SDPA (returns a tuple); 1.14-1.x dev builds are not supported.
#if TORCH_VERSION_MAJOR == 1 && TORCH_VERSION_MINOR == 13
#define SDXLHOST_HAS_PRIVATE_SDPA 1
#else
#define SDXLHOST_HAS_PRIVATE_SDPA 0
#endif

namespace sdxlhost::nn {
namespace {

double default_scale(const at::Tensor& q) { return 1.0 / std::sqrt(static_cast<double>(q.size(-1))); }

void check_shapes(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  if (q.dim() < 2 || k.dim() != q.dim() || v.dim() != q.dim() || q.size(-1) != k.size(-1) ||
      k.size(-2) != v.size(-2))
    throw sdk::Error(sdk::ErrorCode::InternalError,
                     "attention: incompatible shapes q" + c10::str(q.sizes()) + " k" + c10::str(k.sizes()) +
                         " v" + c10::str(v.sizes()));
}

at::Tensor math_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const AttentionOptions& options) {
  const double scale = options.scale.value_or(default_scale(q));
  at::Tensor scores = at::matmul(q, k.transpose(-2, -1)).mul_(scale);
  if (options.causal) {
    const auto tq = q.size(-2), tk = k.size(-2);
    at::Tensor future = at::ones({tq, tk}, q.options().dtype(at::kBool)).triu_(1);
    scores.masked_fill_(future, -std::numeric_limits<double>::infinity());
  }
  if (options.mask.has_value() && options.mask->defined()) {
    const at::Tensor& mask = *options.mask;
    if (mask.scalar_type() == at::kBool)
      scores.masked_fill_(mask.logical_not(), -std::numeric_limits<double>::infinity());
    else
      scores.add_(mask);
  }
  return at::matmul(at::softmax(scores, -1), v);
}

/// A mask as the fused kernels take it: bool stays, float stays (additive).
c10::optional<at::Tensor> fused_mask(const AttentionOptions& options) {
  if (options.mask.has_value() && options.mask->defined()) return options.mask;
  return c10::nullopt;
}

at::Tensor fused_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                           const AttentionOptions& options) {
  const double scale = options.scale.value_or(default_scale(q));
#if SDXLHOST_HAS_PUBLIC_SDPA && SDXLHOST_SDPA_HAS_SCALE
  return at::scaled_dot_product_attention(q, k, v, fused_mask(options), 0.0, options.causal, scale);
#else
  // No scale argument: fold the requested scale into q (the kernel multiplies by 1/sqrt(D)).
  const at::Tensor q_scaled = options.scale.has_value() ? q * (scale / default_scale(q)) : q;
#if SDXLHOST_HAS_PUBLIC_SDPA
  return at::scaled_dot_product_attention(q_scaled, k, v, fused_mask(options), 0.0, options.causal);
#elif SDXLHOST_HAS_PRIVATE_SDPA
  return std::get<0>(at::_scaled_dot_product_attention(q_scaled, k, v, fused_mask(options), 0.0,
                                                       /*need_attn_weights=*/false, options.causal));
#else
  (void)q_scaled;
  throw sdk::Error(sdk::ErrorCode::InternalError, "attention: this libtorch has no fused SDPA");
#endif
#endif
}

}  // namespace

bool has_public_sdpa() { return SDXLHOST_HAS_PUBLIC_SDPA != 0; }

bool has_fused_sdpa() { return SDXLHOST_HAS_PUBLIC_SDPA != 0 || SDXLHOST_HAS_PRIVATE_SDPA != 0; }

at::Tensor scaled_dot_product_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                        const AttentionOptions& options) {
  check_shapes(q, k, v);
  switch (options.backend) {
    case AttentionBackend::Math: return math_attention(q, k, v, options);
    case AttentionBackend::Fused: return fused_attention(q, k, v, options);
    case AttentionBackend::Auto:
      return has_public_sdpa() ? fused_attention(q, k, v, options) : math_attention(q, k, v, options);
  }
  return math_attention(q, k, v, options);
}

}  // namespace sdxlhost::nn
