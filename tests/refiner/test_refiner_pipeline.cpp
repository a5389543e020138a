// The refiner plugin's stages with the sdxl plugin's, driven without a host, against the diffusers
// goldens in ../shared/goldens/refiner: the ensemble of experts (base to denoising_end, refiner
// from the same fraction) and a refiner checkpoint refining an image (img2img), each in both
// checkpoint layouts; the refiner's time ids; full-size refiner key lists bound in both layouts.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <tuple>
#include <unistd.h>

#include "common/pipeline_harness.hpp"
#include "common/test_model_access.hpp"
#include "refiner_goldens.hpp"
#include "refiner_models.hpp"
#include "common/goldens.hpp"
#include "sdxlhost/nn/checkpoint.hpp"
#include "sdxlhost/nn/image_decode.hpp"
#include "sdxlhost/nn/key_map.hpp"
#include "sdxlhost/nn/model_config.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/pipeline/conditioning.hpp"
#include "sdxlhost/pipeline/sdxl_models.hpp"
#include "sdxlhost/pipeline/slots.hpp"
#include "sdxlhost/pipeline/time_ids.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/image.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "sdxlhost/sdk/request.hpp"
#include "refiner_stages.hpp"

namespace fs = std::filesystem;
using namespace sdxlhost;
using sdxlhost::test_support::Golden;
using sdxlhost::test_support::load_golden;
using sdxlhost::test_support::golden;
using sdxlhost::test_support::load_tensors;
using sdxlhost::test_support::max_abs_diff;
using sdxlhost::test_support::meta_tensors;
using sdxlhost::test_support::read_json;

namespace {

// goldens/features-README.md (float32): final latents atol 5e-4; text encoder outputs 1e-4.
constexpr double kLatentsAtol = 5e-4;
constexpr double kEmbedsAtol = 1e-4;

/// A temp folder holding the tiny refiner as one LDM/SGM single file (its tokenizer beside it).
class SingleFileRefiner {
 public:
  SingleFileRefiner() : root_(fs::temp_directory_path() / ("refiner_single_" + std::to_string(::getpid()))) {
    const fs::path dir = golden("refiner/tiny_sdxl_refiner");
    fs::create_directories(root_ / "tokenizers");
    fs::copy(dir / "tokenizer_2", root_ / "tokenizers" / "tokenizer_2", fs::copy_options::recursive);
    nn::CheckpointWeights weights = nn::open_checkpoint(dir);
    nn::write_single_file_checkpoint(file(), weights);
  }
  ~SingleFileRefiner() { fs::remove_all(root_); }
  fs::path file() const { return root_ / "tiny_refiner.safetensors"; }

 private:
  fs::path root_;
};

/// Counts the UNet evaluations a denoise hook sees (a ControlNet stand-in that adds nothing).
class CountingHook : public sdk::DenoiseHook {
 public:
  mutable int calls = 0, begun = 0, ended = 0, last_total = 0;
  std::string name() const override { return "counter"; }
  bool applies(const sdk::GenerationRequest&) const override { return true; }
  void begin(sdk::Context&) const override { ++begun; }
  void before_unet(sdk::Context&, const sdk::DenoiseStepInput& input, sdk::UNetResiduals&) const override {
    ++calls;
    last_total = input.total_steps;
  }
  void end(sdk::Context&) const override { ++ended; }
};

/// The pipeline harness with the refiner's stages (in plan order: the host's planner orders them
/// by these bands), a CountingHook and the refiner checkpoint as checkpoints/tiny_refiner.
struct Harness : test_support::PipelineHarness {
  std::shared_ptr<CountingHook> hook = std::make_shared<CountingHook>();

