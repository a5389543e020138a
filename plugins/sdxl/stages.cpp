// The SDXL stages: encode_prompt, prepare_latents, denoise, vae_decode (see stages.hpp).
#include "stages.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "init_image.hpp"
#include "sdxlhost/nn/denoise_window.hpp"
#include "sdxlhost/nn/image_decode.hpp"
#include "model_patching.hpp"
#include "sdxlhost/nn/prompt_weighting.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/image.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "sdxlhost/sdk/request.hpp"
#include "sdxlhost/sdk/scheduler.hpp"

namespace sdxlhost::sdxl {
namespace {

using sdk::Error;
using sdk::ErrorCode;

constexpr const char* kFeature = "sdxl";

/// Base class holding the shared settings.
class SdxlStage : public sdk::Stage {
 public:
  explicit SdxlStage(std::shared_ptr<const SdxlSettings> settings) : settings_(std::move(settings)) {}
  std::string feature() const override { return kFeature; }
  bool applies(const sdk::GenerationRequest&) const override { return true; }

 protected:
  std::shared_ptr<const SdxlSettings> settings_;
};

// ---- encode_prompt -----------------------------------------------------------------------------

/// One prompt through one tokenizer + encoder.
struct EncodedPrompt {
  std::vector<nn::WeightedChunk> chunks;
};

std::vector<nn::WeightedChunk> tokenize(const nn::ClipTokenizer& tokenizer, const std::string& prompt,
                                        bool chunked) {
  return nn::tokenize_weighted(tokenizer, prompt, chunked);
}

/// Hidden states (1, 77 x chunks, C) of the layer SDXL uses (penultimate, or clip_skip more),
/// weighted when the prompt has emphasis; `text_embeds` gets the first chunk's projected pooled
/// output when the encoder has a projection.
at::Tensor encode_chunks(const nn::ClipTextModel& encoder, const nn::ClipTokenizer& tokenizer,
                         std::vector<nn::WeightedChunk> chunks, std::size_t count, int clip_skip,
                         at::Tensor* text_embeds) {
  while (chunks.size() < count) {
    nn::WeightedChunk empty;
    empty.tokens = tokenizer.pad({});
    empty.weights.assign(empty.tokens.input_ids.size(), 1.0f);
    chunks.push_back(std::move(empty));
  }
  std::vector<std::int64_t> ids;
  std::vector<float> weights;
  for (const auto& chunk : chunks) {
    ids.insert(ids.end(), chunk.tokens.input_ids.begin(), chunk.tokens.input_ids.end());
    weights.insert(weights.end(), chunk.weights.begin(), chunk.weights.end());
  }
  const auto n = static_cast<std::int64_t>(chunks.size());
  const at::Tensor input = at::tensor(ids, at::kLong).view({n, -1});
  const nn::ClipTextOutput out = encoder.forward(input);
  const auto layers = static_cast<int>(out.hidden_states.size());
  const int index = layers - 2 - clip_skip;
  if (index < 0) {
    throw Error(ErrorCode::ValidationError,
                "clip_skip " + std::to_string(clip_skip) + " is larger than the text encoder allows (" +
                    std::to_string(layers - 2) + ")",
                "data.hyperparameters.clip_skip");
  }
  at::Tensor hidden = out.hidden_states[static_cast<std::size_t>(index)].to(at::kFloat);
  hidden = hidden.reshape({1, -1, hidden.size(-1)});
  if (!nn::all_weights_one(chunks)) {
    hidden = nn::apply_prompt_weights(hidden, at::tensor(weights).view({1, -1}).to(hidden.device()));
  }
  if (text_embeds != nullptr) *text_embeds = out.text_embeds.slice(0, 0, 1).to(at::kFloat);
  return hidden;
}

class EncodePromptStage final : public SdxlStage {
 public:
  using SdxlStage::SdxlStage;
  std::string name() const override { return "encode_prompt"; }
  std::vector<std::string> reads() const override { return {}; }
  std::vector<std::string> writes() const override { return {sdk::slots::kConditioning}; }
  int order() const override { return 100; }

