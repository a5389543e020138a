// The sdxl plugin's stages driven directly over a Context (no host): parity with the pipeline
// goldens (2 and 3 Euler steps) from the prompt to the image, custom VAE, batch seeds,
// cancellation, both layouts of the tool's tiny model giving the same image, bad requests.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <png.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <mutex>

#include "common/test_model_access.hpp"
#include "common/goldens.hpp"
#include "common/pipeline_harness.hpp"
#include "sdxlhost/nn/checkpoint.hpp"
#include "sdxlhost/nn/clip_tokenizer.hpp"
#include "sdxlhost/nn/image_decode.hpp"
#include "sdxlhost/nn/key_map.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/nn/unet.hpp"
#include "sdxlhost/pipeline/denoise_loop.hpp"
#include "sdxlhost/pipeline/init_image.hpp"
#include "sdxlhost/pipeline/sdxl_models.hpp"
#include "sdxlhost/pipeline/time_ids.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/image.hpp"
#include "sdxlhost/sdk/models.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "sdxlhost/sdk/request.hpp"
#include "tiny_sdxl_model.hpp"

namespace fs = std::filesystem;
using namespace sdxlhost;
using namespace sdxlhost::test_support;
using nn::TensorMap;
using sdk::Error;
using sdk::ErrorCode;

namespace {

/// Records what the UNet is given at every step (a DenoiseHook that adds nothing).
class RecordingHook : public sdk::DenoiseHook {
 public:
  mutable std::vector<at::Tensor> inputs;
  mutable std::vector<sdk::DenoiseStepInput> steps;  ///< every UNet input (copies)
  mutable int begun = 0, ended = 0;
  std::string name() const override { return "recorder"; }
  bool applies(const sdk::GenerationRequest&) const override { return true; }
  void begin(sdk::Context&) const override { ++begun; }
  void before_unet(sdk::Context&, const sdk::DenoiseStepInput& input, sdk::UNetResiduals&) const override {
    inputs.push_back(input.sample.clone());
    steps.push_back({input.sample.clone(), input.timestep.clone(), input.encoder_hidden_states.clone(),
                     input.text_embeds.clone(), input.time_ids.clone(), input.step, input.total_steps});
  }
  void end(sdk::Context&) const override { ++ended; }
};

/// The pipeline harness with a RecordingHook and the golden custom VAE as vae/custom.
struct Harness : PipelineHarness {
  std::shared_ptr<RecordingHook> hook = std::make_shared<RecordingHook>();

  explicit Harness(std::shared_ptr<const pipeline::PipelineSettings> settings = nullptr)
      : PipelineHarness(std::move(settings)) {
    registries.add_denoise_hook(hook);
    models.paths["vae/custom"] = golden("vae/custom_vae");
  }
};

sdk::GenerationRequest cat_request(int steps) {
  sdk::GenerationRequest r;
  r.prompt = "a photo of a cat";
  r.models.base = "tiny";
  r.hyperparameters.num_inference_steps = steps;
  r.hyperparameters.guidance_scale = 5.0;
  r.hyperparameters.seed = 0;
  r.width = 64;
  r.height = 64;
  r.scheduler = "EulerDiscreteScheduler";
  return r;
}

// goldens/features-README.md (float32 tolerances): per-step UNet outputs atol 1e-4; latents 5e-4.
constexpr double kStepOutputAtol = 1e-4;
constexpr double kLatentsAtol = 5e-4;

/// The tiny golden UNet, loaded on its own to re-run the pipeline's recorded UNet inputs.
const sdxlhost::nn::UNet2DConditionModel& tiny_unet() {
  static const auto unet = sdxlhost::nn::UNet2DConditionModel::load(
      sdxlhost::nn::UNetConfig::from_json(read_json(golden("models/tiny_sdxl/unet/config.json"))),
      load_tensors(golden("models/tiny_sdxl/unet/diffusion_pytorch_model.safetensors")));
  return *unet;
}

at::Tensor image_tensor(const sdk::Image& image) {
  return at::from_blob(const_cast<std::uint8_t*>(image.pixels.data()), {image.height, image.width, image.channels},
                       at::kByte)
      .clone();
}

/// |image - round(np * 255)| <= 1 everywhere (the goal: within 1/255 per channel).
void expect_image_matches(const sdk::Image& image, const at::Tensor& np_float) {
  const at::Tensor expected = at::round(np_float[0] * 255);
  const at::Tensor got = image_tensor(image).to(at::kFloat);
  EXPECT_LE((got - expected).abs().max().item<double>(), 1.0);
}

}  // namespace

