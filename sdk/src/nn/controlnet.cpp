// SDXL ControlNetModel: the UNet's encoder half + conditioning embedding + zero convolutions.
#include "sdxlhost/nn/controlnet.hpp"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

#include "sdxlhost/sdk/error.hpp"
#include "config_fields.hpp"
#include "weight_shapes.hpp"

namespace sdxlhost::nn {
namespace {

using nlohmann::json;

std::string idx(const std::string& prefix, std::size_t i) { return prefix + "." + std::to_string(i); }

[[noreturn]] void bad_input(const std::string& field, const std::string& message) {
  throw sdk::Error(sdk::ErrorCode::ValidationError, "controlnet input: " + message, field);
}

[[noreturn]] void bad_config(const std::string& key, const std::string& message) {
  detail::config_field_error("controlnet", key, message);
}

/// A down block of the encoder: resnets (+ a transformer after each), optional downsampler.
struct EncoderDownBlock {
  std::vector<ResnetBlock2D> resnets;
  std::vector<Transformer2D> attentions;
  bool has_downsampler = false;
  Downsample2D downsampler;
};

/// diffusers' ControlNetConditioningEmbedding: conv_in, pairs of (3x3, 3x3 stride 2) convs, conv_out,
/// SiLU after every conv but the last.
struct ConditioningEmbedding {
  Conv2d conv_in;
  std::vector<Conv2d> blocks;
  Conv2d conv_out;

  void bind(WeightBinder& b, const std::string& prefix, const ControlNetConfig& c) {
    const auto& ch = c.conditioning_embedding_out_channels;
    conv_in.bind(b, prefix + ".conv_in", c.conditioning_channels, ch.front(), 3);
    for (std::size_t i = 0; i + 1 < ch.size(); ++i) {
      blocks.emplace_back();
      blocks.back().bind(b, idx(prefix + ".blocks", blocks.size() - 1), ch[i], ch[i], 3);
      blocks.emplace_back();
      blocks.back().bind(b, idx(prefix + ".blocks", blocks.size() - 1), ch[i], ch[i + 1], 3, 2);
    }
    conv_out.bind(b, prefix + ".conv_out", ch.back(), c.unet.block_out_channels.front(), 3);
  }

  at::Tensor forward(const at::Tensor& cond) const {
    at::Tensor x = at::silu(conv_in.forward(cond));
    for (const Conv2d& block : blocks) x = at::silu(block.forward(x));
    return conv_out.forward(x);
  }
};

}  // namespace

struct ControlNetModel::Blocks {
  TimestepEmbedding time_embedding;
  TimestepEmbedding add_embedding;
  Conv2d conv_in;
  ConditioningEmbedding cond_embedding;
  std::vector<EncoderDownBlock> down;
  ResnetBlock2D mid_resnet_0, mid_resnet_1;
  Transformer2D mid_attention;
  std::vector<Conv2d> zero_convs;  ///< controlnet_down_blocks.k, one per skip
  Conv2d mid_zero_conv;            ///< controlnet_mid_block

  void bind(WeightBinder& b, const ControlNetConfig& config);

