// Model configs from config.json or inferred from weight shapes (rules in docs/nn.md).
#include "sdxlhost/nn/model_config.hpp"

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include "sdxlhost/nn/key_map.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::nn {
namespace {

using sdk::Error;
using sdk::ErrorCode;

/// SDXL's attention head size (both text encoders and every UNet level of base and refiner).
constexpr std::int64_t kHeadDim = 64;

template <class T>
void read_field(const nlohmann::json& config, const char* key, T& out) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return;
  try {
    out = it->get<T>();
  } catch (const nlohmann::json::exception&) {
    throw Error(ErrorCode::ModelLoadError, std::string("text encoder config: '") + key + "' has the wrong type");
  }
}

std::int64_t dim_of(const TensorMap& weights, const std::string& key, int dim) {
  const at::Tensor& t = weights.at(key);
  if (t.dim() <= dim)
    throw Error(ErrorCode::ModelLoadError, "tensor '" + key + "' has too few dimensions");
  return t.size(dim);
}

int count_indices(const TensorMap& weights, const std::string& prefix) {
  int n = 0;
  while (!weights.with_prefix(prefix + std::to_string(n) + ".", false).empty()) ++n;
  return n;
}

std::int64_t heads_for(std::int64_t channels, const char* what) {
  if (channels % kHeadDim != 0)
    throw Error(ErrorCode::ModelLoadError,
                std::string(what) + ": " + std::to_string(channels) +
                    " channels is not a multiple of the 64-wide heads SDXL uses; give a config.json");
  return channels / kHeadDim;
}

}  // namespace

ClipTextConfig ClipTextConfig::from_json(const nlohmann::json& config) {
  if (!config.is_object()) throw Error(ErrorCode::ModelLoadError, "text encoder config is not a JSON object");
  ClipTextConfig c;
  read_field(config, "vocab_size", c.vocab_size);
  read_field(config, "hidden_size", c.hidden_size);
  read_field(config, "intermediate_size", c.intermediate_size);
  read_field(config, "num_hidden_layers", c.num_hidden_layers);
  read_field(config, "num_attention_heads", c.num_attention_heads);
  read_field(config, "max_position_embeddings", c.max_position_embeddings);
  read_field(config, "layer_norm_eps", c.layer_norm_eps);
  read_field(config, "hidden_act", c.hidden_act);
  read_field(config, "projection_dim", c.projection_dim);
  read_field(config, "eos_token_id", c.eos_token_id);
  const bool with_projection = config.contains("architectures") && config["architectures"].is_array() &&
                               !config["architectures"].empty() &&
                               config["architectures"][0] == "CLIPTextModelWithProjection";
  if (!with_projection) c.projection_dim = 0;
  if (c.vocab_size <= 0 || c.hidden_size <= 0 || c.intermediate_size <= 0 || c.num_hidden_layers <= 0 ||
      c.num_attention_heads <= 0 || c.max_position_embeddings <= 0 ||
      c.hidden_size % c.num_attention_heads != 0)
    throw Error(ErrorCode::ModelLoadError, "text encoder config has impossible sizes");
  // Bounds far above any CLIP (bigG: 1280 wide, 32 layers) so a hostile config cannot make us
  // build millions of layers before the weights are checked.
  if (c.num_hidden_layers > 1024 || c.num_attention_heads > 4096 || c.hidden_size > (1 << 20) ||
      c.intermediate_size > (1 << 22) || c.max_position_embeddings > (1 << 20) || c.vocab_size > (1 << 26))
    throw Error(ErrorCode::ModelLoadError, "text encoder config has implausibly large sizes");
  if (c.hidden_act != "quick_gelu" && c.hidden_act != "gelu")
    throw Error(ErrorCode::ModelLoadError, "text encoder config: unsupported hidden_act '" + c.hidden_act + "'");
  return c;
}

ClipTextConfig ClipTextConfig::infer(const TensorMap& weights, bool open_clip) {
  ClipTextConfig c;
  c.vocab_size = dim_of(weights, "text_model.embeddings.token_embedding.weight", 0);
  c.hidden_size = dim_of(weights, "text_model.embeddings.token_embedding.weight", 1);
  c.max_position_embeddings = dim_of(weights, "text_model.embeddings.position_embedding.weight", 0);
  c.intermediate_size = dim_of(weights, "text_model.encoder.layers.0.mlp.fc1.weight", 0);
  c.num_hidden_layers = count_indices(weights, "text_model.encoder.layers.");
  c.num_attention_heads = heads_for(c.hidden_size, "text encoder");
  c.hidden_act = open_clip ? "gelu" : "quick_gelu";
  c.projection_dim = weights.contains("text_projection.weight") ? dim_of(weights, "text_projection.weight", 0) : 0;
  return c;
}

nlohmann::json ClipTextConfig::to_json() const {
  nlohmann::json c = nlohmann::json::object();
  c["architectures"] = {projection_dim > 0 ? "CLIPTextModelWithProjection" : "CLIPTextModel"};
  c["model_type"] = "clip_text_model";
  c["vocab_size"] = vocab_size;
  c["hidden_size"] = hidden_size;
  c["intermediate_size"] = intermediate_size;
  c["num_hidden_layers"] = num_hidden_layers;
  c["num_attention_heads"] = num_attention_heads;
  c["max_position_embeddings"] = max_position_embeddings;
  c["layer_norm_eps"] = layer_norm_eps;
  c["hidden_act"] = hidden_act;
  c["projection_dim"] = projection_dim;
  c["eos_token_id"] = eos_token_id;
  return c;
}