TEST(SdxlPipeline, TwoAndThreeEulerStepsMatchTheGoldensFromPromptToImage) {
  for (int steps : {2, 3}) {
    SCOPED_TRACE(steps);
    const TensorMap g = load_tensors(golden("models/reference/pipeline_" + std::to_string(steps) + "steps.safetensors"));
    Harness h;
    auto ctx = h.context(cat_request(steps));
    h.stages[0]->run(*ctx);  // encode_prompt
    const auto& cond = ctx->get<pipeline::SdxlConditioning>(sdk::slots::kConditioning);
    EXPECT_LT(max_abs_diff(cond.prompt_embeds, g.at("prompt_embeds")), 1e-4);
    EXPECT_LT(max_abs_diff(cond.pooled_prompt_embeds, g.at("pooled_prompt_embeds")), 1e-4);
    EXPECT_EQ(max_abs_diff(cond.negative_prompt_embeds, g.at("negative_prompt_embeds")), 0.0);
    EXPECT_EQ(max_abs_diff(cond.negative_pooled_prompt_embeds, g.at("negative_pooled_prompt_embeds")), 0.0);

    h.stages[1]->run(*ctx);  // prepare_latents: seed-0 CPU generator, times init_noise_sigma
    EXPECT_LT(max_abs_diff(ctx->get<at::Tensor>(sdk::slots::kLatents), g.at("initial_latents")), 1e-5);

    h.stages[2]->run(*ctx);  // denoise
    ASSERT_EQ(h.hook->inputs.size(), static_cast<std::size_t>(steps));
    for (int i = 0; i < steps; ++i) {
      EXPECT_LT(max_abs_diff(h.hook->inputs[i], g.at("step" + std::to_string(i) + ".unet_input")), 1e-4) << i;
    }
    // Each step's UNet output (before guidance) for exactly what the pipeline gave the UNet, and
    // the latents after each scheduler step as the stage published them.
    ASSERT_EQ(h.step_latents["denoise"].size(), static_cast<std::size_t>(steps));
    for (int i = 0; i < steps; ++i) {
      const std::string key = "step" + std::to_string(i);
      const auto& in = h.hook->steps[i];
      const at::Tensor output =
          tiny_unet().forward(in.sample, in.timestep, in.encoder_hidden_states, in.text_embeds, in.time_ids);
      EXPECT_LT(max_abs_diff(output, g.at(key + ".unet_output")), kStepOutputAtol) << i;
      EXPECT_LT(max_abs_diff(h.step_latents["denoise"][i], g.at(key + ".latents_after")), kLatentsAtol) << i;
    }
    EXPECT_EQ(h.hook->begun, 1);
    EXPECT_EQ(h.hook->ended, 1);
    EXPECT_LT(max_abs_diff(ctx->get<at::Tensor>(sdk::slots::kLatents), g.at("final_latents")), kLatentsAtol);
    ASSERT_EQ(h.progress.size(), static_cast<std::size_t>(steps));
    EXPECT_EQ(h.progress.back(), std::make_tuple(std::string("denoise"), steps, steps));

    h.stages[3]->run(*ctx);  // vae_decode
    const auto& images = ctx->get<std::vector<sdk::Image>>(sdk::slots::kImages);
    ASSERT_EQ(images.size(), 1u);
    EXPECT_EQ(images[0].width, 64);
    EXPECT_EQ(images[0].metadata["seed"], 0);
    expect_image_matches(images[0], g.at("image_np_float"));
  }
}

TEST(SdxlPipeline, Img2ImgMatchesTheGoldenFromBase64PngAndFromTheInitImageSlot) {
  const TensorMap g = load_tensors(golden("vae/img2img_base.safetensors"));
  std::ifstream png(golden("vae/input_image.png"), std::ios::binary);
  ASSERT_TRUE(png.good());
  const std::string bytes((std::istreambuf_iterator<char>(png)), std::istreambuf_iterator<char>());
  auto request = cat_request(4);
  request.hyperparameters.strength = 0.6;
  request.width = 1024;  // ignored: img2img takes the init image's size, as diffusers
  request.height = 1024;
  request.init_image = nn::encode_base64(bytes);
  for (bool from_slot : {false, true}) {
    SCOPED_TRACE(from_slot);
    Harness h;
    auto ctx = h.context(request);
    if (from_slot) {
      const at::Tensor u8 = g.at("input_image_u8").contiguous();
      sdk::Image image;
      image.height = 64;
      image.width = 64;
      image.pixels.assign(u8.data_ptr<std::uint8_t>(), u8.data_ptr<std::uint8_t>() + u8.numel());
      ctx->set(sdk::slots::kInitImage, image);
    }
    h.stages[0]->run(*ctx);
    h.stages[1]->run(*ctx);
    EXPECT_LT(max_abs_diff(ctx->get<at::Tensor>(sdk::slots::kLatents), g.at("prepare_latents_output")), 1e-4);
    h.stages[2]->run(*ctx);
    ASSERT_EQ(h.hook->inputs.size(), 2u);  // int(4 x 0.6) = 2 of the 4 steps: t = 251, 1
    for (int i = 0; i < 2; ++i) {
      EXPECT_LT(max_abs_diff(h.hook->inputs[i], g.at("step" + std::to_string(i) + ".unet_input")), 1e-4) << i;
    }
    EXPECT_LT(max_abs_diff(ctx->get<at::Tensor>(sdk::slots::kLatents), g.at("final_latents")), 5e-4);
    h.stages[3]->run(*ctx);
    expect_image_matches(ctx->get<std::vector<sdk::Image>>(sdk::slots::kImages)[0], g.at("image_np_float"));
  }
  request.init_image = "not base64!";
  Harness h;
  try {
    h.run(request);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.field(), "data.init_image");
  }
}

