// Model configs from config.json or inferred from weight shapes (rules in docs/nn.md).
#include "sdxlhost/nn/model_config.hpp"

#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include "sdxlhost/nn/unet.hpp"
#include "sdxlhost/nn/vae.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "weight_shapes.hpp"

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
  c.num_hidden_layers = detail::count_indexed(weights, "text_model.encoder.layers.", ".mlp.fc1.weight");
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
  return UNetConfig::infer(weights, kHeadDim, pooled_dim).to_json();
}

nlohmann::json infer_vae_config(const TensorMap& weights) { return VaeConfig::infer(weights).to_json(); }

int unet_time_id_count(const nlohmann::json& unet_config, std::int64_t pooled_dim) {
  const auto add_in = unet_config.value("projection_class_embeddings_input_dim", std::int64_t{0});
  const auto time_dim = unet_config.value("addition_time_embed_dim", std::int64_t{0});
  if (add_in <= pooled_dim || time_dim <= 0 || (add_in - pooled_dim) % time_dim != 0)
    throw Error(ErrorCode::ModelLoadError, "UNet config: add embedding size does not fit the pooled size");
  return static_cast<int>((add_in - pooled_dim) / time_dim);
}

}  // namespace sdxlhost::nn
