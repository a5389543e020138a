// UniPCMultistepScheduler (diffusers 0.36.0): UniP predictor + UniC corrector (B(h) = bh1 or
// bh2), data prediction by default, reusing past model outputs.
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

#include "dpm_solver_options.hpp"
#include "scheduler_common.hpp"
#include "schedulers.hpp"

namespace sdxlhost::schedulers {
namespace {

/// Solves the small dense system `a x = b` (Gaussian elimination with partial pivoting).
std::vector<double> solve(std::vector<std::vector<double>> a, std::vector<double> b) {
  const size_t n = b.size();
  for (size_t col = 0; col < n; ++col) {
    size_t pivot = col;
    for (size_t row = col + 1; row < n; ++row)
      if (std::abs(a[row][col]) > std::abs(a[pivot][col])) pivot = row;
    std::swap(a[col], a[pivot]);
    std::swap(b[col], b[pivot]);
    for (size_t row = col + 1; row < n; ++row) {
      const double f = a[row][col] / a[col][col];
      for (size_t k = col; k < n; ++k) a[row][k] -= f * a[col][k];
      b[row] -= f * b[col];
    }
  }
  std::vector<double> x(n);
  for (size_t row = n; row-- > 0;) {
    double sum = b[row];
    for (size_t k = row + 1; k < n; ++k) sum -= a[row][k] * x[k];
    x[row] = sum / a[row][row];
  }
  return x;
}

/// The rk ratios, R matrix rows and b vector of one UniP/UniC update.
struct BhSystem {
  std::vector<float> rks;            ///< per past output, then 1
  std::vector<std::vector<double>> r;  ///< R[k][j] = rks[j]^k
  std::vector<float> b;
  float h_phi_1 = 0, b_h = 0;
};

class UniPcMultistep final : public AlphaSigmaFamilyScheduler {
 public:
  explicit UniPcMultistep(const nlohmann::json& input)
      : AlphaSigmaFamilyScheduler("UniPCMultistepScheduler", {}, {}, true) {
    OptionReader r(input, class_name_);
    train_ = read_train_schedule(r, BetaDefaults{});
    solver_order_ = r.integer("solver_order", 2, 1, 5);
    prediction_type_ = r.choice("prediction_type", "epsilon", {"epsilon", "sample", "v_prediction"});
    predict_x0_ = r.flag("predict_x0", true);
    solver_type_ = r.choice("solver_type", "bh2", {"bh1", "bh2", "midpoint", "heun", "logrho"});
    if (solver_type_ != "bh1" && solver_type_ != "bh2") r.set("solver_type", solver_type_ = "bh2");
    lower_order_final_ = r.flag("lower_order_final", true);
    disable_corrector_ = r.integer_list("disable_corrector");
    r.fixed("solver_p", nullptr);
    sigma_kind_ = read_sigma_kind(r);
    read_dpm_fixed_options(r);
    threshold_ = read_threshold_options(r);
    spacing_ = read_spacing(r, "linspace");
    steps_offset_ = r.effective().at("steps_offset").get<int>();
    final_sigmas_type_ = r.choice("final_sigmas_type", "zero", {"zero", "sigma_min"});
    config_ = r.effective();
  }

  int order() const override { return 1; }

  void set_timesteps(int n) override {
    check_step_count(n);
    const int t = train_.num_train_timesteps;
    std::vector<double> timesteps = dpm_timesteps(spacing_, steps_offset_, t, t, n);
    const std::vector<double> sigmas = dpm_sigmas(timesteps, sigma_kind_, n, true);
    double last = final_sigma(final_sigmas_type_);
    if (sigma_kind_ != SigmaKind::Interpolated && final_sigmas_type_ == "sigma_min") last = sigmas.back();
    store_with_final_sigma(timesteps, sigmas, last);
    model_outputs_.assign(solver_order_, at::Tensor());
    lower_order_nums_ = 0;
    last_sample_ = at::Tensor();
    this_order_ = 1;
  }

  at::Tensor step(const at::Tensor& model_output, const at::Tensor& timestep, const at::Tensor& sample_in,
                  sdk::NoiseSource&) override {
    const int i = step_index_for(timestep);
    const bool use_corrector = i > 0 && last_sample_.defined() &&
                               std::find(disable_corrector_.begin(), disable_corrector_.end(), i - 1) ==
                                   disable_corrector_.end();
    const auto [alpha, sigma] = alpha_sigma(sigmas_.at(i));
    at::Tensor converted = predict_x0_ ? data_prediction(prediction_type_, model_output, sample_in, alpha, sigma)
                                       : noise_prediction(prediction_type_, model_output, sample_in, alpha, sigma);
    if (predict_x0_ && threshold_.enabled) converted = dynamic_threshold(converted, threshold_);
    at::Tensor sample = sample_in;
    if (use_corrector) sample = corrector_update(i, converted, last_sample_, this_order_);
    for (int k = 0; k + 1 < solver_order_; ++k) model_outputs_[k] = model_outputs_[k + 1];
    model_outputs_.back() = converted;
    int order = lower_order_final_ ? std::min(solver_order_, static_cast<int>(timesteps_.size()) - i) : solver_order_;
    this_order_ = std::min(order, lower_order_nums_ + 1);
    last_sample_ = sample;
    at::Tensor prev = predictor_update(i, sample, this_order_);
    if (lower_order_nums_ < solver_order_) ++lower_order_nums_;
    step_index_ = i + 1;
    return prev;
  }

 private:
  const at::Tensor& past_output(int back) const { return model_outputs_[solver_order_ - 1 - back]; }