  explicit Harness(const fs::path& refiner) {
    registries.add_denoise_hook(hook);
    models.paths["checkpoints/tiny_refiner"] = refiner;
    add_stages(refiner::make_stages(pipeline_settings));
  }
};

/// The request a golden's metadata records.
sdk::GenerationRequest golden_request(const Golden& g) {
  sdk::GenerationRequest r;
  r.prompt = g.text("prompt");
  r.hyperparameters.seed = static_cast<std::int64_t>(g.number("seed"));
  r.height = static_cast<int>(g.number("height"));
  r.width = static_cast<int>(g.number("width"));
  r.hyperparameters.guidance_scale = g.number("guidance_scale");
  r.hyperparameters.num_inference_steps = static_cast<int>(g.number("num_inference_steps"));
  r.hyperparameters.aesthetic_score = g.number("aesthetic_score");
  r.hyperparameters.negative_aesthetic_score = g.number("negative_aesthetic_score");
  r.scheduler = g.scheduler();
  return r;
}

sdk::GenerationRequest ensemble_request(const Golden& g) {
  sdk::GenerationRequest r = golden_request(g);
  r.models.base = "tiny";
  r.models.refiner = "tiny_refiner";
  EXPECT_EQ(g.number("denoising_end_base"), g.number("denoising_start_refiner"));
  r.hyperparameters.denoising_end = g.number("denoising_end_base");
  return r;
}

std::string png_base64(const std::string& golden_path) {
  std::ifstream in(golden(golden_path), std::ios::binary);
  EXPECT_TRUE(in.good()) << golden_path;
  return nn::encode_base64(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()));
}

sdk::GenerationRequest img2img_request(const Golden& g) {
  sdk::GenerationRequest r = golden_request(g);
  r.models.base = "tiny_refiner";
  r.init_image = png_base64("refiner/img2img_input.png");
  r.hyperparameters.strength = g.number("strength");
  return r;
}

/// The two CFG halves stacked as diffusers does (negative first).
at::Tensor cfg(const at::Tensor& negative, const at::Tensor& positive) { return at::cat({negative, positive}); }

/// |image - golden u8| <= 1 per channel (within 1/255).
void expect_image_matches(const sdk::Image& image, const at::Tensor& u8) {
  const at::Tensor got = at::from_blob(const_cast<std::uint8_t*>(image.pixels.data()),
                                       {image.height, image.width, image.channels}, at::kByte)
                             .to(at::kFloat);
  ASSERT_EQ(got.sizes(), u8.sizes());
  EXPECT_LE((got - u8.to(at::kFloat)).abs().max().item<double>(), 1.0);
}