 private:
  void add_zero_conv(WeightBinder& b, std::int64_t channels) {
    zero_convs.emplace_back();
    zero_convs.back().bind(b, idx("controlnet_down_blocks", zero_convs.size() - 1), channels,
                           channels, 1);
  }
};

void ControlNetModel::Blocks::bind(WeightBinder& b, const ControlNetConfig& config) {
  const UNetConfig& c = config.unet;
  const auto& channels = c.block_out_channels;
  const std::size_t levels = channels.size();
  const std::int64_t temb = c.time_embed_dim();
  const std::int64_t groups = c.norm_num_groups;
  const double eps = c.norm_eps;
  if (c.down_attention.size() != levels || c.transformer_depth.size() != levels ||
      c.attention_heads.size() != levels) {
    throw sdk::Error(sdk::ErrorCode::ModelLoadError, "controlnet config: per-level lists differ in length");
  }
  if (config.conditioning_embedding_out_channels.empty()) {
    bad_config("conditioning_embedding_out_channels", "must be a non-empty list");
  }

  time_embedding.bind(b, "time_embedding", channels[0], temb);
  if (c.text_time_embedding) {
    add_embedding.bind(b, "add_embedding", c.projection_class_embeddings_input_dim, temb);
  }
  conv_in.bind(b, "conv_in", c.in_channels, channels[0], 3);
  cond_embedding.bind(b, "controlnet_cond_embedding", config);
  add_zero_conv(b, channels[0]);

  std::int64_t out_ch = channels[0];
  down.resize(levels);
  for (std::size_t i = 0; i < levels; ++i) {
    const std::string prefix = idx("down_blocks", i);
    const std::int64_t in_ch = out_ch;
    out_ch = channels[i];
    EncoderDownBlock& block = down[i];
    block.resnets.resize(static_cast<std::size_t>(c.layers_per_block));
    if (c.down_attention[i]) block.attentions.resize(block.resnets.size());
    for (std::size_t j = 0; j < block.resnets.size(); ++j) {
      block.resnets[j].bind(b, idx(prefix + ".resnets", j), j == 0 ? in_ch : out_ch, out_ch, temb,
                            groups, eps);
      if (c.down_attention[i]) {
        block.attentions[j].bind(b, idx(prefix + ".attentions", j), out_ch, c.cross_attention_dim,
                                 c.attention_heads[i], c.transformer_depth[i],
                                 c.use_linear_projection, groups);
      }
      add_zero_conv(b, out_ch);
    }
    block.has_downsampler = i + 1 < levels;
    if (block.has_downsampler) {
      block.downsampler.bind(b, prefix + ".downsamplers.0", out_ch, false);
      add_zero_conv(b, out_ch);
    }
  }

  const std::int64_t mid_ch = channels.back();
  mid_resnet_0.bind(b, "mid_block.resnets.0", mid_ch, mid_ch, temb, groups, eps);
  mid_attention.bind(b, "mid_block.attentions.0", mid_ch, c.cross_attention_dim,
                     c.attention_heads.back(), c.mid_transformer_depth, c.use_linear_projection,
                     groups);
  mid_resnet_1.bind(b, "mid_block.resnets.1", mid_ch, mid_ch, temb, groups, eps);
  mid_zero_conv.bind(b, "controlnet_mid_block", mid_ch, mid_ch, 1);
}

// ---- ControlNetConfig ----------------------------------------------------------------------------

ControlNetConfig ControlNetConfig::from_json(const json& config) {
  if (!config.is_object()) bad_config("(root)", "must be a JSON object");
  // The encoder fields are a UNet's; a ControlNet config has no up blocks, so mirror the down
  // blocks for UNetConfig (the up-block fields are not used).
  json as_unet = config;
  if (!as_unet.contains("up_block_types")) {
    auto down = config.find("down_block_types");
    if (down == config.end() || !down->is_array()) bad_config("down_block_types", "must be a non-empty list");
    json up = json::array();
    for (auto it = down->rbegin(); it != down->rend(); ++it) {
      up.push_back(*it == "CrossAttnDownBlock2D" ? "CrossAttnUpBlock2D" : "UpBlock2D");
    }
    as_unet["up_block_types"] = up;
  }
  ControlNetConfig c;
  c.unet = UNetConfig::from_json(as_unet);
  c.conditioning_embedding_out_channels = detail::config_value_or<std::vector<std::int64_t>>(
      config, "conditioning_embedding_out_channels", c.conditioning_embedding_out_channels,
      "controlnet");
  if (c.conditioning_embedding_out_channels.empty()) {
    bad_config("conditioning_embedding_out_channels", "must be a non-empty list");
  }
  c.conditioning_channels = detail::config_value_or<std::int64_t>(config, "conditioning_channels", 3, "controlnet");
  const auto order = detail::config_value_or<std::string>(
      config, "controlnet_conditioning_channel_order", "rgb", "controlnet");
  if (order != "rgb" && order != "bgr") bad_config("controlnet_conditioning_channel_order", "must be rgb or bgr");
  c.bgr_conditioning = order == "bgr";
  if (detail::config_value_or<bool>(config, "global_pool_conditions", false, "controlnet")) {
    bad_config("global_pool_conditions", "= true is not supported (only false)");
  }
  return c;
}

ControlNetConfig ControlNetConfig::infer(const TensorMap& w, std::int64_t head_dim,
                                         std::int64_t pooled_dim) {
  ControlNetConfig c;
  c.unet = UNetConfig::infer(w, head_dim, pooled_dim);
  const std::string prefix = "controlnet_cond_embedding.";
  const at::Tensor& conv_in = detail::required_for_config(w, prefix + "conv_in.weight", "controlnet");
  c.conditioning_channels = conv_in.size(1);
  c.conditioning_embedding_out_channels = {conv_in.size(0)};
  // blocks come in pairs: 2k keeps the channels, 2k+1 (stride 2) moves to the next entry.
  for (std::int64_t k = 1;; k += 2) {
    const at::Tensor* block = w.find(prefix + "blocks." + std::to_string(k) + ".weight");
    if (block == nullptr) break;
    c.conditioning_embedding_out_channels.push_back(block->size(0));
  }
  detail::required_for_config(w, "controlnet_mid_block.weight", "controlnet");
  return c;
}

// ---- ControlNetModel -----------------------------------------------------------------------------

ControlNetModel::ControlNetModel(ControlNetConfig config, at::ScalarType dtype, at::Device device)
    : config_(std::move(config)), dtype_(dtype), device_(device), blocks_(std::make_unique<Blocks>()) {}

ControlNetModel::~ControlNetModel() = default;

std::shared_ptr<ControlNetModel> ControlNetModel::load(const ControlNetConfig& config,
                                                       const TensorMap& weights,
                                                       at::ScalarType dtype, at::Device device) {
  if (config.unet.block_out_channels.empty()) {
    throw sdk::Error(sdk::ErrorCode::ModelLoadError, "controlnet config: no block_out_channels");
  }
  std::shared_ptr<ControlNetModel> model(new ControlNetModel(config, dtype, device));
  WeightBinder binder(weights, dtype, device, "controlnet");
  model->blocks_->bind(binder, model->config_);
  binder.check_all_used();
  model->slots_ = binder.slots();
  return model;
}

sdk::UNetResiduals ControlNetModel::forward(const at::Tensor& sample_in, const at::Tensor& timestep,
                                            const at::Tensor& encoder_hidden_states,
                                            const at::Tensor& text_embeds,
                                            const at::Tensor& time_ids,
                                            const at::Tensor& controlnet_cond,
                                            double conditioning_scale, const TraceFn& trace) const {
  const UNetConfig& c = config_.unet;
  const Blocks& m = *blocks_;
  if (!sample_in.defined() || sample_in.dim() != 4 || sample_in.size(1) != c.in_channels) {
    bad_input("sample", "sample must be (N, " + std::to_string(c.in_channels) + ", H, W)");
  }
  const std::int64_t batch = sample_in.size(0);
  if (!encoder_hidden_states.defined() || encoder_hidden_states.dim() != 3 ||
      encoder_hidden_states.size(0) != batch ||
      encoder_hidden_states.size(2) != c.cross_attention_dim) {
    bad_input("encoder_hidden_states", "encoder_hidden_states must be (N, L, " +
                                           std::to_string(c.cross_attention_dim) + ")");
  }
  if (!timestep.defined() || (timestep.numel() != 1 && timestep.numel() != batch)) {
    bad_input("timestep", "timestep must hold 1 or N values");
  }
  if (!controlnet_cond.defined() || controlnet_cond.dim() != 4 || controlnet_cond.size(0) != batch ||
      controlnet_cond.size(1) != config_.conditioning_channels) {
    bad_input("controlnet_cond", "controlnet_cond must be (N, " +
                                     std::to_string(config_.conditioning_channels) + ", H, W)");
  }
  const auto options = at::TensorOptions().dtype(dtype_).device(device_);
  const at::Tensor context = encoder_hidden_states.to(options);

  // 1. time embedding (+ text_time added embedding), as the UNet
  at::Tensor steps = timestep.to(device_).reshape({-1});
  if (steps.numel() == 1) steps = steps.expand({batch});
  at::Tensor emb = m.time_embedding.forward(
      timestep_features(steps, c.block_out_channels[0], c.flip_sin_to_cos, c.freq_shift).to(options));
  if (c.text_time_embedding) {
    if (!text_embeds.defined() || !time_ids.defined() || text_embeds.dim() != 2 ||
        time_ids.dim() != 2 || text_embeds.size(0) != batch || time_ids.size(0) != batch ||
        text_embeds.size(1) + time_ids.size(1) * c.addition_time_embed_dim !=
            c.projection_class_embeddings_input_dim) {
      bad_input("time_ids", "text_embeds (N, P) and time_ids (N, k) must satisfy P + k x " +
                                std::to_string(c.addition_time_embed_dim) + " = " +
                                std::to_string(c.projection_class_embeddings_input_dim));
    }
    const at::Tensor id_features = timestep_features(
        time_ids.to(device_).reshape({-1}), c.addition_time_embed_dim, c.flip_sin_to_cos, c.freq_shift);
    const at::Tensor add_input =
        at::cat({text_embeds.to(device_, at::kFloat), id_features.reshape({batch, -1})}, -1).to(options);
    emb = emb + m.add_embedding.forward(add_input);
  }

  // 2. conv_in(sample) + the control image's embedding
  at::Tensor sample = m.conv_in.forward(sample_in.to(options));
  at::Tensor cond = controlnet_cond.to(options);
  if (config_.bgr_conditioning) cond = cond.flip({1});
  const at::Tensor cond_embedding = m.cond_embedding.forward(cond);
  if (trace) trace("controlnet_cond_embedding", cond_embedding);
  if (cond_embedding.sizes() != sample.sizes()) {
    bad_input("controlnet_cond", "the control image's embedding (" +
                                     std::to_string(cond_embedding.size(2)) + "x" +
                                     std::to_string(cond_embedding.size(3)) +
                                     ") does not match the latents' size");
  }
  sample = sample + cond_embedding;

  // 3. down blocks, collecting the skips
  std::vector<at::Tensor> skips{sample};
  for (std::size_t i = 0; i < m.down.size(); ++i) {
    const EncoderDownBlock& block = m.down[i];
    for (std::size_t j = 0; j < block.resnets.size(); ++j) {
      sample = block.resnets[j].forward(sample, emb);
      if (!block.attentions.empty()) sample = block.attentions[j].forward(sample, context);
      skips.push_back(sample);
    }
    if (block.has_downsampler) {
      sample = block.downsampler.forward(sample);
      skips.push_back(sample);
    }
    if (trace) trace(idx("down_blocks", i), sample);
  }

  // 4. mid block
  sample = m.mid_resnet_0.forward(sample, emb);
  sample = m.mid_attention.forward(sample, context);
  sample = m.mid_resnet_1.forward(sample, emb);
  if (trace) trace("mid_block", sample);

  // 5. zero convs, scaled
  sdk::UNetResiduals residuals;
  residuals.down.reserve(skips.size());
  for (std::size_t k = 0; k < skips.size(); ++k) {
    residuals.down.push_back(m.zero_convs[k].forward(skips[k]) * conditioning_scale);
  }
  residuals.mid = m.mid_zero_conv.forward(sample) * conditioning_scale;
  return residuals;
}

std::vector<std::string> ControlNetModel::parameter_names() const {
  std::vector<std::string> names;
  names.reserve(slots_.size());
  for (const auto& [name, slot] : slots_) names.push_back(name);
  return names;
}

}  // namespace sdxlhost::nn