nlohmann::json infer_unet_config(const TensorMap& weights, std::int64_t pooled_dim) {
  const UnetKeyStructure s = unet_key_structure(KeyLayout::Diffusers, weights.names());
  nlohmann::json c = nlohmann::json::object();
  c["_class_name"] = "UNet2DConditionModel";
  c["in_channels"] = dim_of(weights, "conv_in.weight", 1);
  c["out_channels"] = dim_of(weights, "conv_out.weight", 0);
  c["layers_per_block"] = s.layers_per_block;
  std::vector<std::int64_t> channels, heads, depth;
  std::vector<std::string> down_types, up_types;
  std::int64_t cross_attention_dim = -1;
  bool linear_projection = true;
  for (int i = 0; i < s.levels; ++i) {
    const std::string level = "down_blocks." + std::to_string(i) + ".";
    channels.push_back(dim_of(weights, level + "resnets.0.conv1.weight", 0));
    if (s.down_has_attention[i]) {
      const std::string attention = level + "attentions.0.";
      depth.push_back(count_indices(weights, attention + "transformer_blocks."));
      heads.push_back(heads_for(channels.back(), "UNet"));
      cross_attention_dim = dim_of(weights, attention + "transformer_blocks.0.attn2.to_k.weight", 1);
      linear_projection = weights.at(attention + "proj_in.weight").dim() == 2;
    } else {
      depth.push_back(1);  // unused: diffusers' configs list 1 for levels without attention
      heads.push_back(std::max<std::int64_t>(1, channels.back() / kHeadDim));
    }
    down_types.push_back(s.down_has_attention[i] ? "CrossAttnDownBlock2D" : "DownBlock2D");
    up_types.push_back(s.up_has_attention[i] ? "CrossAttnUpBlock2D" : "UpBlock2D");
  }
  if (cross_attention_dim < 0) throw Error(ErrorCode::ModelLoadError, "UNet weights have no cross-attention");
  c["block_out_channels"] = channels;
  c["attention_head_dim"] = heads;
  c["transformer_layers_per_block"] = depth;
  c["down_block_types"] = down_types;
  c["up_block_types"] = up_types;
  c["mid_block_type"] = s.mid_has_attention ? "UNetMidBlock2DCrossAttn" : "UNetMidBlock2D";
  c["cross_attention_dim"] = cross_attention_dim;
  c["use_linear_projection"] = linear_projection;
  c["norm_num_groups"] = 32;
  c["norm_eps"] = 1e-5;
  c["flip_sin_to_cos"] = true;
  c["freq_shift"] = 0;
  c["act_fn"] = "silu";
  c["sample_size"] = 128;
  if (weights.contains("add_embedding.linear_1.weight")) {
    const std::int64_t add_in = dim_of(weights, "add_embedding.linear_1.weight", 1);
    c["addition_embed_type"] = "text_time";
    c["projection_class_embeddings_input_dim"] = add_in;
    std::int64_t time_dim = 256;
    if (pooled_dim > 0) {
      const std::int64_t rest = add_in - pooled_dim;
      if (rest > 0 && rest % 6 == 0)
        time_dim = rest / 6;
      else if (rest > 0 && rest % 5 == 0)
        time_dim = rest / 5;
      else
        throw Error(ErrorCode::ModelLoadError, "UNet add_embedding input " + std::to_string(add_in) +
                                                   " does not fit pooled size " + std::to_string(pooled_dim) +
                                                   " + 5 or 6 time ids");
    }
    c["addition_time_embed_dim"] = time_dim;
  } else {
    c["addition_embed_type"] = nullptr;
  }
  return c;
}

nlohmann::json infer_vae_config(const TensorMap& weights) {
  const VaeKeyStructure s = vae_key_structure(KeyLayout::Diffusers, weights.names());
  std::vector<std::int64_t> channels;
  for (int i = 0; i < s.levels; ++i)
    channels.push_back(dim_of(weights, "encoder.down_blocks." + std::to_string(i) + ".resnets.0.conv1.weight", 0));
  nlohmann::json c = nlohmann::json::object();
  c["_class_name"] = "AutoencoderKL";
  c["in_channels"] = dim_of(weights, "encoder.conv_in.weight", 1);
  c["out_channels"] = dim_of(weights, "decoder.conv_out.weight", 0);
  c["latent_channels"] = dim_of(weights, "post_quant_conv.weight", 0);
  c["block_out_channels"] = channels;
  c["layers_per_block"] = s.layers_per_block;
  c["down_block_types"] = std::vector<std::string>(s.levels, "DownEncoderBlock2D");
  c["up_block_types"] = std::vector<std::string>(s.levels, "UpDecoderBlock2D");
  c["norm_num_groups"] = 32;
  c["act_fn"] = "silu";
  c["scaling_factor"] = 0.13025;
  c["force_upcast"] = true;
  c["sample_size"] = 1024;
  return c;
}

int unet_time_id_count(const nlohmann::json& unet_config, std::int64_t pooled_dim) {
  const auto add_in = unet_config.value("projection_class_embeddings_input_dim", std::int64_t{0});
  const auto time_dim = unet_config.value("addition_time_embed_dim", std::int64_t{0});
  if (add_in <= pooled_dim || time_dim <= 0 || (add_in - pooled_dim) % time_dim != 0)
    throw Error(ErrorCode::ModelLoadError, "UNet config: add embedding size does not fit the pooled size");
  return static_cast<int>((add_in - pooled_dim) / time_dim);
}

}  // namespace sdxlhost::nn
