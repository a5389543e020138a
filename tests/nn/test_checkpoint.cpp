// Opening checkpoints: diffusers folders, single files (with metadata configs), single components,
// shards; the same tensors whichever way they come.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <fstream>

#include "nn_test_util.hpp"
#include "sdxlhost/nn/checkpoint.hpp"
#include "sdxlhost/nn/model_config.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/sdk/error.hpp"

using namespace sdxlhost::nn;
namespace fs = std::filesystem;

namespace {

fs::path tiny() { return sdxlhost::test_support::shared_dir() / "goldens/models/tiny_sdxl"; }

void expect_same_tensors(const TensorMap& got, const TensorMap& want, const std::string& what) {
  ASSERT_EQ(got.names(), want.names()) << what;
  for (const auto& [key, tensor] : want) EXPECT_TRUE(at::equal(got.at(key), tensor)) << what << " " << key;
}

}  // namespace

TEST(Checkpoint, DiffusersFolderAndSingleFileGiveTheSameComponents) {
  const CheckpointWeights folder = open_checkpoint(tiny());
  EXPECT_EQ(folder.layout, KeyLayout::Diffusers);
  ASSERT_EQ(folder.components.size(), 4u);
  EXPECT_EQ(folder.configs.at(Component::Unet)["cross_attention_dim"], 64);

  sdxlhost::test_support::TempDir dir;
  const fs::path file = dir.path() / "tiny_sdxl.safetensors";
  write_single_file_checkpoint(file, folder);
  const CheckpointWeights single = open_checkpoint(file);
  EXPECT_EQ(single.layout, KeyLayout::Ldm);
  EXPECT_TRUE(single.ignored.empty());
  for (const auto& [component, weights] : folder.components) {
    expect_same_tensors(single.components.at(component), weights, component_folder(component));
    EXPECT_EQ(single.configs.at(component), folder.configs.at(component)) << component_folder(component);
  }
}

TEST(Checkpoint, SingleFileWithoutConfigsInfersThemOrSaysWhatIsMissing) {
  const CheckpointWeights folder = open_checkpoint(tiny());
  sdxlhost::test_support::TempDir dir;
  const fs::path file = dir.path() / "no_metadata.safetensors";
  write_safetensors(file, diffusers_to_ldm_checkpoint({{Component::Unet, folder.components.at(Component::Unet)},
                                                      {Component::Vae, folder.components.at(Component::Vae)}}));
  const CheckpointWeights single = open_checkpoint(file);
  EXPECT_EQ(single.configs.at(Component::Vae)["block_out_channels"], folder.configs.at(Component::Vae)["block_out_channels"]);
  EXPECT_EQ(single.configs.at(Component::Unet)["block_out_channels"], folder.configs.at(Component::Unet)["block_out_channels"]);
  // The tiny text encoders have 8-wide heads, which shapes cannot reveal: a clear error.
  write_safetensors(file, diffusers_to_ldm_checkpoint({{Component::TextEncoder, folder.components.at(Component::TextEncoder)}}));
  try {
    open_checkpoint(file);
    FAIL();
  } catch (const sdxlhost::sdk::Error& e) {
    EXPECT_EQ(e.code(), sdxlhost::sdk::ErrorCode::ModelLoadError);
    EXPECT_NE(std::string(e.what()).find("config.json"), std::string::npos) << e.what();
  }
}

TEST(Checkpoint, StandaloneVaeFileInLdmNames) {
  const CheckpointWeights vae_folder = open_component(Component::Vae, tiny() / "vae");
  const TensorMap& vae = vae_folder.components.at(Component::Vae);
  sdxlhost::test_support::TempDir dir;
  const fs::path file = dir.path() / "custom_vae.safetensors";
  write_safetensors(file, KeyMap::for_component(Component::Vae, KeyLayout::Diffusers, vae.names()).to_ldm(vae));
  const CheckpointWeights opened = open_component(Component::Vae, file);
  EXPECT_EQ(opened.layout, KeyLayout::Ldm);
  expect_same_tensors(opened.components.at(Component::Vae), vae, "vae");
  EXPECT_EQ(opened.configs.at(Component::Vae)["latent_channels"], 4);
  // Diffusers names in a bare file work too.
  write_safetensors(file, vae);
  expect_same_tensors(open_component(Component::Vae, file).components.at(Component::Vae), vae, "bare diffusers vae");
}

TEST(Checkpoint, ShardedFolder) {
  const TensorMap te = SafetensorsFile::open(tiny() / "text_encoder/model.safetensors")->tensors();
  sdxlhost::test_support::TempDir dir;
  TensorMap first, second;
  nlohmann::json index = {{"metadata", nlohmann::json::object()}, {"weight_map", nlohmann::json::object()}};
  std::size_t i = 0;
  for (const auto& [key, tensor] : te) {
    const bool in_first = i++ % 2 == 0;
    (in_first ? first : second).set(key, tensor);
    index["weight_map"][key] = in_first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  write_safetensors(dir.path() / "model-00001-of-00002.safetensors", first);
  write_safetensors(dir.path() / "model-00002-of-00002.safetensors", second);
  std::ofstream(dir.path() / "model.safetensors.index.json") << index.dump();
  fs::copy_file(tiny() / "text_encoder/config.json", dir.path() / "config.json");
  expect_same_tensors(open_component(Component::TextEncoder, dir.path()).components.at(Component::TextEncoder), te, "shards");

  index["weight_map"][te.names().front()] = "../escape.safetensors";
  std::ofstream(dir.path() / "model.safetensors.index.json") << index.dump();
  EXPECT_THROW(open_component(Component::TextEncoder, dir.path()), sdxlhost::sdk::Error);
}

TEST(Checkpoint, NotACheckpointIsAClearError) {
  sdxlhost::test_support::TempDir dir;
  EXPECT_THROW(open_checkpoint(dir.path()), sdxlhost::sdk::Error);
  TensorMap junk;
  junk.set("hello", at::zeros({2}));
  write_safetensors(dir.path() / "junk.safetensors", junk);
  EXPECT_THROW(open_checkpoint(dir.path() / "junk.safetensors"), sdxlhost::sdk::Error);
  EXPECT_THROW(open_checkpoint(dir.path() / "absent.safetensors"), sdxlhost::sdk::Error);
}
