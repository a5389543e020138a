// CLIP text encoders: parity with the text_encoder_io / text_encoder_2_io goldens (every hidden
// state), full-size key coverage, and clear load errors.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "nn_test_util.hpp"
#include "sdxlhost/nn/clip_text_model.hpp"
#include "sdxlhost/nn/key_map.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/sdk/error.hpp"

using namespace sdxlhost::nn;

namespace {

/// float32 reference vs a float64 re-run differ by ~1e-6 on these sizes; 4x margin as the goldens ask.
constexpr double kTolerance = 1e-5;

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  return (a - b).abs().max().item<double>();
}

void expect_matches_golden(const ClipTextModel& model, const char* golden, bool projection) {
  auto io = SafetensorsFile::open(sdxlhost::test_support::shared_dir() / "goldens/models/reference" / golden);
  const ClipTextOutput out = model.forward(io->tensor("input.input_ids"));
  ASSERT_EQ(out.hidden_states.size(), 3u);
  double worst = 0;
  for (std::size_t i = 0; i < out.hidden_states.size(); ++i)
    worst = std::max(worst, max_diff(out.hidden_states[i], io->tensor("output.hidden_states." + std::to_string(i))));
  std::cout << golden << ": max |diff| over hidden states " << worst << "\n";
  for (std::size_t i = 0; i < out.hidden_states.size(); ++i)
    EXPECT_LT(max_diff(out.hidden_states[i], io->tensor("output.hidden_states." + std::to_string(i))), kTolerance)
        << golden << " hidden_states." << i;
  EXPECT_LT(max_diff(out.last_hidden_state, io->tensor("output.last_hidden_state")), kTolerance) << golden;
  if (projection) {
    EXPECT_LT(max_diff(out.text_embeds, io->tensor("output.text_embeds")), kTolerance) << golden;
  } else {
    EXPECT_LT(max_diff(out.pooler_output, io->tensor("output.pooler_output")), kTolerance) << golden;
    EXPECT_FALSE(out.text_embeds.defined());
  }
}

}  // namespace

TEST(ClipTextModel, TextEncoderMatchesGoldenEveryHiddenState) {
  auto model = ClipTextModel::load_folder(sdxlhost::test_support::shared_dir() / "goldens/models/tiny_sdxl/text_encoder");
  EXPECT_EQ(model->config().hidden_act, "quick_gelu");
  expect_matches_golden(*model, "text_encoder_io.safetensors", false);
}

TEST(ClipTextModel, TextEncoder2WithProjectionMatchesGolden) {
  auto model = ClipTextModel::load_folder(sdxlhost::test_support::shared_dir() / "goldens/models/tiny_sdxl/text_encoder_2");
  EXPECT_EQ(model->config().hidden_act, "gelu");
  EXPECT_EQ(model->config().projection_dim, 32);
  expect_matches_golden(*model, "text_encoder_2_io.safetensors", true);
  auto io = SafetensorsFile::open(sdxlhost::test_support::shared_dir() / "goldens/models/reference/text_encoder_2_io.safetensors");
  if (io->contains("output.pooler_output")) {
    const auto out = model->forward(io->tensor("input.input_ids"));
    EXPECT_LT(max_diff(out.pooler_output, io->tensor("output.pooler_output")), kTolerance);
  }
}

TEST(ClipTextModel, SameOutputsWhenLoadedFromTheSingleFileLayout) {
  // diffusers folder -> LDM single-file names (fused OpenCLIP qkv, transposed projection) -> back.
  const auto root = sdxlhost::test_support::shared_dir() / "goldens/models/tiny_sdxl";
  auto te2_file = SafetensorsFile::open(root / "text_encoder_2/model.safetensors");
  const TensorMap ldm = diffusers_to_ldm_checkpoint({{Component::TextEncoder2, te2_file->tensors()}});
  const SplitCheckpoint split = ldm_checkpoint_to_diffusers(ldm);
  std::ifstream in(root / "text_encoder_2/config.json");
  const auto config = ClipTextConfig::from_json(nlohmann::json::parse(in));
  auto model = ClipTextModel::load(split.components.at(Component::TextEncoder2), config);
  expect_matches_golden(*model, "text_encoder_2_io.safetensors", true);
}

