#pragma once
/// @file denoise_loop.hpp
/// The SDXL denoising loop every pipeline plugin shares (the base's denoise stage, the refiner):
/// per timestep, classifier-free guidance (negative and positive halves in one UNet batch,
/// guidance_scale, guidance_rescale), the denoise hooks (ControlNet residuals), the scheduler
/// step with per-image noise, cancellation between steps, the latents published in the
/// `latents` slot and a progress event after every step.
/// Thread-safety: runs on the job's thread; the caller holds the UNet it gives (a PatchScope's
/// models()) for the whole loop. Loops of several jobs may share one UNet.

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "sdxlhost/nn/unet.hpp"
#include "sdxlhost/pipeline/conditioning.hpp"
#include "sdxlhost/pipeline/generators.hpp"
#include "sdxlhost/pipeline/time_ids.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/export.hpp"
#include "sdxlhost/sdk/hooks.hpp"
#include "sdxlhost/sdk/scheduler.hpp"

namespace sdxlhost::pipeline {

/// What one run of the loop uses. Pointers are borrowed for the call.
struct DenoiseLoop {
  const nn::UNet2DConditionModel* unet = nullptr;  ///< the denoiser (its device is the loop's)
  const SdxlConditioning* conditioning = nullptr;  ///< batch-1 embeddings, repeated per image
  AddTimeIds time_ids;                             ///< per CFG half
  sdk::Scheduler* scheduler = nullptr;             ///< set_timesteps (and begin index) done
  at::Tensor timesteps;                            ///< the timesteps to run, in order
  Generators* generators = nullptr;                ///< one per image: the scheduler's step noise
  /// Called before every UNet evaluation (begin() before the loop, end() after it, also when it
  /// throws); the caller picks those that apply (ControlNet applies to the base only).
  std::vector<std::shared_ptr<sdk::DenoiseHook>> hooks;
  std::string stage = "denoise";  ///< stage name in progress events
  int progress_offset = 0;        ///< steps already reported by earlier stages (a first expert)
  int progress_total = 0;         ///< total in progress events; 0: offset + timesteps
};

/// diffusers' rescale_noise_cfg: the guided prediction rescaled towards the text prediction's
/// standard deviation by `phi` (guidance_rescale).
SDXLHOST_API at::Tensor rescale_noise_cfg(const at::Tensor& guided, const at::Tensor& text, double phi);

/// Runs the loop from `latents` (N, C, h, w) and returns the denoised latents (float32, on the
/// UNet's device). Guidance from the request (guidance_scale > 1: CFG; guidance_rescale).
/// Throws sdk::Error(Cancelled / Timeout) between steps.
SDXLHOST_API at::Tensor run_denoise_loop(sdk::Context& context, const DenoiseLoop& loop, at::Tensor latents);

}  // namespace sdxlhost::pipeline