TEST(SdxlPipeline, InitImagesAreResizedToTheDimensionsOrRoundedDownAndUndecodableOnesRefused) {
  // As diffusers' VaeImageProcessor: without dimensions an image is rounded down to a multiple of
  // the VAE's factor (2 for the tiny model; 8 for SDXL), said in a warning; with dimensions it is
  // resized to them.
  std::vector<std::uint8_t> gray(63 * 63, 128);
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  png.width = 63;
  png.height = 63;
  png.format = PNG_FORMAT_GRAY;
  png_alloc_size_t size = 0;
  ASSERT_TRUE(png_image_write_to_memory(&png, nullptr, &size, 0, gray.data(), 0, nullptr));
  std::string bytes(size, '\0');
  ASSERT_TRUE(png_image_write_to_memory(&png, bytes.data(), &size, 0, gray.data(), 0, nullptr));
  auto request = cat_request(2);
  request.hyperparameters.strength = 0.5;
  request.init_image = nn::encode_base64(bytes);
  struct Case {
    bool dimensions_given;
    int width, height;
    std::int64_t latent_width, latent_height;
    bool warns;
  };
  for (const Case& c : {Case{false, 64, 64, 31, 31, true}, Case{true, 64, 32, 32, 16, false}}) {
    SCOPED_TRACE(c.dimensions_given);
    request.dimensions_given = c.dimensions_given;
    request.width = c.width;
    request.height = c.height;
    Harness h;
    auto ctx = h.context(request);
    h.stages[0]->run(*ctx);
    h.stages[1]->run(*ctx);
    const at::Tensor latents = ctx->get<at::Tensor>(sdk::slots::kLatents);
    EXPECT_EQ(latents.size(3), c.latent_width);
    EXPECT_EQ(latents.size(2), c.latent_height);
    ASSERT_EQ(ctx->warnings().size(), c.warns ? 1u : 0u);
    if (c.warns) EXPECT_NE(ctx->warnings()[0].find("63x63; resized to 62x62"), std::string::npos) << ctx->warnings()[0];
  }
  auto refusal = [](const std::string& init_image) -> std::string {
    auto request = cat_request(2);
    request.hyperparameters.strength = 0.5;
    request.init_image = init_image;
    Harness h;
    try {
      h.run(request);
    } catch (const Error& e) {
      EXPECT_EQ(e.field(), "data.init_image");
      EXPECT_EQ(e.code(), ErrorCode::ValidationError);
      return e.message();
    }
    return "(accepted)";
  };
  EXPECT_NE(refusal(nn::encode_base64("\xFF\xD8\xFF\xE0 not really a jpeg")), "(accepted)");
  EXPECT_NE(refusal(nn::encode_base64("plain text")), "(accepted)");
}

TEST(SdxlPipeline, ResizeImageTensorKeepsFlatImagesFlatAndTheRange) {
  const at::Tensor flat = at::full({1, 3, 63, 63}, 0.25);
  const at::Tensor down = pipeline::resize_image_tensor(flat, 32, 16);
  EXPECT_EQ(down.sizes(), at::IntArrayRef({1, 3, 32, 16}));
  EXPECT_LT((down - 0.25).abs().max().item<double>(), 1e-6);
  const at::Tensor up = pipeline::resize_image_tensor(at::rand({1, 3, 8, 8}) * 2 - 1, 40, 24);
  EXPECT_EQ(up.sizes(), at::IntArrayRef({1, 3, 40, 24}));
  EXPECT_LE(up.abs().max().item<double>(), 1.0);  // bicubic overshoot clamped
  const at::Tensor same = at::rand({1, 3, 8, 8});
  EXPECT_TRUE(pipeline::resize_image_tensor(same, 8, 8).is_same(same));
}