  void run(sdk::Context& context) const override {
    at::NoGradGuard no_grad;
    const auto& r = context.request();
    const auto models = base_models(context, *settings_);
    if (!models->text_encoder || !models->tokenizer) {
      throw Error(ErrorCode::ValidationError,
                  "this checkpoint has only the second text encoder (a refiner); use it as models.refiner",
                  "data.models.base");
    }
    const PatchScope patched(context, *models, PatchedParts::TextEncoders, settings_->patched_sets);
    const int clip_skip = r.hyperparameters.clip_skip;
    const bool chunked = r.long_prompt;
    const std::string& prompt_2 = r.prompt_2.empty() ? r.prompt : r.prompt_2;
    const bool zero_negative = r.negative_prompt.empty() && r.negative_prompt_2.empty() &&
                               models->force_zeros_for_empty_prompt;
    const std::string& negative_2 = r.negative_prompt_2.empty() ? r.negative_prompt : r.negative_prompt_2;

    auto pos_1 = tokenize(*models->tokenizer, r.prompt, chunked);
    auto pos_2 = tokenize(*models->tokenizer_2, prompt_2, chunked);
    std::vector<nn::WeightedChunk> neg_1, neg_2;
    if (!zero_negative) {
      neg_1 = tokenize(*models->tokenizer, r.negative_prompt, chunked);
      neg_2 = tokenize(*models->tokenizer_2, negative_2, chunked);
    }
    const std::size_t count = std::max({pos_1.size(), pos_2.size(), neg_1.size(), neg_2.size()});

    SdxlConditioning c;
    const at::Tensor h1 = encode_chunks(*models->text_encoder, *models->tokenizer, pos_1, count, clip_skip, nullptr);
    const at::Tensor h2 = encode_chunks(*models->text_encoder_2, *models->tokenizer_2, pos_2, count, clip_skip,
                                        &c.pooled_prompt_embeds);
    c.prompt_embeds = at::cat({h1, h2}, -1);
    if (zero_negative) {
      c.negative_prompt_embeds = at::zeros_like(c.prompt_embeds);
      c.negative_pooled_prompt_embeds = at::zeros_like(c.pooled_prompt_embeds);
    } else {
      const at::Tensor n1 = encode_chunks(*models->text_encoder, *models->tokenizer, neg_1, count, clip_skip, nullptr);
      const at::Tensor n2 = encode_chunks(*models->text_encoder_2, *models->tokenizer_2, neg_2, count, clip_skip,
                                          &c.negative_pooled_prompt_embeds);
      c.negative_prompt_embeds = at::cat({n1, n2}, -1);
    }
    context.set(sdk::slots::kConditioning, std::move(c));
  }
};

// ---- prepare_latents ---------------------------------------------------------------------------

class PrepareLatentsStage final : public SdxlStage {
 public:
  using SdxlStage::SdxlStage;
  std::string name() const override { return "prepare_latents"; }
  std::vector<std::string> reads() const override { return {}; }
  std::vector<std::string> writes() const override {
    return {sdk::slots::kLatents, sdk::slots::kScheduler, kGeneratorsSlot, kBeginIndexSlot};
  }
  int order() const override { return 200; }

  void run(sdk::Context& context) const override {
    at::NoGradGuard no_grad;
    const auto& r = context.request();
    const auto models = base_models(context, *settings_);
    const std::int64_t factor = models->vae->config().downscale_factor();
    const bool img2img = r.is_img2img() || context.has(sdk::slots::kInitImage);
    at::Tensor image;
    if (img2img) {
      image = image_to_tensor(context.has(sdk::slots::kInitImage)
                                  ? context.get<sdk::Image>(sdk::slots::kInitImage)
                                  : nn::decode_base64_image(r.init_image, "data.init_image"));
      if (image.size(2) % factor != 0 || image.size(3) % factor != 0) {
        // diffusers' VaeImageProcessor would resize it down to the next multiple; we do not
        // resample silently: the client resizes (or crops) and gets exactly what it sent.
        throw Error(ErrorCode::ValidationError,
                    "the init image is " + std::to_string(image.size(3)) + "x" + std::to_string(image.size(2)) +
                        "; its width and height must be multiples of " + std::to_string(factor) +
                        " (resize or crop it; img2img uses the image's own size)",
                    "data.init_image");
      }
    } else {
      for (auto [value, field] : {std::pair<int, const char*>{r.width, "data.dimensions.width"},
                                  {r.height, "data.dimensions.height"}}) {
        if (value <= 0 || value % factor != 0) {
          throw Error(ErrorCode::ValidationError,
                      "must be a positive multiple of " + std::to_string(factor) + " for this model", field);
        }
      }
    }
    std::shared_ptr<sdk::Scheduler> scheduler = context.registries().create_scheduler(
        r.scheduler, models->scheduler_config, r.scheduler_options, "data.scheduler");
    const int steps = r.hyperparameters.num_inference_steps;
    scheduler->set_timesteps(steps);

    Generators generators;
    for (int i = 0; i < r.batch_size; ++i) {
      generators.push_back(std::make_shared<nn::CpuNoiseGenerator>(
          static_cast<std::uint64_t>(r.hyperparameters.seed + i)));
    }
    at::Tensor latents;
    int begin_index = 0;
    if (img2img) {
      // diffusers' get_timesteps: the last int(steps x strength) steps (sets the begin index)
      begin_index = nn::strength_window(*scheduler, steps, r.hyperparameters.strength).begin_index;
      latents = noised_image_latents(*job_vae(context, *settings_), *scheduler, image, begin_index,
                                     generators, settings_->tiling_for(image.size(2), image.size(3)));
    } else {
      const std::int64_t channels = models->unet->config().in_channels;
      std::vector<at::Tensor> noise;
      for (auto& generator : generators) {
        noise.push_back(generator->randn({1, channels, r.height / factor, r.width / factor}));
      }
      latents = at::cat(noise, 0) * scheduler->init_noise_sigma();
    }
    // drawn on the CPU generators (the same images on every device), then moved, as diffusers
    context.set(sdk::slots::kLatents, latents.to(models->unet->device()));
    context.set(sdk::slots::kScheduler, scheduler);
    context.set(kGeneratorsSlot, std::move(generators));
    context.set(kBeginIndexSlot, begin_index);
  }

