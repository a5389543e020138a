// EulerDiscreteScheduler (diffusers 0.36.0): first-order Euler on the sigma (k-diffusion) ODE.
#include <ATen/ATen.h>

#include <cmath>

#include "scheduler_common.hpp"
#include "schedulers.hpp"

namespace sdxlhost::schedulers {
namespace {

class EulerDiscrete final : public SigmaFamilyScheduler {
 public:
  explicit EulerDiscrete(const nlohmann::json& input)
      : SigmaFamilyScheduler("EulerDiscreteScheduler", {}, {}, false) {
    OptionReader r(input, class_name_);
    train_ = read_train_schedule(r, BetaDefaults{});
    prediction_type_ = r.choice("prediction_type", "epsilon", {"epsilon", "v_prediction", "sample"});
    interpolation_ = r.choice("interpolation_type", "linear", {"linear", "log_linear"});
    sigma_kind_ = read_sigma_kind(r);
    sigma_min_ = r.optional_number("sigma_min");
    sigma_max_ = r.optional_number("sigma_max");
    read_spacing_options(r);
    timestep_type_ = r.choice("timestep_type", "discrete", {"discrete", "continuous"});
    final_sigmas_type_ = r.choice("final_sigmas_type", "zero", {"zero", "sigma_min"});
    config_ = r.effective();
  }

  int order() const override { return 1; }

  void set_timesteps(int n) override {
    check_step_count(n);
    SigmaSchedule schedule = interpolated_schedule(n);
    if (interpolation_ == "log_linear") {  // torch.linspace over log sigma, float32, exp in float32
      const float log_max = numpy_logf(train_.sigmas.back()), log_min = numpy_logf(train_.sigmas.front());
      schedule.sigmas.clear();
      for (float v : torch_linspace_f32(log_max, log_min, n + 1))
        schedule.sigmas.push_back(std::exp(v));
    }
    if (sigma_kind_ != SigmaKind::Interpolated) {
      const double lo = sigma_min_.is_number() ? sigma_min_.get<double>() : schedule.sigmas.back();
      const double hi = sigma_max_.is_number() ? sigma_max_.get<double>() : schedule.sigmas.front();
      use_sigma_ramp(schedule, train_, sigma_kind_, lo, hi, n);
      round_to_float32(schedule.timesteps);
    }
    std::vector<float> rounded =
        float32_sigmas(schedule.sigmas, final_sigmas_type_ == "sigma_min" ? train_.sigmas.front() : 0.0f);
    if (timestep_type_ == "continuous" && prediction_type_ == "v_prediction") {
      schedule.timesteps.clear();
      for (size_t i = 0; i + 1 < rounded.size(); ++i) schedule.timesteps.push_back(0.25f * std::log(rounded[i]));
    }
    store_schedule(std::move(schedule.timesteps), at::kFloat, std::move(rounded));
    num_inference_steps_ = n;
  }

  // Deliberate twin of EulerAncestralDiscreteScheduler::step (euler_ancestral_discrete.cpp), as in
  // diffusers: this one steps to the next sigma with no noise (s_churn = 0).
  at::Tensor step(const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample_in,
                  sdk::NoiseSource&) override {
    const int i = step_index_for(timestep);
    const at::Tensor sample = sample_in.to(at::kFloat);
    const float sigma = sigmas_.at(i);
    const float sigma_hat = sigma * 1.0f;  // s_churn = 0: gamma = 0
    const at::Tensor pred_original = predict_original(model_output, sample, sigma);
    const at::Tensor derivative = at::div(sample - pred_original, static_cast<double>(sigma_hat));
    const float dt = sigmas_.at(i + 1) - sigma_hat;
    at::Tensor prev = sample + scaled(derivative, dt);
    step_index_ = i + 1;
    return prev.to(model_output.scalar_type());
  }

 private:
  std::string interpolation_;
  nlohmann::json sigma_min_, sigma_max_;
  std::string timestep_type_;
  std::string final_sigmas_type_;
};

}  // namespace

std::unique_ptr<sdk::Scheduler> make_euler_discrete(const nlohmann::json& config) {
  return std::make_unique<EulerDiscrete>(config);
}

}  // namespace sdxlhost::schedulers
