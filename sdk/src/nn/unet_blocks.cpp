// The layers shared by the UNet and the VAE: plain tensors + at:: functions.
#include "sdxlhost/nn/unet_blocks.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <sstream>
#include <utility>

#include "sdxlhost/nn/attention.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/job_scope.hpp"
#include "weight_conversion.hpp"

namespace sdxlhost::nn {
namespace {

std::string shape_text(at::IntArrayRef shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? "," : "") << shape[i];
  out << ']';
  return out.str();
}

}  // namespace

// ---- WeightBinder ------------------------------------------------------------------------------

WeightBinder::WeightBinder(const TensorMap& weights, at::ScalarType dtype, at::Device device,
                           std::string what)
    : weights_(&weights), dtype_(dtype), device_(device), what_(std::move(what)) {}

WeightBinder::WeightBinder(Initializer init, at::ScalarType dtype, at::Device device, std::string what)
    : init_(std::move(init)), dtype_(dtype), device_(device), what_(std::move(what)) {}

void WeightBinder::bind(const std::string& key, at::Tensor& slot, std::vector<std::int64_t> shape) {
  // Model loading can take minutes: it stops when its job is cancelled and says how far it is.
  sdk::check_cancelled();
  if (slots_.size() % 16 == 0)
    sdk::report_detail("load_weights", static_cast<int>(slots_.size()) + 1,
                       weights_ ? static_cast<int>(weights_->size()) : 0);
  if (weights_ == nullptr) {
    slot = init_(key, shape).to(device_, dtype_);
    if (slot.sizes() != at::IntArrayRef(shape)) {
      throw sdk::Error(sdk::ErrorCode::InternalError, what_ + ": initializer gave a wrong shape for " + key);
    }
    slots_[key] = &slot;
    return;
  }
  const at::Tensor* found = weights_->find(key);
  if (found == nullptr) {
    throw sdk::Error(sdk::ErrorCode::ModelLoadError,
                     what_ + ": weight '" + key + "' is missing from " + weights_->source());
  }
  if (found->sizes() != at::IntArrayRef(shape)) {
    throw sdk::Error(sdk::ErrorCode::ModelLoadError,
                     what_ + ": weight '" + key + "' in " + weights_->source() + " has shape " +
                         shape_text(found->sizes()) + ", the config expects " + shape_text(shape));
  }
  slot = detail::convert_weight(*found, dtype_, device_);
  slots_[key] = &slot;
}

bool WeightBinder::has(const std::string& key) const {
  return weights_ == nullptr || weights_->contains(key);
}

void WeightBinder::check_all_used() const {
  if (weights_ == nullptr) return;
  std::vector<std::string> unused;
  for (const auto& [name, tensor] : *weights_) {
    if (slots_.count(name) == 0) unused.push_back(name);
  }
  if (unused.empty()) return;
  std::string list;
  for (size_t i = 0; i < unused.size() && i < 5; ++i) list += (i ? ", " : "") + unused[i];
  if (unused.size() > 5) list += ", ...";
  throw sdk::Error(sdk::ErrorCode::ModelLoadError,
                   what_ + ": " + std::to_string(unused.size()) + " weight(s) in " +
                       weights_->source() + " do not fit the model config: " + list);
}

// ---- simple layers -----------------------------------------------------------------------------

void Linear::bind(WeightBinder& b, const std::string& prefix, std::int64_t in, std::int64_t out,
                  bool with_bias) {
  b.bind(prefix + ".weight", weight, {out, in});
  if (with_bias) b.bind(prefix + ".bias", bias, {out});
}

at::Tensor Linear::forward(const at::Tensor& x) const { return at::linear(x, weight, bias); }

void Conv2d::bind(WeightBinder& b, const std::string& prefix, std::int64_t in, std::int64_t out,
                  std::int64_t kernel, std::int64_t stride_in, std::int64_t padding_in) {
  b.bind(prefix + ".weight", weight, {out, in, kernel, kernel});
  b.bind(prefix + ".bias", bias, {out});
  stride = stride_in;
  padding = padding_in < 0 ? kernel / 2 : padding_in;
}

at::Tensor Conv2d::forward(const at::Tensor& x) const {
  return at::conv2d(x, weight, bias, {stride, stride}, {padding, padding});
}

void GroupNorm::bind(WeightBinder& b, const std::string& prefix, std::int64_t channels,
                     std::int64_t groups_in, double eps_in) {
  if (groups_in <= 0 || channels % groups_in != 0) {
    throw sdk::Error(sdk::ErrorCode::ModelLoadError,
                     prefix + ": " + std::to_string(channels) +
                         " channels cannot be split into " + std::to_string(groups_in) + " groups");
  }
  b.bind(prefix + ".weight", weight, {channels});
  b.bind(prefix + ".bias", bias, {channels});
  groups = groups_in;
  eps = eps_in;
}

at::Tensor GroupNorm::forward(const at::Tensor& x) const {
  return at::group_norm(x, groups, weight, bias, eps);
}

