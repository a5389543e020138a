// KDPM2AncestralDiscreteScheduler (diffusers 0.36.0): DPM-Solver-2 towards sigma_down plus
// fresh noise of size sigma_up; 0.36.0 draws noise only in the second-order call.
#include <ATen/ATen.h>

#include <cmath>

#include "k_dpm_2_schedule.hpp"
#include "scheduler_common.hpp"
#include "schedulers.hpp"

namespace sdxlhost::schedulers {
namespace {

class KDpm2AncestralDiscrete final : public KDpm2FamilyScheduler {
 public:
  explicit KDpm2AncestralDiscrete(const nlohmann::json& input) : KDpm2FamilyScheduler("KDPM2AncestralDiscreteScheduler", input) {}

  void set_timesteps(int n) override {
    check_step_count(n);
    const KDpm2Base base = base_schedule(n);
    const std::vector<float>& s = base.sigmas;
    const size_t count = s.size();
    std::vector<float> up(count), down(count), interpol(count);
    for (size_t i = 0; i < count; ++i) {
      const float next = i + 1 < count ? s[i + 1] : 0.0f;
      up[i] = std::sqrt(next * next * (s[i] * s[i] - next * next) / (s[i] * s[i]));
      down[i] = i + 1 < count ? std::sqrt(next * next - up[i] * up[i]) : 0.0f;
      interpol[i] = i + 2 < count ? log_midpoint(s[i], down[i]) : 0.0f;
    }
    // t0, ti0, t1, ti1, t2, ..., ti_{n-2}, t_{n-1}
    std::vector<double> timesteps{timestep_value(base.timesteps.front(), base.float64_timesteps)};
    for (size_t i = 1; i < base.timesteps.size(); ++i) {
      timesteps.push_back(timestep_value(sigma_to_t_f32(interpol[i - 1], train_.log_sigmas), base.float64_timesteps));
      timesteps.push_back(timestep_value(base.timesteps[i], base.float64_timesteps));
    }
    store_schedule(std::move(timesteps), base.float64_timesteps ? at::kDouble : at::kFloat, interleave_pairs(s));
    sigmas_interpol_ = interleave_pairs(interpol);
    sigmas_up_ = interleave_pairs(up);
    sigmas_down_ = interleave_pairs(down);
    num_inference_steps_ = n;
    saved_sample_ = at::Tensor();
  }

  // Deliberate twin of KDPM2DiscreteScheduler::step (k_dpm_2_discrete.cpp), as in diffusers: this
  // one steps to sigma_down and adds noise of size sigma_up in the second (corrector) call.
  at::Tensor step(const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample_in,
                  sdk::NoiseSource& noise) override {
    const int i = step_index_for(timestep);
    const bool first_order = !saved_sample_.defined();
    const int at_index = first_order ? i : i - 1;
    const float sigma = sigmas_.at(at_index);
    const float sigma_interpol = sigmas_interpol_.at(at_index);
    const float sigma_up = sigmas_up_.at(at_index);
    const float sigma_hat = sigma * 1.0f;
    const float sigma_input = first_order ? sigma_hat : sigma_interpol;
    const at::Tensor pred_original = predict_original(model_output, sample_in, sigma_input);
    at::Tensor prev;
    if (first_order) {
      const at::Tensor derivative = at::div(sample_in - pred_original, static_cast<double>(sigma_hat));
      const float dt = sigma_interpol - sigma_hat;
      saved_sample_ = sample_in;
      prev = sample_in + scaled(derivative, dt);
    } else {
      const float sigma_down = sigmas_down_.at(i - 1);
      const at::Tensor derivative = at::div(sample_in - pred_original, static_cast<double>(sigma_interpol));
      const float dt = sigma_down - sigma_hat;
      prev = saved_sample_ + scaled(derivative, dt);
      saved_sample_ = at::Tensor();
      const at::Tensor drawn = draw_noise(noise, model_output, model_output.scalar_type());
      prev = prev + scaled(drawn, sigma_up);
    }
    step_index_ = i + 1;
    return prev;
  }

 protected:
  float input_sigma(int index) const override {
    return saved_sample_.defined() ? sigmas_interpol_.at(index - 1) : sigmas_.at(index);
  }

 private:
  std::vector<float> sigmas_interpol_, sigmas_up_, sigmas_down_;
  at::Tensor saved_sample_;
};

}  // namespace

std::unique_ptr<sdk::Scheduler> make_k_dpm_2_ancestral_discrete(const nlohmann::json& config) {
  return std::make_unique<KDpm2AncestralDiscrete>(config);
}

}  // namespace sdxlhost::schedulers
