// LMSDiscreteScheduler (diffusers 0.36.0): linear multistep (up to 4 past derivatives) on the
// sigma ODE; the coefficients integrate the Lagrange basis over [sigma_t, sigma_{t+1}].
#include <ATen/ATen.h>

#include <array>
#include <cmath>
#include <deque>

#include "scheduler_common.hpp"
#include "schedulers.hpp"

namespace sdxlhost::schedulers {
namespace {

constexpr int kLmsOrder = 4;

/// Integral of a polynomial of degree <= 9 over [a, b] (5-point Gauss-Legendre: exact there,
/// as scipy's adaptive quadrature is on the cubic Lagrange basis).
template <typename F>
double integrate(F&& f, double a, double b) {
  static const std::array<double, 5> nodes = {0.0, -0.5384693101056831, 0.5384693101056831,
                                              -0.9061798459386640, 0.9061798459386640};
  static const std::array<double, 5> weights = {0.5688888888888889, 0.4786286704993665, 0.4786286704993665,
                                                0.2369268850561891, 0.2369268850561891};
  const double half = (b - a) / 2, mid = (a + b) / 2;
  double sum = 0;
  for (size_t i = 0; i < nodes.size(); ++i) sum += weights[i] * f(mid + half * nodes[i]);
  return sum * half;
}

class LmsDiscrete final : public SigmaFamilyScheduler {
 public:
  explicit LmsDiscrete(const nlohmann::json& input) : SigmaFamilyScheduler("LMSDiscreteScheduler", {}, {}, false) {
    OptionReader r(input, class_name_);
    BetaDefaults defaults;
    defaults.has_rescale_zero_snr = false;
    train_ = read_train_schedule(r, defaults);
    sigma_kind_ = read_sigma_kind(r);
    prediction_type_ = r.choice("prediction_type", "epsilon", {"epsilon", "v_prediction", "sample"});
    read_spacing_options(r);
    config_ = r.effective();
  }

  int order() const override { return 1; }

  void set_timesteps(int n) override {
    check_step_count(n);
    SigmaSchedule schedule = ramped_schedule(n);
    store_schedule(std::move(schedule.timesteps), at::kFloat, float32_sigmas(schedule.sigmas, 0.0f));
    num_inference_steps_ = n;
    derivatives_.clear();
  }

  at::Tensor step(const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample,
                  sdk::NoiseSource&) override {
    const int i = step_index_for(timestep);
    const float sigma = sigmas_.at(i);
    const at::Tensor pred_original = predict_original(model_output, sample, sigma);
    derivatives_.push_back(at::div(sample - pred_original, static_cast<double>(sigma)));
    if (static_cast<int>(derivatives_.size()) > kLmsOrder) derivatives_.pop_front();
    const int order = std::min(i + 1, kLmsOrder);
    // diffusers zips the `order` coefficients with the derivatives it has (newest first).
    at::Tensor sum;
    const int terms = std::min(order, static_cast<int>(derivatives_.size()));
    for (int k = 0; k < terms; ++k) {
      const at::Tensor term = at::mul(derivatives_[derivatives_.size() - 1 - k], coefficient(order, i, k));
      sum = sum.defined() ? sum + term : term;
    }
    step_index_ = i + 1;
    return sample + sum;
  }

 private:
  /// diffusers' get_lms_coefficient(order, t, current_order).
  double coefficient(int order, int t, int current) const {
    auto basis = [&](double tau) {
      double product = 1.0;
      for (int k = 0; k < order; ++k) {
        if (k == current) continue;
        const double sk = sigmas_.at(t - k);
        product *= (tau - sk) / (static_cast<double>(sigmas_.at(t - current)) - sk);
      }
      return product;
    };
    return integrate(basis, sigmas_.at(t), sigmas_.at(t + 1));
  }

  std::deque<at::Tensor> derivatives_;
};

}  // namespace

std::unique_ptr<sdk::Scheduler> make_lms_discrete(const nlohmann::json& config) {
  return std::make_unique<LmsDiscrete>(config);
}

}  // namespace sdxlhost::schedulers
