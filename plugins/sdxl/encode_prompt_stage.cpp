// Stage encode_prompt: the request's prompts through the pipeline's text encoders.
#include <ATen/ATen.h>

#include "sdxlhost/pipeline/model_patching.hpp"
#include "sdxl_stage.hpp"
#include "sdxlhost/pipeline/prompt_encoding.hpp"
#include "sdxlhost/pipeline/sdxl_models.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::sdxl {
namespace {

/// Writes the `conditioning` slot (pipeline::SdxlConditioning): both text encoders for a base,
/// text_encoder_2 alone for a refiner checkpoint; LoRA and other model patches applied.
class EncodePromptStage final : public SdxlStage {
 public:
  using SdxlStage::SdxlStage;
  std::string name() const override { return "encode_prompt"; }
  std::vector<std::string> reads() const override { return {}; }
  std::vector<std::string> writes() const override { return {sdk::slots::kConditioning}; }
  int order() const override { return 100; }

  void run(sdk::Context& context) const override {
    at::NoGradGuard no_grad;
    const auto models = pipeline::base_models(context, *settings_);
    if (!models->is_refiner() && (!models->text_encoder || !models->tokenizer)) {
      throw sdk::Error(sdk::ErrorCode::ValidationError,
                       "this checkpoint has only the second text encoder but is not a refiner (its UNet takes " +
                           std::to_string(models->time_id_count()) + " time ids, not 5)",
                       "data.models.base");
    }
    const pipeline::PatchScope patched(context, models, pipeline::PatchedParts::TextEncoders, settings_->patched_sets);
    context.set(sdk::slots::kConditioning, pipeline::encode_prompts(patched.models(), context.request()));
  }
};

}  // namespace

std::shared_ptr<sdk::Stage> make_encode_prompt_stage(std::shared_ptr<const pipeline::PipelineSettings> settings) {
  return std::make_shared<EncodePromptStage>(std::move(settings));
}

}  // namespace sdxlhost::sdxl
