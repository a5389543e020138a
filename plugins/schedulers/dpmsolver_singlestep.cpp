// DPMSolverSinglestepScheduler (diffusers 0.36.0): DPM-Solver(++) in single-step form: orders
// cycle 1, 2(, 3) and each higher-order step restarts from the sample of its order-1 step.
#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "dpm_solver_options.hpp"
#include "scheduler_common.hpp"
#include "schedulers.hpp"

namespace sdxlhost::schedulers {
namespace {

class DpmSolverSinglestep final : public AlphaSigmaFamilyScheduler {
 public:
  explicit DpmSolverSinglestep(const nlohmann::json& input)
      : AlphaSigmaFamilyScheduler("DPMSolverSinglestepScheduler", {}, {}, true), reader_(input, class_name_) {
    OptionReader& r = reader_;
    train_ = read_train_schedule(r, BetaDefaults{});
    solver_order_ = r.integer("solver_order", 2, 1, 3);
    prediction_type_ = r.choice("prediction_type", "epsilon", {"epsilon", "sample", "v_prediction"});
    algorithm_ = r.choice("algorithm_type", "dpmsolver++", {"dpmsolver", "dpmsolver++", "sde-dpmsolver++", "deis"});
    if (algorithm_ == "deis") r.set("algorithm_type", algorithm_ = "dpmsolver++");
    solver_type_ = r.choice("solver_type", "midpoint", {"midpoint", "heun", "logrho", "bh1", "bh2"});
    if (solver_type_ != "midpoint" && solver_type_ != "heun") r.set("solver_type", solver_type_ = "midpoint");
    lower_order_final_ = r.flag("lower_order_final", false);
    sigma_kind_ = read_sigma_kind(r);
    read_dpm_fixed_options(r);
    threshold_ = read_threshold_options(r);
    if (threshold_.enabled && algorithm_ == "dpmsolver")
      r.fail("thresholding", "thresholding is not available with algorithm_type 'dpmsolver' (diffusers fails there)");
    final_sigmas_type_ = r.choice("final_sigmas_type", "zero", {"zero", "sigma_min"});
    lambda_min_clipped_ = r.number("lambda_min_clipped", -std::numeric_limits<double>::infinity(),
                                   -std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity());
    r.fixed("variance_type", nullptr);
    if (algorithm_ == "dpmsolver" && final_sigmas_type_ == "zero")
      r.fail("final_sigmas_type", "final_sigmas_type 'zero' is not supported for algorithm_type 'dpmsolver'; "
                                  "choose 'sigma_min'");
    config_ = r.effective();
  }

  int order() const override { return 1; }

  void set_timesteps(int n) override {
    check_step_count(n);
    const int clipped = count_clipped_lambdas(train_.alphas_cumprod, lambda_min_clipped_);
    // Always linspace over [0, T - 1 - clipped] (this class ignores timestep_spacing).
    const std::vector<double> points = numpy_linspace(0, train_.num_train_timesteps - 1 - clipped, n + 1);
    std::vector<double> timesteps;
    for (int k = n; k >= 1; --k) timesteps.push_back(numpy_round(points[k]));
    const std::vector<double> sigmas = dpm_sigmas(timesteps, sigma_kind_, n, true);
    store_with_final_sigma(timesteps, sigmas, final_sigma(final_sigmas_type_));
    num_inference_steps_ = n;
    model_outputs_.assign(solver_order_, at::Tensor());
    saved_sample_ = at::Tensor();
    // diffusers' register_to_config: both switches stick for later set_timesteps calls.
    if (!lower_order_final_ && (n % solver_order_ != 0 || final_sigmas_type_ == "zero")) {
      lower_order_final_ = true;
      reader_.set("lower_order_final", true);
      config_ = reader_.effective();
    }
    order_list_ = order_list(n);
  }

  at::Tensor step(const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample,
                  sdk::NoiseSource& noise) override {
    const int i = step_index_for(timestep);
    const auto [alpha, sigma] = alpha_sigma(sigmas_.at(i));
    at::Tensor converted = algorithm_ != "dpmsolver"
                               ? data_prediction(prediction_type_, model_output, sample, alpha, sigma)
                               : noise_prediction(prediction_type_, model_output, sample, alpha, sigma);
    if (threshold_.enabled) converted = dynamic_threshold(converted, threshold_);
    for (int k = 0; k + 1 < solver_order_; ++k) model_outputs_[k] = model_outputs_[k + 1];
    model_outputs_.back() = converted;
    at::Tensor drawn;
    if (algorithm_ == "sde-dpmsolver++") drawn = draw_noise(noise, converted, converted.scalar_type());
    int order = order_list_.at(i);
    while (!model_outputs_[solver_order_ - order].defined()) --order;
    if (order == 1) saved_sample_ = sample;
    at::Tensor prev;
    if (order == 1) prev = first_order_update(i, converted, saved_sample_, drawn);
    else if (order == 2) prev = second_order_update(i, saved_sample_, drawn);
    else prev = third_order_update(i, saved_sample_, drawn);
    step_index_ = i + 1;
    return prev;
  }

