// Random-weight SDXL-architecture models in both layouts (see tiny_sdxl_model.hpp).
#include "tiny_sdxl_model.hpp"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <fstream>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "sdxlhost/nn/key_map.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/nn/scheduler_defaults.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::tools {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json clip_config(std::int64_t hidden, std::int64_t intermediate, std::int64_t layers,
                 const std::string& act, std::int64_t projection_dim) {
  json c = {{"architectures", {projection_dim > 0 ? "CLIPTextModelWithProjection" : "CLIPTextModel"}},
            {"attention_dropout", 0.0},
            {"bos_token_id", 0},
            {"eos_token_id", 2},
            {"pad_token_id", 1},
            {"hidden_act", act},
            {"hidden_size", hidden},
            {"initializer_factor", 1.0},
            {"initializer_range", 0.02},
            {"intermediate_size", intermediate},
            {"layer_norm_eps", 1e-5},
            {"max_position_embeddings", 77},
            {"model_type", "clip_text_model"},
            {"num_attention_heads", hidden / 64},
            {"num_hidden_layers", layers},
            {"torch_dtype", "float32"},
            {"vocab_size", 1000}};
  if (projection_dim > 0) c["projection_dim"] = projection_dim;
  return c;
}

nn::VaeConfig tiny_vae() {
  nn::VaeConfig v;
  v.block_out_channels = {32, 64};
  v.layers_per_block = 1;
  v.scaling_factor = 0.13025;
  v.force_upcast = true;
  v.sample_size = 128;
  return v;
}

/// Deterministic PyTorch-like initialisation from one generator, in key order of binding.
class RandomInit {
 public:
  RandomInit(std::uint64_t seed, at::ScalarType dtype)
      : generator_(at::make_generator<at::CPUGeneratorImpl>(seed)), dtype_(dtype) {}
  at::Tensor operator()(const std::string& key, const std::vector<std::int64_t>& shape) {
    const bool is_bias = key.size() > 5 && key.compare(key.size() - 5, 5, ".bias") == 0;
    if (shape.size() == 1 && !is_bias) return at::ones(shape).to(dtype_);  // norm scales
    std::int64_t fan_in = 1;
    for (std::size_t i = 1; i < shape.size(); ++i) fan_in *= shape[i];
    if (shape.size() == 1) fan_in = shape[0];
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    return (at::rand(shape, generator_) * (2 * bound) - bound).to(dtype_);
  }

 private:
  at::Generator generator_;
  at::ScalarType dtype_;
};

/// transformers CLIPTextModel(WithProjection) weights for `config`.
nn::TensorMap clip_weights(const json& config, RandomInit& init) {
  const std::int64_t hidden = config.at("hidden_size"), inter = config.at("intermediate_size");
  const std::int64_t layers = config.at("num_hidden_layers"), vocab = config.at("vocab_size");
  const std::int64_t positions = config.at("max_position_embeddings");
  nn::TensorMap w("text encoder");
  auto add = [&](const std::string& key, std::vector<std::int64_t> shape) {
    w.set(key, init(key, shape));
  };
  auto linear = [&](const std::string& prefix, std::int64_t in, std::int64_t out) {
    add(prefix + ".weight", {out, in});
    add(prefix + ".bias", {out});
  };
  auto norm = [&](const std::string& prefix) {
    add(prefix + ".weight", {hidden});
    add(prefix + ".bias", {hidden});
  };
  add("text_model.embeddings.token_embedding.weight", {vocab, hidden});
  add("text_model.embeddings.position_embedding.weight", {positions, hidden});
  for (std::int64_t i = 0; i < layers; ++i) {
    const std::string layer = "text_model.encoder.layers." + std::to_string(i);
    for (const char* proj : {"q_proj", "k_proj", "v_proj", "out_proj"}) {
      linear(layer + ".self_attn." + proj, hidden, hidden);
    }
    norm(layer + ".layer_norm1");
    norm(layer + ".layer_norm2");
    linear(layer + ".mlp.fc1", hidden, inter);
    linear(layer + ".mlp.fc2", inter, hidden);
  }
  norm("text_model.final_layer_norm");
  if (config.contains("projection_dim")) {
    add("text_projection.weight", {config.at("projection_dim").get<std::int64_t>(), hidden});
  }
  return w;
}