void check_ensemble(const fs::path& refiner_path) {
  const Golden g = load_golden("ensemble_of_experts.safetensors");
  const auto& t = g.tensors;
  Harness h(refiner_path);
  auto ctx = h.context(ensemble_request(g));

  h.run(*ctx, "prepare_latents");
  EXPECT_LT(max_abs_diff(ctx->get<at::Tensor>(sdk::slots::kLatents), t.at("base.prepare_latents_output")), 1e-5);
  // the refiner's own conditioning: text_encoder_2 alone, "" encoded as the negative
  // (force_zeros_for_empty_prompt false in the refiner's model_index)
  const auto& rc = ctx->get<pipeline::SdxlConditioning>(refiner::kRefinerConditioningSlot);
  EXPECT_LT(max_abs_diff(cfg(rc.negative_prompt_embeds, rc.prompt_embeds), t.at("refiner.prompt_embeds_cfg")),
            kEmbedsAtol);
  EXPECT_LT(max_abs_diff(cfg(rc.negative_pooled_prompt_embeds, rc.pooled_prompt_embeds),
                         t.at("refiner.add_text_embeds_cfg")),
            kEmbedsAtol);
  const auto& bc = ctx->get<pipeline::SdxlConditioning>(sdk::slots::kConditioning);
  EXPECT_LT(max_abs_diff(cfg(bc.negative_prompt_embeds, bc.prompt_embeds), t.at("base.prompt_embeds_cfg")),
            kEmbedsAtol);

  h.run(*ctx);
  const auto base_steps = static_cast<std::size_t>(t.at("base.timesteps").numel());
  const auto refiner_steps = static_cast<std::size_t>(t.at("refiner.timesteps").numel());
  ASSERT_EQ(h.step_latents["denoise"].size(), base_steps);
  for (std::size_t i = 0; i < base_steps; ++i) {
    EXPECT_LT(max_abs_diff(h.step_latents["denoise"][i], t.at("base.step" + std::to_string(i) + ".latents_after")),
              kLatentsAtol)
        << i;
  }
  ASSERT_EQ(h.step_latents["refine"].size(), refiner_steps);
  for (std::size_t i = 0; i < refiner_steps; ++i) {
    EXPECT_LT(max_abs_diff(h.step_latents["refine"][i], t.at("refiner.step" + std::to_string(i) + ".latents_after")),
              kLatentsAtol)
        << i;
  }
  const double final_diff = max_abs_diff(ctx->get<at::Tensor>(sdk::slots::kLatents), t.at("refiner.final_latents"));
  std::cout << "ensemble final latents max |diff| " << final_diff << " (absmax "
            << t.at("refiner.final_latents").abs().max().item<double>() << ")\n";
  EXPECT_LT(final_diff, kLatentsAtol);
  // progress names the stage and counts both experts' steps
  const int total = static_cast<int>(base_steps + refiner_steps);
  ASSERT_EQ(h.progress.size(), base_steps + refiner_steps);
  for (std::size_t i = 0; i < h.progress.size(); ++i) {
    EXPECT_EQ(h.progress[i], std::make_tuple(std::string(i < base_steps ? "denoise" : "refine"),
                                             static_cast<int>(i) + 1, total));
  }
  // denoise hooks (ControlNet) take part in the base's steps only
  EXPECT_EQ(h.hook->calls, static_cast<int>(base_steps));
  EXPECT_EQ(h.hook->last_total, static_cast<int>(base_steps));
  EXPECT_EQ(h.hook->begun, 1);
  EXPECT_EQ(h.hook->ended, 1);
  const auto& images = ctx->get<std::vector<sdk::Image>>(sdk::slots::kImages);
  ASSERT_EQ(images.size(), 1u);
  expect_image_matches(images[0], t.at("refiner.image_u8"));
  EXPECT_EQ(images[0].metadata["model_info"]["refiner_model"], "tiny_refiner");
  EXPECT_EQ(images[0].metadata["infotext"]["Refiner"], "tiny_refiner");
  EXPECT_EQ(images[0].metadata["infotext"]["Refiner switch at"], g.text("denoising_end_base"));
}

void check_img2img(const fs::path& refiner_path) {
  const Golden g = load_golden("refiner_img2img.safetensors");
  const auto& t = g.tensors;
  Harness h(refiner_path);
  auto ctx = h.context(img2img_request(g));
  h.run(*ctx, "prepare_latents");
  const auto& c = ctx->get<pipeline::SdxlConditioning>(sdk::slots::kConditioning);
  EXPECT_LT(max_abs_diff(cfg(c.negative_prompt_embeds, c.prompt_embeds), t.at("prompt_embeds_cfg")), kEmbedsAtol);
  EXPECT_LT(max_abs_diff(cfg(c.negative_pooled_prompt_embeds, c.pooled_prompt_embeds), t.at("add_text_embeds_cfg")),
            kEmbedsAtol);
  EXPECT_LT(max_abs_diff(ctx->get<at::Tensor>(sdk::slots::kLatents), t.at("prepare_latents_output")), kLatentsAtol);
  h.run(*ctx);
  const auto steps = static_cast<std::size_t>(t.at("timesteps").numel());
  ASSERT_EQ(h.step_latents["denoise"].size(), steps);
  for (std::size_t i = 0; i < steps; ++i) {
    EXPECT_LT(max_abs_diff(h.step_latents["denoise"][i], t.at("step" + std::to_string(i) + ".latents_after")),
              kLatentsAtol)
        << i;
  }
  const double final_diff = max_abs_diff(ctx->get<at::Tensor>(sdk::slots::kLatents), t.at("final_latents"));
  std::cout << "refiner img2img final latents max |diff| " << final_diff << "\n";
  EXPECT_LT(final_diff, kLatentsAtol);
  const auto& images = ctx->get<std::vector<sdk::Image>>(sdk::slots::kImages);
  ASSERT_EQ(images.size(), 1u);
  expect_image_matches(images[0], t.at("image_u8"));
}

}  // namespace

