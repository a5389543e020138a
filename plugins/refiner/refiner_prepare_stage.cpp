// Stage refiner_encode_prompt: the refiner's conditioning and the ensemble hand-off.
#include <ATen/ATen.h>

#include <mutex>
#include <shared_mutex>

#include "refiner_models.hpp"
#include "sdxlhost/nn/denoise_window.hpp"
#include "sdxlhost/pipeline/model_patching.hpp"
#include "sdxlhost/pipeline/prompt_encoding.hpp"
#include "sdxlhost/pipeline/slots.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "refiner_stages.hpp"

namespace sdxlhost::refiner {
namespace {

using sdk::Error;
using sdk::ErrorCode;

/// Runs before the base's denoise stage (band 100-299): loads the refiner (so a bad name fails
/// before the base's steps are spent), encodes the prompt with its text encoder(s) and writes the
/// hand-off, so the base stops at the switch and counts the refiner's steps in its progress.
class RefinerPrepareStage final : public sdk::Stage {
 public:
  explicit RefinerPrepareStage(std::shared_ptr<const pipeline::PipelineSettings> settings)
      : settings_(std::move(settings)) {}
  std::string name() const override { return "refiner_encode_prompt"; }
  std::string feature() const override { return kFeature; }
  bool applies(const sdk::GenerationRequest& r) const override { return !r.models.refiner.empty(); }
  std::vector<std::string> reads() const override { return {}; }
  std::vector<std::string> writes() const override {
    return {kRefinerConditioningSlot, pipeline::slots::kExpertHandoff};
  }
  int order() const override { return 150; }

  void run(sdk::Context& context) const override {
    at::NoGradGuard no_grad;
    const auto& r = context.request();
    if (r.models.base.empty()) {
      throw Error(ErrorCode::ValidationError, "a refiner continues a base model's denoising: name the base too",
                  "data.models.base");
    }
    const auto refiner = refiner_models(context, *settings_);
    pipeline::ExpertHandoff handoff;
    handoff.denoising_end = switch_at(r);
    handoff.expert_steps = expert_steps(context, *refiner, handoff.denoising_end);
    {
      // LoRAs with apply_to "refiner" / "both" patch a copy of its text encoder; none: shared use
      const pipeline::PatchScope patched(context, refiner, pipeline::PatchedParts::TextEncoders,
                                         settings_->patched_sets, "refiner");
      context.set(kRefinerConditioningSlot, pipeline::encode_prompts(patched.models(), r));
    }
    context.set(pipeline::slots::kExpertHandoff, handoff);
  }

  /// The steps the refiner runs: its schedule (the request's scheduler over the refiner's
  /// scheduler config) from denoising_start = `fraction`.
  static int expert_steps(sdk::Context& context, const pipeline::SdxlModels& refiner, double fraction) {
    const auto& r = context.request();
    auto scheduler = context.registries().create_scheduler(r.scheduler, refiner.scheduler_config,
                                                           r.scheduler_options, "data.scheduler");
    scheduler->set_timesteps(r.hyperparameters.num_inference_steps);
    try {
      return static_cast<int>(nn::denoising_start_window(*scheduler, fraction).timesteps.size(0));
    } catch (const Error& e) {
      throw Error(e.code(), "the refiner would run no step: " + e.message(), "data.hyperparameters.denoising_end");
    }
  }

 private:
  std::shared_ptr<const pipeline::PipelineSettings> settings_;
};

}  // namespace

std::shared_ptr<sdk::Stage> make_refiner_prepare_stage(std::shared_ptr<const pipeline::PipelineSettings> settings) {
  return std::make_shared<RefinerPrepareStage>(std::move(settings));
}

}  // namespace sdxlhost::refiner