TEST(SdxlPipeline, DenoisingEndStopsAtTheDiscreteCutoffForARefiner) {
  // ensemble of experts: 5 steps, denoising_end 0.8 -> cutoff t >= 200: 801, 601, 401, 201
  const TensorMap g = load_tensors(golden("refiner/ensemble_of_experts.safetensors"));
  Harness h;
  auto request = cat_request(5);
  request.hyperparameters.denoising_end = 0.8;
  auto ctx = h.context(request);
  for (int i = 0; i < 3; ++i) h.stages[i]->run(*ctx);
  ASSERT_EQ(h.hook->inputs.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_LT(max_abs_diff(h.hook->inputs[i], g.at("base.step" + std::to_string(i) + ".unet_input")), 1e-4) << i;
  }
  EXPECT_LT(max_abs_diff(ctx->get<at::Tensor>(sdk::slots::kLatents), g.at("base.final_latents")), 5e-4);
  EXPECT_EQ(std::get<2>(h.progress.back()), 4);
}

TEST(SdxlPipeline, CustomVaeDecodesTheSameLatentsToTheReferenceImage) {
  const TensorMap g = load_tensors(golden("vae/pipeline_custom_vae.safetensors"));
  Harness h;
  auto request = cat_request(3);
  request.models.vae = "custom";
  auto ctx = h.run(request);
  EXPECT_LT(max_abs_diff(ctx->get<at::Tensor>(sdk::slots::kLatents), g.at("final_latents")), 5e-4);
  expect_image_matches(ctx->get<std::vector<sdk::Image>>(sdk::slots::kImages)[0], g.at("image_np_float"));
  EXPECT_EQ(ctx->get<std::vector<sdk::Image>>(sdk::slots::kImages)[0].metadata["model_info"]["vae_model"], "custom");
}

TEST(SdxlPipeline, BatchImageIUsesSeedPlusIAndIsReproducibleAlone) {
  Harness h;
  auto batch = cat_request(2);
  batch.batch_size = 2;
  batch.hyperparameters.seed = 10;
  auto ctx = h.run(batch);
  const auto images = ctx->get<std::vector<sdk::Image>>(sdk::slots::kImages);
  ASSERT_EQ(images.size(), 2u);
  EXPECT_EQ(images[1].metadata["seed"], 11);
  auto single = cat_request(2);
  single.hyperparameters.seed = 11;
  const auto alone = h.run(single)->get<std::vector<sdk::Image>>(sdk::slots::kImages);
  // same noise and computation; batched float kernels may round differently, so allow 1/255
  const at::Tensor diff = image_tensor(images[1]).to(at::kInt) - image_tensor(alone[0]).to(at::kInt);
  EXPECT_LE(diff.abs().max().item<int>(), 1);
  EXPECT_FALSE(at::equal(image_tensor(images[0]), image_tensor(images[1])));
  EXPECT_EQ(h.models.loads, 1);  // one pipeline load, cached for every stage and job
}

TEST(SdxlPipeline, CancelStopsBetweenStepsAndEndsTheHooks) {
  Harness h;
  auto request = cat_request(5);
  auto ctx = h.context(request);
  h.stages[0]->run(*ctx);
  h.stages[1]->run(*ctx);
  h.progress.clear();
  // a hook cancels the job during step 2 (index 1): that step finishes, step 3 never starts
  auto token = ctx->token();
  auto* raw = ctx.get();
  struct CancelAfter : sdk::DenoiseHook {
    std::shared_ptr<sdk::CancellationToken> token;
    std::string name() const override { return "cancel"; }
    bool applies(const sdk::GenerationRequest&) const override { return true; }
    void before_unet(sdk::Context&, const sdk::DenoiseStepInput& in, sdk::UNetResiduals&) const override {
      if (in.step == 1) token->cancel();
    }
  };
  auto canceller = std::make_shared<CancelAfter>();
  canceller->token = token;
  h.registries.add_denoise_hook(canceller);
  try {
    h.stages[2]->run(*raw);
    FAIL() << "expected Cancelled";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Cancelled);
  }
  EXPECT_EQ(h.progress.size(), 2u);  // step 2 finished, step 3 never started
  EXPECT_EQ(h.hook->ended, 1);
}

TEST(SdxlPipeline, SingleFileAndDiffusersFolderOfTheTinyModelGiveTheSameImage) {
  const fs::path root = fs::temp_directory_path() / ("sdxl_pipe_" + std::to_string(::getpid()));
  const auto spec = tools::tiny_spec();
  const auto weights = tools::make_weights(spec, 3);
  tools::write_diffusers_folder(root / "tiny-sdxl", spec, weights, golden("models/tiny_sdxl"));
  tools::write_single_file(root / "tiny-sdxl-single.safetensors", weights);
  fs::create_directories(root / "tokenizers");
  fs::copy(root / "tiny-sdxl" / "tokenizer", root / "tokenizers" / "tokenizer");
  fs::copy(root / "tiny-sdxl" / "tokenizer_2", root / "tokenizers" / "tokenizer_2");

  Harness h;
  h.models.paths["checkpoints/folder"] = root / "tiny-sdxl";
  h.models.paths["checkpoints/single"] = root / "tiny-sdxl-single.safetensors";
  auto request = cat_request(2);
  request.models.base = "folder";
  const auto a = h.run(request)->get<std::vector<sdk::Image>>(sdk::slots::kImages);
  request.models.base = "single";
  const auto b = h.run(request)->get<std::vector<sdk::Image>>(sdk::slots::kImages);
  EXPECT_TRUE(at::equal(image_tensor(a[0]), image_tensor(b[0])));
  EXPECT_GT(image_tensor(a[0]).to(at::kFloat).std().item<double>(), 1.0);  // not a flat image
  fs::remove_all(root);
}