TEST(RefinerPipeline, EnsembleOfExpertsMatchesTheGoldenWithADiffusersFolder) {
  check_ensemble(golden("refiner/tiny_sdxl_refiner"));
}

TEST(RefinerPipeline, EnsembleOfExpertsMatchesTheGoldenWithASingleFile) {
  const SingleFileRefiner single;
  check_ensemble(single.file());
}

TEST(RefinerPipeline, RefinerCheckpointAsBaseRefinesAnImageLikeTheGoldenInBothLayouts) {
  check_img2img(golden("refiner/tiny_sdxl_refiner"));
  const SingleFileRefiner single;
  check_img2img(single.file());
}

TEST(RefinerPipeline, AestheticTimeIdsAreTheGoldens) {
  for (const char* file : {"ensemble_of_experts.safetensors", "refiner_img2img.safetensors"}) {
    SCOPED_TRACE(file);
    const Golden g = load_golden(file);
    const std::string key = g.tensors.contains("refiner.add_time_ids_cfg") ? "refiner.add_time_ids_cfg" : "add_time_ids_cfg";
    const at::Tensor expected = g.tensors.at(key);
    const auto ids = pipeline::add_time_ids(golden_request(g), static_cast<int>(g.number("height")),
                                            static_cast<int>(g.number("width")), static_cast<int>(expected.size(1)));
    const at::Tensor got = cfg(at::tensor(ids.negative).view({1, -1}), at::tensor(ids.positive).view({1, -1}));
    EXPECT_EQ(max_abs_diff(got, expected), 0.0);
  }
}

TEST(RefinerPipeline, RefinerAsBaseWithoutAnInitImageIsRefusedNamingTheField) {
  const Golden g = load_golden("refiner_img2img.safetensors");
  Harness h(golden("refiner/tiny_sdxl_refiner"));
  sdk::GenerationRequest r = img2img_request(g);
  r.init_image.clear();
  auto ctx = h.context(r);
  try {
    h.run(*ctx);
    FAIL() << "expected a validation error";
  } catch (const sdk::Error& e) {
    EXPECT_EQ(e.code(), sdk::ErrorCode::ValidationError);
    EXPECT_EQ(e.field(), "data.models.base");
    EXPECT_NE(std::string(e.message()).find("init_image"), std::string::npos) << e.message();
  }
}

