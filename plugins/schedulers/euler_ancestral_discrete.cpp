// EulerAncestralDiscreteScheduler (diffusers 0.36.0): Euler step to sigma_down plus fresh noise
// of size sigma_up, one draw per step.
#include <ATen/ATen.h>

#include <cmath>

#include "scheduler_common.hpp"
#include "schedulers.hpp"

namespace sdxlhost::schedulers {
namespace {

class EulerAncestralDiscrete final : public SigmaFamilyScheduler {
 public:
  explicit EulerAncestralDiscrete(const nlohmann::json& input)
      : SigmaFamilyScheduler("EulerAncestralDiscreteScheduler", {}, {}, false) {
    OptionReader r(input, class_name_);
    train_ = read_train_schedule(r, BetaDefaults{});
    prediction_type_ = r.choice("prediction_type", "epsilon", {"epsilon", "v_prediction"});
    read_spacing_options(r);
    config_ = r.effective();
  }

  int order() const override { return 1; }

  void set_timesteps(int n) override {
    check_step_count(n);
    SigmaSchedule schedule = interpolated_schedule(n);
    store_schedule(std::move(schedule.timesteps), at::kFloat, float32_sigmas(schedule.sigmas, 0.0f));
    num_inference_steps_ = n;
  }

  // Deliberate twin of EulerDiscreteScheduler::step (euler_discrete.cpp), as in diffusers: this one
  // steps to sigma_down and adds one noise draw of size sigma_up.
  at::Tensor step(const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample_in,
                  sdk::NoiseSource& noise) override {
    const int i = step_index_for(timestep);
    const float sigma = sigmas_.at(i);
    const at::Tensor sample = sample_in.to(at::kFloat);
    const at::Tensor pred_original = predict_original(model_output, sample, sigma);
    const float sigma_from = sigma;
    const float sigma_to = sigmas_.at(i + 1);
    const float from2 = sigma_from * sigma_from;
    const float to2 = sigma_to * sigma_to;
    const float sigma_up = std::sqrt(to2 * (from2 - to2) / from2);
    const float sigma_down = std::sqrt(to2 - sigma_up * sigma_up);
    const at::Tensor derivative = at::div(sample - pred_original, static_cast<double>(sigma));
    const float dt = sigma_down - sigma;
    at::Tensor prev = sample + scaled(derivative, dt);
    const at::Tensor drawn = draw_noise(noise, model_output, model_output.scalar_type());
    prev = prev + scaled(drawn, sigma_up);
    step_index_ = i + 1;
    return prev.to(model_output.scalar_type());
  }

 private:
};

}  // namespace

std::unique_ptr<sdk::Scheduler> make_euler_ancestral_discrete(const nlohmann::json& config) {
  return std::make_unique<EulerAncestralDiscrete>(config);
}

}  // namespace sdxlhost::schedulers
