// The controlnet plugin's stage and hook inside the sdxl plugin's stages, driven directly over a
// Context (no host), against goldens/controlnet/pipeline_{,multi_}controlnet: the control image
// tensor, every step's summed residuals given to the UNet (atol 1e-4), every step's UNet input,
// the latents after each step and the final latents (5e-4) and the image (within 1/255). Also:
// a ControlNet not kept on a step is not run, guess_mode, batches, img2img sizes, single-file
// weights, the model cache.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "common/pipeline_harness.hpp"
#include "common/temp_dir.hpp"
#include "common/test_model_access.hpp"
#include "control_image.hpp"
#include "controlnet_hook.hpp"
#include "controlnet_loader.hpp"
#include "prepare_stage.hpp"
#include "prepared_control.hpp"
#include "common/goldens.hpp"
#include "sdxlhost/nn/image_decode.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "sdxlhost/sdk/request.hpp"
#include "canny_preprocessor.hpp"

using namespace sdxlhost;
using namespace sdxlhost::test_support;
using nlohmann::json;
using nn::TensorMap;

namespace {

// goldens/features-README.md: ControlNet residuals and per-step UNet tensors atol 1e-4; final
// latents 5e-4; images within 1/255.
constexpr double kResidualAtol = 1e-4;
constexpr double kStepAtol = 1e-4;
constexpr double kLatentsAtol = 5e-4;

std::string file_bytes(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::string base64_file(const std::string& golden_path) { return nn::encode_base64(file_bytes(golden(golden_path))); }

/// Records the residuals every step hands the UNet (registered after the ControlNet hook, so it
/// sees their sum) and the UNet's inputs.
class RecordingHook : public sdk::DenoiseHook {
 public:
  mutable std::vector<sdk::UNetResiduals> residuals;
  mutable std::vector<at::Tensor> inputs;
  std::string name() const override { return "recorder"; }
  bool applies(const sdk::GenerationRequest&) const override { return true; }
  void before_unet(sdk::Context&, const sdk::DenoiseStepInput& input, sdk::UNetResiduals& r) const override {
    residuals.push_back(r);
    inputs.push_back(input.sample.clone());
  }
};

/// The pipeline harness with the controlnet plugin's prepare stage, its hook (then the recorder)
/// and the canny preprocessor, and the two golden ControlNets as controlnet/tiny and tiny_2.
struct Harness : PipelineHarness {
  std::shared_ptr<const controlnet::ControlNetSettings> settings =
      std::make_shared<const controlnet::ControlNetSettings>();
  std::shared_ptr<RecordingHook> recorder = std::make_shared<RecordingHook>();

  Harness() {
    add_stages({std::make_shared<controlnet::PrepareStage>(settings)});
    registries.add_denoise_hook(std::make_shared<controlnet::ControlNetHook>(settings));
    registries.add_denoise_hook(recorder);
    registries.add_preprocessor(std::make_shared<controlnet::CannyPreprocessor>());
    models.paths["controlnet/tiny"] = golden("controlnet/controlnet_tiny");
    models.paths["controlnet/tiny_2"] = golden("controlnet/controlnet_tiny_2");
  }
};

sdk::GenerationRequest cat_request(json controlnet) {
  sdk::GenerationRequest r;
  r.prompt = "a photo of a cat";
  r.models.base = "tiny";
  r.hyperparameters.num_inference_steps = 3;
  r.hyperparameters.guidance_scale = 5.0;
  r.hyperparameters.seed = 0;
  r.width = 64;
  r.height = 64;
  r.controlnet = std::move(controlnet);
  return r;
}

json unit(const std::string& model, const std::string& image, double scale, double start, double end) {
  return {{"model", model}, {"image", base64_file("controlnet/" + image)}, {"conditioning_scale", scale},
          {"control_guidance_start", start}, {"control_guidance_end", end}};
}

/// One pipeline golden: its file, the request's data.controlnet, how its residual keys are named.
struct PipelineCase {
  std::string name;
  std::string file;
  json controlnet;
  /// Key of step i's summed down residual j ("" + j = mid).
  std::function<std::string(int step, int j)> residual_key;
};

std::vector<PipelineCase> pipeline_cases() {
  return {
      {"single", "controlnet/pipeline_controlnet.safetensors",
       // the seed's single form
       {{"enabled", true}, {"type", "tiny"}, {"control_image", base64_file("controlnet/control_image.png")},
        {"conditioning_scale", 0.7}, {"control_guidance_start", 0.0}, {"control_guidance_end", 0.67}},
       [](int i, int j) {
         const std::string p = "controlnet.step" + std::to_string(i) + ".";
         return j < 0 ? p + "mid_block_res_sample" : p + "down_block_res_samples." + std::to_string(j);
       }},
      {"multi", "controlnet/pipeline_multi_controlnet.safetensors",
       {{"enabled", true},
        {"units", {unit("tiny", "control_image.png", 0.7, 0.0, 0.67), unit("tiny_2", "control_image_2.png", 0.4, 0.3, 1.0)}}},
       [](int i, int j) {
         const std::string p = "step" + std::to_string(i) + ".";
         return j < 0 ? p + "unet_mid_block_additional_residual"
                      : p + "unet_down_block_additional_residuals." + std::to_string(j);
       }},
  };
}

at::Tensor image_tensor(const sdk::Image& image) {
  return at::from_blob(const_cast<std::uint8_t*>(image.pixels.data()), {image.height, image.width, image.channels},
                       at::kByte)
      .clone();
}

}  // namespace

TEST(ControlNetPipeline, SingleAndMultiMatchTheDiffusersGoldensStepByStep) {
  for (const auto& c : pipeline_cases()) {
    SCOPED_TRACE(c.name);
    const TensorMap g = load_tensors(golden(c.file));
    Harness h;
    auto ctx = h.run(cat_request(c.controlnet));
    // the control image as the ControlNet saw it (uint8 / 255, NCHW), per unit
    const auto& prepared = ctx->get<controlnet::PreparedControl>(controlnet::kPreparedSlot);
    for (std::size_t u = 0; u < prepared.units.size(); ++u) {
      const std::string key = c.name == "single" ? "controlnet.controlnet_cond"
                                                 : "controlnet" + std::to_string(u) + ".controlnet_cond";
      EXPECT_EQ(max_abs_diff(prepared.units[u].cond, g.at(key).slice(0, 0, 1)), 0.0) << key;
    }
    ASSERT_EQ(h.recorder->residuals.size(), 3u);
    for (int i = 0; i < 3; ++i) {
      SCOPED_TRACE(i);
      const auto& r = h.recorder->residuals[static_cast<std::size_t>(i)];
      EXPECT_LT(max_abs_diff(h.recorder->inputs[static_cast<std::size_t>(i)],
                             g.at("step" + std::to_string(i) + ".unet_input")), kStepAtol);
      const at::Tensor golden_mid = g.at(c.residual_key(i, -1));
      if (golden_mid.abs().max().item<double>() == 0.0) {  // no unit kept on this step: none run
        EXPECT_TRUE(r.down.empty());
        EXPECT_FALSE(r.mid.defined());
        continue;
      }
      ASSERT_EQ(r.down.size(), 6u);
      for (int j = 0; j < 6; ++j)
        EXPECT_LT(max_abs_diff(r.down[static_cast<std::size_t>(j)], g.at(c.residual_key(i, j))), kResidualAtol) << j;
      EXPECT_LT(max_abs_diff(r.mid, golden_mid), kResidualAtol);
      EXPECT_LT(max_abs_diff(h.step_latents["denoise"][static_cast<std::size_t>(i)],
                             g.at("step" + std::to_string(i) + ".latents_after")), kLatentsAtol);
    }
    EXPECT_LT(max_abs_diff(ctx->get<at::Tensor>(sdk::slots::kLatents), g.at("final_latents")), kLatentsAtol);
    const auto& images = ctx->get<std::vector<sdk::Image>>(sdk::slots::kImages);
    ASSERT_EQ(images.size(), 1u);
    const at::Tensor expected = at::round(g.at("image_np_float")[0] * 255);
    EXPECT_LE((image_tensor(images[0]).to(at::kFloat) - expected).abs().max().item<double>(), 1.0);
  }
}

TEST(ControlNetPipeline, TheControlNetRunsOnlyOnTheStepsItIsKept) {
  // step 2 of 3 is outside [0, 0.67]: the hook adds nothing there (golden residuals are 0 there)
  Harness h;
  h.run(cat_request({{"model", "tiny"}, {"image", base64_file("controlnet/control_image.png")},
                     {"control_guidance_end", 0.67}}));
  ASSERT_EQ(h.recorder->residuals.size(), 3u);
  EXPECT_FALSE(h.recorder->residuals[1].down.empty());
  EXPECT_TRUE(h.recorder->residuals[2].down.empty());
  EXPECT_EQ(h.models.loads, 2);  // the pipeline and the ControlNet, once each
}

TEST(ControlNetPipeline, ScaleZeroGivesThePlainPipelinesLatents) {
  Harness plain;
  auto a = plain.run(cat_request(nullptr));
  Harness zero;
  auto b = zero.run(cat_request({{"model", "tiny"}, {"image", base64_file("controlnet/control_image.png")},
                                 {"conditioning_scale", 0.0}}));
  EXPECT_EQ(max_abs_diff(a->get<at::Tensor>(sdk::slots::kLatents), b->get<at::Tensor>(sdk::slots::kLatents)), 0.0);
}

TEST(ControlNetPipeline, GuessModeRunsTheConditionalHalfWithLogspaceScales) {
  Harness h;
  h.run(cat_request({{"model", "tiny"}, {"image", base64_file("controlnet/control_image.png")},
                     {"conditioning_scale", 0.7}, {"guess_mode", true}}));
  ASSERT_EQ(h.recorder->residuals.size(), 3u);
  const auto& r = h.recorder->residuals[0];
  ASSERT_EQ(r.down.size(), 6u);
  // diffusers: unconditional half zero; conditional half = ControlNet(cond half) x logspace(-1,0,7)[k] x 0.7
  const auto model = controlnet::load_controlnet_file(golden("controlnet/controlnet_tiny"), {});
  const auto& in = h.recorder->inputs[0];
  const TensorMap g = load_tensors(golden("controlnet/pipeline_controlnet.safetensors"));
  const at::Tensor cond_ehs = g.at("prompt_embeds_cfg").slice(0, 1, 2);
  const at::Tensor cond_text = g.at("add_text_embeds_cfg").slice(0, 1, 2);
  const at::Tensor cond_ids = g.at("add_time_ids_cfg").slice(0, 1, 2);
  const auto expected = model->forward(in.slice(0, 1, 2), g.at("step0.t").reshape({}), cond_ehs, cond_text, cond_ids,
                                       g.at("controlnet.controlnet_cond").slice(0, 0, 1), 1.0);
  const at::Tensor scales = at::logspace(-1, 0, 7, 10.0, at::kFloat) * 0.7;
  for (int k = 0; k < 6; ++k) {
    EXPECT_EQ(r.down[k].slice(0, 0, 1).abs().max().item<double>(), 0.0);
    EXPECT_LT(max_abs_diff(r.down[k].slice(0, 1, 2), expected.down[k] * scales[k]), kResidualAtol) << k;
  }
  EXPECT_LT(max_abs_diff(r.mid.slice(0, 1, 2), expected.mid * scales[6]), kResidualAtol);
}

TEST(ControlNetPipeline, BatchesRepeatTheControlImageAndMatchEachImageAlone) {
  const json control = {{"model", "tiny"}, {"image", base64_file("controlnet/control_image.png")}};
  auto request = cat_request(control);
  request.batch_size = 2;
  Harness both;
  auto a = both.run(request);
  const auto& images = a->get<std::vector<sdk::Image>>(sdk::slots::kImages);
  ASSERT_EQ(images.size(), 2u);
  EXPECT_EQ(both.recorder->residuals[0].down[0].size(0), 4);  // 2 images x [uncond, cond]
  auto second = cat_request(control);
  second.hyperparameters.seed = 1;  // image 1 of the batch uses seed + 1
  Harness alone;
  auto b = alone.run(second);
  EXPECT_LE((image_tensor(images[1]).to(at::kInt) - image_tensor(b->get<std::vector<sdk::Image>>(sdk::slots::kImages)[0]).to(at::kInt))
                .abs().max().item<int>(), 1);
}

TEST(ControlNetPipeline, ControlImagesOfAnotherSizeAreStretchedToTheOutputSize) {
  const sdk::Image image = nn::decode_base64_image(base64_file("canny/img3_rgb_softedges_w128_h96.png"), "x");
  const at::Tensor t = controlnet::control_tensor(image, 64, 32);
  EXPECT_EQ(t.sizes(), (std::vector<std::int64_t>{1, 3, 64, 32}));
  EXPECT_GE(t.min().item<double>(), 0.0);
  EXPECT_LE(t.max().item<double>(), 1.0);
  // a 128x96 control image for a 64x64 generation runs (resized, not refused)
  Harness h;
  h.run(cat_request({{"model", "tiny"}, {"image", base64_file("canny/img3_rgb_softedges_w128_h96.png")},
                     {"preprocessor", {{"name", "canny"}}}}));
  EXPECT_EQ(h.recorder->residuals[0].down[0].size(2), 32);
}

TEST(ControlNetPipeline, ASingleSafetensorsFileWithItsConfigInTheMetadataLoadsTheSameModel) {
  test_support::TempDir dir;
  const TensorMap weights = load_tensors(golden("controlnet/controlnet_tiny/diffusion_pytorch_model.safetensors"));
  const auto file = dir.path() / "tiny.safetensors";
  nn::write_safetensors(file, weights,
                        {{controlnet::kConfigMetadataKey, file_bytes(golden("controlnet/controlnet_tiny/config.json"))}});
  const auto from_file = controlnet::load_controlnet_file(file, {});
  const auto from_folder = controlnet::load_controlnet_file(golden("controlnet/controlnet_tiny"), {});
  EXPECT_EQ(from_file->parameter_names(), from_folder->parameter_names());
  const TensorMap io = load_tensors(golden("controlnet/controlnet_forward.safetensors"));
  auto run = [&](const nn::ControlNetModel& m) {
    return m.forward(io.at("input.sample"), io.at("input.timestep.t500"), io.at("input.encoder_hidden_states"),
                     io.at("input.text_embeds"), io.at("input.time_ids"), io.at("input.controlnet_cond"), 0.7);
  };
  EXPECT_LT(max_abs_diff(run(*from_file).mid, io.at("output.t500.scale0.7.mid_block_res_sample")), kResidualAtol);
  EXPECT_EQ(max_abs_diff(run(*from_file).mid, run(*from_folder).mid), 0.0);
}
