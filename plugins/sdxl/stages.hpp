#pragma once
/// @file stages.hpp
/// The SDXL generation stages, in run order:
///   encode_prompt   (100) -> slot "conditioning"         both text encoders, CFG negatives
///   prepare_latents (200) -> "latents", "scheduler"      txt2img: noise from seed + i x init
///                                                         sigma; img2img: VAE encode + add_noise
///   denoise         (300) -> "latents"                   CFG loop, hooks, progress, cancel
///   vae_decode      (500) -> "images"                    latents / scaling_factor -> RGB8
/// Thread-safety: stage objects are shared by all jobs and keep no per-job state.

#include <memory>
#include <vector>

#include "sdxl_models.hpp"
#include "sdxlhost/sdk/stage.hpp"

namespace sdxlhost::sdxl {

/// The four stages, sharing `settings`.
std::vector<std::shared_ptr<sdk::Stage>> make_stages(std::shared_ptr<const SdxlSettings> settings);

/// The UNet's time ids for one image of `height` x `width` pixels: original_size +
/// crops_coords_top_left + target_size (6 values), defaults (height, width) and (0, 0) as
/// diffusers. Throws ValidationError naming the hyperparameter when a pair is not two positive
/// (crops: non-negative) integers.
std::vector<float> time_ids(const sdk::GenerationRequest& request, int height, int width);

/// diffusers' rescale_noise_cfg: the guided prediction rescaled towards the text prediction's
/// standard deviation by `phi` (guidance_rescale).
at::Tensor rescale_noise_cfg(const at::Tensor& guided, const at::Tensor& text, double phi);

}  // namespace sdxlhost::sdxl