TEST(SdxlPipeline, MakeTinySdxlWithoutSharedWritesItsOwnTokenizerAndAModelThatGenerates) {
  // The tool as the build and the README demo run it: no --shared / --tokenizer-from, and no
  // SDXLHOST_SHARED_DIR in its environment.
  const fs::path root = fs::temp_directory_path() / ("sdxl_tool_" + std::to_string(::getpid()));
  const std::string command = "env -u SDXLHOST_SHARED_DIR '" + std::string(MAKE_TINY_SDXL_PATH) +
                              "' --models-root '" + root.string() + "' --seed 5 > /dev/null";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  const fs::path folder = root / "checkpoints" / "tiny-sdxl";

  const auto tokenizer = nn::ClipTokenizer::load_folder(folder / "tokenizer");
  const auto tokenizer_2 = nn::ClipTokenizer::load_folder(folder / "tokenizer_2");
  EXPECT_EQ(static_cast<std::int64_t>(tokenizer.vocab_size()), tools::builtin_tokenizer_vocab_size());
  EXPECT_EQ(tokenizer.eos_id(), tools::builtin_tokenizer_vocab_size() - 1);
  EXPECT_EQ(tokenizer.tokenize("a photo of a cat"),
            (std::vector<std::string>{"a</w>", "photo</w>", "of</w>", "a</w>", "cat</w>"}));
  EXPECT_EQ(tokenizer_2.pad_id(), tokenizer_2.id_of("!"));
  const auto config = read_json(folder / "text_encoder" / "config.json");
  EXPECT_EQ(config["vocab_size"].get<std::int64_t>(), tools::builtin_tokenizer_vocab_size());

  Harness h;
  h.models.paths["checkpoints/folder"] = folder;
  h.models.paths["checkpoints/single"] = root / "checkpoints" / "tiny-sdxl-single.safetensors";
  auto request = cat_request(2);
  request.prompt = "a red dog, with light! <|endoftext|> 123 caf\u00e9";
  request.models.base = "folder";
  const auto a = h.run(request)->get<std::vector<sdk::Image>>(sdk::slots::kImages);
  request.models.base = "single";  // tokenizers from checkpoints/tokenizers/
  const auto b = h.run(request)->get<std::vector<sdk::Image>>(sdk::slots::kImages);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_TRUE(at::equal(image_tensor(a[0]), image_tensor(b[0])));
  EXPECT_GT(image_tensor(a[0]).to(at::kFloat).std().item<double>(), 1.0);  // not a flat image
  fs::remove_all(root);
}

pipeline::SdxlConditioning encode(Harness& h, const sdk::GenerationRequest& r) {
  auto ctx = h.context(r);
  h.stages[0]->run(*ctx);
  return ctx->get<pipeline::SdxlConditioning>(sdk::slots::kConditioning);
}

TEST(SdxlPipeline, EncodePromptHandlesNegativesWeightsLongPromptsAndClipSkip) {
  Harness h;
  auto r = cat_request(2);
  const auto plain = encode(h, r);

  r.negative_prompt = "blurry";
  const auto with_negative = encode(h, r);
  EXPECT_GT(with_negative.negative_prompt_embeds.abs().max().item<double>(), 0.1);
  EXPECT_EQ(max_abs_diff(with_negative.prompt_embeds, plain.prompt_embeds), 0.0);

  r = cat_request(2);
  r.prompt = "a photo of a (cat:1.0)";  // weight 1: the plain prompt's tokens and embeddings
  EXPECT_EQ(max_abs_diff(encode(h, r).prompt_embeds, plain.prompt_embeds), 0.0);
  r.prompt = "a photo of a (cat:1.5)";
  const auto weighted = encode(h, r);
  EXPECT_EQ(weighted.prompt_embeds.sizes(), plain.prompt_embeds.sizes());
  EXPECT_GT(max_abs_diff(weighted.prompt_embeds, plain.prompt_embeds), 1e-4);
  EXPECT_EQ(max_abs_diff(weighted.pooled_prompt_embeds, plain.pooled_prompt_embeds), 0.0);  // not weighted

  r = cat_request(2);
  std::string long_prompt;
  for (int i = 0; i < 40; ++i) long_prompt += "red cat ";
  r.prompt = long_prompt;
  EXPECT_EQ(encode(h, r).prompt_embeds.size(1), 77);  // the reference truncates
  r.long_prompt = true;
  const auto chunked = encode(h, r);
  EXPECT_EQ(chunked.prompt_embeds.size(1), 2 * 77);  // 80 tokens -> two 75-token windows
  EXPECT_EQ(chunked.negative_prompt_embeds.sizes(), chunked.prompt_embeds.sizes());
  r.negative_prompt = "blurry";  // the negative is padded to the same number of windows
  EXPECT_EQ(encode(h, r).negative_prompt_embeds.size(1), 2 * 77);

  r = cat_request(2);
  r.hyperparameters.clip_skip = 1;  // one layer earlier than SDXL's penultimate
  EXPECT_GT(max_abs_diff(encode(h, r).prompt_embeds, plain.prompt_embeds), 1e-3);
}

