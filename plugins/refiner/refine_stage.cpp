// Stage refine: the refiner continues the base's latents from the switch (ensemble of experts).
#include <ATen/ATen.h>

#include <mutex>
#include <shared_mutex>

#include "refiner_models.hpp"
#include "sdxlhost/nn/denoise_window.hpp"
#include "sdxlhost/pipeline/conditioning.hpp"
#include "sdxlhost/pipeline/denoise_loop.hpp"
#include "sdxlhost/pipeline/generators.hpp"
#include "sdxlhost/pipeline/model_patching.hpp"
#include "sdxlhost/pipeline/slots.hpp"
#include "sdxlhost/pipeline/time_ids.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "refiner_stages.hpp"

namespace sdxlhost::refiner {
namespace {

using sdk::Error;
using sdk::ErrorCode;

/// diffusers' StableDiffusionXLImg2ImgPipeline called with the base's latents and
/// denoising_start: the latents are taken unchanged (no VAE encode, no added noise), the schedule
/// is the request's scheduler over the refiner's scheduler config with the same number of steps,
/// cut at the switch (nn::denoising_start_window), and the loop runs with the refiner's
/// conditioning and its 5 time ids. Fresh per-image generators from the same seeds give the
/// scheduler's step noise, as the second pipeline call with its own generator.
class RefineStage final : public sdk::Stage {
 public:
  explicit RefineStage(std::shared_ptr<const pipeline::PipelineSettings> settings) : settings_(std::move(settings)) {}
  std::string name() const override { return "refine"; }
  std::string feature() const override { return kFeature; }
  bool applies(const sdk::GenerationRequest& r) const override { return !r.models.refiner.empty(); }
  std::vector<std::string> reads() const override {
    return {sdk::slots::kLatents, kRefinerConditioningSlot, pipeline::slots::kExpertHandoff};
  }
  std::vector<std::string> writes() const override { return {sdk::slots::kLatents}; }
  int order() const override { return 400; }

  void run(sdk::Context& context) const override {
    at::NoGradGuard no_grad;
    const auto& r = context.request();
    const auto models = refiner_models(context, *settings_);
    const auto& handoff = context.get<pipeline::ExpertHandoff>(pipeline::slots::kExpertHandoff);
    const at::Tensor latents = context.get<at::Tensor>(sdk::slots::kLatents);
    if (latents.size(1) != models->unet->config().in_channels) {
      throw Error(ErrorCode::ValidationError,
                  "'" + r.models.refiner + "' takes " + std::to_string(models->unet->config().in_channels) +
                      "-channel latents; the base model made " + std::to_string(latents.size(1)),
                  "data.models.refiner");
    }
    std::shared_ptr<sdk::Scheduler> scheduler = context.registries().create_scheduler(
        r.scheduler, models->scheduler_config, r.scheduler_options, "data.scheduler");
    scheduler->set_timesteps(r.hyperparameters.num_inference_steps);
    pipeline::Generators generators = pipeline::make_generators(r.hyperparameters.seed, static_cast<int>(latents.size(0)));

    pipeline::DenoiseLoop loop;
    loop.conditioning = &context.get<pipeline::SdxlConditioning>(kRefinerConditioningSlot);
    loop.scheduler = scheduler.get();
    loop.generators = &generators;
    loop.timesteps = nn::denoising_start_window(*scheduler, handoff.denoising_end).timesteps;
    const std::int64_t factor = models->vae->config().downscale_factor();
    loop.time_ids = pipeline::add_time_ids(r, static_cast<int>(latents.size(2) * factor),
                                           static_cast<int>(latents.size(3) * factor), models->time_id_count());
    loop.stage = name();
    loop.progress_offset = handoff.base_steps;
    loop.progress_total = handoff.base_steps + static_cast<int>(loop.timesteps.size(0));
    // LoRA applies to the base unless it says apply_to "refiner" / "both": those patch a copy of
    // the refiner's UNet for this job; without any the UNet is used as loaded.
    const pipeline::PatchScope patched(context, models, pipeline::PatchedParts::Unet, settings_->patched_sets,
                                       "refiner");
    loop.unet = patched.models().unet.get();
    // back where the base left them (the base's VAE decodes; the plugins may run on different devices)
    context.set(sdk::slots::kLatents, pipeline::run_denoise_loop(context, loop, latents).to(latents.device()));
  }

 private:
  std::shared_ptr<const pipeline::PipelineSettings> settings_;
};

}  // namespace

std::shared_ptr<sdk::Stage> make_refine_stage(std::shared_ptr<const pipeline::PipelineSettings> settings) {
  return std::make_shared<RefineStage>(std::move(settings));
}

}  // namespace sdxlhost::refiner