 private:
  std::vector<int> order_list(int steps) const {
    std::vector<int> orders;
    auto repeat = [&orders](std::initializer_list<int> pattern, int times) {
      for (int k = 0; k < times; ++k) orders.insert(orders.end(), pattern);
    };
    if (lower_order_final_) {
      if (solver_order_ == 3) {
        if (steps % 3 == 0) { repeat({1, 2, 3}, steps / 3 - 1); repeat({1, 2}, 1); repeat({1}, 1); }
        else if (steps % 3 == 1) { repeat({1, 2, 3}, steps / 3); repeat({1}, 1); }
        else { repeat({1, 2, 3}, steps / 3); repeat({1, 2}, 1); }
      } else if (solver_order_ == 2) {
        if (steps % 2 == 0) { repeat({1, 2}, steps / 2 - 1); repeat({1, 1}, 1); }
        else { repeat({1, 2}, steps / 2); repeat({1}, 1); }
      } else {
        repeat({1}, steps);
      }
    } else if (solver_order_ == 3) {
      repeat({1, 2, 3}, steps / 3);
    } else if (solver_order_ == 2) {
      repeat({1, 2}, steps / 2);
    } else {
      repeat({1}, steps);
    }
    if (final_sigmas_type_ == "zero" && !orders.empty()) orders.back() = 1;
    return orders;
  }

  at::Tensor first_order_update(int i, const at::Tensor& m, const at::Tensor& sample, const at::Tensor& noise) const {
    const auto [alpha_t, sigma_t] = alpha_sigma(sigmas_.at(i + 1));
    const auto [alpha_s, sigma_s] = alpha_sigma(sigmas_.at(i));
    return dpm_first_order_update(algorithm_, {alpha_t, sigma_t}, {alpha_s, sigma_s}, lambda_at(i + 1) - lambda_at(i), m,
                                  sample, noise);
  }

  // Deliberate twin of DPMSolverMultistepScheduler's second_order_update (dpmsolver_multistep.cpp):
  // the same coefficients, but singlestep expands around s1 (h = lambda_t - lambda_s1, d0 = m1)
  // from the sample of its order-1 step, and has no sde-dpmsolver branch.
  at::Tensor second_order_update(int i, const at::Tensor& sample, const at::Tensor& noise) const {
    const auto [alpha_t, sigma_t] = alpha_sigma(sigmas_.at(i + 1));
    const auto [alpha_s1, sigma_s1] = alpha_sigma(sigmas_.at(i - 1));
    const float lambda_t = lambda_at(i + 1), lambda_s0 = lambda_at(i), lambda_s1 = lambda_at(i - 1);
    const at::Tensor& m0 = model_outputs_[solver_order_ - 1];
    const at::Tensor& m1 = model_outputs_[solver_order_ - 2];
    const float h = lambda_t - lambda_s1, h_0 = lambda_s0 - lambda_s1;
    const float r0 = h_0 / h;
    const at::Tensor& d0 = m1;
    const at::Tensor d1 = scaled(m0 - m1, 1.0f / r0);
    const bool midpoint = solver_type_ == "midpoint";
    if (algorithm_ == "dpmsolver++") {
      const float c = alpha_t * (std::exp(-h) - 1.0f);
      const float c1 = midpoint ? -(0.5f * c) : alpha_t * ((std::exp(-h) - 1.0f) / h + 1.0f);
      return combine({{sigma_t / sigma_s1, sample}, {-c, d0}, {c1, d1}});
    }
    if (algorithm_ == "dpmsolver") {
      const float c = sigma_t * (std::exp(h) - 1.0f);
      const float c1 = midpoint ? -(0.5f * c) : -(sigma_t * ((std::exp(h) - 1.0f) / h - 1.0f));
      return combine({{alpha_t / alpha_s1, sample}, {-c, d0}, {c1, d1}});
    }
    const float c = alpha_t * (1.0f - std::exp(-2.0f * h));
    const float c1 = midpoint ? 0.5f * c : alpha_t * ((1.0f - std::exp(-2.0f * h)) / (-2.0f * h) + 1.0f);
    return combine({{sigma_t / sigma_s1 * std::exp(-h), sample}, {c, d0}, {c1, d1},
                    {sigma_t * std::sqrt(1.0f - std::exp(-2.0f * h)), noise}});
  }