void write_json(const fs::path& file, const json& value) {
  std::ofstream out(file);
  out << value.dump(2) << "\n";
  if (!out) throw sdk::Error(sdk::ErrorCode::OutputError, "cannot write " + file.string());
}

void copy_folder_files(const fs::path& from, const fs::path& to) {
  if (!fs::is_directory(from)) {
    throw sdk::Error(sdk::ErrorCode::OutputError, "tokenizer folder not found: " + from.string());
  }
  fs::create_directories(to);
  for (const auto& entry : fs::directory_iterator(from)) {
    if (entry.is_regular_file()) {
      fs::copy_file(entry.path(), to / entry.path().filename(), fs::copy_options::overwrite_existing);
    }
  }
}

/// The CLIP / GPT-2 byte alphabet: printable bytes stand for themselves, the others (controls,
/// space, 127-160, 173) for code points from 256 on, in the order CLIP lists them.
std::vector<std::string> byte_symbols() {
  auto utf8 = [](unsigned code) {
    std::string out;
    if (code < 0x80) {
      out += static_cast<char>(code);
    } else {
      out += static_cast<char>(0xC0 | (code >> 6));
      out += static_cast<char>(0x80 | (code & 0x3F));
    }
    return out;
  };
  auto printable = [](unsigned b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; };
  std::vector<std::string> symbols;
  for (unsigned b = 0; b < 256; ++b) {
    if (printable(b)) symbols.push_back(utf8(b));
  }
  unsigned next = 256;
  for (unsigned b = 0; b < 256; ++b) {
    if (!printable(b)) symbols.push_back(utf8(next++));
  }
  return symbols;
}

/// The built-in merges, in rank order: every piece is made of symbols that exist before it.
const std::vector<std::pair<std::string, std::string>>& builtin_merges() {
  static const std::vector<std::pair<std::string, std::string>> merges = {
      {"t", "h"}, {"i", "n"}, {"a", "n"}, {"r", "e"}, {"o", "n"},
      {"e", "r"}, {"th", "e</w>"}, {"o", "f</w>"}, {"a", "t</w>"}, {"c", "at</w>"},
      {"d", "o"}, {"do", "g</w>"}, {"p", "h"}, {"ph", "o"}, {"t", "o</w>"},
      {"pho", "to</w>"}, {"an", "d</w>"}, {"in", "g</w>"}, {"o", "r"}, {"s", "t"},
      {"l", "e"}, {"i", "s</w>"}, {"o", "n</w>"}, {"e", "d</w>"}, {"w", "i"},
      {"t", "h</w>"}, {"wi", "th</w>"}, {"p", "o"}, {"po", "r"}, {"por", "t</w>"},
      {"i", "t</w>"}, {"a", "r"}, {"s", "k"}, {"e", "n"}, {"l", "i"},
      {"g", "h"}, {"li", "gh"}, {"ligh", "t</w>"}, {"re", "d</w>"}, {"b", "l"},
  };
  return merges;
}

/// vocab.json contents: byte symbols, their </w> forms, merged pieces, the special tokens.
json builtin_vocab() {
  const std::vector<std::string> symbols = byte_symbols();
  json vocab = json::object();
  auto add = [&](const std::string& token) {
    if (!vocab.contains(token)) vocab[token] = static_cast<std::int64_t>(vocab.size());
  };
  for (const auto& symbol : symbols) add(symbol);
  for (const auto& symbol : symbols) add(symbol + "</w>");
  for (const auto& [left, right] : builtin_merges()) add(left + right);
  add("<|startoftext|>");
  add("<|endoftext|>");
  return vocab;
}

json special_token(const std::string& content, bool normalized) {
  return {{"content", content}, {"lstrip", false}, {"normalized", normalized}, {"rstrip", false},
          {"single_word", false}};
}

}  // namespace

std::int64_t builtin_tokenizer_vocab_size() { return static_cast<std::int64_t>(builtin_vocab().size()); }

void set_text_vocab_size(SdxlSpec& spec, std::int64_t vocab_size) {
  spec.text_encoder["vocab_size"] = vocab_size;
  spec.text_encoder_2["vocab_size"] = vocab_size;
}

