// KDPM2DiscreteScheduler (diffusers 0.36.0): DPM-Solver-2 in sigma space (k-diffusion's
// sample_dpm_2): an Euler half-step to the log-midpoint sigma, then the full step with the
// midpoint's derivative.
#include <ATen/ATen.h>

#include <cmath>

#include "k_dpm_2_schedule.hpp"
#include "scheduler_common.hpp"
#include "schedulers.hpp"

namespace sdxlhost::schedulers {
namespace {

class KDpm2Discrete final : public KDpm2FamilyScheduler {
 public:
  explicit KDpm2Discrete(const nlohmann::json& input) : KDpm2FamilyScheduler("KDPM2DiscreteScheduler", input) {}

  void set_timesteps(int n) override {
    check_step_count(n);
    const KDpm2Base base = base_schedule(n);
    std::vector<float> interpol(base.sigmas.size());
    for (size_t i = 0; i < base.sigmas.size(); ++i)
      interpol[i] = log_midpoint(base.sigmas[i], base.sigmas[(i + base.sigmas.size() - 1) % base.sigmas.size()]);
    // t0, ti1, t1, ti2, t2, ..., ti_{n-1}, t_{n-1}
    std::vector<double> timesteps{timestep_value(base.timesteps.front(), base.float64_timesteps)};
    for (size_t i = 1; i < base.timesteps.size(); ++i) {
      timesteps.push_back(timestep_value(sigma_to_t_f32(interpol[i], train_.log_sigmas), base.float64_timesteps));
      timesteps.push_back(timestep_value(base.timesteps[i], base.float64_timesteps));
    }
    store_schedule(std::move(timesteps), base.float64_timesteps ? at::kDouble : at::kFloat,
                   interleave_pairs(base.sigmas));
    sigmas_interpol_ = interleave_pairs(interpol);
    num_inference_steps_ = n;
    saved_sample_ = at::Tensor();
  }

  // Deliberate twin of KDPM2AncestralDiscreteScheduler::step (k_dpm_2_ancestral_discrete.cpp), as
  // in diffusers: the same two-call structure, but the ancestral one steps to sigma_down and adds
  // noise of size sigma_up in its second call, and indexes its interpolated sigmas differently.
  at::Tensor step(const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample_in,
                  sdk::NoiseSource&) override {
    const int i = step_index_for(timestep);
    const bool first_order = !saved_sample_.defined();
    const float sigma = first_order ? sigmas_.at(i) : sigmas_.at(i - 1);
    const float sigma_interpol = first_order ? sigmas_interpol_.at(i + 1) : sigmas_interpol_.at(i);
    const float sigma_next = first_order ? sigmas_.at(i + 1) : sigmas_.at(i);
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
      const at::Tensor derivative = at::div(sample_in - pred_original, static_cast<double>(sigma_interpol));
      const float dt = sigma_next - sigma_hat;
      prev = saved_sample_ + scaled(derivative, dt);
      saved_sample_ = at::Tensor();
    }
    step_index_ = i + 1;
    return prev;
  }

 protected:
  float input_sigma(int index) const override {
    return saved_sample_.defined() ? sigmas_interpol_.at(index) : sigmas_.at(index);
  }

 private:
  std::vector<float> sigmas_interpol_;
  at::Tensor saved_sample_;
};

}  // namespace

std::unique_ptr<sdk::Scheduler> make_k_dpm_2_discrete(const nlohmann::json& config) {
  return std::make_unique<KDpm2Discrete>(config);
}

}  // namespace sdxlhost::schedulers