  // Deliberate twin of DPMSolverMultistepScheduler's third_order_update: singlestep expands
  // around s2 (d0 = m2) and, for solver_type midpoint, uses d1_1 only.
  at::Tensor third_order_update(int i, const at::Tensor& sample, const at::Tensor& noise) const {
    const auto [alpha_t, sigma_t] = alpha_sigma(sigmas_.at(i + 1));
    const auto [alpha_s2, sigma_s2] = alpha_sigma(sigmas_.at(i - 2));
    const float lambda_t = lambda_at(i + 1), lambda_s0 = lambda_at(i), lambda_s1 = lambda_at(i - 1),
                lambda_s2 = lambda_at(i - 2);
    const at::Tensor& m0 = model_outputs_[solver_order_ - 1];
    const at::Tensor& m1 = model_outputs_[solver_order_ - 2];
    const at::Tensor& m2 = model_outputs_[solver_order_ - 3];
    const float h = lambda_t - lambda_s2, h_0 = lambda_s0 - lambda_s2, h_1 = lambda_s1 - lambda_s2;
    const float r0 = h_0 / h, r1 = h_1 / h;
    const at::Tensor& d0 = m2;
    const at::Tensor d1_0 = scaled(m1 - m2, 1.0f / r1);
    const at::Tensor d1_1 = scaled(m0 - m2, 1.0f / r0);
    const bool midpoint = solver_type_ == "midpoint";
    at::Tensor d1, d2;
    if (!midpoint) {
      d1 = at::div(scaled(d1_0, r0) - scaled(d1_1, r1), static_cast<double>(r0 - r1));
      d2 = at::div(scaled(d1_1 - d1_0, 2.0f), static_cast<double>(r0 - r1));
    }
    if (algorithm_ == "dpmsolver++") {
      const float c0 = -(alpha_t * (std::exp(-h) - 1.0f));
      const float c1 = alpha_t * ((std::exp(-h) - 1.0f) / h + 1.0f);
      if (midpoint) return combine({{sigma_t / sigma_s2, sample}, {c0, d0}, {c1, d1_1}});
      return combine({{sigma_t / sigma_s2, sample}, {c0, d0}, {c1, d1},
                      {-(alpha_t * ((std::exp(-h) - 1.0f + h) / (h * h) - 0.5f)), d2}});
    }
    if (algorithm_ == "dpmsolver") {
      const float c0 = -(sigma_t * (std::exp(h) - 1.0f));
      const float c1 = -(sigma_t * ((std::exp(h) - 1.0f) / h - 1.0f));
      const float as = alpha_t / alpha_sigma(sigmas_.at(i - 2)).first;
      if (midpoint) return combine({{as, sample}, {c0, d0}, {c1, d1_1}});
      return combine({{as, sample}, {c0, d0}, {c1, d1},
                      {-(sigma_t * ((std::exp(h) - 1.0f - h) / (h * h) - 0.5f)), d2}});
    }
    const float e2 = std::exp(-2.0f * h);
    const float c0 = alpha_t * (1.0f - e2);
    const float c1 = alpha_t * ((1.0f - e2) / (-2.0f * h) + 1.0f);
    const float cn = sigma_t * std::sqrt(1.0f - e2);
    if (midpoint) return combine({{sigma_t / sigma_s2 * std::exp(-h), sample}, {c0, d0}, {c1, d1_1}, {cn, noise}});
    return combine({{sigma_t / sigma_s2 * std::exp(-h), sample}, {c0, d0}, {c1, d1},
                    {alpha_t * ((1.0f - e2 + -2.0f * h) / ((-2.0f * h) * (-2.0f * h)) - 0.5f), d2}, {cn, noise}});
  }

  OptionReader reader_;
  int solver_order_ = 2;
  std::string prediction_type_, algorithm_, solver_type_, final_sigmas_type_;
  bool lower_order_final_ = false;
  SigmaKind sigma_kind_ = SigmaKind::Interpolated;
  double lambda_min_clipped_ = 0;
  std::vector<int> order_list_;
  ThresholdOptions threshold_;
  std::vector<at::Tensor> model_outputs_;
  at::Tensor saved_sample_;
};

}  // namespace

std::unique_ptr<sdk::Scheduler> make_dpmsolver_singlestep(const nlohmann::json& config) {
  return std::make_unique<DpmSolverSinglestep>(config);
}

}  // namespace sdxlhost::schedulers
