// UNet: parity with goldens/models/reference/unet_io (output + every stored intermediate), config
// from config.json vs inferred from shapes, full-size SDXL base/refiner key coverage (meta
// tensors), residuals (ControlNet), weight patching (LoRA) and clear errors for bad input.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>

#include "model_test_util.hpp"
#include "sdxlhost/nn/key_map.hpp"
#include "sdxlhost/nn/model_config.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/nn/unet.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/job_scope.hpp"
#include "sdxlhost/sdk/request.hpp"

using sdxlhost::nn::UNet2DConditionModel;
using sdxlhost::nn::UNetConfig;
using namespace sdxlhost::test_support;

namespace {

struct TinyUNet {
  UNetConfig config = UNetConfig::from_json(read_json(golden("models/tiny_sdxl/unet/config.json")));
  TensorMap weights = load_tensors(golden("models/tiny_sdxl/unet/diffusion_pytorch_model.safetensors"));
  std::shared_ptr<UNet2DConditionModel> model = UNet2DConditionModel::load(config, weights);
};

TinyUNet& tiny() {
  static TinyUNet unet;
  return unet;
}

TensorMap& io() {
  static TensorMap map = load_tensors(golden("models/reference/unet_io.safetensors"));
  return map;
}

at::Tensor run(const at::Tensor& timestep, const sdxlhost::sdk::UNetResiduals* residuals = nullptr,
               const sdxlhost::nn::TraceFn& trace = {}) {
  return tiny().model->forward(io().at("input.sample"), timestep,
                               io().at("input.encoder_hidden_states"), io().at("input.text_embeds"),
                               io().at("input.time_ids"), residuals, trace);
}

/// The config with the transformer depth of attention-free levels zeroed (diffusers ignores them).
nlohmann::json canonical(UNetConfig c) {
  for (std::size_t i = 0; i < c.levels(); ++i) {
    if (!c.down_attention[i]) c.transformer_depth[i] = 0;
    if (!c.up_attention[i]) c.up_transformer_depth[i] = 0;
  }
  return c.to_json();
}

void expect_same_config(const UNetConfig& a, const UNetConfig& b) {
  EXPECT_EQ(canonical(a).dump(), canonical(b).dump());
  EXPECT_EQ(a.mid_transformer_depth, b.mid_transformer_depth);
}

}  // namespace

TEST(UNet, OutputsMatchGoldenAtBothTimesteps) {
  for (const char* t : {"t500", "t1"}) {
    const at::Tensor out = run(io().at(std::string("input.timestep.") + t));
    const double diff = max_abs_diff(out, io().at(std::string("output.sample.") + t));
    EXPECT_LT(diff, kAtol) << t;
  }
}

TEST(UNet, EveryStoredIntermediateMatches) {
  std::map<std::string, at::Tensor> seen;
  run(io().at("input.timestep.t500"), nullptr,
      [&](const std::string& name, const at::Tensor& value) { seen[name] = value; });
  int compared = 0;
  for (const auto& [key, expected] : io()) {
    if (key.rfind("intermediate.", 0) != 0) continue;
    const std::string name = key.substr(std::string("intermediate.").size());
    ASSERT_TRUE(seen.count(name)) << "forward did not report " << name;
    EXPECT_LT(max_abs_diff(seen[name], expected), kAtol) << name;
    ++compared;
  }
  EXPECT_EQ(compared, 12);
}

TEST(UNet, Float32WeightsStayZeroCopyViewsOfTheMappedFile) {
  const std::string key = "mid_block.attentions.0.transformer_blocks.0.ff.net.0.proj.weight";
  EXPECT_EQ(tiny().model->weight(key).data_ptr(), tiny().weights.at(key).data_ptr());
  const at::Tensor before = tiny().weights.at(key).clone();
  auto bf16 = UNet2DConditionModel::load(tiny().config, tiny().weights, at::kBFloat16);
  EXPECT_NE(bf16->weight(key).data_ptr(), tiny().weights.at(key).data_ptr());  // converted copy
  // converting released the mapped source pages (MADV_PAGEOUT): still readable, same values
  EXPECT_TRUE(at::equal(before, tiny().weights.at(key)));
  EXPECT_TRUE(at::equal(before, tiny().model->weight(key)));
  EXPECT_EQ(bf16->weight(key).scalar_type(), at::kBFloat16);
  EXPECT_EQ(tiny().model->parameter_bytes(), 2 * bf16->parameter_bytes());
}