 private:
  /// img2img start: per image, VAE posterior sample (eps from its generator) x scaling factor,
  /// then add_noise with a second draw at the first timestep (diffusers' prepare_latents).
  static at::Tensor noised_image_latents(const nn::AutoencoderKL& vae, sdk::Scheduler& scheduler,
                                         const at::Tensor& image, int begin_index, Generators& generators,
                                         const std::optional<nn::VaeTiling>& tiling) {
    const nn::LatentDistribution posterior = tiling ? vae.encode_tiled(image, *tiling) : vae.encode(image);
    const at::Tensor mean = posterior.mean.to(at::kCPU, at::kFloat);
    const at::Tensor std = posterior.std.to(at::kCPU, at::kFloat);
    const at::Tensor timestep = scheduler.timesteps().slice(0, begin_index, begin_index + 1);
    std::vector<at::Tensor> rows;
    for (auto& generator : generators) {
      const at::Tensor sample = mean + std * generator->randn(mean.sizes());
      rows.push_back(sample * vae.config().scaling_factor);
    }
    const at::Tensor init = at::cat(rows, 0);
    std::vector<at::Tensor> noise;
    for (auto& generator : generators) noise.push_back(generator->randn(mean.sizes()));
    return scheduler.add_noise(init, at::cat(noise, 0),
                               timestep.repeat({static_cast<std::int64_t>(generators.size())}));
  }
};

// ---- denoise -----------------------------------------------------------------------------------

/// Calls end() on every hook that began, also when the loop throws (cancel).
class HookScope {
 public:
  HookScope(sdk::Context& context, std::vector<std::shared_ptr<sdk::DenoiseHook>> hooks)
      : context_(context), hooks_(std::move(hooks)) {
    for (auto& hook : hooks_) {
      hook->begin(context_);
      ++begun_;
    }
  }
  ~HookScope() {
    for (std::size_t i = 0; i < begun_; ++i) {
      try {
        hooks_[i]->end(context_);
      } catch (...) {
        context_.log(sdk::LogLevel::Warn, "denoise hook '" + hooks_[i]->name() + "' failed in end()");
      }
    }
  }
  const std::vector<std::shared_ptr<sdk::DenoiseHook>>& hooks() const { return hooks_; }

 private:
  sdk::Context& context_;
  std::vector<std::shared_ptr<sdk::DenoiseHook>> hooks_;
  std::size_t begun_ = 0;
};

/// The timesteps to run: all, or those before `denoising_end` (diffusers' discrete cutoff).
at::Tensor loop_timesteps(const sdk::Scheduler& scheduler, const sdk::GenerationRequest& r,
                          int begin_index) {
  const at::Tensor timesteps = scheduler.timesteps().slice(0, begin_index);
  if (!r.hyperparameters.denoising_end) return timesteps;
  return nn::denoising_end_timesteps(scheduler, timesteps, *r.hyperparameters.denoising_end);
}

class DenoiseStage final : public SdxlStage {
 public:
  using SdxlStage::SdxlStage;
  std::string name() const override { return "denoise"; }
  std::vector<std::string> reads() const override {
    return {sdk::slots::kConditioning, sdk::slots::kLatents, sdk::slots::kScheduler, kGeneratorsSlot,
            kBeginIndexSlot};
  }
  std::vector<std::string> writes() const override { return {sdk::slots::kLatents}; }
  int order() const override { return 300; }

