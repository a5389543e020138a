// Model configs: inferred from full-size (meta) and tiny weights, compared with the real config.json files.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "nn_test_util.hpp"
#include "sdxlhost/nn/model_config.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/sdk/error.hpp"

using namespace sdxlhost::nn;
using sdxlhost::test_support::meta_tensors;
using sdxlhost::test_support::read_golden_json;

namespace {

/// transformer_layers_per_block as a list (configs may hold one int for every level).
std::vector<int64_t> depth_list(const nlohmann::json& config) {
  const auto& depth = config["transformer_layers_per_block"];
  if (depth.is_number()) return std::vector<int64_t>(config["block_out_channels"].size(), depth.get<int64_t>());
  return depth.get<std::vector<int64_t>>();
}

/// Compares the fields shapes determine; depth only where a level has attention.
void expect_unet_matches(const nlohmann::json& got, const nlohmann::json& want, bool compare_heads) {
  for (const char* key : {"in_channels", "out_channels", "layers_per_block", "block_out_channels",
                          "down_block_types", "up_block_types", "mid_block_type", "cross_attention_dim",
                          "use_linear_projection", "addition_embed_type", "addition_time_embed_dim",
                          "projection_class_embeddings_input_dim", "norm_num_groups", "flip_sin_to_cos",
                          "freq_shift"})
    EXPECT_EQ(got[key], want[key]) << key;
  const auto got_depth = depth_list(got), want_depth = depth_list(want);
  for (std::size_t i = 0; i < want_depth.size(); ++i)
    if (want["down_block_types"][i] != "DownBlock2D") EXPECT_EQ(got_depth[i], want_depth[i]) << "depth " << i;
  if (compare_heads) EXPECT_EQ(got["attention_head_dim"], want["attention_head_dim"]);
}

}  // namespace

TEST(ModelConfig, FullSizeUnetConfigsAreInferredFromShapes) {
  const auto base = infer_unet_config(meta_tensors(read_golden_json("keys/sdxl_base_diffusers_unet.json")), 1280);
  expect_unet_matches(base, read_golden_json("keys/configs/sdxl_base_unet_config.json"), true);
  EXPECT_EQ(unet_time_id_count(base, 1280), 6);
  const auto refiner = infer_unet_config(meta_tensors(read_golden_json("keys/sdxl_refiner_diffusers_unet.json")), 1280);
  expect_unet_matches(refiner, read_golden_json("keys/configs/sdxl_refiner_unet_config.json"), true);
  EXPECT_EQ(unet_time_id_count(refiner, 1280), 5);
  // Without the pooled size: 256, as diffusers' single-file loader assumes.
  EXPECT_EQ(infer_unet_config(meta_tensors(read_golden_json("keys/sdxl_refiner_diffusers_unet.json")))["addition_time_embed_dim"], 256);
}

TEST(ModelConfig, TinyUnetAndVaeConfigsMatchTheirConfigJson) {
  const auto root = sdxlhost::test_support::shared_dir() / "goldens/models/tiny_sdxl";
  auto unet = SafetensorsFile::open(root / "unet/diffusion_pytorch_model.safetensors");
  // Tiny heads are 16 wide, which shapes cannot reveal: heads are not compared (docs/nn.md).
  expect_unet_matches(infer_unet_config(unet->tensors(), 32), read_golden_json("models/tiny_sdxl/unet/config.json"), false);
  auto vae = SafetensorsFile::open(root / "vae/diffusion_pytorch_model.safetensors");
  const auto got = infer_vae_config(vae->tensors());
  const auto want = read_golden_json("models/tiny_sdxl/vae/config.json");
  for (const char* key : {"in_channels", "out_channels", "latent_channels", "block_out_channels",
                          "layers_per_block", "down_block_types", "up_block_types", "norm_num_groups",
                          "scaling_factor", "force_upcast"})
    EXPECT_EQ(got[key], want[key]) << key;
}

TEST(ModelConfig, FullSizeVaeAndTextEncoderConfigs) {
  const auto vae = infer_vae_config(meta_tensors(read_golden_json("keys/sdxl_base_diffusers_vae.json")));
  const auto want = read_golden_json("keys/configs/sdxl_vae_config.json");
  for (const char* key : {"in_channels", "out_channels", "latent_channels", "block_out_channels",
                          "layers_per_block", "down_block_types", "up_block_types", "scaling_factor"})
    EXPECT_EQ(vae[key], want[key]) << key;

  const std::pair<const char*, const char*> encoders[] = {
      {"keys/sdxl_base_diffusers_text_encoder.json", "keys/configs/text_encoder_clip_l_config.json"},
      {"keys/sdxl_base_diffusers_text_encoder_2.json", "keys/configs/text_encoder_2_openclip_bigg_config.json"}};
  for (const auto& [keys, config] : encoders) {
    const bool open_clip = std::string(keys).find("_2") != std::string::npos;
    const ClipTextConfig got = ClipTextConfig::infer(meta_tensors(read_golden_json(keys)), open_clip);
    const ClipTextConfig ref = ClipTextConfig::from_json(read_golden_json(config));
    EXPECT_EQ(got.vocab_size, ref.vocab_size);
    EXPECT_EQ(got.hidden_size, ref.hidden_size);
    EXPECT_EQ(got.intermediate_size, ref.intermediate_size);
    EXPECT_EQ(got.num_hidden_layers, ref.num_hidden_layers);
    EXPECT_EQ(got.num_attention_heads, ref.num_attention_heads);
    EXPECT_EQ(got.max_position_embeddings, ref.max_position_embeddings);
    EXPECT_EQ(got.hidden_act, ref.hidden_act);
    EXPECT_EQ(got.projection_dim, ref.projection_dim);
    EXPECT_EQ(got.eos_token_id, ref.eos_token_id);
  }
}

TEST(ModelConfig, BadConfigsAreRefused) {
  EXPECT_THROW(ClipTextConfig::from_json(nlohmann::json::array()), sdxlhost::sdk::Error);
  EXPECT_THROW(ClipTextConfig::from_json({{"hidden_size", "big"}}), sdxlhost::sdk::Error);
  EXPECT_THROW(ClipTextConfig::from_json({{"hidden_size", 30}, {"num_attention_heads", 4}}), sdxlhost::sdk::Error);
  EXPECT_THROW(ClipTextConfig::from_json({{"hidden_act", "relu"}}), sdxlhost::sdk::Error);
  EXPECT_THROW(ClipTextConfig::from_json({{"num_hidden_layers", 1000000000}}), sdxlhost::sdk::Error);
  EXPECT_THROW(infer_unet_config(TensorMap()), sdxlhost::sdk::Error);
}
