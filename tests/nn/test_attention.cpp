// Attention: the explicit softmax path and libtorch's SDPA agree (public >= 2.0, private on 1.13).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cmath>

#include "sdxlhost/nn/attention.hpp"

using namespace sdxlhost::nn;

namespace {

struct Qkv {
  at::Tensor q, k, v;
};

Qkv random_qkv(int64_t tq, int64_t tk, int64_t d, uint64_t seed) {
  at::manual_seed(seed);
  return {at::randn({2, 3, tq, d}), at::randn({2, 3, tk, d}), at::randn({2, 3, tk, d})};
}

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

/// softmax(q k^T / sqrt(d)) v written out with loops' worth of plain ops, as the reference.
at::Tensor reference(const Qkv& x, bool causal) {
  at::Tensor scores = at::matmul(x.q, x.k.transpose(-2, -1)) / std::sqrt(static_cast<double>(x.q.size(-1)));
  if (causal) scores = scores + at::full({x.q.size(2), x.k.size(2)}, -1e30).triu(1);
  return at::matmul(scores.softmax(-1), x.v);
}

}  // namespace

TEST(Attention, MathPathMatchesTheFormula) {
  const Qkv x = random_qkv(7, 11, 16, 1);
  AttentionOptions math;
  math.backend = AttentionBackend::Math;
  EXPECT_LT(max_diff(scaled_dot_product_attention(x.q, x.k, x.v, math), reference(x, false)), 1e-5);
  const Qkv square = random_qkv(9, 9, 8, 2);
  math.causal = true;
  EXPECT_LT(max_diff(scaled_dot_product_attention(square.q, square.k, square.v, math), reference(square, true)), 1e-5);
}

TEST(Attention, MathAndFusedAgreeWhereBothExist) {
  ASSERT_TRUE(has_fused_sdpa()) << "libtorch 1.13 has the private SDPA; >= 2.0 the public one";
  for (bool causal : {false, true}) {
    const Qkv x = random_qkv(13, 13, 32, 3);
    AttentionOptions math, fused;
    math.backend = AttentionBackend::Math;
    fused.backend = AttentionBackend::Fused;
    math.causal = fused.causal = causal;
    EXPECT_LT(max_diff(scaled_dot_product_attention(x.q, x.k, x.v, math),
                       scaled_dot_product_attention(x.q, x.k, x.v, fused)), 2e-6) << causal;
  }
  // Additive mask and a custom scale.
  const Qkv x = random_qkv(5, 8, 4, 4);
  AttentionOptions math, fused;
  math.backend = AttentionBackend::Math;
  fused.backend = AttentionBackend::Fused;
  math.mask = fused.mask = at::randn({5, 8});
  math.scale = fused.scale = 0.3;
  EXPECT_LT(max_diff(scaled_dot_product_attention(x.q, x.k, x.v, math),
                     scaled_dot_product_attention(x.q, x.k, x.v, fused)), 2e-6);
  // Boolean mask (true = attend) equals an additive -inf mask.
  at::Tensor keep = at::rand({5, 8}) > 0.3;
  keep.select(1, 0).fill_(true);
  AttentionOptions boolean, additive;
  boolean.backend = additive.backend = AttentionBackend::Math;
  boolean.mask = keep;
  additive.mask = at::zeros({5, 8}).masked_fill(keep.logical_not(), -INFINITY);
  EXPECT_LT(max_diff(scaled_dot_product_attention(x.q, x.k, x.v, boolean),
                     scaled_dot_product_attention(x.q, x.k, x.v, additive)), 1e-6);
}

TEST(Attention, AutoUsesThePublicKernelOnlyWhereItExists) {
  const Qkv x = random_qkv(6, 6, 8, 5);
  AttentionOptions math;
  math.backend = AttentionBackend::Math;
  const at::Tensor auto_out = scaled_dot_product_attention(x.q, x.k, x.v);
  if (!has_public_sdpa()) EXPECT_TRUE(at::equal(auto_out, scaled_dot_product_attention(x.q, x.k, x.v, math)));
  EXPECT_LT(max_diff(auto_out, reference(x, false)), 1e-5);
}

TEST(Attention, SlicedQueriesGiveTheSameResult) {
  const Qkv x = random_qkv(37, 29, 8, 6);
  at::Tensor keep = at::rand({37, 29}) > 0.2;
  keep.select(1, 0).fill_(true);
  for (int variant = 0; variant < 3; ++variant) {
    AttentionOptions whole, sliced;
    whole.backend = sliced.backend = AttentionBackend::Math;
    whole.max_scores_bytes = 0;
    sliced.max_scores_bytes = 2 * 3 * 29 * 4 * 5;  // five query rows per slice
    if (variant == 1) {
      whole.mask = sliced.mask = at::randn({37, 29});
    } else if (variant == 2) {
      whole.mask = sliced.mask = keep;
    }
    EXPECT_LT(max_diff(scaled_dot_product_attention(x.q, x.k, x.v, whole),
                       scaled_dot_product_attention(x.q, x.k, x.v, sliced)), 1e-6) << variant;
  }
  const Qkv square = random_qkv(23, 23, 8, 7);
  AttentionOptions whole, sliced;
  whole.backend = sliced.backend = AttentionBackend::Math;
  whole.causal = sliced.causal = true;
  whole.max_scores_bytes = 0;
  sliced.max_scores_bytes = 2 * 3 * 23 * 4 * 4;
  EXPECT_LT(max_diff(scaled_dot_product_attention(square.q, square.k, square.v, whole),
                     scaled_dot_product_attention(square.q, square.k, square.v, sliced)), 1e-6);
}
