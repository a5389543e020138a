// example_scheduler: a complete third-party scheduler plugin for sdxl-host.
//
// It adds "ExampleEulerScheduler" (alias "Example Euler"): the first-order Euler method on the
// k-diffusion sigma ODE over the model's training schedule, with diffusers' "leading" spacing.
// It is deliberately small (double-precision schedule, epsilon prediction only) and shows every
// piece a scheduler plugin needs: the sdk::Scheduler interface, option validation with
// sdk::Error, registration with an alias, and the SDXLHOST_PLUGIN entry points.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/plugin.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "sdxlhost/sdk/scheduler.hpp"

namespace example {

using sdxlhost::sdk::Error;
using sdxlhost::sdk::ErrorCode;

/// Reads a number option, refusing anything else with the request field that holds it.
double number_option(const nlohmann::json& config, const std::string& key, double fallback) {
  const auto it = config.find(key);
  if (it == config.end()) return fallback;
  if (!it->is_number() || !(it->get<double>() > 0))
    throw Error(ErrorCode::ValidationError, "ExampleEulerScheduler: '" + key + "' must be a positive number",
                "data.scheduler_options." + key);
  return it->get<double>();
}

class ExampleEulerScheduler final : public sdxlhost::sdk::Scheduler {
 public:
  explicit ExampleEulerScheduler(const nlohmann::json& config) {
    const double beta_start = number_option(config, "beta_start", 0.00085);
    const double beta_end = number_option(config, "beta_end", 0.012);
    const int train_steps = static_cast<int>(number_option(config, "num_train_timesteps", 1000));
    const auto prediction = config.find("prediction_type");
    if (prediction != config.end() && *prediction != "epsilon")
      throw Error(ErrorCode::ValidationError,
                  "ExampleEulerScheduler: unknown prediction_type " + prediction->dump() + "; allowed: 'epsilon'",
                  "data.scheduler_options.prediction_type");
    // scaled_linear betas -> alphas_cumprod -> sigma(t) = sqrt((1 - acp) / acp)
    double acp = 1.0;
    for (int i = 0; i < train_steps; ++i) {
      const double root = std::sqrt(beta_start) + (std::sqrt(beta_end) - std::sqrt(beta_start)) * i / (train_steps - 1);
      acp *= 1.0 - root * root;
      train_sigmas_.push_back(std::sqrt((1.0 - acp) / acp));
    }
    config_ = {{"num_train_timesteps", train_steps}, {"beta_start", beta_start}, {"beta_end", beta_end},
               {"prediction_type", "epsilon"}};
  }

  std::string class_name() const override { return "ExampleEulerScheduler"; }
  const nlohmann::json& config() const override { return config_; }
  int order() const override { return 1; }

  void set_timesteps(int n) override {
    if (n < 1 || n > static_cast<int>(train_sigmas_.size()))
      throw Error(ErrorCode::ValidationError, "num_inference_steps out of range", "data.hyperparameters.num_inference_steps");
    const int ratio = static_cast<int>(train_sigmas_.size()) / n;
    timesteps_.clear();
    sigmas_.clear();
    for (int i = n - 1; i >= 0; --i) {  // "leading" spacing with steps_offset 1
      const int t = i * ratio + 1;
      timesteps_.push_back(t);
      sigmas_.push_back(train_sigmas_.at(t));
    }
    sigmas_.push_back(0.0);
    step_index_ = 0;
  }

  at::Tensor timesteps() const override {
    return at::tensor(std::vector<float>(timesteps_.begin(), timesteps_.end()));
  }
  at::Tensor sigmas() const override { return at::tensor(std::vector<float>(sigmas_.begin(), sigmas_.end())); }
  void set_begin_index(int begin_index) override { step_index_ = begin_index; }
  double init_noise_sigma() const override { return std::sqrt(sigmas_.front() * sigmas_.front() + 1.0); }

  at::Tensor scale_model_input(const at::Tensor& sample, const at::Tensor&) override {
    const double sigma = sigmas_.at(step_index_);
    return sample / std::sqrt(sigma * sigma + 1.0);
  }

  at::Tensor step(const at::Tensor& model_output, const at::Tensor&, const at::Tensor& sample,
                  sdxlhost::sdk::NoiseSource&) override {
    const double sigma = sigmas_.at(step_index_), next = sigmas_.at(step_index_ + 1);
    ++step_index_;
    // x0 = x - sigma * eps; derivative (x - x0) / sigma = eps; x_next = x + eps * (next - sigma)
    return sample + model_output * (next - sigma);
  }

  at::Tensor add_noise(const at::Tensor& original, const at::Tensor& noise, const at::Tensor&) override {
    return original + noise * sigmas_.at(step_index_);
  }

 private:
  nlohmann::json config_;
  std::vector<double> train_sigmas_;
  std::vector<int> timesteps_;
  std::vector<double> sigmas_;
  int step_index_ = 0;
};

class ExamplePlugin final : public sdxlhost::sdk::Plugin {
 public:
  sdxlhost::sdk::PluginInfo info() const override {
    return {"example_scheduler", "1.0.0", "Example third-party scheduler (Euler, leading spacing)",
            {"ExampleEulerScheduler", "Example Euler"}, {}};
  }
  void initialize(const nlohmann::json&, sdxlhost::sdk::Registries& registries) override {
    registries.add_scheduler("ExampleEulerScheduler", [](const nlohmann::json& config) {
      return std::make_unique<ExampleEulerScheduler>(config);
    });
    registries.add_scheduler_alias("Example Euler", {"ExampleEulerScheduler", nlohmann::json::object()});
  }
};

}  // namespace example

SDXLHOST_PLUGIN(example::ExamplePlugin)