  void run(sdk::Context& context) const override {
    at::NoGradGuard no_grad;
    const auto& r = context.request();
    const auto models = base_models(context, *settings_);
    const auto& cond = context.get<SdxlConditioning>(sdk::slots::kConditioning);
    auto& scheduler = *context.get<std::shared_ptr<sdk::Scheduler>>(sdk::slots::kScheduler);
    auto& generators = context.get<Generators>(kGeneratorsSlot);
    // Everything the loop touches lives on the UNet's device; latents stay there between steps.
    const at::Device device = models->unet->device();
    at::Tensor latents = context.get<at::Tensor>(sdk::slots::kLatents).to(device, at::kFloat);
    const std::int64_t n = latents.size(0);
    const double guidance = r.hyperparameters.guidance_scale;
    const bool cfg = guidance > 1.0;

    const std::int64_t factor = models->vae->config().downscale_factor();
    const std::vector<float> ids =
        time_ids(r, static_cast<int>(latents.size(2) * factor), static_cast<int>(latents.size(3) * factor));
    at::Tensor add_time_ids = at::tensor(ids).view({1, -1}).repeat({n, 1}).to(device);
    at::Tensor embeds = cond.prompt_embeds.to(device).repeat({n, 1, 1});
    at::Tensor pooled = cond.pooled_prompt_embeds.to(device).repeat({n, 1});
    if (cfg) {
      embeds = at::cat({cond.negative_prompt_embeds.to(device).repeat({n, 1, 1}), embeds});
      pooled = at::cat({cond.negative_pooled_prompt_embeds.to(device).repeat({n, 1}), pooled});
      add_time_ids = at::cat({add_time_ids, add_time_ids});
    }

    std::vector<std::shared_ptr<sdk::DenoiseHook>> active;
    for (const auto& hook : context.registries().denoise_hooks()) {
      if (hook->applies(r)) active.push_back(hook);
    }
    const PatchScope patched(context, *models, PatchedParts::Unet, settings_->patched_sets);
    HookScope hooks(context, active);
    BatchNoise noise(generators, device);
    const at::Tensor timesteps = loop_timesteps(scheduler, r, context.get<int>(kBeginIndexSlot));
    const auto total = static_cast<int>(timesteps.size(0));
    for (int i = 0; i < total; ++i) {
      context.throw_if_cancelled();
      const at::Tensor t = timesteps[i];
      at::Tensor model_input = cfg ? at::cat({latents, latents}) : latents;
      model_input = scheduler.scale_model_input(model_input, t);
      sdk::UNetResiduals residuals;
      const sdk::DenoiseStepInput step{model_input, t, embeds, pooled, add_time_ids, i, total};
      for (const auto& hook : hooks.hooks()) hook->before_unet(context, step, residuals);
      const bool with_residuals = !residuals.down.empty() || residuals.mid.defined();
      at::Tensor prediction = models->unet
                                  ->forward(model_input, t, embeds, pooled, add_time_ids,
                                            with_residuals ? &residuals : nullptr)
                                  .to(at::kFloat);
      if (cfg) {
        const auto halves = prediction.chunk(2);
        prediction = halves[0] + guidance * (halves[1] - halves[0]);
        if (r.hyperparameters.guidance_rescale > 0) {
          prediction = rescale_noise_cfg(prediction, halves[1], r.hyperparameters.guidance_rescale);
        }
      }
      latents = scheduler.step(prediction, t, latents, noise);
      // Published every step, so progress observers (previews, tests) see the current latents.
      context.set(sdk::slots::kLatents, latents);
      context.report_progress(name(), i + 1, total);
    }
    context.set(sdk::slots::kLatents, latents);
  }
};

// ---- vae_decode --------------------------------------------------------------------------------

class VaeDecodeStage final : public SdxlStage {
 public:
  using SdxlStage::SdxlStage;
  std::string name() const override { return "vae_decode"; }
  std::vector<std::string> reads() const override { return {sdk::slots::kLatents}; }
  std::vector<std::string> writes() const override { return {sdk::slots::kImages}; }
  int order() const override { return 500; }

