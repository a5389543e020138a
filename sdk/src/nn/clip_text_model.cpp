// CLIPTextModel / CLIPTextModelWithProjection (transformers 4.39, eager attention) on at:: ops.
#include "sdxlhost/nn/clip_text_model.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "sdxlhost/nn/attention.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "weight_conversion.hpp"

namespace sdxlhost::nn {

using sdk::Error;
using sdk::ErrorCode;

/// One CLIPEncoderLayer; members named after their weight keys.
struct ClipTextModel::Layer {
  at::Tensor layer_norm1_weight, layer_norm1_bias;
  at::Tensor q_proj_weight, q_proj_bias, k_proj_weight, k_proj_bias;
  at::Tensor v_proj_weight, v_proj_bias, out_proj_weight, out_proj_bias;
  at::Tensor layer_norm2_weight, layer_norm2_bias;
  at::Tensor fc1_weight, fc1_bias, fc2_weight, fc2_bias;
};

namespace {

const char* kPositionIds = "text_model.embeddings.position_ids";

std::string layer_prefix(std::size_t index) { return "text_model.encoder.layers." + std::to_string(index) + "."; }

at::Tensor activation(const at::Tensor& x, const std::string& kind) {
  if (kind == "quick_gelu") return x * at::sigmoid(x * 1.702);
  return at::gelu(x);  // exact (erf) GELU, transformers' "gelu"
}

/// Checks the ids before they index anything: int64, [B, T], 0 <= id < vocab, T <= positions.
void check_ids(const at::Tensor& ids, const ClipTextConfig& config) {
  if (!ids.defined() || ids.dim() != 2 || ids.scalar_type() != at::kLong)
    throw Error(ErrorCode::ValidationError, "text encoder input must be int64 ids [batch, tokens]");
  if (ids.size(1) < 1 || ids.size(1) > config.max_position_embeddings)
    throw Error(ErrorCode::ValidationError, "text encoder input has " + std::to_string(ids.size(1)) +
                                                " tokens; at most " + std::to_string(config.max_position_embeddings));
  if (ids.numel() > 0 && (ids.min().item<int64_t>() < 0 || ids.max().item<int64_t>() >= config.vocab_size))
    throw Error(ErrorCode::ValidationError, "text encoder input has ids outside the vocabulary");
}

std::string shape_text(const std::vector<int64_t>& shape) { return c10::str(at::IntArrayRef(shape)); }

}  // namespace

std::map<std::string, std::vector<std::int64_t>> ClipTextModel::expected_shapes(const ClipTextConfig& c) {
  const int64_t h = c.hidden_size, i = c.intermediate_size;
  std::map<std::string, std::vector<std::int64_t>> out;
  out["text_model.embeddings.token_embedding.weight"] = {c.vocab_size, h};
  out["text_model.embeddings.position_embedding.weight"] = {c.max_position_embeddings, h};
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = layer_prefix(static_cast<std::size_t>(l));
    for (const char* norm : {"layer_norm1.", "layer_norm2."}) {
      out[p + norm + "weight"] = {h};
      out[p + norm + "bias"] = {h};
    }
    for (const char* proj : {"q_proj.", "k_proj.", "v_proj.", "out_proj."}) {
      out[p + "self_attn." + proj + "weight"] = {h, h};
      out[p + "self_attn." + proj + "bias"] = {h};
    }
    out[p + "mlp.fc1.weight"] = {i, h};
    out[p + "mlp.fc1.bias"] = {i};
    out[p + "mlp.fc2.weight"] = {h, i};
    out[p + "mlp.fc2.bias"] = {h};
  }
  out["text_model.final_layer_norm.weight"] = {h};
  out["text_model.final_layer_norm.bias"] = {h};
  if (c.projection_dim > 0) out["text_projection.weight"] = {c.projection_dim, h};
  return out;
}

std::vector<std::pair<std::string, at::Tensor*>> ClipTextModel::named_parameters() {
  std::vector<std::pair<std::string, at::Tensor*>> out = {
      {"text_model.embeddings.token_embedding.weight", &token_embedding_},
      {"text_model.embeddings.position_embedding.weight", &position_embedding_}};
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const std::string p = layer_prefix(l);
    Layer& layer = *layers_[l];
    out.insert(out.end(), {{p + "layer_norm1.weight", &layer.layer_norm1_weight},
                           {p + "layer_norm1.bias", &layer.layer_norm1_bias},
                           {p + "self_attn.q_proj.weight", &layer.q_proj_weight},
                           {p + "self_attn.q_proj.bias", &layer.q_proj_bias},
                           {p + "self_attn.k_proj.weight", &layer.k_proj_weight},
                           {p + "self_attn.k_proj.bias", &layer.k_proj_bias},
                           {p + "self_attn.v_proj.weight", &layer.v_proj_weight},
                           {p + "self_attn.v_proj.bias", &layer.v_proj_bias},
                           {p + "self_attn.out_proj.weight", &layer.out_proj_weight},
                           {p + "self_attn.out_proj.bias", &layer.out_proj_bias},
                           {p + "layer_norm2.weight", &layer.layer_norm2_weight},
                           {p + "layer_norm2.bias", &layer.layer_norm2_bias},
                           {p + "mlp.fc1.weight", &layer.fc1_weight},
                           {p + "mlp.fc1.bias", &layer.fc1_bias},
                           {p + "mlp.fc2.weight", &layer.fc2_weight},
                           {p + "mlp.fc2.bias", &layer.fc2_bias}});
  }
  out.emplace_back("text_model.final_layer_norm.weight", &final_norm_weight_);
  out.emplace_back("text_model.final_layer_norm.bias", &final_norm_bias_);
  if (config_.projection_dim > 0) out.emplace_back("text_projection.weight", &text_projection_);
  return out;
}

