#pragma once
/// @file sdxl_stage.hpp
/// What the sdxl plugin's stages share: the base class holding the settings, and one factory per
/// stage (each stage lives in its own file).
/// Thread-safety: stage objects are shared by all jobs and keep no per-job state.

#include <memory>
#include <string>
#include <utility>

#include "sdxlhost/pipeline/settings.hpp"
#include "sdxlhost/sdk/stage.hpp"

namespace sdxlhost::sdxl {

/// Base class of the sdxl stages: feature "sdxl", applies to every generation request.
class SdxlStage : public sdk::Stage {
 public:
  explicit SdxlStage(std::shared_ptr<const pipeline::PipelineSettings> settings) : settings_(std::move(settings)) {}
  std::string feature() const override { return "sdxl"; }
  bool applies(const sdk::GenerationRequest&) const override { return true; }

 protected:
  std::shared_ptr<const pipeline::PipelineSettings> settings_;
};

/// encode_prompt_stage.cpp
std::shared_ptr<sdk::Stage> make_encode_prompt_stage(std::shared_ptr<const pipeline::PipelineSettings> settings);
/// prepare_latents_stage.cpp
std::shared_ptr<sdk::Stage> make_prepare_latents_stage(std::shared_ptr<const pipeline::PipelineSettings> settings);
/// denoise_stage.cpp
std::shared_ptr<sdk::Stage> make_denoise_stage(std::shared_ptr<const pipeline::PipelineSettings> settings);
/// vae_decode_stage.cpp
std::shared_ptr<sdk::Stage> make_vae_decode_stage(std::shared_ptr<const pipeline::PipelineSettings> settings);

}  // namespace sdxlhost::sdxl