/// Adds a constant to one weight of each component when the request enables LoRA.
class ConstantPatch : public sdk::ModelPatch {
 public:
  mutable std::vector<std::string> components;
  std::string name() const override { return "constant"; }
  bool applies(const sdk::GenerationRequest& r) const override { return r.lora_enabled; }
  std::string cache_key(sdk::Context&) const override { return "constant"; }
  void apply(sdk::Context&, sdk::WeightTarget& target) const override {
    components.push_back(target.component());
    const std::string key = target.component() == "unet"
                                ? "up_blocks.0.attentions.0.transformer_blocks.0.attn2.to_v.weight"
                                : "text_model.encoder.layers.1.mlp.fc2.weight";
    ASSERT_TRUE(target.has(key));
    target.add_delta(key, at::full(target.weight(key).sizes(), 0.05));
  }
};

TEST(SdxlPipeline, ModelPatchesChangeThisJobOnlyAndAreReverted) {
  Harness h;
  auto patch = std::make_shared<ConstantPatch>();
  h.registries.add_model_patch(patch);
  auto plain = cat_request(2);
  const auto before = h.run(plain)->get<std::vector<sdk::Image>>(sdk::slots::kImages);
  EXPECT_TRUE(patch->components.empty());
  auto patched = plain;
  patched.lora_enabled = true;
  const auto with_patch = h.run(patched)->get<std::vector<sdk::Image>>(sdk::slots::kImages);
  EXPECT_EQ(patch->components, (std::vector<std::string>{"text_encoder", "text_encoder_2", "unet"}));
  EXPECT_FALSE(at::equal(image_tensor(before[0]), image_tensor(with_patch[0])));
  const auto after = h.run(plain)->get<std::vector<sdk::Image>>(sdk::slots::kImages);
  EXPECT_TRUE(at::equal(image_tensor(before[0]), image_tensor(after[0])));  // weights restored
}

TEST(SdxlPipeline, RefinerShapedSingleFileLoadsWithItsDeeperMidBlock) {
  // The refiner's last level has no attention but its mid block has transformer blocks of its
  // own depth (2 here, 4 in SDXL's refiner): a shape-inferred config must count them.
  const fs::path dir = golden("refiner/tiny_sdxl_refiner");
  const fs::path root = fs::temp_directory_path() / ("sdxl_refiner_" + std::to_string(::getpid()));
  fs::create_directories(root / "tokenizers");
  fs::copy(dir / "tokenizer_2", root / "tokenizers" / "tokenizer_2");
  std::map<nn::Component, TensorMap> parts{
      {nn::Component::Unet, load_tensors(dir / "unet/diffusion_pytorch_model.safetensors")},
      {nn::Component::Vae, load_tensors(dir / "vae/diffusion_pytorch_model.safetensors")},
      {nn::Component::TextEncoder2, load_tensors(dir / "text_encoder_2/model.safetensors")}};
  // the tiny text encoder's 4 heads of 8 cannot be inferred: its config.json rides in the metadata
  std::ifstream te2_config(dir / "text_encoder_2/config.json");
  const std::string te2_json((std::istreambuf_iterator<char>(te2_config)), std::istreambuf_iterator<char>());
  nn::write_safetensors(root / "refiner.safetensors", nn::diffusers_to_ldm_checkpoint(parts),
                        {{std::string(nn::kConfigMetadataPrefix) + "text_encoder_2", te2_json}});
  const auto models = pipeline::SdxlModels::load(root / "refiner.safetensors", pipeline::PipelineSettings{});
  EXPECT_EQ(models->unet->config().mid_transformer_depth, 2);
  EXPECT_FALSE(models->unet->config().down_attention.back());
  EXPECT_EQ(models->text_encoder, nullptr);
  EXPECT_EQ(models->unet->config().addition_time_embed_dim, 8);  // 72 = 32 pooled + 5 x 8
  fs::remove_all(root);
}

