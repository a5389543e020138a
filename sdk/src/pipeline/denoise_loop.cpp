// The shared SDXL denoising loop (see denoise_loop.hpp).
#include "sdxlhost/pipeline/denoise_loop.hpp"

#include <ATen/ATen.h>

#include <utility>

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/request.hpp"
#include "sdxlhost/sdk/stage.hpp"

namespace sdxlhost::pipeline {
namespace {

/// Calls end() on every hook that began, also when the loop throws (cancel).
class HookScope {
 public:
  HookScope(sdk::Context& context, const std::vector<std::shared_ptr<sdk::DenoiseHook>>& hooks)
      : context_(context), hooks_(hooks) {
    for (const auto& hook : hooks_) {
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
  HookScope(const HookScope&) = delete;
  HookScope& operator=(const HookScope&) = delete;

 private:
  sdk::Context& context_;
  const std::vector<std::shared_ptr<sdk::DenoiseHook>>& hooks_;
  std::size_t begun_ = 0;
};

}  // namespace

at::Tensor rescale_noise_cfg(const at::Tensor& guided, const at::Tensor& text, double phi) {
  std::vector<std::int64_t> dims;
  for (std::int64_t d = 1; d < text.dim(); ++d) dims.push_back(d);
  const at::Tensor std_text = text.std(dims, /*unbiased=*/true, /*keepdim=*/true);
  const at::Tensor std_cfg = guided.std(dims, /*unbiased=*/true, /*keepdim=*/true);
  const at::Tensor rescaled = guided * (std_text / std_cfg);
  return phi * rescaled + (1 - phi) * guided;
}

at::Tensor run_denoise_loop(sdk::Context& context, const DenoiseLoop& loop, at::Tensor latents) {
  if (loop.unet == nullptr || loop.conditioning == nullptr || loop.scheduler == nullptr || loop.generators == nullptr) {
    throw sdk::Error(sdk::ErrorCode::InternalError, "denoise loop without unet, conditioning, scheduler or generators");
  }
  const auto& r = context.request();
  const auto& cond = *loop.conditioning;
  auto& scheduler = *loop.scheduler;
  // Everything the loop touches lives on the UNet's device; latents stay there between steps.
  const at::Device device = loop.unet->device();
  latents = latents.to(device, at::kFloat);
  const std::int64_t n = latents.size(0);
  const double guidance = r.hyperparameters.guidance_scale;
  const bool cfg = guidance > 1.0;

  at::Tensor time_ids = at::tensor(loop.time_ids.positive).view({1, -1}).repeat({n, 1}).to(device);
  at::Tensor embeds = cond.prompt_embeds.to(device).repeat({n, 1, 1});
  at::Tensor pooled = cond.pooled_prompt_embeds.to(device).repeat({n, 1});
  if (cfg) {
    embeds = at::cat({cond.negative_prompt_embeds.to(device).repeat({n, 1, 1}), embeds});
    pooled = at::cat({cond.negative_pooled_prompt_embeds.to(device).repeat({n, 1}), pooled});
    const at::Tensor negative_ids = at::tensor(loop.time_ids.negative).view({1, -1}).repeat({n, 1}).to(device);
    time_ids = at::cat({negative_ids, time_ids});
  }

  // The UNet and the hooks get the timestep on the device, copied once here: a copy per step
  // from pageable host memory would make the host wait for the device every step. Schedulers
  // keep reading the CPU timesteps (their arithmetic is on the host).
  const at::Tensor device_timesteps = loop.timesteps.to(device);

  HookScope hooks(context, loop.hooks);
  BatchNoise noise(*loop.generators, device);
  const auto total = static_cast<int>(loop.timesteps.size(0));
  const int progress_total = loop.progress_total > 0 ? loop.progress_total : loop.progress_offset + total;
  for (int i = 0; i < total; ++i) {
    context.throw_if_cancelled();
    const at::Tensor t = loop.timesteps[i];
    at::Tensor model_input = cfg ? at::cat({latents, latents}) : latents;
    model_input = scheduler.scale_model_input(model_input, t);
    sdk::UNetResiduals residuals;
    const at::Tensor unet_t = device_timesteps[i];
    const sdk::DenoiseStepInput step{model_input, unet_t, embeds, pooled, time_ids, i, total};
    for (const auto& hook : loop.hooks) hook->before_unet(context, step, residuals);
    const bool with_residuals = !residuals.down.empty() || residuals.mid.defined();
    at::Tensor prediction =
        loop.unet->forward(model_input, unet_t, embeds, pooled, time_ids, with_residuals ? &residuals : nullptr)
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
    context.report_progress(loop.stage, loop.progress_offset + i + 1, progress_total);
  }
  return latents;
}

}  // namespace sdxlhost::pipeline
