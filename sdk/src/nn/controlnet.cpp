// SDXL ControlNetModel: the UNet's encoder half + conditioning embedding + zero convolutions.
#include "sdxlhost/nn/controlnet.hpp"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

#include "sdxlhost/nn/unet_encoder.hpp"
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
  UNetEncoder encoder;
  ConditioningEmbedding cond_embedding;
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
  if (c.down_attention.size() != levels || c.transformer_depth.size() != levels ||
      c.attention_heads.size() != levels) {
    throw sdk::Error(sdk::ErrorCode::ModelLoadError, "controlnet config: per-level lists differ in length");
  }
  if (config.conditioning_embedding_out_channels.empty()) {
    bad_config("conditioning_embedding_out_channels", "must be a non-empty list");
  }

  encoder.bind_stem(b, c);
  cond_embedding.bind(b, "controlnet_cond_embedding", config);
  add_zero_conv(b, channels[0]);
  encoder.bind_body(b, c, [&](std::int64_t skip_channels) { add_zero_conv(b, skip_channels); });
  mid_zero_conv.bind(b, "controlnet_mid_block", channels.back(), channels.back(), 1);
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
  UNetEncoder::check_inputs(c, sample_in, encoder_hidden_states, timestep, "controlnet");
  const std::int64_t batch = sample_in.size(0);
  if (!controlnet_cond.defined() || controlnet_cond.dim() != 4 || controlnet_cond.size(0) != batch ||
      controlnet_cond.size(1) != config_.conditioning_channels) {
    bad_input("controlnet_cond", "controlnet_cond must be (N, " +
                                     std::to_string(config_.conditioning_channels) + ", H, W)");
  }
  const auto options = at::TensorOptions().dtype(dtype_).device(device_);
  const at::Tensor context = encoder_hidden_states.to(options);

  // 1. time embedding (+ text_time added embedding), as the UNet (not traced)
  const at::Tensor emb =
      m.encoder.embed(c, timestep, text_embeds, time_ids, batch, options, "controlnet");

  // 2. conv_in(sample) + the control image's embedding
  at::Tensor sample = m.encoder.conv_in.forward(sample_in.to(options));
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
  const std::vector<at::Tensor> skips = m.encoder.forward_down(sample, emb, context, trace);

  // 4. mid block
  sample = m.encoder.forward_mid(sample, emb, context, trace);

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
