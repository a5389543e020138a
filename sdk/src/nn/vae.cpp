// AutoencoderKL: config, encoder/decoder built from the shared layers, tiled encode/decode.
#include "sdxlhost/nn/vae.hpp"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/job_scope.hpp"
#include "config_fields.hpp"
#include "weight_shapes.hpp"

namespace sdxlhost::nn {
namespace {

using nlohmann::json;

constexpr double kVaeEps = 1e-6;  // diffusers' AutoencoderKL uses eps 1e-6 in every norm

std::string idx(const std::string& prefix, std::size_t i) { return prefix + "." + std::to_string(i); }

[[noreturn]] void config_error(const std::string& key, const std::string& message) {
  detail::config_field_error("vae", key, message);
}

[[noreturn]] void bad_input(const std::string& field, const std::string& message) {
  throw sdk::Error(sdk::ErrorCode::ValidationError, "vae input: " + message, field);
}

template <class T>
T value_or(const json& config, const std::string& key, T fallback) {
  return detail::config_value_or<T>(config, key, fallback, "vae");
}

void require_all(const json& config, const std::string& key, const std::string& expected) {
  auto it = config.find(key);
  if (it == config.end()) return;
  if (!it->is_array()) config_error(key, "must be a list");
  for (const auto& v : *it) {
    if (v != expected) config_error(key, "contains " + v.dump() + "; only " + expected + " is supported");
  }
}

const at::Tensor& required(const TensorMap& w, const std::string& key) {
  return detail::required_for_config(w, key, "vae");
}

/// The VAE's single-head self-attention over all pixels, with a GroupNorm and a residual.
struct SpatialAttention {
  GroupNorm group_norm;
  Attention attention;
  void bind(WeightBinder& b, const std::string& prefix, std::int64_t channels, std::int64_t groups) {
    group_norm.bind(b, prefix + ".group_norm", channels, groups, kVaeEps);
    attention.bind(b, prefix, channels, channels, 1, true);
  }
  at::Tensor forward(const at::Tensor& x) const {
    const std::int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
    at::Tensor tokens = group_norm.forward(x).reshape({n, c, h * w}).transpose(1, 2);
    at::Tensor out = attention.forward(tokens, at::Tensor());
    return out.transpose(1, 2).reshape({n, c, h, w}) + x;
  }
};

/// UNetMidBlock2D without time embedding: resnet, attention, resnet.
struct MidBlock {
  ResnetBlock2D resnet_0, resnet_1;
  bool has_attention = true;
  SpatialAttention attention;
  void bind(WeightBinder& b, const std::string& prefix, std::int64_t channels, std::int64_t groups,
            bool with_attention) {
    resnet_0.bind(b, prefix + ".resnets.0", channels, channels, 0, groups, kVaeEps);
    has_attention = with_attention;
    if (with_attention) attention.bind(b, prefix + ".attentions.0", channels, groups);
    resnet_1.bind(b, prefix + ".resnets.1", channels, channels, 0, groups, kVaeEps);
  }
  at::Tensor forward(const at::Tensor& x) const {
    at::Tensor h = resnet_0.forward(x, at::Tensor());
    if (has_attention) h = attention.forward(h);
    return resnet_1.forward(h, at::Tensor());
  }
};

struct EncoderLevel {
  std::vector<ResnetBlock2D> resnets;
  bool has_downsampler = false;
  Downsample2D downsampler;
};

struct DecoderLevel {
  std::vector<ResnetBlock2D> resnets;
  bool has_upsampler = false;
  Upsample2D upsampler;
};

/// Linear ramp weights for one axis of a tile: 1 inside, rising across `ramp` pixels at edges
/// shared with a neighbour (not at the image border).
at::Tensor ramp_weights(std::int64_t length, std::int64_t ramp, bool ramp_start, bool ramp_end,
                        const at::TensorOptions& options) {
  at::Tensor w = at::ones({length}, options);
  if (ramp <= 0) return w;
  at::Tensor rise = (at::arange(1, ramp + 1, options)) / static_cast<double>(ramp + 1);
  if (ramp_start) w.slice(0, 0, ramp).copy_(rise);
  if (ramp_end) w.slice(0, length - ramp, length).copy_(rise.flip({0}));
  return w;
}

/// Start positions of tiles of `tile` covering `size` with at least `overlap` between them.
std::vector<std::int64_t> tile_starts(std::int64_t size, std::int64_t tile, std::int64_t overlap) {
  if (size <= tile) return {0};
  std::vector<std::int64_t> starts;
  const std::int64_t step = tile - overlap;
  for (std::int64_t s = 0;; s += step) {
    if (s + tile >= size) {
      starts.push_back(size - tile);
      break;
    }
    starts.push_back(s);
  }
  return starts;
}

/// Runs `fn` on overlapping tiles of x (input tile `tile`, overlap `overlap`, both in input
/// pixels) and blends the outputs, which are `scale` times the input size (scale = out / in as a
/// ratio num/den), with linear ramps across the overlaps.
template <class Fn>
at::Tensor tiled(const at::Tensor& x, std::int64_t tile, std::int64_t overlap, std::int64_t num,
                 std::int64_t den, Fn&& fn) {
  const std::int64_t height = x.size(2), width = x.size(3);
  const auto ys = tile_starts(height, tile, overlap);
  const auto xs = tile_starts(width, tile, overlap);
  at::Tensor sum, weight_sum;
  for (std::size_t yi = 0; yi < ys.size(); ++yi) {
    for (std::size_t xi = 0; xi < xs.size(); ++xi) {
      const std::int64_t th = std::min(tile, height), tw = std::min(tile, width);
      sdk::check_cancelled();
      at::Tensor out = fn(x.slice(2, ys[yi], ys[yi] + th).slice(3, xs[xi], xs[xi] + tw));
      sdk::report_detail("vae_tiles", static_cast<int>(yi * xs.size() + xi + 1), static_cast<int>(ys.size() * xs.size()));
      const auto options = out.options().dtype(at::kFloat);
      if (!sum.defined()) {
        sum = at::zeros({out.size(0), out.size(1), height * num / den, width * num / den}, options);
        weight_sum = at::zeros({1, 1, sum.size(2), sum.size(3)}, options);
      }
      const std::int64_t ramp = overlap * num / den;
      at::Tensor wy = ramp_weights(out.size(2), ramp, yi > 0, yi + 1 < ys.size(), options);
      at::Tensor wx = ramp_weights(out.size(3), ramp, xi > 0, xi + 1 < xs.size(), options);
      at::Tensor w = (wy.unsqueeze(1) * wx.unsqueeze(0)).unsqueeze(0).unsqueeze(0);
      const std::int64_t oy = ys[yi] * num / den, ox = xs[xi] * num / den;
      auto region = [&](at::Tensor& t) {
        return t.slice(2, oy, oy + out.size(2)).slice(3, ox, ox + out.size(3));
      };
      region(sum).add_(out.to(at::kFloat) * w);
      region(weight_sum).add_(w);
    }
  }
  return sum / weight_sum;
}

}  // namespace

// ---- VaeConfig ---------------------------------------------------------------------------------

std::int64_t VaeConfig::downscale_factor() const {
  return std::int64_t{1} << (block_out_channels.empty() ? 0 : block_out_channels.size() - 1);
}

VaeConfig VaeConfig::from_json(const json& config) {
  if (!config.is_object()) config_error("(root)", "must be a JSON object");
  VaeConfig c;
  c.block_out_channels = value_or<std::vector<std::int64_t>>(config, "block_out_channels", {64});
  if (c.block_out_channels.empty()) config_error("block_out_channels", "must not be empty");
  c.in_channels = value_or<std::int64_t>(config, "in_channels", 3);
  c.out_channels = value_or<std::int64_t>(config, "out_channels", 3);
  c.latent_channels = value_or<std::int64_t>(config, "latent_channels", 4);
  c.layers_per_block = value_or<std::int64_t>(config, "layers_per_block", 1);
  c.norm_num_groups = value_or<std::int64_t>(config, "norm_num_groups", 32);
  c.mid_block_attention = value_or<bool>(config, "mid_block_add_attention", true);
  c.scaling_factor = value_or<double>(config, "scaling_factor", 0.18215);
  c.force_upcast = value_or<bool>(config, "force_upcast", true);
  c.sample_size = value_or<std::int64_t>(config, "sample_size", 32);
  require_all(config, "down_block_types", "DownEncoderBlock2D");
  require_all(config, "up_block_types", "UpDecoderBlock2D");
  if (value_or<std::string>(config, "act_fn", "silu") != "silu") config_error("act_fn", "must be silu");
  if (!value_or<bool>(config, "use_quant_conv", true) || !value_or<bool>(config, "use_post_quant_conv", true)) {
    config_error("use_quant_conv", "false is not supported");
  }
  if (value_or<double>(config, "shift_factor", 0.0) != 0.0) {
    config_error("shift_factor", "is not supported (SDXL has none)");
  }
  if (c.scaling_factor <= 0) config_error("scaling_factor", "must be positive");
  return c;
}

VaeConfig VaeConfig::infer(const TensorMap& w) {
  VaeConfig c;
  const std::int64_t levels = detail::count_indexed(w, "encoder.down_blocks.", ".resnets.0.conv1.weight");
  if (levels == 0) required(w, "encoder.down_blocks.0.resnets.0.conv1.weight");
  c.block_out_channels.clear();
  for (std::int64_t i = 0; i < levels; ++i) {
    c.block_out_channels.push_back(
        required(w, "encoder.down_blocks." + std::to_string(i) + ".resnets.0.conv1.weight").size(0));
  }
  c.layers_per_block = detail::count_indexed(w, "encoder.down_blocks.0.resnets.", ".conv1.weight");
  c.in_channels = required(w, "encoder.conv_in.weight").size(1);
  c.out_channels = required(w, "decoder.conv_out.weight").size(0);
  c.latent_channels = required(w, "post_quant_conv.weight").size(0);
  c.mid_block_attention = w.contains("encoder.mid_block.attentions.0.to_q.weight");
  return c;
}

json VaeConfig::to_json() const {
  return json{{"_class_name", "AutoencoderKL"},
              {"act_fn", "silu"},
              {"block_out_channels", block_out_channels},
              {"down_block_types", std::vector<std::string>(block_out_channels.size(), "DownEncoderBlock2D")},
              {"up_block_types", std::vector<std::string>(block_out_channels.size(), "UpDecoderBlock2D")},
              {"force_upcast", force_upcast},
              {"in_channels", in_channels},
              {"latent_channels", latent_channels},
              {"layers_per_block", layers_per_block},
              {"mid_block_add_attention", mid_block_attention},
              {"norm_num_groups", norm_num_groups},
              {"out_channels", out_channels},
              {"sample_size", sample_size},
              {"scaling_factor", scaling_factor}};
}

at::Tensor LatentDistribution::sample(const at::Tensor& eps) const {
  if (!eps.defined() || eps.sizes() != mean.sizes()) {
    throw sdk::Error(sdk::ErrorCode::ValidationError, "vae: the noise must be shaped like the mean",
                     "eps");
  }
  return mean + std * eps.to(mean.options());
}

// ---- the model ---------------------------------------------------------------------------------

struct AutoencoderKL::Blocks {
  Conv2d enc_conv_in;
  std::vector<EncoderLevel> enc_levels;
  MidBlock enc_mid;
  GroupNorm enc_norm_out;
  Conv2d enc_conv_out;
  Conv2d quant_conv;
  Conv2d post_quant_conv;
  Conv2d dec_conv_in;
  MidBlock dec_mid;
  std::vector<DecoderLevel> dec_levels;
  GroupNorm dec_norm_out;
  Conv2d dec_conv_out;