void write_builtin_tokenizer(const fs::path& dir, const std::string& pad_token) {
  fs::create_directories(dir);
  const json vocab = builtin_vocab();
  {
    std::ofstream out(dir / "vocab.json");
    out << vocab.dump(1) << "\n";
    if (!out) throw sdk::Error(sdk::ErrorCode::OutputError, "cannot write " + (dir / "vocab.json").string());
  }
  {
    std::ofstream out(dir / "merges.txt");
    out << "#version: 0.2\n";
    for (const auto& [left, right] : builtin_merges()) out << left << ' ' << right << "\n";
    if (!out) throw sdk::Error(sdk::ErrorCode::OutputError, "cannot write " + (dir / "merges.txt").string());
  }
  if (!vocab.contains(pad_token)) {
    throw sdk::Error(sdk::ErrorCode::OutputError, "pad token '" + pad_token + "' is not in the built-in vocabulary");
  }
  json added = json::object();
  if (pad_token != "<|endoftext|>") {
    added[std::to_string(vocab.at(pad_token).get<std::int64_t>())] = special_token(pad_token, false);
    added[std::to_string(vocab.at(pad_token).get<std::int64_t>())]["special"] = true;
  }
  for (const char* token : {"<|startoftext|>", "<|endoftext|>"}) {
    json entry = special_token(token, true);
    entry["special"] = true;
    added[std::to_string(vocab.at(token).get<std::int64_t>())] = entry;
  }
  write_json(dir / "tokenizer_config.json",
             {{"added_tokens_decoder", added},
              {"bos_token", "<|startoftext|>"},
              {"clean_up_tokenization_spaces", true},
              {"eos_token", "<|endoftext|>"},
              {"errors", "replace"},
              {"model_max_length", 77},
              {"pad_token", pad_token},
              {"tokenizer_class", "CLIPTokenizer"},
              {"unk_token", "<|endoftext|>"}});
  write_json(dir / "special_tokens_map.json",
             {{"bos_token", special_token("<|startoftext|>", true)},
              {"eos_token", special_token("<|endoftext|>", true)},
              {"pad_token", pad_token},
              {"unk_token", special_token("<|endoftext|>", true)}});
}

SdxlSpec tiny_spec() {
  SdxlSpec s;
  s.name = "tiny";
  nn::UNetConfig& u = s.unet;
  u.block_out_channels = {32, 64};
  u.layers_per_block = 2;
  u.down_attention = {false, true};
  u.up_attention = {true, false};
  u.transformer_depth = {1, 2};
  u.up_transformer_depth = {2, 1};
  u.mid_transformer_depth = 2;
  u.attention_heads = {1, 1};  // 64-wide heads, as SDXL
  u.cross_attention_dim = 128;  // 64 (text_encoder) + 64 (text_encoder_2)
  u.use_linear_projection = true;
  u.text_time_embedding = true;
  u.addition_time_embed_dim = 8;
  u.projection_class_embeddings_input_dim = 64 + 6 * 8;
  s.vae = tiny_vae();
  s.text_encoder = clip_config(64, 128, 2, "quick_gelu", 0);
  s.text_encoder_2 = clip_config(64, 128, 2, "gelu", 64);
  return s;
}

SdxlSpec sdxl_width_spec() {
  SdxlSpec s = tiny_spec();
  s.name = "sdxl-width";
  nn::UNetConfig& u = s.unet;
  u.block_out_channels = {320, 640, 1280};
  u.down_attention = {false, true, true};
  u.up_attention = {true, true, false};
  u.transformer_depth = {1, 1, 1};
  u.up_transformer_depth = {1, 1, 1};
  u.mid_transformer_depth = 1;
  u.attention_heads = {5, 10, 20};
  u.cross_attention_dim = 2048;
  u.addition_time_embed_dim = 256;
  u.projection_class_embeddings_input_dim = 1280 + 6 * 256;
  s.vae.block_out_channels = {128, 256, 512, 512};
  s.vae.layers_per_block = 2;
  s.vae.sample_size = 1024;
  // SDXL's text encoder widths (CLIP-L 768, OpenCLIP bigG 1280 with a 1280 projection), so the
  // UNet's 2048-wide cross-attention gets what it expects; two layers each (a width preset).
  s.text_encoder = clip_config(768, 3072, 2, "quick_gelu", 0);
  s.text_encoder_2 = clip_config(1280, 5120, 2, "gelu", 1280);
  return s;
}