  /// rks, R, b and B(h) for an update of `order` from lambda_s0 with step h; `past_index(k)`
  /// is the schedule index of the k-th past output (k >= 1).
  template <typename PastIndex>
  BhSystem bh_system(int order, float lambda_s0, float h, PastIndex past_index) const {
    BhSystem s;
    for (int k = 1; k < order; ++k) s.rks.push_back((lambda_at(past_index(k)) - lambda_s0) / h);
    s.rks.push_back(1.0f);
    const float hh = predict_x0_ ? -h : h;
    s.h_phi_1 = std::expm1(hh);
    float h_phi_k = s.h_phi_1 / hh - 1.0f;
    int factorial = 1;
    s.b_h = solver_type_ == "bh1" ? hh : std::expm1(hh);
    for (int k = 1; k <= order; ++k) {
      std::vector<double> row;
      for (float rk : s.rks) row.push_back(std::pow(static_cast<double>(rk), k - 1));
      s.r.push_back(row);
      s.b.push_back(h_phi_k * static_cast<float>(factorial) / s.b_h);
      factorial *= k + 1;
      h_phi_k = h_phi_k / hh - static_cast<float>(1.0 / factorial);
    }
    return s;
  }

  /// sum_k rho_k * D1s[k], or undefined when there are none.
  static at::Tensor weighted(const std::vector<float>& rhos, const std::vector<at::Tensor>& d1s) {
    at::Tensor sum;
    for (size_t k = 0; k < d1s.size(); ++k) {
      const at::Tensor term = scaled(d1s[k], rhos[k]);
      sum = sum.defined() ? sum + term : term;
    }
    return sum;
  }

  static std::vector<float> solved(const BhSystem& s, size_t size) {
    std::vector<std::vector<double>> a(size);
    std::vector<double> b(size);
    for (size_t k = 0; k < size; ++k) {
      a[k].assign(s.r[k].begin(), s.r[k].begin() + size);
      b[k] = s.b[k];
    }
    std::vector<float> out;
    for (double v : solve(a, b)) out.push_back(static_cast<float>(v));
    return out;
  }

  at::Tensor base_term(float alpha_t, float sigma_t, float alpha_s0, float sigma_s0, const BhSystem& s,
                       const at::Tensor& x, const at::Tensor& m0) const {
    if (predict_x0_) return combine({{sigma_t / sigma_s0, x}, {-(alpha_t * s.h_phi_1), m0}});
    return combine({{alpha_t / alpha_s0, x}, {-(sigma_t * s.h_phi_1), m0}});
  }

  at::Tensor predictor_update(int i, const at::Tensor& x, int order) const {
    const auto [alpha_t, sigma_t] = alpha_sigma(sigmas_.at(i + 1));
    const auto [alpha_s0, sigma_s0] = alpha_sigma(sigmas_.at(i));
    const float lambda_s0 = lambda_at(i);
    const float h = lambda_at(i + 1) - lambda_s0;
    const at::Tensor& m0 = past_output(0);
    const BhSystem s = bh_system(order, lambda_s0, h, [i](int k) { return i - k; });
    std::vector<at::Tensor> d1s;
    for (int k = 1; k < order; ++k) d1s.push_back(at::div(past_output(k) - m0, static_cast<double>(s.rks[k - 1])));
    std::vector<float> rhos;
    if (!d1s.empty()) rhos = order == 2 ? std::vector<float>{0.5f} : solved(s, order - 1);
    const at::Tensor x_t = base_term(alpha_t, sigma_t, alpha_s0, sigma_s0, s, x, m0);
    const at::Tensor residual = weighted(rhos, d1s);
    if (!residual.defined()) return x_t;
    return x_t - scaled(residual, (predict_x0_ ? alpha_t : sigma_t) * s.b_h);
  }

  at::Tensor corrector_update(int i, const at::Tensor& model_t, const at::Tensor& x, int order) const {
    const auto [alpha_t, sigma_t] = alpha_sigma(sigmas_.at(i));
    const auto [alpha_s0, sigma_s0] = alpha_sigma(sigmas_.at(i - 1));
    const float lambda_s0 = lambda_at(i - 1);
    const float h = lambda_at(i) - lambda_s0;
    const at::Tensor& m0 = past_output(0);
    const BhSystem s = bh_system(order, lambda_s0, h, [i](int k) { return i - (k + 1); });
    std::vector<at::Tensor> d1s;
    for (int k = 1; k < order; ++k) d1s.push_back(at::div(past_output(k) - m0, static_cast<double>(s.rks[k - 1])));
    const std::vector<float> rhos = order == 1 ? std::vector<float>{0.5f} : solved(s, order);
    const at::Tensor base = base_term(alpha_t, sigma_t, alpha_s0, sigma_s0, s, x, m0);
    const at::Tensor residual = weighted(rhos, d1s);
    const at::Tensor d1_t = model_t - m0;
    const at::Tensor correction = residual.defined() ? residual + scaled(d1_t, rhos.back()) : scaled(d1_t, rhos.back());
    return base - scaled(correction, (predict_x0_ ? alpha_t : sigma_t) * s.b_h);
  }

  int solver_order_ = 2;
  std::string prediction_type_, solver_type_, spacing_, final_sigmas_type_;
  bool predict_x0_ = true, lower_order_final_ = true;
  SigmaKind sigma_kind_ = SigmaKind::Interpolated;
  std::vector<int> disable_corrector_;
  ThresholdOptions threshold_;
  int steps_offset_ = 0;
  std::vector<at::Tensor> model_outputs_;
  int lower_order_nums_ = 0;
  int this_order_ = 1;
  at::Tensor last_sample_;
};

}  // namespace

std::unique_ptr<sdk::Scheduler> make_unipc_multistep(const nlohmann::json& config) {
  return std::make_unique<UniPcMultistep>(config);
}

}  // namespace sdxlhost::schedulers
