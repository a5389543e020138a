// tools/make_tiny_sdxl's writer: both layouts hold the same model; the single file's config is
// inferred from its shapes and equals the folder's config.json; weights are deterministic.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>

#include "common/goldens.hpp"
#include "sdxlhost/nn/key_map.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/nn/unet.hpp"
#include "sdxlhost/nn/vae.hpp"
#include "tiny_sdxl_model.hpp"

namespace fs = std::filesystem;
using namespace sdxlhost;
using namespace sdxlhost::test_support;

namespace {

struct Written {
  fs::path root = fs::temp_directory_path() / ("sdxl_tiny_" + std::to_string(::getpid()));
  fs::path folder = root / "tiny-sdxl";
  fs::path single = root / "tiny-sdxl-single.safetensors";
  tools::SdxlSpec spec = tools::tiny_spec();
  tools::SdxlWeights weights = tools::make_weights(spec, 7);
  Written() {
    tools::write_diffusers_folder(folder, spec, weights, golden("models/tiny_sdxl"));
    tools::write_single_file(single, weights);
  }
  ~Written() { fs::remove_all(root); }
};

Written& written() {
  static Written w;
  return w;
}

void expect_same_tensors(const nn::TensorMap& a, const nn::TensorMap& b, const std::string& what) {
  ASSERT_EQ(a.names(), b.names()) << what;
  for (const auto& [key, tensor] : a) {
    EXPECT_TRUE(at::equal(tensor, b.at(key))) << what << " " << key;
  }
}

}  // namespace

TEST(TinyModel, FolderHasEveryPartOfADiffusersPipeline) {
  const fs::path& dir = written().folder;
  for (const char* file : {"model_index.json", "scheduler/scheduler_config.json", "unet/config.json",
                           "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
                           "vae/diffusion_pytorch_model.safetensors", "text_encoder/config.json",
                           "text_encoder/model.safetensors", "text_encoder_2/config.json",
                           "text_encoder_2/model.safetensors", "tokenizer/vocab.json",
                           "tokenizer/merges.txt", "tokenizer_2/vocab.json", "tokenizer_2/merges.txt"}) {
    EXPECT_TRUE(fs::is_regular_file(dir / file)) << file;
  }
  EXPECT_EQ(read_json(dir / "scheduler/scheduler_config.json")["_class_name"], "EulerDiscreteScheduler");
  EXPECT_EQ(read_json(dir / "text_encoder_2/config.json")["projection_dim"], 64);
}

TEST(TinyModel, SingleFileSplitsIntoTheFolderWeights) {
  const auto file = nn::SafetensorsFile::open(written().single);
  EXPECT_TRUE(file->contains("model.diffusion_model.input_blocks.0.0.weight"));
  EXPECT_TRUE(file->contains("conditioner.embedders.1.model.text_projection"));
  const nn::SplitCheckpoint split = nn::ldm_checkpoint_to_diffusers(file->tensors());
  const fs::path& dir = written().folder;
  expect_same_tensors(split.components.at(nn::Component::Unet),
                      load_tensors(dir / "unet/diffusion_pytorch_model.safetensors"), "unet");
  expect_same_tensors(split.components.at(nn::Component::Vae),
                      load_tensors(dir / "vae/diffusion_pytorch_model.safetensors"), "vae");
  expect_same_tensors(split.components.at(nn::Component::TextEncoder2),
                      load_tensors(dir / "text_encoder_2/model.safetensors"), "text_encoder_2");
}

