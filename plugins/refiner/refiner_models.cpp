// The refiner plugin's shared lookups (see refiner_models.hpp).
#include "refiner_models.hpp"

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::refiner {

double switch_at(const sdk::GenerationRequest& request) {
  return request.hyperparameters.denoising_end.value_or(kDefaultSwitch);
}

std::shared_ptr<pipeline::SdxlModels> refiner_models(sdk::Context& context,
                                                     const pipeline::PipelineSettings& settings) {
  const std::string& name = context.request().models.refiner;
  if (name.empty()) {
    throw sdk::Error(sdk::ErrorCode::InternalError, "the refiner stage ran without data.models.refiner",
                     "data.models.refiner");
  }
  return pipeline::load_pipeline(context.models(), name, settings, "data.models.refiner");
}

}  // namespace sdxlhost::refiner