TEST(UNet, ConfigInferredFromShapesEqualsConfigJson) {
  // tiny model: head dim 16 (channels / heads), pooled text embeds of 32
  expect_same_config(UNetConfig::infer(tiny().weights, 16, 32), tiny().config);
  const auto refiner_dir = golden("refiner/tiny_sdxl_refiner/unet");
  const UNetConfig refiner = UNetConfig::from_json(read_json(refiner_dir / "config.json"));
  const TensorMap refiner_weights = load_tensors(refiner_dir / "diffusion_pytorch_model.safetensors");
  expect_same_config(UNetConfig::infer(refiner_weights, 16, 32), refiner);
  EXPECT_EQ(refiner.addition_time_embed_dim * 5 + 32, refiner.projection_class_embeddings_input_dim);
}

TEST(UNet, RefinerShapedModelRunsWithFiveTimeIds) {
  const auto dir = golden("refiner/tiny_sdxl_refiner/unet");
  const UNetConfig config = UNetConfig::from_json(read_json(dir / "config.json"));
  auto model = UNet2DConditionModel::load(config, load_tensors(dir / "diffusion_pytorch_model.safetensors"));
  const at::Tensor out = model->forward(at::randn({1, 4, 16, 16}), at::tensor({10.0f}),
                                        at::randn({1, 7, config.cross_attention_dim}),
                                        at::randn({1, 32}), at::tensor({64.f, 64.f, 0.f, 0.f, 6.f}).view({1, 5}));
  EXPECT_EQ(out.sizes(), (std::vector<std::int64_t>{1, 4, 16, 16}));
  EXPECT_TRUE(at::isfinite(out).all().item<bool>());
}

TEST(UNet, FullSizeSdxlBaseAndRefinerKeysAreAllConsumed) {
  struct Case { const char* config; const char* keys; std::size_t tensors; };
  for (const Case& c : {Case{"sdxl_base_unet_config.json", "sdxl_base_diffusers_unet.json", 1680},
                        Case{"sdxl_refiner_unet_config.json", "sdxl_refiner_diffusers_unet.json", 1220}}) {
    const UNetConfig config = UNetConfig::from_json(read_json(golden("keys/configs/") / c.config));
    const TensorMap weights = meta_tensors(golden("keys/") / c.keys);
    // load() checks every key exists with its shape and that none is left over
    auto model = UNet2DConditionModel::load(config, weights, at::kFloat, at::kMeta);
    EXPECT_EQ(model->parameter_names().size(), c.tensors) << c.config;
    EXPECT_EQ(config.skip_count(), weights.contains("down_blocks.3.resnets.0.conv1.weight") ? 12u : 9u);
    expect_same_config(UNetConfig::infer(weights), config);
  }
}

namespace {

/// The UNet weights of a full-size key list in either layout, with the pooled size of its
/// text_encoder_2 (single files carry it; diffusers UNet lists alone do not, so SDXL's 1280).
std::pair<TensorMap, std::int64_t> full_size_unet(const std::string& key_list) {
  const TensorMap all = meta_tensors(golden("keys/") / key_list);
  if (key_list.find("_ldm") == std::string::npos) return {all, 1280};
  const auto split = sdxlhost::nn::ldm_checkpoint_to_diffusers(all);
  const TensorMap& te2 = split.components.at(sdxlhost::nn::Component::TextEncoder2);
  return {split.components.at(sdxlhost::nn::Component::Unet), te2.at("text_projection.weight").size(0)};
}

}  // namespace

TEST(UNet, InferredConfigConsumesEveryFullSizeKeyInBothLayouts) {
  // Both entry points (UNetConfig::infer and the JSON that open_checkpoint stores for single
  // files) must give a model that uses every key: the refiner's mid block has 4 transformer
  // blocks although its last level has no attention.
  for (const char* list : {"sdxl_base_diffusers_unet.json", "sdxl_base_ldm.json",
                           "sdxl_refiner_diffusers_unet.json", "sdxl_refiner_ldm.json"}) {
    const auto [weights, pooled] = full_size_unet(list);
    const UNetConfig direct = UNetConfig::infer(weights, 64, pooled);
    const UNetConfig from_json = UNetConfig::from_json(sdxlhost::nn::infer_unet_config(weights, pooled));
    for (const UNetConfig& config : {direct, from_json}) {
      std::shared_ptr<UNet2DConditionModel> model;
      EXPECT_NO_THROW(model = UNet2DConditionModel::load(config, weights, at::kFloat, at::kMeta)) << list;
      if (model) EXPECT_EQ(model->parameter_names().size(), weights.size()) << list;
    }
    const bool refiner = std::string(list).find("refiner") != std::string::npos;
    EXPECT_EQ(from_json.mid_transformer_depth, refiner ? 4 : 10) << list;
    EXPECT_EQ(from_json.addition_time_embed_dim, 256) << list;
  }
}