  void bind(WeightBinder& b, const VaeConfig& c);
};

void AutoencoderKL::Blocks::bind(WeightBinder& b, const VaeConfig& c) {
  const auto& ch = c.block_out_channels;
  const std::size_t levels = ch.size();
  const std::int64_t groups = c.norm_num_groups;
  enc_conv_in.bind(b, "encoder.conv_in", c.in_channels, ch[0], 3);
  enc_levels.resize(levels);
  std::int64_t out = ch[0];
  for (std::size_t i = 0; i < levels; ++i) {
    const std::int64_t in = out;
    out = ch[i];
    const std::string prefix = idx("encoder.down_blocks", i);
    EncoderLevel& level = enc_levels[i];
    level.resnets.resize(static_cast<std::size_t>(c.layers_per_block));
    for (std::size_t j = 0; j < level.resnets.size(); ++j) {
      level.resnets[j].bind(b, idx(prefix + ".resnets", j), j == 0 ? in : out, out, 0, groups, kVaeEps);
    }
    level.has_downsampler = i + 1 < levels;
    if (level.has_downsampler) level.downsampler.bind(b, prefix + ".downsamplers.0", out, true);
  }
  enc_mid.bind(b, "encoder.mid_block", ch.back(), groups, c.mid_block_attention);
  enc_norm_out.bind(b, "encoder.conv_norm_out", ch.back(), groups, kVaeEps);
  enc_conv_out.bind(b, "encoder.conv_out", ch.back(), 2 * c.latent_channels, 3);
  quant_conv.bind(b, "quant_conv", 2 * c.latent_channels, 2 * c.latent_channels, 1);
  post_quant_conv.bind(b, "post_quant_conv", c.latent_channels, c.latent_channels, 1);

  dec_conv_in.bind(b, "decoder.conv_in", c.latent_channels, ch.back(), 3);
  dec_mid.bind(b, "decoder.mid_block", ch.back(), groups, c.mid_block_attention);
  dec_levels.resize(levels);
  out = ch.back();
  for (std::size_t i = 0; i < levels; ++i) {
    const std::int64_t prev = out;
    out = ch[levels - 1 - i];
    const std::string prefix = idx("decoder.up_blocks", i);
    DecoderLevel& level = dec_levels[i];
    level.resnets.resize(static_cast<std::size_t>(c.layers_per_block + 1));
    for (std::size_t j = 0; j < level.resnets.size(); ++j) {
      level.resnets[j].bind(b, idx(prefix + ".resnets", j), j == 0 ? prev : out, out, 0, groups, kVaeEps);
    }
    level.has_upsampler = i + 1 < levels;
    if (level.has_upsampler) level.upsampler.bind(b, prefix + ".upsamplers.0", out);
  }
  dec_norm_out.bind(b, "decoder.conv_norm_out", ch[0], groups, kVaeEps);
  dec_conv_out.bind(b, "decoder.conv_out", ch[0], c.out_channels, 3);
}

AutoencoderKL::AutoencoderKL(VaeConfig config, at::ScalarType dtype, at::Device device)
    : config_(std::move(config)), dtype_(dtype), device_(device), blocks_(std::make_unique<Blocks>()) {}

AutoencoderKL::~AutoencoderKL() = default;

std::shared_ptr<AutoencoderKL> AutoencoderKL::load(const VaeConfig& config, const TensorMap& weights,
                                                   at::ScalarType dtype, at::Device device) {
  if (config.block_out_channels.empty()) {
    throw sdk::Error(sdk::ErrorCode::ModelLoadError, "vae config: no block_out_channels");
  }
  // force_upcast: the SDXL VAE overflows in float16, so diffusers decodes in float32.
  const at::ScalarType compute = config.force_upcast && dtype == at::kHalf ? at::kFloat : dtype;
  std::shared_ptr<AutoencoderKL> model(new AutoencoderKL(config, compute, device));
  WeightBinder binder(weights, compute, device, "vae");
  model->blocks_->bind(binder, model->config_);
  binder.check_all_used();
  model->slots_ = binder.slots();
  return model;
}

std::shared_ptr<AutoencoderKL> AutoencoderKL::create(const VaeConfig& config,
                                                     const WeightBinder::Initializer& init,
                                                     at::ScalarType dtype, at::Device device) {
  if (config.block_out_channels.empty()) {
    throw sdk::Error(sdk::ErrorCode::ModelLoadError, "vae config: no block_out_channels");
  }
  std::shared_ptr<AutoencoderKL> model(new AutoencoderKL(config, dtype, device));
  WeightBinder binder(init, dtype, device, "vae");
  model->blocks_->bind(binder, model->config_);
  model->slots_ = binder.slots();
  return model;
}

TensorMap AutoencoderKL::state_dict() const {
  TensorMap map("vae");
  for (const auto& [name, slot] : slots_) map.set(name, *slot);
  return map;
}

at::Tensor AutoencoderKL::encode_parameters(const at::Tensor& image, const TraceFn& trace) const {
  const Blocks& m = *blocks_;
  const std::int64_t factor = config_.downscale_factor();
  if (!image.defined() || image.dim() != 4 || image.size(1) != config_.in_channels ||
      image.size(2) % factor != 0 || image.size(3) % factor != 0 || image.size(2) == 0) {
    bad_input("image", "image must be (N, " + std::to_string(config_.in_channels) +
                           ", H, W) with H and W multiples of " + std::to_string(factor));
  }
  auto record = [&](const std::string& name, const at::Tensor& v) {
    if (trace) trace(name, v);
  };
  at::Tensor h = m.enc_conv_in.forward(image.to(device_, dtype_));
  record("encoder.conv_in", h);
  for (std::size_t i = 0; i < m.enc_levels.size(); ++i) {
    const EncoderLevel& level = m.enc_levels[i];
    for (const auto& resnet : level.resnets) {
      h = resnet.forward(h, at::Tensor());
      sdk::check_cancelled();  // a cancelled job stops within one block (sdk/job_scope.hpp)
    }
    if (level.has_downsampler) h = level.downsampler.forward(h);
    sdk::report_detail("vae_encode", static_cast<int>(i) + 1, static_cast<int>(m.enc_levels.size()) + 1);
    record(idx("encoder.down_blocks", i), h);
  }
  h = m.enc_mid.forward(h);
  sdk::check_cancelled();
  record("encoder.mid_block", h);
  h = m.enc_conv_out.forward(at::silu(m.enc_norm_out.forward(h)));
  record("encoder", h);
  h = m.quant_conv.forward(h);
  record("quant_conv", h);
  return h;
}

namespace {
LatentDistribution distribution(const at::Tensor& parameters) {
  LatentDistribution d;
  d.parameters = parameters;
  const auto halves = parameters.chunk(2, 1);
  d.mean = halves[0];
  d.logvar = at::clamp(halves[1], -30.0, 20.0);
  d.std = at::exp(0.5 * d.logvar);
  return d;
}
}  // namespace

LatentDistribution AutoencoderKL::encode(const at::Tensor& image, const TraceFn& trace) const {
  return distribution(encode_parameters(image, trace));
}

at::Tensor AutoencoderKL::decode(const at::Tensor& latents, const TraceFn& trace) const {
  const Blocks& m = *blocks_;
  if (!latents.defined() || latents.dim() != 4 || latents.size(1) != config_.latent_channels ||
      latents.size(2) == 0 || latents.size(3) == 0) {
    bad_input("latents", "latents must be (N, " + std::to_string(config_.latent_channels) + ", h, w)");
  }
  auto record = [&](const std::string& name, const at::Tensor& v) {
    if (trace) trace(name, v);
  };
  at::Tensor h = m.post_quant_conv.forward(latents.to(device_, dtype_));
  record("post_quant_conv", h);
  h = m.dec_conv_in.forward(h);
  record("decoder.conv_in", h);
  h = m.dec_mid.forward(h);
  sdk::check_cancelled();  // a cancelled job stops within one block (sdk/job_scope.hpp)
  const int parts = static_cast<int>(m.dec_levels.size()) + 1;
  sdk::report_detail("vae_decode", 1, parts);
  record("decoder.mid_block", h);
  for (std::size_t i = 0; i < m.dec_levels.size(); ++i) {
    const DecoderLevel& level = m.dec_levels[i];
    for (const auto& resnet : level.resnets) {
      h = resnet.forward(h, at::Tensor());
      sdk::check_cancelled();
    }
    if (level.has_upsampler) h = level.upsampler.forward(h);
    sdk::report_detail("vae_decode", static_cast<int>(i) + 2, parts);
    record(idx("decoder.up_blocks", i), h);
  }
  h = m.dec_conv_out.forward(at::silu(m.dec_norm_out.forward(h)));
  record("decoder", h);
  return h;
}

namespace {
void check_tiling(const VaeTiling& tiling, std::int64_t factor) {
  if (tiling.tile <= 0 || tiling.overlap < 0 || tiling.overlap * 2 > tiling.tile ||
      tiling.tile % factor != 0 || tiling.overlap % factor != 0) {
    throw sdk::Error(sdk::ErrorCode::ValidationError,
                     "vae tiling: tile (" + std::to_string(tiling.tile) + ") and overlap (" +
                         std::to_string(tiling.overlap) + ") must be multiples of " +
                         std::to_string(factor) + " with 0 <= 2 x overlap <= tile",
                     "tiling");
  }
}
}  // namespace

LatentDistribution AutoencoderKL::encode_tiled(const at::Tensor& image, const VaeTiling& tiling) const {
  const std::int64_t f = config_.downscale_factor();
  check_tiling(tiling, f);
  if (!image.defined() || image.dim() != 4) bad_input("image", "image must be (N, C, H, W)");
  at::Tensor params = tiled(image, tiling.tile, tiling.overlap, 1, f, [&](const at::Tensor& tile) {
    return encode_parameters(tile, {});
  });
  return distribution(params.to(dtype_));
}

at::Tensor AutoencoderKL::decode_tiled(const at::Tensor& latents, const VaeTiling& tiling) const {
  const std::int64_t f = config_.downscale_factor();
  check_tiling(tiling, f);
  if (!latents.defined() || latents.dim() != 4) bad_input("latents", "latents must be (N, C, h, w)");
  return tiled(latents, tiling.tile / f, tiling.overlap / f, f, 1,
               [&](const at::Tensor& tile) { return decode(tile, {}); })
      .to(dtype_);
}

std::vector<std::string> AutoencoderKL::parameter_names() const {
  std::vector<std::string> names;
  for (const auto& [name, slot] : slots_) names.push_back(name);
  return names;
}

std::uint64_t AutoencoderKL::parameter_bytes() const {
  std::uint64_t bytes = 0;
  for (const auto& [name, slot] : slots_) bytes += slot->nbytes();
  return bytes;
}

}  // namespace sdxlhost::nn
