// The stage-driving harness of the pipeline tests (see pipeline_harness.hpp).
#include "common/pipeline_harness.hpp"

#include <algorithm>
#include <string_view>
#include <utility>

#include "common/goldens.hpp"
#include "schedulers.hpp"
#include "stages.hpp"

namespace sdxlhost::test_support {

PipelineHarness::PipelineHarness(std::shared_ptr<const pipeline::PipelineSettings> settings)
    : pipeline_settings(settings ? std::move(settings) : std::make_shared<const pipeline::PipelineSettings>()),
      stages(sdxl::make_stages(pipeline_settings)) {
  registries.add_scheduler("EulerDiscreteScheduler", schedulers::make_euler_discrete);
  models.paths["checkpoints/tiny"] = golden("models/tiny_sdxl");
}

void PipelineHarness::add_stages(const std::vector<std::shared_ptr<sdk::Stage>>& more) {
  stages.insert(stages.end(), more.begin(), more.end());
  std::stable_sort(stages.begin(), stages.end(), [](const auto& a, const auto& b) { return a->order() < b->order(); });
}

std::unique_ptr<sdk::Context> PipelineHarness::context(const sdk::GenerationRequest& request) {
  sdk::ContextServices services;
  services.models = &models;
  services.registries = &registries;
  services.progress = [this](std::string_view stage, int step, int total) {
    progress.emplace_back(std::string(stage), step, total);
    if (live_ != nullptr && live_->has(sdk::slots::kLatents))
      step_latents[std::string(stage)].push_back(live_->get<at::Tensor>(sdk::slots::kLatents).clone());
  };
  auto ctx = std::make_unique<sdk::Context>(std::make_shared<const sdk::GenerationRequest>(request), services);
  live_ = ctx.get();
  return ctx;
}

void PipelineHarness::run(sdk::Context& context, const std::string& last) {
  for (const auto& stage : stages) {
    if (!stage->applies(context.request())) continue;
    stage->run(context);
    if (stage->name() == last) return;
  }
}

std::unique_ptr<sdk::Context> PipelineHarness::run(const sdk::GenerationRequest& request) {
  auto ctx = context(request);
  run(*ctx);
  return ctx;
}

}  // namespace sdxlhost::test_support