void LayerNorm::bind(WeightBinder& b, const std::string& prefix, std::int64_t dim, double eps_in) {
  b.bind(prefix + ".weight", weight, {dim});
  b.bind(prefix + ".bias", bias, {dim});
  eps = eps_in;
}

at::Tensor LayerNorm::forward(const at::Tensor& x) const {
  return at::layer_norm(x, {x.size(-1)}, weight, bias, eps);
}

// ---- ResnetBlock2D -----------------------------------------------------------------------------

void ResnetBlock2D::bind(WeightBinder& b, const std::string& prefix, std::int64_t in,
                         std::int64_t out, std::int64_t temb_channels, std::int64_t groups,
                         double eps) {
  norm1.bind(b, prefix + ".norm1", in, groups, eps);
  conv1.bind(b, prefix + ".conv1", in, out, 3);
  if (temb_channels > 0) time_emb_proj.bind(b, prefix + ".time_emb_proj", temb_channels, out);
  norm2.bind(b, prefix + ".norm2", out, groups, eps);
  conv2.bind(b, prefix + ".conv2", out, out, 3);
  if (in != out) conv_shortcut.bind(b, prefix + ".conv_shortcut", in, out, 1);
}

at::Tensor ResnetBlock2D::forward(const at::Tensor& x, const at::Tensor& temb) const {
  at::Tensor h = conv1.forward(at::silu(norm1.forward(x)));
  if (time_emb_proj.weight.defined() && temb.defined()) {
    h = h + time_emb_proj.forward(at::silu(temb)).unsqueeze(-1).unsqueeze(-1);
  }
  h = conv2.forward(at::silu(norm2.forward(h)));
  const at::Tensor shortcut = conv_shortcut.weight.defined() ? conv_shortcut.forward(x) : x;
  return shortcut + h;
}

// ---- Attention ---------------------------------------------------------------------------------

void Attention::bind(WeightBinder& b, const std::string& prefix, std::int64_t query_dim,
                     std::int64_t context_dim, std::int64_t heads_in, bool qkv_bias) {
  if (heads_in <= 0 || query_dim % heads_in != 0) {
    throw sdk::Error(sdk::ErrorCode::ModelLoadError,
                     prefix + ": " + std::to_string(query_dim) + " channels cannot be split into " +
                         std::to_string(heads_in) + " attention heads");
  }
  to_q.bind(b, prefix + ".to_q", query_dim, query_dim, qkv_bias);
  to_k.bind(b, prefix + ".to_k", context_dim, query_dim, qkv_bias);
  to_v.bind(b, prefix + ".to_v", context_dim, query_dim, qkv_bias);
  to_out.bind(b, prefix + ".to_out.0", query_dim, query_dim, true);
  heads = heads_in;
}

at::Tensor Attention::forward(const at::Tensor& x, const at::Tensor& context) const {
  const at::Tensor& source = context.defined() ? context : x;
  const std::int64_t batch = x.size(0);
  const std::int64_t channels = to_q.weight.size(0);
  const std::int64_t head_dim = channels / heads;
  // (N, L, C) -> (N, heads, L, head_dim)
  auto split = [&](const at::Tensor& t) {
    return t.view({batch, t.size(1), heads, head_dim}).transpose(1, 2);
  };
  at::Tensor out = scaled_dot_product_attention(split(to_q.forward(x)), split(to_k.forward(source)),
                             split(to_v.forward(source)));
  out = out.transpose(1, 2).reshape({batch, x.size(1), channels});
  return to_out.forward(out);
}

// ---- BasicTransformerBlock / Transformer2D -----------------------------------------------------

void BasicTransformerBlock::bind(WeightBinder& b, const std::string& prefix, std::int64_t dim,
                                 std::int64_t context_dim, std::int64_t heads) {
  norm1.bind(b, prefix + ".norm1", dim, 1e-5);
  attn1.bind(b, prefix + ".attn1", dim, dim, heads, false);
  norm2.bind(b, prefix + ".norm2", dim, 1e-5);
  attn2.bind(b, prefix + ".attn2", dim, context_dim, heads, false);
  norm3.bind(b, prefix + ".norm3", dim, 1e-5);
  ff_in.bind(b, prefix + ".ff.net.0.proj", dim, dim * 4 * 2);
  ff_out.bind(b, prefix + ".ff.net.2", dim * 4, dim);
}

at::Tensor BasicTransformerBlock::forward(const at::Tensor& x, const at::Tensor& context) const {
  at::Tensor h = x + attn1.forward(norm1.forward(x), at::Tensor());
  h = h + attn2.forward(norm2.forward(h), context);
  // GEGLU: the projection holds [value | gate]; value * gelu(gate) (exact erf GELU).
  const auto parts = ff_in.forward(norm3.forward(h)).chunk(2, -1);
  return h + ff_out.forward(parts[0] * at::gelu(parts[1]));
}

