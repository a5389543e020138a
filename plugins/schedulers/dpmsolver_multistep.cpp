// DPMSolverMultistepScheduler (diffusers 0.36.0): DPM-Solver++ (2M), its SDE variant and the
// original DPM-Solver, orders 1-3, reusing past model outputs (one model call per step).
#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "dpm_solver_options.hpp"
#include "scheduler_common.hpp"
#include "schedulers.hpp"

namespace sdxlhost::schedulers {
namespace {

class DpmSolverMultistep final : public AlphaSigmaFamilyScheduler {
 public:
  explicit DpmSolverMultistep(const nlohmann::json& input)
      : AlphaSigmaFamilyScheduler("DPMSolverMultistepScheduler", {}, {}, true) {
    OptionReader r(input, class_name_);
    train_ = read_train_schedule(r, BetaDefaults{});
    solver_order_ = r.integer("solver_order", 2, 1, 3);
    prediction_type_ = r.choice("prediction_type", "epsilon", {"epsilon", "sample", "v_prediction"});
    algorithm_ = r.choice("algorithm_type", "dpmsolver++", {"dpmsolver", "dpmsolver++", "sde-dpmsolver", "sde-dpmsolver++", "deis"});
    if (algorithm_ == "deis") r.set("algorithm_type", algorithm_ = "dpmsolver++");
    solver_type_ = r.choice("solver_type", "midpoint", {"midpoint", "heun", "logrho", "bh1", "bh2"});
    if (solver_type_ != "midpoint" && solver_type_ != "heun") r.set("solver_type", solver_type_ = "midpoint");
    lower_order_final_ = r.flag("lower_order_final", true);
    euler_at_final_ = r.flag("euler_at_final", false);
    sigma_kind_ = read_sigma_kind(r);
    read_dpm_fixed_options(r);
    threshold_ = read_threshold_options(r);
    lu_lambdas_ = r.flag("use_lu_lambdas", false);  // diffusers' order: karras, then lu, then the others
    final_sigmas_type_ = r.choice("final_sigmas_type", "zero", {"zero", "sigma_min"});
    lambda_min_clipped_ = r.number("lambda_min_clipped", -std::numeric_limits<double>::infinity(),
                                   -std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity());
    r.fixed("variance_type", nullptr);
    spacing_ = read_spacing(r, "linspace");
    steps_offset_ = r.effective().at("steps_offset").get<int>();
    if (algorithm_ != "dpmsolver++" && algorithm_ != "sde-dpmsolver++" && final_sigmas_type_ == "zero")
      r.fail("final_sigmas_type", "final_sigmas_type 'zero' is not supported for algorithm_type '" + algorithm_ +
                                      "'; choose 'sigma_min'");
    if (algorithm_ == "sde-dpmsolver" && solver_order_ == 3)
      r.fail("solver_order", "solver_order 3 is not available for algorithm_type 'sde-dpmsolver'; allowed: 1, 2");
    config_ = r.effective();
  }

  int order() const override { return 1; }

  void set_timesteps(int n) override {
    check_step_count(n);
    const int clipped = count_clipped_lambdas(train_.alphas_cumprod, lambda_min_clipped_);
    const int last_timestep = train_.num_train_timesteps - clipped;
    std::vector<double> timesteps = dpm_timesteps(spacing_, steps_offset_, train_.num_train_timesteps, last_timestep, n);
    const bool round_timesteps = config_.at("beta_schedule") != "squaredcos_cap_v2";
    const std::vector<double> sigmas = lu_lambdas_ && sigma_kind_ != SigmaKind::Karras
                                           ? lu_sigmas(timesteps, n, round_timesteps)
                                           : dpm_sigmas(timesteps, sigma_kind_, n, round_timesteps);
    store_with_final_sigma(timesteps, sigmas, final_sigma(final_sigmas_type_));
    model_outputs_.assign(solver_order_, at::Tensor());
    lower_order_nums_ = 0;
  }

  at::Tensor step(const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample_in,
                  sdk::NoiseSource& noise) override {
    const int i = step_index_for(timestep);
    const int n = static_cast<int>(timesteps_.size());
    const bool final_first_order =
        i == n - 1 && (euler_at_final_ || (lower_order_final_ && n < 15) || final_sigmas_type_ == "zero");
    const bool final_second_order = i == n - 2 && lower_order_final_ && n < 15;
    const auto [alpha, sigma] = alpha_sigma(sigmas_.at(i));
    const at::Tensor converted = convert_model_output(model_output, sample_in, alpha, sigma);
    for (int k = 0; k + 1 < solver_order_; ++k) model_outputs_[k] = model_outputs_[k + 1];
    model_outputs_.back() = converted;
    const at::Tensor sample = sample_in.to(at::kFloat);
    at::Tensor drawn;
    if (stochastic()) drawn = draw_noise(noise, converted, at::kFloat);
    at::Tensor prev;
    if (solver_order_ == 1 || lower_order_nums_ < 1 || final_first_order) {
      prev = first_order_update(i, converted, sample, drawn);
    } else if (solver_order_ == 2 || lower_order_nums_ < 2 || final_second_order) {
      prev = second_order_update(i, sample, drawn);
    } else {
      prev = third_order_update(i, sample, drawn);
    }
    if (lower_order_nums_ < solver_order_) ++lower_order_nums_;
    step_index_ = i + 1;
    return prev.to(model_output.scalar_type());
  }

