// bench_schedulers: per-step overhead of each scheduler (scale_model_input + step, no model) on
// an SDXL 1024x1024 latent (1x4x128x128 float32), printed as a table. Not a test.
// Usage: bench_schedulers [steps=30] [repeats=5] [threads=hardware]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "schedulers.hpp"
#include "sdxlhost/nn/scheduler_defaults.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace sdxlhost;

class BenchNoise final : public sdk::NoiseSource {
 public:
  at::Tensor randn(at::IntArrayRef shape) override { return at::randn(shape, generator_, at::kFloat); }

 private:
  at::Generator generator_ = at::detail::createCPUGenerator(0);
};

struct Case {
  std::string label;
  std::unique_ptr<sdk::Scheduler> (*factory)(const nlohmann::json&);
  nlohmann::json overrides;
};

/// Median over `repeats` runs of the mean microseconds per loop entry (scheduler work only).
double microseconds_per_step(const Case& c, int steps, int repeats) {
  nlohmann::json config = nn::sdxl_scheduler_config();
  if (c.overrides.is_object()) config.update(c.overrides);
  std::vector<double> runs;
  for (int r = 0; r < repeats; ++r) {
    auto s = c.factory(config);
    s->set_timesteps(steps);
    BenchNoise noise;
    at::Tensor sample = at::randn({1, 4, 128, 128}) * s->init_noise_sigma();
    const at::Tensor eps = at::randn({1, 4, 128, 128});
    const at::Tensor ts = s->timesteps();
    double seconds = 0;
    for (int64_t k = 0; k < ts.numel(); ++k) {
      const auto start = Clock::now();
      const at::Tensor input = s->scale_model_input(sample, ts[k]);
      sample = s->step(eps, ts[k], sample, noise);
      seconds += std::chrono::duration<double>(Clock::now() - start).count();
      (void)input;
    }
    runs.push_back(seconds * 1e6 / static_cast<double>(ts.numel()));
  }
  std::sort(runs.begin(), runs.end());
  return runs[runs.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int steps = argc > 1 ? std::atoi(argv[1]) : 30;
  const int repeats = argc > 2 ? std::atoi(argv[2]) : 5;
  const int threads = argc > 3 ? std::atoi(argv[3]) : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  using namespace sdxlhost::schedulers;
  const std::vector<Case> cases = {
      {"EulerDiscreteScheduler", make_euler_discrete, {}},
      {"EulerAncestralDiscreteScheduler", make_euler_ancestral_discrete, {}},
      {"HeunDiscreteScheduler", make_heun_discrete, {}},
      {"KDPM2DiscreteScheduler", make_k_dpm_2_discrete, {}},
      {"KDPM2AncestralDiscreteScheduler", make_k_dpm_2_ancestral_discrete, {}},
      {"LMSDiscreteScheduler", make_lms_discrete, {}},
      {"DDIMScheduler", make_ddim, {}},
      {"DPMSolverMultistepScheduler", make_dpmsolver_multistep, {}},
      {"DPMSolverMultistep karras", make_dpmsolver_multistep, {{"use_karras_sigmas", true}}},
      {"DPMSolverMultistep sde-dpmsolver++", make_dpmsolver_multistep, {{"algorithm_type", "sde-dpmsolver++"}}},
      {"DPMSolverSinglestepScheduler", make_dpmsolver_singlestep, {}},
      {"UniPCMultistepScheduler", make_unipc_multistep, {}},
  };
  std::printf("bench_schedulers: latent 1x4x128x128 float32, %d steps, median of %d runs, %d threads\n", steps, repeats,
              threads);
  std::printf("%-38s %12s\n", "scheduler", "us/step");
  for (const Case& c : cases) std::printf("%-38s %12.1f\n", c.label.c_str(), microseconds_per_step(c, steps, repeats));
  return 0;
}