TEST(UNet, ResidualsAreAddedToSkipsAndMidBlock) {
  const at::Tensor t = io().at("input.timestep.t500");
  const at::Tensor plain = run(t);
  // capture skip shapes from the forward's intermediates: conv_in + one per resnet/downsampler
  sdxlhost::sdk::UNetResiduals zeros;
  const UNetConfig& c = tiny().config;
  zeros.down.push_back(at::zeros({2, 32, 32, 32}));
  zeros.down.push_back(at::zeros({2, 32, 32, 32}));
  zeros.down.push_back(at::zeros({2, 32, 32, 32}));
  zeros.down.push_back(at::zeros({2, 32, 16, 16}));
  zeros.down.push_back(at::zeros({2, 64, 16, 16}));
  zeros.down.push_back(at::zeros({2, 64, 16, 16}));
  ASSERT_EQ(zeros.down.size(), c.skip_count());
  zeros.mid = at::zeros({2, 64, 16, 16});
  EXPECT_EQ(max_abs_diff(run(t, &zeros), plain), 0.0);

  auto mid_only = zeros;
  mid_only.mid = at::randn({2, 64, 16, 16});
  EXPECT_GT(max_abs_diff(run(t, &mid_only), plain), 1e-3);
  auto skip_only = zeros;
  skip_only.down[0] = at::randn({2, 32, 32, 32});  // a constant would vanish in the GroupNorms
  EXPECT_GT(max_abs_diff(run(t, &skip_only), plain), 1e-3);

  auto wrong = zeros;
  wrong.down.pop_back();
  try {
    run(t, &wrong);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ValidationError);
    EXPECT_EQ(e.field(), "residuals.down");
  }
}

TEST(UNet, AddDeltaChangesOutputAndRestoreUndoesIt) {
  TinyUNet local;
  auto& model = *local.model;
  const std::string key = "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight";
  ASSERT_TRUE(model.has(key));
  const at::Tensor t = io().at("input.timestep.t500");
  auto forward = [&] {
    return model.forward(io().at("input.sample"), t, io().at("input.encoder_hidden_states"),
                         io().at("input.text_embeds"), io().at("input.time_ids"));
  };
  const at::Tensor before = forward();
  const at::Tensor original = model.weight(key).clone();
  model.add_delta(key, at::full(original.sizes(), 0.01));
  model.add_delta(key, at::full(original.sizes(), 0.01));
  EXPECT_NEAR((model.weight(key) - original).mean().item<double>(), 0.02, 1e-6);
  EXPECT_GT(max_abs_diff(forward(), before), 1e-4);
  EXPECT_EQ(model.patched_keys(), std::vector<std::string>{key});
  EXPECT_EQ(model.restore_weights(), 1u);
  EXPECT_EQ(max_abs_diff(model.weight(key), original), 0.0);
  EXPECT_EQ(max_abs_diff(forward(), before), 0.0);
  EXPECT_THROW(model.add_delta("nope.weight", original), Error);
  EXPECT_THROW(model.add_delta(key, at::zeros({3})), Error);
}