 private:
  /// diffusers' convert_model_output: x0 (dpmsolver++) or epsilon, thresholded if asked.
  at::Tensor convert_model_output(const at::Tensor& model_output, const at::Tensor& sample, float alpha,
                                  float sigma) const {
    if (data_like()) {
      const at::Tensor x0 = data_prediction(prediction_type_, model_output, sample, alpha, sigma);
      return threshold_.enabled ? dynamic_threshold(x0, threshold_) : x0;
    }
    const at::Tensor eps = noise_prediction(prediction_type_, model_output, sample, alpha, sigma);
    if (!threshold_.enabled) return eps;
    const at::Tensor x0 = dynamic_threshold(at::div(sample - scaled(eps, sigma), static_cast<double>(alpha)), threshold_);
    return at::div(sample - scaled(x0, alpha), static_cast<double>(sigma));
  }

  bool data_like() const { return algorithm_ == "dpmsolver++" || algorithm_ == "sde-dpmsolver++"; }
  bool stochastic() const { return algorithm_ == "sde-dpmsolver" || algorithm_ == "sde-dpmsolver++"; }

  /// use_lu_lambdas (Lu et al.'s uniform log-SNR steps): log sigma linear between the table's
  /// ends, timesteps by _sigma_to_t rounded (diffusers' `_convert_to_lu`).
  std::vector<double> lu_sigmas(std::vector<double>& timesteps, int n, bool round_timesteps) const {
    const double lambda_max = train_.log_sigmas.back(), lambda_min = train_.log_sigmas.front();
    std::vector<double> sigmas;
    timesteps.clear();
    for (double ramp : numpy_linspace(0.0, 1.0, n)) {
      sigmas.push_back(std::exp(lambda_max + ramp * (lambda_min - lambda_max)));
      const double t = sigma_to_t(sigmas.back(), train_.log_sigmas);
      timesteps.push_back(round_timesteps ? numpy_round(t) : std::trunc(t));
    }
    return sigmas;
  }

  at::Tensor first_order_update(int i, const at::Tensor& m, const at::Tensor& sample, const at::Tensor& noise) const {
    const auto [alpha_t, sigma_t] = alpha_sigma(sigmas_.at(i + 1));
    const auto [alpha_s, sigma_s] = alpha_sigma(sigmas_.at(i));
    return dpm_first_order_update(algorithm_, {alpha_t, sigma_t}, {alpha_s, sigma_s}, lambda_at(i + 1) - lambda_at(i), m,
                                  sample, noise);
  }

  // Deliberate twin of DPMSolverSinglestepScheduler's second_order_update (dpmsolver_singlestep.cpp),
  // kept apart as in diffusers because the two differ: multistep expands around
  // the latest point s0 (d0 = m0, sample scaled from s0) and has the sde-dpmsolver branch;
  // singlestep expands around s1 (d0 = m1) from the sample of its order-1 step.
  at::Tensor second_order_update(int i, const at::Tensor& sample, const at::Tensor& noise) const {
    const auto [alpha_t, sigma_t] = alpha_sigma(sigmas_.at(i + 1));
    const auto [alpha_s0, sigma_s0] = alpha_sigma(sigmas_.at(i));
    const float lambda_t = lambda_at(i + 1), lambda_s0 = lambda_at(i), lambda_s1 = lambda_at(i - 1);
    const at::Tensor& m0 = model_outputs_[solver_order_ - 1];
    const at::Tensor& m1 = model_outputs_[solver_order_ - 2];
    const float h = lambda_t - lambda_s0, h_0 = lambda_s0 - lambda_s1;
    const float r0 = h_0 / h;
    const at::Tensor& d0 = m0;
    const at::Tensor d1 = scaled(m0 - m1, 1.0f / r0);
    const bool midpoint = solver_type_ == "midpoint";
    if (algorithm_ == "dpmsolver++") {
      const float c = alpha_t * (std::exp(-h) - 1.0f);
      const float c1 = midpoint ? -(0.5f * c) : alpha_t * ((std::exp(-h) - 1.0f) / h + 1.0f);
      return combine({{sigma_t / sigma_s0, sample}, {-c, d0}, {c1, d1}});
    }
    if (algorithm_ == "dpmsolver") {
      const float c = sigma_t * (std::exp(h) - 1.0f);
      const float c1 = midpoint ? -(0.5f * c) : -(sigma_t * ((std::exp(h) - 1.0f) / h - 1.0f));
      return combine({{alpha_t / alpha_s0, sample}, {-c, d0}, {c1, d1}});
    }
    if (algorithm_ == "sde-dpmsolver++") {
      const float c = alpha_t * (1.0f - std::exp(-2.0f * h));
      const float c1 = midpoint ? 0.5f * c : alpha_t * ((1.0f - std::exp(-2.0f * h)) / (-2.0f * h) + 1.0f);
      return combine({{sigma_t / sigma_s0 * std::exp(-h), sample}, {c, d0}, {c1, d1},
                      {sigma_t * std::sqrt(1.0f - std::exp(-2.0f * h)), noise}});
    }
    const float c0 = 2.0f * (sigma_t * (std::exp(h) - 1.0f));
    const float c1 = midpoint ? sigma_t * (std::exp(h) - 1.0f) : 2.0f * (sigma_t * ((std::exp(h) - 1.0f) / h - 1.0f));
    return combine({{alpha_t / alpha_s0, sample}, {-c0, d0}, {-c1, d1},
                    {sigma_t * std::sqrt(std::exp(2.0f * h) - 1.0f), noise}});
  }

