// Stage denoise: the base pipeline's denoising loop (pipeline::run_denoise_loop).
#include <ATen/ATen.h>

#include <optional>

#include "sdxlhost/pipeline/model_patching.hpp"
#include "sdxl_stage.hpp"
#include "sdxlhost/nn/denoise_window.hpp"
#include "sdxlhost/pipeline/conditioning.hpp"
#include "sdxlhost/pipeline/denoise_loop.hpp"
#include "sdxlhost/pipeline/sdxl_models.hpp"
#include "sdxlhost/pipeline/slots.hpp"
#include "sdxlhost/pipeline/time_ids.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "sdxlhost/sdk/request.hpp"
#include "sdxlhost/sdk/scheduler.hpp"

namespace sdxlhost::sdxl {
namespace {

/// Where the base stops: data.hyperparameters.denoising_end, or a second expert's handoff
/// (which carries the request's value, or its default when the request gives none).
std::optional<double> denoising_end(const sdk::Context& context) {
  if (context.has(pipeline::slots::kExpertHandoff)) {
    return context.get<pipeline::ExpertHandoff>(pipeline::slots::kExpertHandoff).denoising_end;
  }
  return context.request().hyperparameters.denoising_end;
}

/// Runs the UNet over the schedule from begin_index (to denoising_end), with the request's
/// applicable denoise hooks and model patches.
class DenoiseStage final : public SdxlStage {
 public:
  using SdxlStage::SdxlStage;
  std::string name() const override { return "denoise"; }
  std::vector<std::string> reads() const override {
    return {sdk::slots::kConditioning, sdk::slots::kLatents, sdk::slots::kScheduler, pipeline::slots::kGenerators,
            pipeline::slots::kBeginIndex};
  }
  std::vector<std::string> writes() const override { return {sdk::slots::kLatents}; }
  int order() const override { return 300; }

  void run(sdk::Context& context) const override {
    at::NoGradGuard no_grad;
    const auto& r = context.request();
    const auto models = pipeline::base_models(context, *settings_);
    auto& scheduler = *context.get<std::shared_ptr<sdk::Scheduler>>(sdk::slots::kScheduler);
    const at::Tensor latents = context.get<at::Tensor>(sdk::slots::kLatents);

    pipeline::DenoiseLoop loop;
    loop.conditioning = &context.get<pipeline::SdxlConditioning>(sdk::slots::kConditioning);
    loop.scheduler = &scheduler;
    loop.generators = &context.get<pipeline::Generators>(pipeline::slots::kGenerators);
    const std::int64_t factor = models->vae->config().downscale_factor();
    loop.time_ids = pipeline::add_time_ids(r, static_cast<int>(latents.size(2) * factor),
                                           static_cast<int>(latents.size(3) * factor), models->time_id_count());
    loop.timesteps = scheduler.timesteps().slice(0, context.get<int>(pipeline::slots::kBeginIndex));
    if (const auto end = denoising_end(context)) {
      loop.timesteps = nn::denoising_end_timesteps(scheduler, loop.timesteps, *end);
    }
    for (const auto& hook : context.registries().denoise_hooks()) {
      if (hook->applies(r)) loop.hooks.push_back(hook);
    }
    const auto steps = static_cast<int>(loop.timesteps.size(0));
    if (context.has(pipeline::slots::kExpertHandoff)) {
      auto& handoff = context.get<pipeline::ExpertHandoff>(pipeline::slots::kExpertHandoff);
      handoff.base_steps = steps;
      loop.progress_total = steps + handoff.expert_steps;  // progress counts both experts' steps
    }
    // the UNet as loaded, or this job's LoRA-patched copy of it (model_patching.hpp)
    const pipeline::PatchScope patched(context, models, pipeline::PatchedParts::Unet, settings_->patched_sets);
    loop.unet = patched.models().unet.get();
    context.set(sdk::slots::kLatents, pipeline::run_denoise_loop(context, loop, latents));
  }
};

}  // namespace

std::shared_ptr<sdk::Stage> make_denoise_stage(std::shared_ptr<const pipeline::PipelineSettings> settings) {
  return std::make_shared<DenoiseStage>(std::move(settings));
}

}  // namespace sdxlhost::sdxl
