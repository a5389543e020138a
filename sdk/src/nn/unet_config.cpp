// UNetConfig: read from a diffusers config.json, inferred from weight shapes, written back.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "sdxlhost/nn/unet.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "config_fields.hpp"
#include "weight_shapes.hpp"

namespace sdxlhost::nn {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& key, const std::string& message) {
  detail::config_field_error("unet", key, message);
}

template <class T>
T value_or(const json& config, const std::string& key, T fallback) {
  return detail::config_value_or<T>(config, key, fallback, "unet");
}

/// An int or a list of ints, expanded to `levels` entries.
std::vector<std::int64_t> int_or_list(const json& config, const std::string& key,
                                      std::size_t levels, std::int64_t fallback) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return std::vector<std::int64_t>(levels, fallback);
  if (it->is_number_integer()) return std::vector<std::int64_t>(levels, it->get<std::int64_t>());
  if (!it->is_array() || it->size() != levels) {
    fail(key, "must be an int or a list of " + std::to_string(levels) + " ints, got " + it->dump());
  }
  std::vector<std::int64_t> out;
  for (const auto& v : *it) {
    if (!v.is_number_integer()) fail(key, "must hold ints (per-layer lists are not supported)");
    out.push_back(v.get<std::int64_t>());
  }
  return out;
}

/// Keys whose non-default values this port does not implement.
void require_default(const json& config, const std::string& key, const json& expected) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null() || *it == expected) return;
  fail(key, "= " + it->dump() + " is not supported (only " + expected.dump() + ")");
}

void require_null(const json& config, const std::string& key) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return;
  fail(key, "= " + it->dump() + " is not supported (only null)");
}

std::vector<bool> block_kinds(const json& config, const std::string& key,
                              const std::string& plain, const std::string& cross) {
  auto it = config.find(key);
  if (it == config.end() || !it->is_array() || it->empty()) fail(key, "must be a non-empty list");
  std::vector<bool> out;
  for (const auto& v : *it) {
    const std::string name = v.is_string() ? v.get<std::string>() : v.dump();
    if (name == plain) {
      out.push_back(false);
    } else if (name == cross) {
      out.push_back(true);
    } else {
      fail(key, "contains '" + name + "'; supported: " + plain + ", " + cross);
    }
  }
  return out;
}

/// addition_time_embed_dim when the pooled size is unknown (diffusers' single-file loader).
constexpr std::int64_t kSingleFileTimeEmbedDim = 256;

const at::Tensor& required(const TensorMap& w, const std::string& key) {
  return detail::required_for_config(w, key, "unet");
}

}  // namespace

std::size_t UNetConfig::skip_count() const {
  std::size_t n = 1;  // conv_in
  for (std::size_t i = 0; i < levels(); ++i) {
    n += static_cast<std::size_t>(layers_per_block) + (i + 1 < levels() ? 1 : 0);
  }
  return n;
}

