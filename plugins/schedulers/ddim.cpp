// DDIMScheduler (diffusers 0.36.0): deterministic (eta = 0) or stochastic DDIM over
// alphas_cumprod; indexes the training schedule by timestep, so it has no sigma table.
#include <ATen/ATen.h>

#include <cmath>

#include "scheduler_common.hpp"
#include "schedulers.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::schedulers {
namespace {

class Ddim final : public SchedulerBase {
 public:
  explicit Ddim(const nlohmann::json& input) : SchedulerBase("DDIMScheduler", {}, {}, false) {
    OptionReader r(input, class_name_);
    BetaDefaults defaults;
    defaults.floor_terminal_alpha = false;  // diffusers' DDIM keeps alphas_cumprod[-1] = 0
    train_ = read_train_schedule(r, defaults);
    clip_sample_ = r.flag("clip_sample", true);
    set_alpha_to_one_ = r.flag("set_alpha_to_one", true);
    spacing_ = read_spacing(r, "leading");
    steps_offset_ = r.effective().at("steps_offset").get<int>();
    prediction_type_ = r.choice("prediction_type", "epsilon", {"epsilon", "sample", "v_prediction"});
    threshold_ = read_threshold_options(r);
    clip_range_ = r.number("clip_sample_range", 1.0, 0.0, 1e9);
    // diffusers passes eta to step(); sdxl-host takes it as an option (0 = deterministic DDIM).
    eta_ = r.number("eta", 0.0, 0.0, 1e3);
    config_ = r.effective();
    final_alpha_cumprod_ = set_alpha_to_one_ ? 1.0f : train_.alphas_cumprod.front();
  }

  int order() const override { return 1; }
  double init_noise_sigma() const override { return 1.0; }
  at::Tensor sigmas() const override { return at::Tensor(); }

  void set_timesteps(int n) override {
    check_step_count(n);
    const int train_steps = train_.num_train_timesteps;
    if (n > train_steps)
      throw sdk::Error(sdk::ErrorCode::ValidationError,
                       class_name_ + ": num_inference_steps " + std::to_string(n) +
                           " exceeds num_train_timesteps " + std::to_string(train_steps),
                       "data.hyperparameters.num_inference_steps");
    std::vector<double> timesteps;
    if (spacing_ == "linspace") {
      const std::vector<double> points = numpy_linspace(0, train_steps - 1, n);
      for (int i = n - 1; i >= 0; --i) timesteps.push_back(numpy_round(points[i]));
    } else if (spacing_ == "leading") {
      const int step_ratio = train_steps / n;
      for (int i = n - 1; i >= 0; --i) timesteps.push_back(i * step_ratio + steps_offset_);
    } else {
      for (double v : numpy_arange_down(train_steps, 0, -static_cast<double>(train_steps) / n))
        timesteps.push_back(numpy_round(v) - 1);
    }
    for (double t : timesteps)
      if (t < 0 || t >= train_steps)
        throw sdk::Error(sdk::ErrorCode::ValidationError,
                         class_name_ + ": steps_offset moves timestep " + std::to_string(static_cast<int>(t)) +
                             " outside the training schedule",
                         "data.scheduler_options.steps_offset");
    store_schedule(std::move(timesteps), at::kLong, {});
    num_inference_steps_ = n;
  }

  at::Tensor scale_model_input(const at::Tensor& sample, const at::Tensor&) override { return sample; }

  at::Tensor step(const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample,
                  sdk::NoiseSource& noise) override {
    require_timesteps();
    const int t = static_cast<int>(timestep.item<double>());
    const int prev_t = t - train_.num_train_timesteps / num_inference_steps_;
    const float alpha_t = acp_at(t);
    const float alpha_prev = prev_t >= 0 ? acp_at(prev_t) : final_alpha_cumprod_;
    const float beta_t = 1.0f - alpha_t;
    const float sqrt_alpha = std::sqrt(alpha_t), sqrt_beta = std::sqrt(beta_t);
    at::Tensor pred_original, pred_epsilon;
    if (prediction_type_ == "epsilon") {
      pred_original = at::div(sample - scaled(model_output, sqrt_beta), static_cast<double>(sqrt_alpha));
      pred_epsilon = model_output;
    } else if (prediction_type_ == "sample") {
      pred_original = model_output;
      pred_epsilon = at::div(sample - scaled(pred_original, sqrt_alpha), static_cast<double>(sqrt_beta));
    } else {
      pred_original = scaled(sample, sqrt_alpha) - scaled(model_output, sqrt_beta);
      pred_epsilon = scaled(model_output, sqrt_alpha) + scaled(sample, sqrt_beta);
    }
    if (threshold_.enabled) pred_original = dynamic_threshold(pred_original, threshold_);
    else if (clip_sample_) pred_original = pred_original.clamp(-clip_range_, clip_range_);
    const float beta_prev = 1.0f - alpha_prev;
    const float variance = beta_prev / beta_t * (1.0f - alpha_t / alpha_prev);
    const float std_dev = static_cast<float>(eta_) * std::sqrt(variance);
    const at::Tensor direction = scaled(pred_epsilon, std::sqrt(1.0f - alpha_prev - std_dev * std_dev));
    at::Tensor prev = scaled(pred_original, std::sqrt(alpha_prev)) + direction;
    if (eta_ > 0) prev = prev + scaled(draw_noise(noise, model_output, model_output.scalar_type()), std_dev);
    return prev;
  }

  at::Tensor add_noise(const at::Tensor& original, const at::Tensor& noise, const at::Tensor& timesteps) override {
    const at::Tensor flat = timesteps.reshape({-1}).to(at::kDouble).cpu();
    std::vector<float> sqrt_alpha, sqrt_one_minus;
    for (int64_t i = 0; i < flat.numel(); ++i) {
      const float acp = acp_at(static_cast<int>(flat.data_ptr<double>()[i]));
      sqrt_alpha.push_back(std::sqrt(acp));
      sqrt_one_minus.push_back(std::sqrt(1.0f - acp));
    }
    return per_batch(sqrt_alpha, original) * original + per_batch(sqrt_one_minus, original) * noise;
  }

 private:
  float acp_at(int t) const {
    if (t < 0 || t >= static_cast<int>(train_.alphas_cumprod.size()))
      throw sdk::Error(sdk::ErrorCode::ValidationError,
                       class_name_ + ": timestep " + std::to_string(t) + " is outside the training schedule",
                       "data.scheduler_options.steps_offset");
    return train_.alphas_cumprod[t];
  }

  bool clip_sample_ = true;
  bool set_alpha_to_one_ = true;
  std::string spacing_;
  int steps_offset_ = 0;
  std::string prediction_type_;
  double clip_range_ = 1.0;
  double eta_ = 0.0;
  ThresholdOptions threshold_;
  float final_alpha_cumprod_ = 1.0f;
};

}  // namespace

std::unique_ptr<sdk::Scheduler> make_ddim(const nlohmann::json& config) { return std::make_unique<Ddim>(config); }

}  // namespace sdxlhost::schedulers