TEST(RefinerPipeline, FullSizeRefinerKeysBindInBothLayouts) {
  // diffusers folder: the refiner-1.0 config.json files of goldens/keys/configs
  nn::CheckpointWeights folder;
  folder.components[nn::Component::Unet] = meta_tensors(golden("keys/sdxl_refiner_diffusers_unet.json"));
  folder.components[nn::Component::Vae] = meta_tensors(golden("keys/sdxl_base_diffusers_vae.json"));
  folder.components[nn::Component::TextEncoder2] = meta_tensors(golden("keys/sdxl_base_diffusers_text_encoder_2.json"));
  folder.configs[nn::Component::Unet] = read_json(golden("keys/configs/sdxl_refiner_unet_config.json"));
  folder.configs[nn::Component::Vae] = read_json(golden("keys/configs/sdxl_vae_config.json"));
  folder.configs[nn::Component::TextEncoder2] = read_json(golden("keys/configs/text_encoder_2_openclip_bigg_config.json"));
  // single file (sd_xl_refiner_1.0.safetensors layout): split and configs inferred from shapes
  const nn::TensorMap ldm = meta_tensors(golden("keys/sdxl_refiner_ldm.json"));
  nn::SplitCheckpoint split = nn::ldm_checkpoint_to_diffusers(ldm);
  nn::CheckpointWeights single;
  single.layout = nn::KeyLayout::Ldm;
  single.components = split.components;
  const std::int64_t pooled = split.components.at(nn::Component::TextEncoder2).at("text_projection.weight").size(0);
  single.configs[nn::Component::Unet] = nn::infer_unet_config(split.components.at(nn::Component::Unet), pooled);
  single.configs[nn::Component::Vae] = nn::infer_vae_config(split.components.at(nn::Component::Vae));
  single.configs[nn::Component::TextEncoder2] =
      nn::ClipTextConfig::infer(split.components.at(nn::Component::TextEncoder2), true).to_json();
  // the keys no component uses are exactly the ones the real files carry unused (logit_scale)
  for (const auto& key : split.ignored) EXPECT_NE(key.find("logit_scale"), std::string::npos) << key;

  for (const auto* weights : {&folder, &single}) {
    SCOPED_TRACE(weights == &folder ? "diffusers" : "single file");
    // bind() fails naming the key for any missing, unused or mis-shaped weight
    const auto models = pipeline::SdxlModels::bind(*weights, at::kFloat, at::kMeta, "refiner keys");
    EXPECT_TRUE(models->is_refiner());
    EXPECT_EQ(models->time_id_count(), 5);
    EXPECT_EQ(models->text_encoder, nullptr);
    std::size_t bound = models->unet->parameter_names().size() + models->text_encoder_2->named_parameters().size();
    std::size_t given = weights->components.at(nn::Component::Unet).size() +
                        weights->components.at(nn::Component::TextEncoder2).size();
    EXPECT_EQ(bound, given);
  }
}

TEST(RefinerPipeline, BatchImageIIsTheEnsembleOfSeedPlusIAlone) {
  const Golden g = load_golden("ensemble_of_experts.safetensors");
  Harness batch(golden("refiner/tiny_sdxl_refiner"));
  sdk::GenerationRequest r = ensemble_request(g);
  r.batch_size = 2;
  auto ctx = batch.context(r);
  batch.run(*ctx);
  const auto images = ctx->get<std::vector<sdk::Image>>(sdk::slots::kImages);
  ASSERT_EQ(images.size(), 2u);
  for (int i = 0; i < 2; ++i) {
    Harness alone(golden("refiner/tiny_sdxl_refiner"));
    sdk::GenerationRequest one = ensemble_request(g);
    one.hyperparameters.seed += i;
    auto single = alone.context(one);
    alone.run(*single);
    const auto& expected = single->get<std::vector<sdk::Image>>(sdk::slots::kImages).at(0);
    // batched kernels round differently: within 1/255
    expect_image_matches(images[static_cast<std::size_t>(i)],
                         at::from_blob(const_cast<std::uint8_t*>(expected.pixels.data()),
                                       {expected.height, expected.width, expected.channels}, at::kByte)
                             .clone());
  }
}

TEST(RefinerPipeline, ASwitchThatLeavesTheRefinerNoStepIsRefusedOnDenoisingEnd) {
  // a cutoff round(T - f x T) of 0 leaves no timestep below it for the refiner
  const double t = read_json(golden("refiner/tiny_sdxl_refiner/scheduler/scheduler_config.json"))
                       .value("num_train_timesteps", 1000.0);
  Harness h(golden("refiner/tiny_sdxl_refiner"));
  sdk::GenerationRequest r = ensemble_request(load_golden("ensemble_of_experts.safetensors"));
  r.hyperparameters.denoising_end = 1.0 - 0.4 / t;
  auto ctx = h.context(r);
  try {
    h.run(*ctx);
    FAIL() << "expected a validation error";
  } catch (const sdk::Error& e) {
    EXPECT_EQ(e.code(), sdk::ErrorCode::ValidationError);
    EXPECT_EQ(e.field(), "data.hyperparameters.denoising_end");
  }
  EXPECT_TRUE(h.progress.empty());  // refused before the base spent a step
}