TEST(SdxlPipeline, ATokenizerFolderWithoutItsSpecialTokensFilesIsRefused) {
  // SDXL's tokenizer_2 pads with "!", which only special_tokens_map.json / tokenizer_config.json
  // say: without both, loading would silently pad with <|endoftext|>; it is refused instead.
  const fs::path root = fs::temp_directory_path() / ("sdxl_tokenizers_" + std::to_string(::getpid()));
  fs::create_directories(root);
  fs::copy(golden("models/tiny_sdxl"), root / "tiny", fs::copy_options::recursive);
  EXPECT_NO_THROW(pipeline::SdxlModels::load(root / "tiny", pipeline::PipelineSettings{}));
  fs::remove(root / "tiny" / "tokenizer_2" / "special_tokens_map.json");
  EXPECT_NO_THROW(pipeline::SdxlModels::load(root / "tiny", pipeline::PipelineSettings{})) << "one of the two is enough";
  fs::remove(root / "tiny" / "tokenizer_2" / "tokenizer_config.json");
  try {
    pipeline::SdxlModels::load(root / "tiny", pipeline::PipelineSettings{});
    ADD_FAILURE() << "a tokenizer_2 without its special tokens files was accepted";
  } catch (const sdk::Error& error) {
    EXPECT_EQ(error.code(), sdk::ErrorCode::ModelLoadError);
    EXPECT_NE(std::string(error.what()).find("special_tokens_map.json"), std::string::npos) << error.what();
    EXPECT_NE(std::string(error.what()).find("tokenizer_2"), std::string::npos) << error.what();
  }
  fs::remove_all(root);
}

TEST(SdxlPipeline, Bfloat16RunsOnTheCpuCloseToFloat32) {
  Harness fp32;
  const auto reference = fp32.run(cat_request(2))->get<std::vector<sdk::Image>>(sdk::slots::kImages);
  pipeline::PipelineSettings settings;
  settings.dtype = "bf16";
  Harness bf16(std::make_shared<const pipeline::PipelineSettings>(settings));
  const auto images = bf16.run(cat_request(2))->get<std::vector<sdk::Image>>(sdk::slots::kImages);
  const at::Tensor diff = image_tensor(images[0]).to(at::kFloat) - image_tensor(reference[0]).to(at::kFloat);
  // bf16 keeps 8 bits of mantissa: measured mean |diff| 0.96 levels (max 8) on this random
  // model; the limit is 3x that
  std::cout << "bf16 vs fp32 image: mean |diff| " << diff.abs().mean().item<double>() << " levels, max "
            << diff.abs().max().item<double>() << "\n";
  EXPECT_LT(diff.abs().mean().item<double>(), 3.0);
  EXPECT_THROW(pipeline::PipelineSettings::from_json({{"dtype", "fp16"}}), Error);  // no CPU half kernels
  EXPECT_THROW(pipeline::PipelineSettings::from_json({{"device", "tpu"}}), Error);
}

TEST(SdxlPipeline, VaeTilingSettingTilesOnlyImagesLargerThanTheTile) {
  Harness plain;
  const auto reference = plain.run(cat_request(2))->get<std::vector<sdk::Image>>(sdk::slots::kImages);
  auto run_with = [](int tile, int overlap) {
    Harness h(std::make_shared<const pipeline::PipelineSettings>(
        pipeline::PipelineSettings::from_json({{"vae_tile_size", tile}, {"vae_tile_overlap", overlap}})));
    return h.run(cat_request(2))->get<std::vector<sdk::Image>>(sdk::slots::kImages);
  };
  EXPECT_TRUE(at::equal(image_tensor(run_with(64, 16)[0]), image_tensor(reference[0])));  // one tile
  const auto tiled = run_with(32, 16);  // 3 x 3 tiles of 32 px
  EXPECT_FALSE(at::equal(image_tensor(tiled[0]), image_tensor(reference[0])));
  EXPECT_THROW(pipeline::PipelineSettings::from_json({{"vae_tile_size", 32}, {"vae_tile_overlap", 20}}), Error);
  EXPECT_THROW(pipeline::PipelineSettings::from_json({{"vae_tile_size", -1}}), Error);
}

TEST(SdxlPipeline, TheVaeRunsWholeUpTo1024PixelsAndTiledPastItByDefault) {
  const pipeline::PipelineSettings defaults;
  EXPECT_FALSE(defaults.tiling_for(1024, 1024).has_value());
  const auto tiled = defaults.tiling_for(1024, 1536);
  ASSERT_TRUE(tiled.has_value());
  EXPECT_EQ(tiled->tile, 1024);
  EXPECT_EQ(tiled->overlap, 64);
  EXPECT_FALSE(pipeline::PipelineSettings::from_json({{"vae_tile_size", 0}}).tiling_for(4096, 4096).has_value());
}

