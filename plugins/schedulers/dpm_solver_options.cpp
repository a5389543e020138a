#include "dpm_solver_options.hpp"

#include <ATen/ATen.h>

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

}  // namespace sdxlhost::schedulers