UNetConfig UNetConfig::from_json(const json& config) {
  if (!config.is_object()) fail("(root)", "must be a JSON object");
  UNetConfig c;
  c.block_out_channels = value_or<std::vector<std::int64_t>>(config, "block_out_channels", {});
  if (c.block_out_channels.empty()) fail("block_out_channels", "must be a non-empty list");
  const std::size_t levels = c.block_out_channels.size();
  c.in_channels = value_or<std::int64_t>(config, "in_channels", 4);
  c.out_channels = value_or<std::int64_t>(config, "out_channels", 4);
  if (config.contains("layers_per_block") && !config["layers_per_block"].is_number_integer()) {
    fail("layers_per_block", "must be an int (per-level lists are not supported)");
  }
  c.layers_per_block = value_or<std::int64_t>(config, "layers_per_block", 2);
  c.down_attention = block_kinds(config, "down_block_types", "DownBlock2D", "CrossAttnDownBlock2D");
  c.up_attention = block_kinds(config, "up_block_types", "UpBlock2D", "CrossAttnUpBlock2D");
  if (c.down_attention.size() != levels) fail("down_block_types", "must have one entry per level");
  if (c.up_attention.size() != levels) fail("up_block_types", "must have one entry per level");
  const std::string mid = value_or<std::string>(config, "mid_block_type", "UNetMidBlock2DCrossAttn");
  if (mid != "UNetMidBlock2DCrossAttn") fail("mid_block_type", "'" + mid + "' is not supported");
  c.mid_block_attention = true;

  c.transformer_depth = int_or_list(config, "transformer_layers_per_block", levels, 1);
  auto reverse = config.find("reverse_transformer_layers_per_block");
  if (reverse != config.end() && !reverse->is_null()) {
    c.up_transformer_depth = int_or_list(config, "reverse_transformer_layers_per_block", levels, 1);
  } else {
    c.up_transformer_depth.assign(c.transformer_depth.rbegin(), c.transformer_depth.rend());
  }
  c.mid_transformer_depth = c.transformer_depth.back();
  // diffusers: num_attention_heads defaults to attention_head_dim, which is really a head count.
  auto heads_key = config.contains("num_attention_heads") && !config["num_attention_heads"].is_null()
                       ? std::string("num_attention_heads")
                       : std::string("attention_head_dim");
  c.attention_heads = int_or_list(config, heads_key, levels, 8);

  if (config.contains("cross_attention_dim") && !config["cross_attention_dim"].is_number_integer()) {
    fail("cross_attention_dim", "must be an int (per-level lists are not supported)");
  }
  c.cross_attention_dim = value_or<std::int64_t>(config, "cross_attention_dim", 1280);
  c.use_linear_projection = value_or<bool>(config, "use_linear_projection", false);
  const std::string add_type = value_or<std::string>(config, "addition_embed_type", "");
  if (!add_type.empty() && add_type != "text_time") {
    fail("addition_embed_type", "'" + add_type + "' is not supported (only text_time or null)");
  }
  c.text_time_embedding = add_type == "text_time";
  c.addition_time_embed_dim = value_or<std::int64_t>(config, "addition_time_embed_dim", 0);
  c.projection_class_embeddings_input_dim =
      value_or<std::int64_t>(config, "projection_class_embeddings_input_dim", 0);
  if (c.text_time_embedding &&
      (c.addition_time_embed_dim <= 0 || c.projection_class_embeddings_input_dim <= 0)) {
    fail("addition_time_embed_dim", "and projection_class_embeddings_input_dim must be set for text_time");
  }
  c.norm_num_groups = value_or<std::int64_t>(config, "norm_num_groups", 32);
  c.norm_eps = value_or<double>(config, "norm_eps", 1e-5);
  c.flip_sin_to_cos = value_or<bool>(config, "flip_sin_to_cos", true);
  c.freq_shift = value_or<double>(config, "freq_shift", 0.0);

  require_default(config, "conv_in_kernel", 3);
  require_default(config, "conv_out_kernel", 3);
  require_default(config, "time_embedding_type", "positional");
  require_default(config, "resnet_time_scale_shift", "default");
  require_default(config, "only_cross_attention", false);
  require_default(config, "dual_cross_attention", false);
  require_default(config, "center_input_sample", false);
  require_default(config, "downsample_padding", 1);
  require_default(config, "mid_block_scale_factor", 1);
  require_default(config, "resnet_out_scale_factor", 1.0);
  require_default(config, "resnet_skip_time_act", false);
  require_default(config, "attention_type", "default");
  require_default(config, "act_fn", "silu");
  require_default(config, "class_embeddings_concat", false);
  for (const char* key : {"class_embed_type", "num_class_embeds", "encoder_hid_dim_type",
                          "time_cond_proj_dim", "time_embedding_dim", "timestep_post_act",
                          "time_embedding_act_fn", "mid_block_only_cross_attention",
                          "cross_attention_norm"}) {
    require_null(config, key);
  }
  return c;
}