TEST(TinyModel, SingleFileConfigIsInferredAndGivesTheSameUNetOutput) {
  const fs::path& dir = written().folder;
  const auto split = nn::ldm_checkpoint_to_diffusers(nn::SafetensorsFile::open(written().single)->tensors());
  const nn::TensorMap& unet_weights = split.components.at(nn::Component::Unet);
  const std::int64_t pooled = split.components.at(nn::Component::TextEncoder2).at("text_projection.weight").size(0);
  const nn::UNetConfig inferred = nn::UNetConfig::infer(unet_weights, 64, pooled);
  const nn::UNetConfig from_folder = nn::UNetConfig::from_json(read_json(dir / "unet/config.json"));
  EXPECT_EQ(inferred.to_json().dump(), from_folder.to_json().dump());

  auto a = nn::UNet2DConditionModel::load(inferred, unet_weights);
  auto b = nn::UNet2DConditionModel::load(from_folder, load_tensors(dir / "unet/diffusion_pytorch_model.safetensors"));
  const at::Tensor x = at::randn({1, 4, 16, 16}), ctx = at::randn({1, 77, 128});
  const at::Tensor pooled_embeds = at::randn({1, 64}), ids = at::tensor({32.f, 32.f, 0.f, 0.f, 32.f, 32.f}).view({1, 6});
  const at::Tensor out_a = a->forward(x, at::tensor(500.f), ctx, pooled_embeds, ids);
  EXPECT_TRUE(at::equal(out_a, b->forward(x, at::tensor(500.f), ctx, pooled_embeds, ids)));
  EXPECT_GT(out_a.std().item<double>(), 1e-3);  // not a degenerate model

  const nn::VaeConfig vae_inferred = nn::VaeConfig::infer(split.components.at(nn::Component::Vae));
  nn::VaeConfig vae_folder = nn::VaeConfig::from_json(read_json(dir / "vae/config.json"));
  vae_folder.sample_size = vae_inferred.sample_size;
  EXPECT_EQ(vae_inferred.to_json().dump(), vae_folder.to_json().dump());
}

TEST(TinyModel, WeightsAreDeterministicPerSeed) {
  const tools::SdxlSpec spec = tools::tiny_spec();
  const auto again = tools::make_weights(spec, 7);
  const auto other = tools::make_weights(spec, 8);
  const std::string key = "down_blocks.1.attentions.0.proj_in.weight";
  EXPECT_TRUE(at::equal(again.unet.at(key), written().weights.unet.at(key)));
  EXPECT_FALSE(at::equal(other.unet.at(key), written().weights.unet.at(key)));
}

// Every preset of make_tiny_sdxl fits together: the UNet's cross-attention is the two text
// encoders' widths side by side and its add-embedding takes the pooled projection plus 6 time
// ids, so a model written with any preset generates end to end (sdxl-width's text encoders
// were tiny once, and its checkpoints failed with "encoder_hidden_states must be (N, L, 2048)").
TEST(TinyModel, EveryPresetsPartsFitTogether) {
  for (const auto& spec : {tools::tiny_spec(), tools::sdxl_width_spec(), tools::sdxl_base_spec()}) {
    SCOPED_TRACE(spec.name);
    const std::int64_t te1 = spec.text_encoder.at("hidden_size"), te2 = spec.text_encoder_2.at("hidden_size");
    EXPECT_EQ(spec.unet.cross_attention_dim, te1 + te2);
    EXPECT_EQ(spec.unet.projection_class_embeddings_input_dim,
              spec.text_encoder_2.at("projection_dim").get<std::int64_t>() + 6 * spec.unet.addition_time_embed_dim);
    for (const auto& te : {spec.text_encoder, spec.text_encoder_2})
      EXPECT_EQ(te.at("num_attention_heads").get<std::int64_t>() * 64, te.at("hidden_size").get<std::int64_t>());
  }
}

// The sdxl preset is the real SDXL base architecture: every UNet key with its full-size shape
// (built on the meta device: no memory), and the text encoders' configs as released.
TEST(TinyModel, SdxlPresetHasTheFullSizeBaseShapes) {
  const tools::SdxlSpec spec = tools::sdxl_base_spec();
  auto meta_init = [](const std::string&, const std::vector<std::int64_t>& shape) {
    return at::empty(shape, at::TensorOptions().device(at::kMeta));
  };
  auto unet = nn::UNet2DConditionModel::create(spec.unet, meta_init, at::kFloat, at::Device(at::kMeta));
  const nn::TensorMap made = unet->state_dict();
  const nn::TensorMap full = meta_tensors(golden("keys/sdxl_base_diffusers_unet.json"));
  ASSERT_EQ(made.names(), full.names());
  for (const auto& [key, tensor] : full) EXPECT_EQ(made.at(key).sizes(), tensor.sizes()) << key;
  const std::vector<std::pair<nlohmann::json, std::string>> encoders = {
      {spec.text_encoder, "keys/configs/text_encoder_clip_l_config.json"},
      {spec.text_encoder_2, "keys/configs/text_encoder_2_openclip_bigg_config.json"}};
  for (const auto& [made_config, file] : encoders) {
    std::ifstream in(golden(file));
    const nlohmann::json released = nlohmann::json::parse(in);
    for (const char* key : {"hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "hidden_act"})
      EXPECT_EQ(made_config.at(key), released.at(key)) << file << " " << key;
  }
  EXPECT_EQ(spec.text_encoder_2.at("projection_dim"), 1280);
}