TEST(ClipTextModel, FullSizeKeysAreExactlyTheModelParameters) {
  const std::pair<const char*, const char*> cases[] = {
      {"keys/sdxl_base_diffusers_text_encoder.json", "keys/configs/text_encoder_clip_l_config.json"},
      {"keys/sdxl_base_diffusers_text_encoder_2.json", "keys/configs/text_encoder_2_openclip_bigg_config.json"}};
  for (const auto& [keys, config_file] : cases) {
    const auto config = ClipTextConfig::from_json(sdxlhost::test_support::read_golden_json(config_file));
    const auto expected = ClipTextModel::expected_shapes(config);
    std::map<std::string, std::vector<int64_t>> listed;
    const nlohmann::json list = sdxlhost::test_support::read_golden_json(keys);
    for (const auto& [key, shape] : list.items()) listed[key] = shape.get<std::vector<int64_t>>();
    EXPECT_EQ(expected, listed) << keys;
    // And the model loads them by name, on meta tensors (nothing allocated).
    TensorMap meta;
    for (const auto& [key, shape] : listed) meta.set(key, at::empty(shape, at::TensorOptions().device(at::kMeta)));
    EXPECT_NO_THROW(ClipTextModel::load(meta, config, at::kFloat, at::kMeta)) << keys;
  }
}

TEST(ClipTextModel, LoadAndInputErrorsAreClear) {
  const auto folder = sdxlhost::test_support::shared_dir() / "goldens/models/tiny_sdxl/text_encoder";
  auto file = SafetensorsFile::open(folder / "model.safetensors");
  std::ifstream in(folder / "config.json");
  const auto config = ClipTextConfig::from_json(nlohmann::json::parse(in));
  TensorMap missing = file->tensors();
  missing.erase("text_model.final_layer_norm.bias");
  try {
    ClipTextModel::load(missing, config);
    FAIL();
  } catch (const sdxlhost::sdk::Error& e) {
    EXPECT_NE(std::string(e.what()).find("text_model.final_layer_norm.bias"), std::string::npos);
  }
  TensorMap extra = file->tensors();
  extra.set("text_model.surprise", at::zeros({1}));
  EXPECT_THROW(ClipTextModel::load(extra, config), sdxlhost::sdk::Error);
  TensorMap wrong = file->tensors();
  wrong.set("text_model.final_layer_norm.bias", at::zeros({3}));
  EXPECT_THROW(ClipTextModel::load(wrong, config), sdxlhost::sdk::Error);
  auto model = ClipTextModel::load(file->tensors(), config);
  EXPECT_THROW(model->forward(at::full({1, 77}, 5000, at::kLong)), sdxlhost::sdk::Error);
  EXPECT_THROW(model->forward(at::zeros({1, 78}, at::kLong)), sdxlhost::sdk::Error);
  EXPECT_THROW(model->forward(at::zeros({1, 7}, at::kFloat)), sdxlhost::sdk::Error);
}

TEST(ClipTextModel, Bfloat16WeightsRunOnTheCpu) {
  // bf16 is the fast CPU dtype (fp16 matmul is missing on CPU in libtorch 1.13): same outputs to bf16 precision.
  auto model = ClipTextModel::load_folder(sdxlhost::test_support::shared_dir() / "goldens/models/tiny_sdxl/text_encoder_2",
                                          at::kBFloat16);
  auto io = SafetensorsFile::open(sdxlhost::test_support::shared_dir() / "goldens/models/reference/text_encoder_2_io.safetensors");
  const ClipTextOutput out = model->forward(io->tensor("input.input_ids"));
  EXPECT_EQ(out.last_hidden_state.scalar_type(), at::kBFloat16);
  const at::Tensor want = io->tensor("output.last_hidden_state");
  EXPECT_LT(max_diff(out.last_hidden_state.to(at::kFloat), want), 0.05 * want.abs().max().item<double>());
}

TEST(ClipTextModel, WeightsArePlacedOnTheRequestedDevice) {
  // Only the CPU can run here; the meta device shows the weights go where `device` says (the
  // same call puts them on cuda:N), and forward keeps its outputs on the weights' device.
  const auto folder = sdxlhost::test_support::shared_dir() / "goldens/models/tiny_sdxl/text_encoder_2";
  auto meta = ClipTextModel::load_folder(folder, at::kFloat, at::kMeta);
  for (const auto& [name, tensor] : meta->named_parameters()) {
    EXPECT_TRUE(tensor->is_meta()) << name;
  }
  auto cpu = ClipTextModel::load_folder(folder, at::kFloat, at::kCPU);
  const ClipTextOutput out = cpu->forward(at::zeros({1, 77}, at::kLong));
  EXPECT_TRUE(out.last_hidden_state.device().is_cpu());
  EXPECT_TRUE(out.text_embeds.device().is_cpu());
}
