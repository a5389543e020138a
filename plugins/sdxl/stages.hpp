#pragma once
/// @file stages.hpp
/// The SDXL generation stages, in run order (one file each):
///   encode_prompt   (100) -> slot "conditioning"         the pipeline's text encoders, CFG negatives
///   prepare_latents (200) -> "latents", "scheduler",     txt2img: noise from seed + i x init
///                            "generators", "begin_index"  sigma; img2img: VAE encode + add_noise
///   denoise         (300) -> "latents"                   the SDK's denoise loop (CFG, hooks, progress,
///                                                         cancel); stops at a second expert's handoff
///   vae_decode      (500) -> "images"                    latents / scaling_factor -> RGB8
/// A refiner checkpoint as models.base (detected from its weights) runs the same stages as
/// diffusers' StableDiffusionXLImg2ImgPipeline with a refiner: text_encoder_2 alone, 5 time ids
/// with the aesthetic scores; it needs an init image. Slot types: sdxlhost/pipeline/slots.hpp.
/// Thread-safety: stage objects are shared by all jobs and keep no per-job state.

#include <memory>
#include <vector>

#include "sdxlhost/pipeline/settings.hpp"
#include "sdxlhost/sdk/stage.hpp"

namespace sdxlhost::sdxl {

/// The four stages, sharing `settings`.
std::vector<std::shared_ptr<sdk::Stage>> make_stages(std::shared_ptr<const pipeline::PipelineSettings> settings);

}  // namespace sdxlhost::sdxl