SdxlSpec sdxl_base_spec() {
  SdxlSpec s = sdxl_width_spec();
  s.name = "sdxl";
  nn::UNetConfig& u = s.unet;
  u.transformer_depth = {1, 2, 10};
  u.up_transformer_depth = {10, 2, 1};
  u.mid_transformer_depth = 10;
  s.text_encoder = clip_config(768, 3072, 12, "quick_gelu", 0);
  s.text_encoder_2 = clip_config(1280, 5120, 32, "gelu", 1280);
  return s;
}

SdxlWeights make_weights(const SdxlSpec& spec, std::uint64_t seed, at::ScalarType dtype) {
  SdxlWeights w;
  RandomInit init(seed, dtype);
  auto initializer = [&](const std::string& key, const std::vector<std::int64_t>& shape) {
    return init(key, shape);
  };
  w.unet = nn::UNet2DConditionModel::create(spec.unet, initializer, dtype)->state_dict();
  w.vae = nn::AutoencoderKL::create(spec.vae, initializer, dtype)->state_dict();
  w.text_encoder = clip_weights(spec.text_encoder, init);
  w.text_encoder_2 = clip_weights(spec.text_encoder_2, init);
  return w;
}

void write_diffusers_folder(const fs::path& dir, const SdxlSpec& spec, const SdxlWeights& weights,
                            const fs::path& tokenizer_source) {
  fs::create_directories(dir);
  write_json(dir / "model_index.json",
             {{"_class_name", "StableDiffusionXLPipeline"},
              {"_diffusers_version", "0.27.2"},
              {"force_zeros_for_empty_prompt", true},
              {"scheduler", {"diffusers", "EulerDiscreteScheduler"}},
              {"text_encoder", {"transformers", "CLIPTextModel"}},
              {"text_encoder_2", {"transformers", "CLIPTextModelWithProjection"}},
              {"tokenizer", {"transformers", "CLIPTokenizer"}},
              {"tokenizer_2", {"transformers", "CLIPTokenizer"}},
              {"unet", {"diffusers", "UNet2DConditionModel"}},
              {"vae", {"diffusers", "AutoencoderKL"}}});
  struct Part {
    const char* folder;
    json config;
    const nn::TensorMap* tensors;
    const char* file;
  };
  const Part parts[] = {
      {"unet", spec.unet.to_json(), &weights.unet, "diffusion_pytorch_model.safetensors"},
      {"vae", spec.vae.to_json(), &weights.vae, "diffusion_pytorch_model.safetensors"},
      {"text_encoder", spec.text_encoder, &weights.text_encoder, "model.safetensors"},
      {"text_encoder_2", spec.text_encoder_2, &weights.text_encoder_2, "model.safetensors"},
  };
  for (const Part& part : parts) {
    fs::create_directories(dir / part.folder);
    write_json(dir / part.folder / "config.json", part.config);
    nn::write_safetensors(dir / part.folder / part.file, *part.tensors, {{"format", "pt"}});
  }
  fs::create_directories(dir / "scheduler");
  write_json(dir / "scheduler" / "scheduler_config.json", nn::sdxl_scheduler_config());
  if (tokenizer_source.empty()) {
    write_builtin_tokenizer(dir / "tokenizer", "<|endoftext|>");
    write_builtin_tokenizer(dir / "tokenizer_2", "!");
    return;
  }
  copy_folder_files(tokenizer_source / "tokenizer", dir / "tokenizer");
  copy_folder_files(tokenizer_source / "tokenizer_2", dir / "tokenizer_2");
}

void write_single_file(const fs::path& file, const SdxlWeights& weights) {
  std::map<nn::Component, nn::TensorMap> components{
      {nn::Component::Unet, weights.unet},
      {nn::Component::Vae, weights.vae},
      {nn::Component::TextEncoder, weights.text_encoder},
      {nn::Component::TextEncoder2, weights.text_encoder_2}};
  if (!file.parent_path().empty()) fs::create_directories(file.parent_path());
  nn::write_safetensors(file, nn::diffusers_to_ldm_checkpoint(components), {{"format", "pt"}});
}

}  // namespace sdxlhost::tools