void Transformer2D::bind(WeightBinder& b, const std::string& prefix, std::int64_t channels,
                         std::int64_t context_dim, std::int64_t heads, std::int64_t depth,
                         bool linear, std::int64_t groups) {
  norm.bind(b, prefix + ".norm", channels, groups, 1e-6);
  linear_projection = linear;
  if (linear) {
    proj_in_linear.bind(b, prefix + ".proj_in", channels, channels);
    proj_out_linear.bind(b, prefix + ".proj_out", channels, channels);
  } else {
    proj_in_conv.bind(b, prefix + ".proj_in", channels, channels, 1);
    proj_out_conv.bind(b, prefix + ".proj_out", channels, channels, 1);
  }
  blocks.resize(static_cast<size_t>(depth));
  for (std::int64_t i = 0; i < depth; ++i) {
    blocks[static_cast<size_t>(i)].bind(b, prefix + ".transformer_blocks." + std::to_string(i),
                                        channels, context_dim, heads);
  }
}

at::Tensor Transformer2D::forward(const at::Tensor& x, const at::Tensor& context) const {
  const std::int64_t n = x.size(0), c = x.size(1), height = x.size(2), width = x.size(3);
  at::Tensor h = norm.forward(x);
  auto to_tokens = [&](const at::Tensor& t) {
    return t.permute({0, 2, 3, 1}).reshape({n, height * width, c});
  };
  auto to_image = [&](const at::Tensor& t) {
    // back in the input's memory order (channels-last: the permuted view already is)
    return t.reshape({n, height, width, c}).permute({0, 3, 1, 2}).contiguous(x.suggest_memory_format());
  };
  if (linear_projection) {
    h = proj_in_linear.forward(to_tokens(h));
  } else {
    h = to_tokens(proj_in_conv.forward(h));
  }
  for (const auto& block : blocks) {
    h = block.forward(h, context);
    sdk::check_cancelled();  // SDXL has up to 10 transformer layers in one attention block
  }
  if (linear_projection) {
    h = to_image(proj_out_linear.forward(h));
  } else {
    h = proj_out_conv.forward(to_image(h));
  }
  return h + x;
}

// ---- resampling --------------------------------------------------------------------------------

void Downsample2D::bind(WeightBinder& b, const std::string& prefix, std::int64_t channels,
                        bool pad_rb) {
  pad_right_bottom = pad_rb;
  conv.bind(b, prefix + ".conv", channels, channels, 3, 2, pad_rb ? 0 : 1);
}

at::Tensor Downsample2D::forward(const at::Tensor& x) const {
  if (!pad_right_bottom) return conv.forward(x);
  return conv.forward(at::constant_pad_nd(x, {0, 1, 0, 1}, 0));
}

void Upsample2D::bind(WeightBinder& b, const std::string& prefix, std::int64_t channels) {
  conv.bind(b, prefix + ".conv", channels, channels, 3);
}

at::Tensor Upsample2D::forward(const at::Tensor& x, at::IntArrayRef size) const {
  std::vector<std::int64_t> target = size.empty()
                                         ? std::vector<std::int64_t>{x.size(2) * 2, x.size(3) * 2}
                                         : std::vector<std::int64_t>(size.begin(), size.end());
  // Nearest upsampling is not implemented for bf16 on every libtorch: go through float32 then.
  at::Tensor up = x.scalar_type() == at::kBFloat16
                      ? at::upsample_nearest2d(x.to(at::kFloat), target).to(x.scalar_type())
                      : at::upsample_nearest2d(x, target);
  return conv.forward(up);
}

// ---- time embedding ----------------------------------------------------------------------------

void TimestepEmbedding::bind(WeightBinder& b, const std::string& prefix, std::int64_t in,
                             std::int64_t out) {
  linear_1.bind(b, prefix + ".linear_1", in, out);
  linear_2.bind(b, prefix + ".linear_2", out, out);
}

at::Tensor TimestepEmbedding::forward(const at::Tensor& x) const {
  return linear_2.forward(at::silu(linear_1.forward(x)));
}

at::Tensor timestep_features(const at::Tensor& timesteps, std::int64_t dim, bool flip_sin_to_cos,
                             double shift) {
  const std::int64_t half = dim / 2;
  const auto options = at::TensorOptions().dtype(at::kFloat).device(timesteps.device());
  at::Tensor exponent =
      at::arange(0, half, options) * (-std::log(10000.0)) / (static_cast<double>(half) - shift);
  at::Tensor args = timesteps.to(at::kFloat).unsqueeze(1) * at::exp(exponent).unsqueeze(0);
  at::Tensor features = flip_sin_to_cos ? at::cat({at::cos(args), at::sin(args)}, -1)
                                        : at::cat({at::sin(args), at::cos(args)}, -1);
  if (dim % 2 == 1) features = at::constant_pad_nd(features, {0, 1}, 0);
  return features;
}

}  // namespace sdxlhost::nn
