// Scaled dot-product attention: libtorch's SDPA where public (>= 2.0), explicit softmax otherwise.
#include "sdxlhost/nn/attention.hpp"

#include <ATen/ATen.h>
#include <torch/csrc/api/include/torch/version.h>

#include <algorithm>
#include <cmath>
#include <vector>
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

/// q k^T * scale, with the scale applied to q (rows x D) instead of a second pass over the
/// (rows x keys) score matrix: keys >> D in self-attention, so this is the cheap side. (baddbmm's
/// alpha with beta 0 would do too, but libtorch 1.13's CPU kernel still reads its input then.)
at::Tensor scaled_scores(const at::Tensor& q, const at::Tensor& k, double scale) {
  return at::matmul(q * scale, k.transpose(-2, -1));
}

/// softmax(q k^T * scale + mask) v for the query rows [row0, row0 + q.size(-2)) of the full problem.
at::Tensor math_attention_rows(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const AttentionOptions& options, int64_t row0, int64_t total_rows) {
  const double scale = options.scale.value_or(default_scale(q));
  at::Tensor scores = scaled_scores(q, k, scale);
  const auto rows = q.size(-2), tk = k.size(-2);
  if (options.causal) {
    // Query row r attends to keys 0..r (r counted in the full problem).
    at::Tensor future = at::ones({total_rows, tk}, q.options().dtype(at::kBool)).triu_(1).narrow(0, row0, rows);
    scores.masked_fill_(future, -std::numeric_limits<double>::infinity());
  }
  if (options.mask.has_value() && options.mask->defined()) {
    at::Tensor mask = *options.mask;
    if (mask.dim() >= 2 && mask.size(-2) == total_rows && total_rows != rows) mask = mask.narrow(-2, row0, rows);
    if (mask.scalar_type() == at::kBool)
      scores.masked_fill_(mask.logical_not(), -std::numeric_limits<double>::infinity());
    else
      scores.add_(mask);
  }
  return at::matmul(at::softmax(scores, -1), v);
}

at::Tensor math_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const AttentionOptions& options) {
  const int64_t tq = q.size(-2), tk = k.size(-2);
  const int64_t batch_heads = q.numel() / std::max<int64_t>(1, tq * q.size(-1));
  const int64_t row_bytes = batch_heads * tk * static_cast<int64_t>(q.element_size());
  if (options.max_scores_bytes <= 0 || row_bytes * tq <= options.max_scores_bytes || tq < 2)
    return math_attention_rows(q, k, v, options, 0, tq);
  // Too many scores at once: slice the query rows (each row's softmax is independent).
  const int64_t rows_per_slice = std::max<int64_t>(1, options.max_scores_bytes / std::max<int64_t>(1, row_bytes));
  std::vector<at::Tensor> slices;
  for (int64_t row0 = 0; row0 < tq; row0 += rows_per_slice) {
    const int64_t rows = std::min(rows_per_slice, tq - row0);
    slices.push_back(math_attention_rows(q.narrow(-2, row0, rows), k, v, options, row0, tq));
  }
  return at::cat(slices, -2);
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
