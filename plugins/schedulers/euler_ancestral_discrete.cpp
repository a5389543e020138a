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
    spacing_ = read_spacing(r, "linspace");
    steps_offset_ = r.effective().at("steps_offset").get<int>();
    config_ = r.effective();
  }

  int order() const override { return 1; }

  void set_timesteps(int n) override {
    check_step_count(n);
    std::vector<double> timesteps = sigma_family_timesteps(spacing_, steps_offset_, train_.num_train_timesteps, n);
    const std::vector<double> table = sigma_table_f64(train_);
    std::vector<float> sigmas;
    for (double t : timesteps) sigmas.push_back(static_cast<float>(interp_on_index(t, table)));
    sigmas.push_back(0.0f);
    store_schedule(std::move(timesteps), at::kFloat, std::move(sigmas));
    num_inference_steps_ = n;
  }

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
  int steps_offset_ = 0;
};

}  // namespace

std::unique_ptr<sdk::Scheduler> make_euler_ancestral_discrete(const nlohmann::json& config) {
  return std::make_unique<EulerAncestralDiscrete>(config);
}

}  // namespace sdxlhost::schedulers
