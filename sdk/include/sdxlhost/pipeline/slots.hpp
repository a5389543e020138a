#pragma once
/// @file slots.hpp
/// The Context slots SDXL-family pipeline stages share beyond sdk::slots, with their types. These
/// are SDK contracts: a plugin that writes one writes exactly this type, so stages of different
/// plugins (sdxl, refiner, controlnet) can run in one plan.
///
/// | slot                      | type                         | written by          | read by            |
/// |---------------------------|------------------------------|---------------------|--------------------|
/// | `conditioning`            | pipeline::SdxlConditioning   | encode_prompt       | denoise            |
/// | `latents`                 | at::Tensor (N, 4, h, w)      | prepare_latents     | denoise, refine, vae_decode |
/// | `scheduler`               | std::shared_ptr<sdk::Scheduler> | prepare_latents  | denoise            |
/// | `generators`              | pipeline::Generators         | prepare_latents     | denoise            |
/// | `begin_index`             | int                          | prepare_latents     | denoise            |
/// | `expert_handoff`          | pipeline::ExpertHandoff      | a second expert (refiner) before denoise | denoise, the expert |
/// | `patch_expert`            | std::string "base" / "refiner" | PatchScope, while it patches | sdk::ModelPatch (cache_key, apply) |

namespace sdxlhost::pipeline {

namespace slots {
/// pipeline::Generators: one CPU generator per image (generators.hpp).
inline constexpr const char* kGenerators = "generators";
/// int: index of the first timestep of the scheduler's schedule the base loop runs (img2img
/// starts later; 0 for txt2img).
inline constexpr const char* kBeginIndex = "begin_index";
/// pipeline::ExpertHandoff: present when a second expert continues the base's denoising.
inline constexpr const char* kExpertHandoff = "expert_handoff";
/// std::string: which expert a PatchScope is patching ("base" or "refiner"), set before it calls
/// a ModelPatch's cache_key() and apply(); a patch reads it to choose what applies there (a LoRA
/// says `apply_to`). Absent = "base".
inline constexpr const char* kPatchExpert = "patch_expert";
}  // namespace slots

/// Ensemble of experts: where the base hands its latents to a second expert (the refiner). The
/// expert's plugin writes it before the base's denoise stage runs (band 100-299); the base loop
/// then stops at `denoising_end` and counts `expert_steps` in its progress total, and writes
/// `base_steps` for the expert to continue the count.
struct ExpertHandoff {
  double denoising_end = 0.8;  ///< fraction of the schedule the base runs (diffusers' denoising_end)
  int expert_steps = 0;        ///< denoising steps the expert will run after the base
  int base_steps = 0;          ///< set by the base loop: the steps it ran
};

}  // namespace sdxlhost::pipeline