UNetConfig UNetConfig::infer(const TensorMap& w, std::int64_t head_dim, std::int64_t pooled_dim) {
  UNetConfig c;
  const std::int64_t levels = detail::count_indexed(w, "down_blocks.", ".resnets.0.conv1.weight");
  if (levels == 0) required(w, "down_blocks.0.resnets.0.conv1.weight");
  c.in_channels = required(w, "conv_in.weight").size(1);
  // A ControlNet (the encoder half) has no conv_out: its out_channels is not used.
  const at::Tensor* conv_out = w.find("conv_out.weight");
  c.out_channels = conv_out != nullptr ? conv_out->size(0) : c.in_channels;
  c.layers_per_block = detail::count_indexed(w, "down_blocks.0.resnets.", ".conv1.weight");
  for (std::int64_t i = 0; i < levels; ++i) {
    const std::string down = "down_blocks." + std::to_string(i);
    const std::string up = "up_blocks." + std::to_string(i);
    const std::int64_t channels = required(w, down + ".resnets.0.conv1.weight").size(0);
    c.block_out_channels.push_back(channels);
    c.attention_heads.push_back(std::max<std::int64_t>(1, channels / head_dim));
    const std::int64_t depth =
        detail::count_indexed(w, down + ".attentions.0.transformer_blocks.", ".norm1.weight");
    c.down_attention.push_back(depth > 0);
    c.transformer_depth.push_back(std::max<std::int64_t>(depth, 1));
    const std::int64_t up_depth =
        detail::count_indexed(w, up + ".attentions.0.transformer_blocks.", ".norm1.weight");
    c.up_attention.push_back(up_depth > 0);
    c.up_transformer_depth.push_back(std::max<std::int64_t>(up_depth, 1));
  }
  c.mid_transformer_depth =
      detail::count_indexed(w, "mid_block.attentions.0.transformer_blocks.", ".norm1.weight");
  if (c.mid_transformer_depth == 0) {
    required(w, "mid_block.attentions.0.transformer_blocks.0.norm1.weight");
  }
  // diffusers gives the mid block transformer_layers_per_block[-1]; the last level's own value
  // only matters when it has attentions.
  if (!c.down_attention.back()) c.transformer_depth.back() = c.mid_transformer_depth;
  const at::Tensor& proj_in = required(w, "mid_block.attentions.0.proj_in.weight");
  c.use_linear_projection = proj_in.dim() == 2;
  c.cross_attention_dim =
      required(w, "mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight").size(1);
  c.text_time_embedding = w.contains("add_embedding.linear_1.weight");
  if (c.text_time_embedding) {
    c.projection_class_embeddings_input_dim = w.at("add_embedding.linear_1.weight").size(1);
    c.addition_time_embed_dim = kSingleFileTimeEmbedDim;
    if (pooled_dim <= 0) return c;  // unknown pooled size: diffusers' single-file loader's 256
    const std::int64_t ids = c.cross_attention_dim == pooled_dim ? 5 : 6;
    const std::int64_t rest = c.projection_class_embeddings_input_dim - pooled_dim;
    if (rest <= 0 || rest % ids != 0) {
      throw sdk::Error(sdk::ErrorCode::ModelLoadError,
                       "unet: cannot infer addition_time_embed_dim: add-embedding input " +
                           std::to_string(c.projection_class_embeddings_input_dim) +
                           " is not " + std::to_string(pooled_dim) + " + " +
                           std::to_string(ids) + " x d (" + w.source() + ")");
    }
    c.addition_time_embed_dim = rest / ids;
  }
  return c;
}

json UNetConfig::to_json() const {
  json down = json::array(), up = json::array();
  for (bool a : down_attention) down.push_back(a ? "CrossAttnDownBlock2D" : "DownBlock2D");
  for (bool a : up_attention) up.push_back(a ? "CrossAttnUpBlock2D" : "UpBlock2D");
  json config = {
      {"_class_name", "UNet2DConditionModel"},
      {"act_fn", "silu"},
      {"addition_embed_type", text_time_embedding ? json("text_time") : json(nullptr)},
      {"addition_time_embed_dim", text_time_embedding ? json(addition_time_embed_dim) : json(nullptr)},
      {"attention_head_dim", attention_heads},
      {"block_out_channels", block_out_channels},
      {"cross_attention_dim", cross_attention_dim},
      {"down_block_types", down},
      {"flip_sin_to_cos", flip_sin_to_cos},
      {"freq_shift", freq_shift},
      {"in_channels", in_channels},
      {"layers_per_block", layers_per_block},
      {"mid_block_type", "UNetMidBlock2DCrossAttn"},
      {"norm_eps", norm_eps},
      {"norm_num_groups", norm_num_groups},
      {"out_channels", out_channels},
      {"projection_class_embeddings_input_dim",
       text_time_embedding ? json(projection_class_embeddings_input_dim) : json(nullptr)},
      {"transformer_layers_per_block", transformer_depth},
      {"reverse_transformer_layers_per_block", up_transformer_depth},
      {"up_block_types", up},
      {"use_linear_projection", use_linear_projection},
  };
  return config;
}

}  // namespace sdxlhost::nn
