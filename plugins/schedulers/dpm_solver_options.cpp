#include "dpm_solver_options.hpp"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

#include "scheduler_common.hpp"

namespace sdxlhost::schedulers {

void read_dpm_fixed_options(OptionReader& r) {
  r.unsupported_flag("use_flow_sigmas");
  r.number("flow_shift", 1.0, 0.0, 1e9);
  r.unsupported_flag("use_dynamic_shifting");
  r.choice("time_shift_type", "exponential", {"exponential"});
}

at::Tensor data_prediction(const std::string& prediction_type, const at::Tensor& model_output,
                           const at::Tensor& sample, float alpha_t, float sigma_t) {
  if (prediction_type == "epsilon")
    return at::div(sample - scaled(model_output, sigma_t), static_cast<double>(alpha_t));
  if (prediction_type == "v_prediction") return scaled(sample, alpha_t) - scaled(model_output, sigma_t);
  return model_output;  // "sample"
}

at::Tensor noise_prediction(const std::string& prediction_type, const at::Tensor& model_output,
                            const at::Tensor& sample, float alpha_t, float sigma_t) {
  if (prediction_type == "epsilon") return model_output;
  if (prediction_type == "v_prediction") return scaled(model_output, alpha_t) + scaled(sample, sigma_t);
  return at::div(sample - scaled(model_output, alpha_t), static_cast<double>(sigma_t));  // "sample"
}

int count_clipped_lambdas(const std::vector<float>& alphas_cumprod, double lambda_min_clipped) {
  int count = 0;
  for (float acp : alphas_cumprod) {
    const float lambda = std::log(std::sqrt(acp)) - std::log(std::sqrt(1.0f - acp));
    if (static_cast<double>(lambda) < lambda_min_clipped) ++count;
  }
  return count;
}

at::Tensor dpm_first_order_update(const std::string& algorithm, AlphaSigma t, AlphaSigma s, float h,
                                  const at::Tensor& m, const at::Tensor& sample, const at::Tensor& noise) {
  if (algorithm == "dpmsolver++")
    return combine({{t.sigma / s.sigma, sample}, {-(t.alpha * (std::exp(-h) - 1.0f)), m}});
  if (algorithm == "dpmsolver")
    return combine({{t.alpha / s.alpha, sample}, {-(t.sigma * (std::exp(h) - 1.0f)), m}});
  if (algorithm == "sde-dpmsolver++")
    return combine({{t.sigma / s.sigma * std::exp(-h), sample},
                    {t.alpha * (1.0f - std::exp(-2.0f * h)), m},
                    {t.sigma * std::sqrt(1.0f - std::exp(-2.0f * h)), noise}});
  return combine({{t.alpha / s.alpha, sample},  // sde-dpmsolver
                  {-(2.0f * (t.sigma * (std::exp(h) - 1.0f))), m},
                  {t.sigma * std::sqrt(std::exp(2.0f * h) - 1.0f), noise}});
}

}  // namespace sdxlhost::schedulers
