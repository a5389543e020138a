#pragma once
/// @file denoise_window.hpp
/// Which part of a scheduler's timesteps a pipeline loops over, as diffusers 0.36.0's SDXL
/// pipelines choose it: img2img `strength`, the refiner's `denoising_start`, the base model's
/// `denoising_end` (ensemble of experts). Call after `set_timesteps`. Header-only.

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cmath>
#include <string>

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/scheduler.hpp"

namespace sdxlhost::nn {

/// The timesteps to run and where they start in `Scheduler::timesteps()`.
struct DenoiseWindow {
  at::Tensor timesteps;  ///< the loop's timesteps (a view into the schedule)
  int begin_index = 0;   ///< index of timesteps[0] in the full schedule (already set)
};

namespace detail {
/// diffusers' `int(round(T - fraction * T))` (Python rounds half to even).
inline int timestep_cutoff(const sdk::Scheduler& scheduler, double fraction) {
  const double t = scheduler.config().value("num_train_timesteps", 1000);
  return static_cast<int>(std::nearbyint(t - fraction * t));
}
}  // namespace detail

/// img2img by strength (StableDiffusionXLImg2ImgPipeline.get_timesteps without
/// denoising_start): keeps the last `int(n * strength)` steps and calls set_begin_index.
/// Throws Error(ValidationError, data.hyperparameters.strength) when no step is left.
inline DenoiseWindow strength_window(sdk::Scheduler& scheduler, int num_inference_steps, double strength) {
  const int init_timestep = std::min(static_cast<int>(num_inference_steps * strength), num_inference_steps);
  const int t_start = std::max(num_inference_steps - init_timestep, 0);
  const int begin = t_start * scheduler.order();
  const at::Tensor all = scheduler.timesteps();
  if (init_timestep < 1 || begin >= all.numel())
    throw sdk::Error(sdk::ErrorCode::ValidationError,
                     "strength " + std::to_string(strength) + " with " + std::to_string(num_inference_steps) +
                         " steps leaves no denoising step (needs strength * steps >= 1)",
                     "data.hyperparameters.strength");
  scheduler.set_begin_index(begin);
  return {all.slice(0, begin), begin};
}

/// The refiner's start (get_timesteps with denoising_start): the timesteps below the cutoff
/// `round(T - denoising_start * T)`, one more for a second-order scheduler whose count is even
/// (so the run never stops between its two evaluations); calls set_begin_index.
inline DenoiseWindow denoising_start_window(sdk::Scheduler& scheduler, double denoising_start) {
  const at::Tensor all = scheduler.timesteps();
  const int cutoff = detail::timestep_cutoff(scheduler, denoising_start);
  int count = static_cast<int>(all.lt(cutoff).sum().item<int64_t>());
  if (scheduler.order() == 2 && count % 2 == 0) count += 1;
  count = std::min<int>(count, static_cast<int>(all.numel()));
  if (count < 1)
    throw sdk::Error(sdk::ErrorCode::ValidationError,
                     "denoising_start " + std::to_string(denoising_start) + " leaves no denoising step",
                     "data.hyperparameters.denoising_start");
  const int begin = static_cast<int>(all.numel()) - count;
  scheduler.set_begin_index(begin);
  return {all.slice(0, begin), begin};
}

/// The base model's end (StableDiffusionXLPipeline with 0 < denoising_end < 1): `timesteps`
/// cut to the leading entries >= the cutoff `round(T - denoising_end * T)`.
inline at::Tensor denoising_end_timesteps(const sdk::Scheduler& scheduler, const at::Tensor& timesteps,
                                          double denoising_end) {
  if (!(denoising_end > 0 && denoising_end < 1)) return timesteps;
  const int cutoff = detail::timestep_cutoff(scheduler, denoising_end);
  const int64_t keep = timesteps.ge(cutoff).sum().item<int64_t>();
  return timesteps.slice(0, 0, keep);
}

}  // namespace sdxlhost::nn
