#pragma once
/// @file refiner_stages.hpp
/// The refiner plugin's stages (one file each), for requests with data.models.refiner:
///   refiner_encode_prompt (150) -> "refiner.conditioning", "expert_handoff"
///        the refiner's text encoder(s) (text_encoder_2 alone for a refiner checkpoint) and where
///        the base hands over (denoising_end, default 0.8), before the base's denoise runs
///   refine                (400) latents -> latents
///        continues the base's schedule from denoising_start = the same fraction (same scheduler
///        class and options), 5 time ids with the aesthetic scores; no LoRA, no ControlNet
///   refiner_info          (550) images -> images
///        "Refiner" / "Refiner switch at" in each image's A1111 infotext
/// Thread-safety: stage objects are shared by all jobs and keep no per-job state.

#include <memory>
#include <vector>

#include "sdxlhost/pipeline/settings.hpp"
#include "sdxlhost/sdk/stage.hpp"

namespace sdxlhost::refiner {

/// refiner_prepare_stage.cpp
std::shared_ptr<sdk::Stage> make_refiner_prepare_stage(std::shared_ptr<const pipeline::PipelineSettings> settings);
/// refine_stage.cpp
std::shared_ptr<sdk::Stage> make_refine_stage(std::shared_ptr<const pipeline::PipelineSettings> settings);
/// refiner_info_stage.cpp
std::shared_ptr<sdk::Stage> make_refiner_info_stage();

/// The three stages, sharing `settings`.
inline std::vector<std::shared_ptr<sdk::Stage>> make_stages(
    const std::shared_ptr<const pipeline::PipelineSettings>& settings) {
  return {make_refiner_prepare_stage(settings), make_refine_stage(settings), make_refiner_info_stage()};
}

}  // namespace sdxlhost::refiner
