// HeunDiscreteScheduler (diffusers 0.36.0): Heun's second-order method on the sigma ODE; each
// timestep after the first appears twice (predictor, then corrector).
#include <ATen/ATen.h>

#include <cmath>

#include "scheduler_common.hpp"
#include "schedulers.hpp"

namespace sdxlhost::schedulers {
namespace {

class HeunDiscrete final : public SigmaFamilyScheduler {
 public:
  explicit HeunDiscrete(const nlohmann::json& input) : SigmaFamilyScheduler("HeunDiscreteScheduler", {}, {}, false) {
    OptionReader r(input, class_name_);
    BetaDefaults defaults;
    defaults.beta_start = 0.00085;
    defaults.beta_end = 0.012;
    defaults.allowed_schedules = {"linear", "scaled_linear", "squaredcos_cap_v2", "exp"};
    defaults.has_rescale_zero_snr = false;
    train_ = read_train_schedule(r, defaults);
    prediction_type_ = r.choice("prediction_type", "epsilon", {"epsilon", "v_prediction", "sample"});
    sigma_kind_ = read_sigma_kind(r);
    clip_sample_ = r.flag("clip_sample", false);
    clip_range_ = r.number("clip_sample_range", 1.0, 0.0, 1e9);
    read_spacing_options(r);
    config_ = r.effective();
  }

  int order() const override { return 2; }

  void set_timesteps(int n) override {
    check_step_count(n);
    const SigmaSchedule schedule = ramped_schedule(n);
    const std::vector<double>& timesteps = schedule.timesteps;
    const std::vector<double>& sigmas = schedule.sigmas;
    // sigmas: s0, s1, s1, ..., s_{n-1}, s_{n-1}, 0; timesteps: t0, t1, t1, ..., t_{n-1}, t_{n-1}
    std::vector<float> interleaved_sigmas{static_cast<float>(sigmas.front())};
    std::vector<double> interleaved_timesteps{timesteps.front()};
    for (size_t i = 1; i < sigmas.size(); ++i) {
      interleaved_sigmas.insert(interleaved_sigmas.end(), 2, static_cast<float>(sigmas[i]));
      interleaved_timesteps.insert(interleaved_timesteps.end(), 2, timesteps[i]);
    }
    interleaved_sigmas.push_back(0.0f);
    store_schedule(std::move(interleaved_timesteps), at::kFloat, std::move(interleaved_sigmas));
    num_inference_steps_ = n;
    reset_state();
  }

  at::Tensor step(const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample_in,
                  sdk::NoiseSource&) override {
    const int i = step_index_for(timestep);
    const bool first_order = !has_dt_;
    const float sigma = first_order ? sigmas_.at(i) : sigmas_.at(i - 1);
    const float sigma_next = first_order ? sigmas_.at(i + 1) : sigmas_.at(i);
    const float sigma_hat = sigma * 1.0f;
    const float sigma_input = first_order ? sigma_hat : sigma_next;
    at::Tensor pred_original = predict_original(model_output, sample_in, sigma_input);
    if (clip_sample_) pred_original = pred_original.clamp(-clip_range_, clip_range_);
    at::Tensor prev;
    if (first_order) {
      const at::Tensor derivative = at::div(sample_in - pred_original, static_cast<double>(sigma_hat));
      dt_ = sigma_next - sigma_hat;
      has_dt_ = true;
      prev_derivative_ = derivative;
      saved_sample_ = sample_in;
      prev = sample_in + scaled(derivative, dt_);
    } else {
      at::Tensor derivative = at::div(sample_in - pred_original, static_cast<double>(sigma_next));
      derivative = at::div(prev_derivative_ + derivative, 2);
      prev = saved_sample_ + scaled(derivative, dt_);
      reset_state();
    }
    step_index_ = i + 1;
    return prev;
  }

 private:
  void reset_state() {
    has_dt_ = false;
    prev_derivative_ = at::Tensor();
    saved_sample_ = at::Tensor();
  }

  bool clip_sample_ = false;
  double clip_range_ = 1.0;
  bool has_dt_ = false;
  float dt_ = 0.0f;
  at::Tensor prev_derivative_;
  at::Tensor saved_sample_;
};

}  // namespace

std::unique_ptr<sdk::Scheduler> make_heun_discrete(const nlohmann::json& config) {
  return std::make_unique<HeunDiscrete>(config);
}

}  // namespace sdxlhost::schedulers