std::shared_ptr<ClipTextModel> ClipTextModel::load(const TensorMap& weights, const ClipTextConfig& config,
                                                   at::ScalarType dtype, at::Device device) {
  std::shared_ptr<ClipTextModel> model(new ClipTextModel());
  model->config_ = config;
  for (int64_t l = 0; l < config.num_hidden_layers; ++l) model->layers_.push_back(std::make_shared<Layer>());
  const auto shapes = expected_shapes(config);
  const std::string where = weights.source().empty() ? "text encoder" : "text encoder '" + weights.source() + "'";
  for (const auto& [name, slot] : model->named_parameters()) {
    const at::Tensor* tensor = weights.find(name);
    if (tensor == nullptr) throw Error(ErrorCode::ModelLoadError, where + ": missing weight '" + name + "'");
    const auto& shape = shapes.at(name);
    if (tensor->sizes() != at::IntArrayRef(shape))
      throw Error(ErrorCode::ModelLoadError, where + ": weight '" + name + "' has shape " +
                                                 c10::str(tensor->sizes()) + ", expected " + shape_text(shape));
    if (!at::isFloatingType(tensor->scalar_type()))
      throw Error(ErrorCode::ModelLoadError, where + ": weight '" + name + "' is not floating point");
    *slot = detail::convert_weight(*tensor, dtype, device);
  }
  for (const auto& [name, tensor] : weights)
    if (shapes.count(name) == 0 && name != kPositionIds)
      throw Error(ErrorCode::ModelLoadError, where + ": unexpected weight '" + name + "'");
  return model;
}

std::shared_ptr<ClipTextModel> ClipTextModel::load_folder(const std::filesystem::path& folder, at::ScalarType dtype,
                                                          at::Device device) {
  std::ifstream in(folder / "config.json");
  if (!in) throw Error(ErrorCode::ModelLoadError, "missing '" + (folder / "config.json").string() + "'");
  const nlohmann::json config = nlohmann::json::parse(in, nullptr, false);
  if (config.is_discarded())
    throw Error(ErrorCode::ModelLoadError, "'" + (folder / "config.json").string() + "' is not valid JSON");
  auto file = SafetensorsFile::open(folder / "model.safetensors");
  return load(file->tensors(), ClipTextConfig::from_json(config), dtype, device);
}

ClipTextOutput ClipTextModel::forward(const at::Tensor& input_ids) const {
  check_ids(input_ids, config_);
  const at::Tensor ids = input_ids.to(token_embedding_.device());
  const int64_t batch = ids.size(0), tokens = ids.size(1), hidden = config_.hidden_size;
  const int64_t heads = config_.num_attention_heads, head_dim = hidden / heads;
  const double scale = 1.0 / std::sqrt(static_cast<double>(head_dim));
  const std::vector<int64_t> normalized_shape = {hidden};
  const double eps = config_.layer_norm_eps;

  ClipTextOutput out;
  at::Tensor x = at::embedding(token_embedding_, ids) + position_embedding_.narrow(0, 0, tokens);
  out.hidden_states.push_back(x);
  AttentionOptions attention;
  attention.causal = true;
  attention.scale = 1.0;  // q is scaled before the product, as transformers does
  auto split_heads = [&](const at::Tensor& t) { return t.view({batch, tokens, heads, head_dim}).transpose(1, 2); };
  for (const auto& layer_ptr : layers_) {
    const Layer& layer = *layer_ptr;
    at::Tensor h = at::layer_norm(x, normalized_shape, layer.layer_norm1_weight, layer.layer_norm1_bias, eps);
    const at::Tensor q = at::linear(h, layer.q_proj_weight, layer.q_proj_bias) * scale;
    const at::Tensor k = at::linear(h, layer.k_proj_weight, layer.k_proj_bias);
    const at::Tensor v = at::linear(h, layer.v_proj_weight, layer.v_proj_bias);
    at::Tensor a = scaled_dot_product_attention(split_heads(q), split_heads(k), split_heads(v), attention);
    a = a.transpose(1, 2).reshape({batch, tokens, hidden});
    x = x + at::linear(a, layer.out_proj_weight, layer.out_proj_bias);
    h = at::layer_norm(x, normalized_shape, layer.layer_norm2_weight, layer.layer_norm2_bias, eps);
    h = at::linear(activation(at::linear(h, layer.fc1_weight, layer.fc1_bias), config_.hidden_act),
                   layer.fc2_weight, layer.fc2_bias);
    x = x + h;
    out.hidden_states.push_back(x);
  }
  out.last_hidden_state = at::layer_norm(x, normalized_shape, final_norm_weight_, final_norm_bias_, eps);
  // transformers: with the legacy eos_token_id 2 (SDXL's configs) the EOS is at argmax(ids), which
  // is <|endoftext|> because it has the highest id; otherwise the first position equal to eos.
  const at::Tensor eos_index = config_.eos_token_id == 2 ? ids.argmax(-1)
                                                         : ids.eq(config_.eos_token_id).to(at::kInt).argmax(-1);
  out.pooler_output = out.last_hidden_state.index({at::arange(batch, ids.options()), eos_index});
  if (text_projection_.defined()) out.text_embeds = at::linear(out.pooler_output, text_projection_);
  return out;
}

}  // namespace sdxlhost::nn
