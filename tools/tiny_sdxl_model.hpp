#pragma once
/// @file tiny_sdxl_model.hpp
/// Random-weight SDXL-architecture models for tests, the demo and benchmarks, written in both
/// layouts users have: a diffusers folder (model_index.json, unet/, vae/, text_encoder/,
/// text_encoder_2/, tokenizer/, tokenizer_2/, scheduler/, each with its config) and a single-file
/// checkpoint with the original (LDM/SGM) key names. Weights are deterministic for a seed.
/// The attention heads are 64 wide everywhere (as in SDXL), so a single file's config can be
/// inferred from its shapes and gives the same model as the folder.

#include <cstdint>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "sdxlhost/nn/tensor_map.hpp"
#include "sdxlhost/nn/unet.hpp"
#include "sdxlhost/nn/vae.hpp"

namespace sdxlhost::tools {

/// What to build: the four model configs.
struct SdxlSpec {
  std::string name;              ///< "tiny" or "sdxl-width"
  nn::UNetConfig unet;           ///< the UNet
  nn::VaeConfig vae;             ///< the VAE
  nlohmann::json text_encoder;    ///< transformers CLIPTextConfig (config.json)
  nlohmann::json text_encoder_2;  ///< transformers CLIPTextConfig with projection_dim
};

/// The default tiny model: UNet (32, 64) channels, 2 + 1 transformer blocks, cross-attention 128,
/// text encoders of width 64 (one 64-wide head, 2 layers, vocab 1000), the 2-level tiny VAE.
SdxlSpec tiny_spec();
/// SDXL base widths (320/640/1280 channels, 5/10/20 heads, cross-attention 2048, full SDXL VAE)
/// with one transformer block per attention instead of 2/10, to benchmark real layer sizes
/// without 10 GB of weights. Text encoders of SDXL's widths (768 and 1280, projection 1280)
/// with 2 layers each, so the model generates end to end.
SdxlSpec sdxl_width_spec();
/// The full SDXL base architecture (UNet 2/10 transformer blocks, 10 in the mid block; CLIP-L
/// with 12 layers, bigG with 32): real shapes, random weights (about 3.5 B parameters).
SdxlSpec sdxl_base_spec();

/// The weights of every component (diffusers / transformers key names).
struct SdxlWeights {
  nn::TensorMap unet;            ///< UNet2DConditionModel keys
  nn::TensorMap vae;             ///< AutoencoderKL keys
  nn::TensorMap text_encoder;    ///< CLIPTextModel keys
  nn::TensorMap text_encoder_2;  ///< CLIPTextModelWithProjection keys
};

/// Deterministic random weights for `spec` (PyTorch-like init: uniform +-1/sqrt(fan_in) for
/// matrices and biases, ones for norm scales), stored as `dtype`.
SdxlWeights make_weights(const SdxlSpec& spec, std::uint64_t seed, at::ScalarType dtype = at::kFloat);

/// Entries in the built-in tokenizer's vocabulary (write_builtin_tokenizer): 256 byte symbols,
/// their 256 `</w>` forms, the merges and the two special tokens.
std::int64_t builtin_tokenizer_vocab_size();
/// Sets both text encoders' vocab_size (their token embedding rows) to `vocab_size`.
void set_text_vocab_size(SdxlSpec& spec, std::int64_t vocab_size);
/// Writes a small, valid CLIP byte-level BPE tokenizer to `dir` (created): vocab.json (the CLIP
/// byte alphabet, its `</w>` forms, a few dozen merges of common English pieces, then
/// `<|startoftext|>` and `<|endoftext|>` as the last two ids, as in CLIP), merges.txt,
/// tokenizer_config.json and special_tokens_map.json with `pad_token` ("<|endoftext|>" for
/// tokenizer/, "!" for tokenizer_2/, as SDXL). Needs no files from elsewhere.
void write_builtin_tokenizer(const std::filesystem::path& dir, const std::string& pad_token);

/// Writes a diffusers pipeline folder to `dir` (created). The tokenizers are copied from
/// `tokenizer_source`/{tokenizer,tokenizer_2} (e.g. the shared goldens' models/tiny_sdxl, 1000
/// tokens) or, when it is empty, written by write_builtin_tokenizer (then the spec's text
/// encoders must have builtin_tokenizer_vocab_size() rows). Throws sdk::Error(OutputError) on
/// I/O failure.
void write_diffusers_folder(const std::filesystem::path& dir, const SdxlSpec& spec,
                            const SdxlWeights& weights,
                            const std::filesystem::path& tokenizer_source);
/// Writes one single-file checkpoint with LDM/SGM key names (model.diffusion_model., ...).
void write_single_file(const std::filesystem::path& file, const SdxlWeights& weights);

}  // namespace sdxlhost::tools