TEST(UNet, BadWeightsGiveModelLoadErrorsNamingTheKey) {
  const TinyUNet& t = tiny();
  auto expect_load_error = [&](const TensorMap& weights, const std::string& needle) {
    try {
      UNet2DConditionModel::load(t.config, weights);
      FAIL() << "expected an error mentioning " << needle;
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::ModelLoadError);
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  TensorMap missing = t.weights;
  missing.erase("mid_block.resnets.1.conv2.bias");
  expect_load_error(missing, "mid_block.resnets.1.conv2.bias");
  TensorMap extra = t.weights;
  extra.set("down_blocks.1.attentions.0.transformer_blocks.7.norm1.weight", at::zeros({64}));
  expect_load_error(extra, "transformer_blocks.7");
  TensorMap reshaped = t.weights;
  reshaped.set("conv_in.weight", at::zeros({32, 4, 1, 1}));
  expect_load_error(reshaped, "conv_in.weight");
}

TEST(UNet, BadConfigsAndInputsGiveClearErrors) {
  auto config = read_json(golden("models/tiny_sdxl/unet/config.json"));
  config["down_block_types"][0] = "AttnDownBlock2D";
  EXPECT_THROW(UNetConfig::from_json(config), Error);
  config = read_json(golden("models/tiny_sdxl/unet/config.json"));
  config["class_embed_type"] = "timestep";
  EXPECT_THROW(UNetConfig::from_json(config), Error);
  EXPECT_THROW(UNetConfig::from_json(nlohmann::json::array()), Error);

  auto& model = *tiny().model;
  const at::Tensor t = at::tensor({1.0f});
  const at::Tensor x = at::randn({1, 4, 8, 8}), ctx = at::randn({1, 77, 64});
  const at::Tensor pooled = at::randn({1, 32}), ids = at::zeros({1, 6});
  EXPECT_EQ(validation_field([&] { model.forward(at::randn({1, 3, 8, 8}), t, ctx, pooled, ids); }), "sample");
  EXPECT_EQ(validation_field([&] { model.forward(x, t, at::randn({1, 77, 32}), pooled, ids); }),
            "encoder_hidden_states");
  EXPECT_EQ(validation_field([&] { model.forward(x, t, ctx, pooled, at::zeros({1, 5})); }), "time_ids");
  EXPECT_EQ(validation_field([&] { model.forward(x, at::ones({3}), ctx, pooled, ids); }), "timestep");
}

TEST(UNet, OddLatentSizesUpsampleToTheSkipSize) {
  const at::Tensor out = tiny().model->forward(at::randn({1, 4, 9, 13}), at::tensor({3.0f}),
                                               at::randn({1, 77, 64}), at::randn({1, 32}),
                                               at::zeros({1, 6}));
  EXPECT_EQ(out.sizes(), (std::vector<std::int64_t>{1, 4, 9, 13}));
}

// Issue 14, item 3: a job cancelled while the UNet runs stops inside the forward (between
// blocks), not at the end of the step; the forward reports which block it is at.
TEST(UNet, ACancelledJobStopsBetweenBlocksOfTheForward) {
  auto request = std::make_shared<sdxlhost::sdk::GenerationRequest>();
  auto token = std::make_shared<sdxlhost::sdk::CancellationToken>();
  sdxlhost::sdk::Context context(request, sdxlhost::sdk::ContextServices{}, token);
  std::vector<std::string> parts;
  const sdxlhost::sdk::DetailSink details = [&](std::string_view part, int index, int count) {
    parts.push_back(std::string(part) + " " + std::to_string(index) + "/" + std::to_string(count));
    if (part == "down_blocks" && index == 1) token->cancel();  // cancel arrives during block 1
  };
  sdxlhost::sdk::JobScope scope(context, &details);
  try {
    run(io().at("input.timestep.t500"));
    FAIL() << "the forward ran to its end after the cancel";
  } catch (const sdxlhost::sdk::Error& e) {
    EXPECT_EQ(e.code(), sdxlhost::sdk::ErrorCode::Cancelled);
  }
  ASSERT_FALSE(parts.empty());
  EXPECT_EQ(parts.back(), "down_blocks 1/" + std::to_string(tiny().config.levels())) << "ran past the next block";
  EXPECT_EQ(sdxlhost::sdk::current_job(), &context);
}

TEST(UNet, WithoutAJobScopeNothingIsChecked) {
  auto request = std::make_shared<sdxlhost::sdk::GenerationRequest>();
  auto token = std::make_shared<sdxlhost::sdk::CancellationToken>();
  token->cancel();
  sdxlhost::sdk::Context context(request, sdxlhost::sdk::ContextServices{}, token);
  { sdxlhost::sdk::JobScope scope(context); }
  EXPECT_EQ(sdxlhost::sdk::current_job(), nullptr);
  EXPECT_NO_THROW(run(io().at("input.timestep.t500")));
}

// Loading stops too: a job cancelled while the weights are bound gets CANCELLED.
TEST(UNet, LoadingStopsWhenTheJobIsCancelled) {
  auto request = std::make_shared<sdxlhost::sdk::GenerationRequest>();
  auto token = std::make_shared<sdxlhost::sdk::CancellationToken>();
  sdxlhost::sdk::Context context(request, sdxlhost::sdk::ContextServices{}, token);
  int reports = 0;
  const sdxlhost::sdk::DetailSink details = [&](std::string_view part, int, int) {
    if (part == "load_weights" && ++reports == 2) token->cancel();
  };
  sdxlhost::sdk::JobScope scope(context, &details);
  try {
    UNet2DConditionModel::load(tiny().config, tiny().weights);
    FAIL() << "the load ran to its end after the cancel";
  } catch (const sdxlhost::sdk::Error& e) {
    EXPECT_EQ(e.code(), sdxlhost::sdk::ErrorCode::Cancelled);
  }
  EXPECT_EQ(reports, 2);
}