TEST(SdxlPipeline, TilingSettingsTheVaeCannotCutFailInitializationNamingTheSetting) {
  // initialize() reads the settings with from_json: a bad pair fails the plugin, not each request.
  auto field_of = [](int tile, int overlap) -> std::string {
    try {
      pipeline::PipelineSettings::from_json({{"vae_tile_size", tile}, {"vae_tile_overlap", overlap}});
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::ValidationError);
      return e.field();
    }
    return "(accepted)";
  };
  EXPECT_EQ(field_of(12, 3), "plugins.config.sdxl.vae_tile_size");
  EXPECT_EQ(field_of(36, 8), "plugins.config.sdxl.vae_tile_size");
  EXPECT_EQ(field_of(32, 4), "plugins.config.sdxl.vae_tile_overlap");
  EXPECT_EQ(field_of(32, 24), "plugins.config.sdxl.vae_tile_overlap");
  EXPECT_EQ(field_of(32, 16), "(accepted)");
  EXPECT_EQ(field_of(0, 3), "(accepted)");  // tiling off: the overlap is unused
}

TEST(SdxlPipeline, BadRequestsGiveValidationErrorsNamingTheField) {
  Harness h;
  auto field_of = [&](sdk::GenerationRequest r) -> std::string {
    try {
      h.run(r);
    } catch (const Error& e) {
      return e.field();
    }
    return "(no error)";
  };
  auto r = cat_request(2);
  r.width = 65;
  EXPECT_EQ(field_of(r), "data.dimensions.width");
  r = cat_request(2);
  r.scheduler = "NoSuchScheduler";
  EXPECT_EQ(field_of(r), "data.scheduler");
  r = cat_request(2);
  r.hyperparameters.original_size = std::vector<int>{64};
  EXPECT_EQ(field_of(r), "data.hyperparameters.original_size");
  r = cat_request(2);
  r.hyperparameters.clip_skip = 5;
  EXPECT_EQ(field_of(r), "data.hyperparameters.clip_skip");
  r = cat_request(2);
  r.models.base = "missing";
  EXPECT_EQ(field_of(r), "data.models.base");
}

TEST(SdxlPipeline, UnreadableModelFilesAreModelLoadErrorsNamingTheRequestField) {
  // A truncated safetensors (header promises more bytes than the file has) as the checkpoint
  // and as the custom VAE: the readers' errors reach the client naming the field that named it.
  const fs::path root = fs::temp_directory_path() / ("sdxl_corrupt_" + std::to_string(::getpid()));
  fs::create_directories(root);
  const std::string header = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  std::string bytes(8, '\0');
  for (std::size_t i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  std::ofstream(root / "truncated.safetensors", std::ios::binary) << bytes << header << "1234";
  auto error_of = [](Harness& h, const sdk::GenerationRequest& r) -> std::pair<ErrorCode, std::string> {
    try {
      h.run(r);
    } catch (const Error& e) {
      return {e.code(), e.field()};
    }
    return {ErrorCode::InternalError, "(no error)"};
  };
  Harness h;
  h.models.paths["checkpoints/broken"] = root / "truncated.safetensors";
  h.models.paths["vae/broken"] = root / "truncated.safetensors";
  auto r = cat_request(1);
  r.models.base = "broken";
  EXPECT_EQ(error_of(h, r), std::make_pair(ErrorCode::ModelLoadError, std::string("data.models.base")));
  r = cat_request(1);
  r.models.vae = "broken";
  EXPECT_EQ(error_of(h, r), std::make_pair(ErrorCode::ModelLoadError, std::string("data.models.vae")));
  fs::remove_all(root);
}

TEST(SdxlPipeline, GuidanceRescaleAndTimeIdsFollowDiffusers) {
  sdk::GenerationRequest r = cat_request(2);
  r.height = 64;
  r.width = 128;
  r.hyperparameters.crops_coords_top_left = {3, 4};
  EXPECT_EQ(pipeline::time_ids(r, 64, 128), (std::vector<float>{64, 128, 3, 4, 64, 128}));
  r.hyperparameters.original_size = std::vector<int>{1024, 1024};
  EXPECT_EQ(pipeline::time_ids(r, 64, 128), (std::vector<float>{1024, 1024, 3, 4, 64, 128}));
  const at::Tensor text = at::randn({2, 4, 8, 8}), guided = text * 3 + 1;
  EXPECT_TRUE(at::allclose(pipeline::rescale_noise_cfg(guided, text, 0.0), guided));
  const at::Tensor full = pipeline::rescale_noise_cfg(guided, text, 1.0);
  EXPECT_TRUE(at::allclose(full.std({1, 2, 3}), text.std({1, 2, 3}), 1e-4, 1e-5));
}