  void run(sdk::Context& context) const override {
    at::NoGradGuard no_grad;
    const auto& r = context.request();
    const auto vae = job_vae(context, *settings_);
    const at::Tensor latents = context.get<at::Tensor>(sdk::slots::kLatents);
    context.throw_if_cancelled();
    const std::int64_t factor = vae->config().downscale_factor();
    const auto tiling = settings_->tiling_for(latents.size(2) * factor, latents.size(3) * factor);
    const at::Tensor scaled = latents / vae->config().scaling_factor;
    const at::Tensor raw = tiling ? vae->decode_tiled(scaled, *tiling) : vae->decode(scaled);
    // diffusers: (x / 2 + 0.5).clamp(0, 1) -> NHWC -> round(x * 255) as uint8
    const at::Tensor pixels = at::round(at::clamp(raw.to(at::kCPU, at::kFloat) / 2 + 0.5, 0, 1) * 255)
                                  .to(at::kByte)
                                  .permute({0, 2, 3, 1})
                                  .contiguous();
    std::vector<sdk::Image> images;
    for (std::int64_t i = 0; i < pixels.size(0); ++i) {
      sdk::Image image;
      image.height = static_cast<int>(pixels.size(1));
      image.width = static_cast<int>(pixels.size(2));
      image.channels = static_cast<int>(pixels.size(3));
      const std::uint8_t* data = pixels[i].data_ptr<std::uint8_t>();
      image.pixels.assign(data, data + pixels[i].numel());
      image.metadata = {{"seed", r.hyperparameters.seed + i},
                        {"steps", r.hyperparameters.num_inference_steps},
                        {"guidance_scale", r.hyperparameters.guidance_scale},
                        {"scheduler", r.scheduler},
                        {"model_info",
                         {{"base_model", r.models.base},
                          {"refiner_model", r.models.refiner},
                          {"vae_model", r.models.vae}}}};
      images.push_back(std::move(image));
    }
    context.set(sdk::slots::kImages, std::move(images));
  }
};

std::vector<int> size_pair(const std::optional<std::vector<int>>& value, std::vector<int> fallback,
                           const char* field, bool allow_zero) {
  if (!value) return fallback;
  const auto& v = *value;
  const bool ok = v.size() == 2 && std::all_of(v.begin(), v.end(), [&](int x) {
                    return allow_zero ? x >= 0 : x > 0;
                  });
  if (!ok) {
    throw Error(ErrorCode::ValidationError,
                std::string("must be two ") + (allow_zero ? "non-negative" : "positive") + " integers",
                field);
  }
  return v;
}

}  // namespace

std::vector<float> time_ids(const sdk::GenerationRequest& r, int height, int width) {
  const auto& h = r.hyperparameters;
  const std::vector<int> original =
      size_pair(h.original_size, {height, width}, "data.hyperparameters.original_size", false);
  const std::vector<int> crops = size_pair(std::optional<std::vector<int>>(h.crops_coords_top_left),
                                           {0, 0}, "data.hyperparameters.crops_coords_top_left", true);
  const std::vector<int> target =
      size_pair(h.target_size, {height, width}, "data.hyperparameters.target_size", false);
  std::vector<float> ids;
  for (const auto* pair : {&original, &crops, &target}) {
    for (int v : *pair) ids.push_back(static_cast<float>(v));
  }
  return ids;
}

at::Tensor rescale_noise_cfg(const at::Tensor& guided, const at::Tensor& text, double phi) {
  std::vector<std::int64_t> dims;
  for (std::int64_t d = 1; d < text.dim(); ++d) dims.push_back(d);
  const at::Tensor std_text = text.std(dims, /*unbiased=*/true, /*keepdim=*/true);
  const at::Tensor std_cfg = guided.std(dims, /*unbiased=*/true, /*keepdim=*/true);
  const at::Tensor rescaled = guided * (std_text / std_cfg);
  return phi * rescaled + (1 - phi) * guided;
}

std::vector<std::shared_ptr<sdk::Stage>> make_stages(std::shared_ptr<const SdxlSettings> settings) {
  return {std::make_shared<EncodePromptStage>(settings), std::make_shared<PrepareLatentsStage>(settings),
          std::make_shared<DenoiseStage>(settings), std::make_shared<VaeDecodeStage>(settings)};
}

}  // namespace sdxlhost::sdxl
