// ControlNet: parity with goldens/controlnet/controlnet_forward (residuals and the conditioning
// embedding, two timesteps x two scales), config from config.json vs inferred from shapes,
// full-size SDXL ControlNet key coverage (meta tensors), clear errors for bad input.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <string>

#include "model_test_util.hpp"
#include "sdxlhost/nn/controlnet.hpp"

using sdxlhost::nn::ControlNetConfig;
using sdxlhost::nn::ControlNetModel;
using namespace sdxlhost::test_support;

namespace {

// goldens/features-README.md: ControlNet residuals rtol 1e-4 (atol: kAtol).
constexpr double kRtol = 1e-4;

struct TinyControlNet {
  ControlNetConfig config =
      ControlNetConfig::from_json(read_json(golden("controlnet/controlnet_tiny/config.json")));
  TensorMap weights =
      load_tensors(golden("controlnet/controlnet_tiny/diffusion_pytorch_model.safetensors"));
  std::shared_ptr<ControlNetModel> model = ControlNetModel::load(config, weights);
};

TinyControlNet& tiny() {
  static TinyControlNet net;
  return net;
}

TensorMap& io() {
  static TensorMap map = load_tensors(golden("controlnet/controlnet_forward.safetensors"));
  return map;
}

sdxlhost::sdk::UNetResiduals run(const std::string& t, double scale,
                                 const sdxlhost::nn::TraceFn& trace = {}) {
  return tiny().model->forward(io().at("input.sample"), io().at("input.timestep." + t),
                               io().at("input.encoder_hidden_states"), io().at("input.text_embeds"),
                               io().at("input.time_ids"), io().at("input.controlnet_cond"), scale,
                               trace);
}

void expect_close(const at::Tensor& actual, const at::Tensor& expected, const std::string& what) {
  ASSERT_EQ(actual.sizes(), expected.sizes()) << what;
  EXPECT_TRUE(at::allclose(actual, expected, kRtol, kAtol))
      << what << ": max |diff| " << max_abs_diff(actual, expected);
}

}  // namespace

TEST(ControlNet, ResidualsMatchGoldenAtTwoTimestepsAndScales) {
  for (const std::string t : {"t500", "t1"}) {
    for (const std::string scale : {"0.7", "1.0"}) {
      const auto residuals = run(t, std::stod(scale));
      const std::string prefix = "output." + t + ".scale" + scale + ".";
      ASSERT_EQ(residuals.down.size(), 6u);
      ASSERT_EQ(residuals.down.size(), tiny().config.unet.skip_count());
      for (std::size_t k = 0; k < residuals.down.size(); ++k) {
        const std::string key = prefix + "down_block_res_samples." + std::to_string(k);
        expect_close(residuals.down[k], io().at(key), key);
      }
      expect_close(residuals.mid, io().at(prefix + "mid_block_res_sample"), prefix + "mid");
    }
  }
}

TEST(ControlNet, ConditioningEmbeddingMatchesGolden) {
  at::Tensor embedding;
  run("t500", 1.0, [&](const std::string& name, const at::Tensor& value) {
    if (name == "controlnet_cond_embedding") embedding = value;
  });
  ASSERT_TRUE(embedding.defined());
  expect_close(embedding, io().at("intermediate.controlnet_cond_embedding"), "cond embedding");
}

TEST(ControlNet, InferredConfigBuildsTheSameModel) {
  const ControlNetConfig inferred = ControlNetConfig::infer(tiny().weights, 16, 32);
  EXPECT_EQ(inferred.conditioning_embedding_out_channels, tiny().config.conditioning_embedding_out_channels);
  EXPECT_EQ(inferred.conditioning_channels, 3);
  EXPECT_EQ(inferred.unet.attention_heads, tiny().config.unet.attention_heads);
  EXPECT_EQ(inferred.unet.addition_time_embed_dim, tiny().config.unet.addition_time_embed_dim);
  const auto model = ControlNetModel::load(inferred, tiny().weights);
  const auto a = model->forward(io().at("input.sample"), io().at("input.timestep.t500"),
                                io().at("input.encoder_hidden_states"), io().at("input.text_embeds"),
                                io().at("input.time_ids"), io().at("input.controlnet_cond"), 0.7);
  expect_close(a.mid, io().at("output.t500.scale0.7.mid_block_res_sample"), "inferred mid");
}

TEST(ControlNet, FullSizeSdxlKeyListBindsOnMetaTensorsWithEveryKeyUsed) {
  const TensorMap meta = meta_tensors(golden("keys/controlnet_sdxl_diffusers.json"));
  ASSERT_EQ(meta.size(), 844u);
  const ControlNetConfig from_json = ControlNetConfig::from_json(
      read_json(golden("keys/configs/controlnet_sdxl_from_unet_config.json")));
  EXPECT_EQ(from_json.conditioning_embedding_out_channels, (std::vector<std::int64_t>{16, 32, 96, 256}));
  const auto model = ControlNetModel::load(from_json, meta, at::kFloat, at::kMeta);
  EXPECT_EQ(model->parameter_names(), meta.names());  // none missing (load throws), none left over
  EXPECT_EQ(model->config().unet.skip_count(), 9u);

  const ControlNetConfig inferred = ControlNetConfig::infer(meta);
  EXPECT_EQ(inferred.conditioning_embedding_out_channels, from_json.conditioning_embedding_out_channels);
  EXPECT_EQ(inferred.unet.transformer_depth, from_json.unet.transformer_depth);
  EXPECT_EQ(inferred.unet.attention_heads, from_json.unet.attention_heads);
  EXPECT_EQ(inferred.unet.addition_time_embed_dim, 256);
  EXPECT_EQ(ControlNetModel::load(inferred, meta, at::kFloat, at::kMeta)->parameter_names(), meta.names());
}

TEST(ControlNet, MissingOrExtraWeightIsAModelLoadErrorNamingTheKey) {
  TensorMap missing = tiny().weights;
  missing.erase("controlnet_mid_block.weight");
  try {
    ControlNetModel::load(tiny().config, missing);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ModelLoadError);
    EXPECT_NE(std::string(e.what()).find("controlnet_mid_block.weight"), std::string::npos) << e.what();
  }
  TensorMap extra = tiny().weights;
  extra.set("controlnet_down_blocks.99.weight", at::zeros({1}));
  EXPECT_THROW(ControlNetModel::load(tiny().config, extra), Error);
}

TEST(ControlNet, ControlImageOfTheWrongSizeIsAValidationError) {
  try {
    tiny().model->forward(io().at("input.sample"), io().at("input.timestep.t500"),
                          io().at("input.encoder_hidden_states"), io().at("input.text_embeds"),
                          io().at("input.time_ids"), at::rand({1, 3, 48, 48}), 1.0);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ValidationError);
    EXPECT_EQ(e.field(), "controlnet_cond");
  }
}

TEST(ControlNet, UnsupportedConfigValueIsNamed) {
  auto config = read_json(golden("controlnet/controlnet_tiny/config.json"));
  config["global_pool_conditions"] = true;
  try {
    ControlNetConfig::from_json(config);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ModelLoadError);
    EXPECT_NE(std::string(e.what()).find("global_pool_conditions"), std::string::npos);
  }
}
