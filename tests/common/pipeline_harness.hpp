#pragma once
/// @file pipeline_harness.hpp
/// The one harness of the tests that drive pipeline stages directly over a Context, without a
/// host (tests/sdxl, tests/refiner, tests/controlnet): the sdxl plugin's four stages plus any a
/// test adds (kept in order() order, as the host's planner bands them), the Euler scheduler, the
/// golden tiny SDXL as `checkpoints/tiny`, and a progress callback that records every report and
/// the latents slot as each report found it. What is specific to one test (its denoise hooks,
/// other models, other plugins' stages) it adds itself, usually in a `struct Harness` derived
/// from this one.
/// Library sdxlhost_test_pipeline (tests/common/CMakeLists.txt), built where the sdxl and
/// schedulers plugins' core libraries are.

#include <ATen/core/Tensor.h>

#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "common/test_model_access.hpp"
#include "sdxlhost/pipeline/settings.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "sdxlhost/sdk/request.hpp"
#include "sdxlhost/sdk/stage.hpp"

namespace sdxlhost::test_support {

class PipelineHarness {
 public:
  /// Resolves "checkpoints/tiny" to goldens/models/tiny_sdxl; tests add their own names.
  TestModels models;
  /// Holds "EulerDiscreteScheduler"; tests add their hooks, patches and preprocessors.
  sdk::Registries registries;
  /// The settings the sdxl stages were made with (share them with other plugins' stages).
  std::shared_ptr<const pipeline::PipelineSettings> pipeline_settings;
  /// encode_prompt, prepare_latents, denoise, vae_decode and what add_stages added, by order().
  std::vector<std::shared_ptr<sdk::Stage>> stages;
  /// Every progress report, as (stage, step, total_steps).
  std::vector<std::tuple<std::string, int, int>> progress;
  /// The latents slot (a copy) at every progress report, by the reporting stage ("denoise",
  /// "refine", ...): the latents after each step, as the denoise loop publishes them.
  std::map<std::string, std::vector<at::Tensor>> step_latents;

  /// The sdxl stages made with `settings` (the defaults when null).
  explicit PipelineHarness(std::shared_ptr<const pipeline::PipelineSettings> settings = nullptr);

  /// Adds stages and sorts all by order() (stable: equal orders keep the order they came in).
  void add_stages(const std::vector<std::shared_ptr<sdk::Stage>>& more);

  /// A Context for `request` over models and registries whose progress goes to `progress` and
  /// `step_latents`. Reports are recorded for the newest context only.
  std::unique_ptr<sdk::Context> context(const sdk::GenerationRequest& request);

  /// Runs the stages that apply to the context's request, in order, up to and including the
  /// stage named `last` (all when empty).
  void run(sdk::Context& context, const std::string& last = "");

  /// context(request), then every stage that applies; returns the context for inspection.
  std::unique_ptr<sdk::Context> run(const sdk::GenerationRequest& request);

 private:
  sdk::Context* live_ = nullptr;  ///< the newest context (whose latents progress records)
};

}  // namespace sdxlhost::test_support
