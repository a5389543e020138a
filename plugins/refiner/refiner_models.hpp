#pragma once
/// @file refiner_models.hpp
/// What the refiner plugin's stages share: the settings (`plugins.config.refiner`), the job's
/// refiner pipeline from the host's model cache, the hand-off fraction and the slot names the
/// plugin owns.
/// Thread-safety: free functions; the loaded pipeline is shared read-only by concurrent jobs.

#include <memory>
#include <string>

#include "sdxlhost/pipeline/sdxl_models.hpp"
#include "sdxlhost/pipeline/settings.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::refiner {

/// The feature name (`plugins.enabled.refiner`).
inline constexpr const char* kFeature = "refiner";
/// Slot holding the refiner's own prompt embeddings (pipeline::SdxlConditioning: text_encoder_2
/// alone for a refiner checkpoint).
inline constexpr const char* kRefinerConditioningSlot = "refiner.conditioning";
/// denoising_end when the request names a refiner but gives none (diffusers' examples, A1111's
/// "Refiner switch at").
inline constexpr double kDefaultSwitch = 0.8;

/// The fraction of the schedule the base runs: data.hyperparameters.denoising_end or 0.8.
double switch_at(const sdk::GenerationRequest& request);

/// The job's refiner pipeline (data.models.refiner) from the host's model cache, loaded on first
/// use with the plugin's settings. Errors name data.models.refiner.
std::shared_ptr<pipeline::SdxlModels> refiner_models(sdk::Context& context,
                                                     const pipeline::PipelineSettings& settings);

}  // namespace sdxlhost::refiner