  // Deliberate twin of DPMSolverSinglestepScheduler's third_order_update: multistep uses the
  // three latest outputs around s0; singlestep expands around s2 with its own midpoint variant.
  at::Tensor third_order_update(int i, const at::Tensor& sample, const at::Tensor& noise) const {
    const auto [alpha_t, sigma_t] = alpha_sigma(sigmas_.at(i + 1));
    const auto [alpha_s0, sigma_s0] = alpha_sigma(sigmas_.at(i));
    const float lambda_t = lambda_at(i + 1), lambda_s0 = lambda_at(i), lambda_s1 = lambda_at(i - 1),
                lambda_s2 = lambda_at(i - 2);
    const at::Tensor& m0 = model_outputs_[solver_order_ - 1];
    const at::Tensor& m1 = model_outputs_[solver_order_ - 2];
    const at::Tensor& m2 = model_outputs_[solver_order_ - 3];
    const float h = lambda_t - lambda_s0, h_0 = lambda_s0 - lambda_s1, h_1 = lambda_s1 - lambda_s2;
    const float r0 = h_0 / h, r1 = h_1 / h;
    const at::Tensor d1_0 = scaled(m0 - m1, 1.0f / r0);
    const at::Tensor d1_1 = scaled(m1 - m2, 1.0f / r1);
    const at::Tensor d1 = d1_0 + scaled(d1_0 - d1_1, r0 / (r0 + r1));
    const at::Tensor d2 = scaled(d1_0 - d1_1, 1.0f / (r0 + r1));
    if (algorithm_ == "dpmsolver++")
      return combine({{sigma_t / sigma_s0, sample},
                      {-(alpha_t * (std::exp(-h) - 1.0f)), m0},
                      {alpha_t * ((std::exp(-h) - 1.0f) / h + 1.0f), d1},
                      {-(alpha_t * ((std::exp(-h) - 1.0f + h) / (h * h) - 0.5f)), d2}});
    if (algorithm_ == "dpmsolver")
      return combine({{alpha_t / alpha_s0, sample},
                      {-(sigma_t * (std::exp(h) - 1.0f)), m0},
                      {-(sigma_t * ((std::exp(h) - 1.0f) / h - 1.0f)), d1},
                      {-(sigma_t * ((std::exp(h) - 1.0f - h) / (h * h) - 0.5f)), d2}});
    const float e2 = std::exp(-2.0f * h);
    return combine({{sigma_t / sigma_s0 * std::exp(-h), sample},
                    {alpha_t * (1.0f - e2), m0},
                    {alpha_t * ((1.0f - e2) / (-2.0f * h) + 1.0f), d1},
                    {alpha_t * ((1.0f - e2 - 2.0f * h) / ((2.0f * h) * (2.0f * h)) - 0.5f), d2},
                    {sigma_t * std::sqrt(1.0f - e2), noise}});
  }

  int solver_order_ = 2;
  std::string prediction_type_, algorithm_, solver_type_, final_sigmas_type_, spacing_;
  bool lower_order_final_ = true, euler_at_final_ = false;
  SigmaKind sigma_kind_ = SigmaKind::Interpolated;
  bool lu_lambdas_ = false;
  ThresholdOptions threshold_;
  double lambda_min_clipped_ = 0;
  int steps_offset_ = 0;
  std::vector<at::Tensor> model_outputs_;
  int lower_order_nums_ = 0;
};

}  // namespace

std::unique_ptr<sdk::Scheduler> make_dpmsolver_multistep(const nlohmann::json& config) {
  return std::make_unique<DpmSolverMultistep>(config);
}

}  // namespace sdxlhost::schedulers
