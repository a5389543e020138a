#pragma once
/// @file dpm_solver_options.hpp
/// Options DPMSolverMultistepScheduler, DPMSolverSinglestepScheduler and UniPCMultistepScheduler
/// share (diffusers names and defaults), their common model-output conversion, and the pieces
/// both DPM-Solver classes compute identically (lambda clipping, the first-order update).

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "scheduler_options.hpp"

namespace sdxlhost::schedulers {

/// Reads the flow/dynamic-shift keys sdxl-host keeps at their defaults.
void read_dpm_fixed_options(OptionReader& reader);

/// diffusers' convert_model_output for the data-prediction ("++") solvers: x0 from the model
/// output given alpha_t / sigma_t.
at::Tensor data_prediction(const std::string& prediction_type, const at::Tensor& model_output,
                           const at::Tensor& sample, float alpha_t, float sigma_t);

/// The noise-prediction counterpart (dpmsolver / sde-dpmsolver, UniPC with predict_x0 false).
at::Tensor noise_prediction(const std::string& prediction_type, const at::Tensor& model_output,
                            const at::Tensor& sample, float alpha_t, float sigma_t);

/// torch.searchsorted(flip(lambda_t), lambda_min_clipped): how many training entries have a
/// log-SNR lambda (float32, as diffusers computes it) below `lambda_min_clipped`.
int count_clipped_lambdas(const std::vector<float>& alphas_cumprod, double lambda_min_clipped);

/// One (alpha_t, sigma_t) pair of the alpha/sigma family.
struct AlphaSigma {
  float alpha;
  float sigma;
};

/// diffusers' `dpm_solver_first_order_update` (the same in the multistep and singlestep classes):
/// from `s` to `t` with h = lambda_t - lambda_s, model output `m` (x0 for the "++" algorithms,
/// epsilon otherwise) and, for the SDE algorithms, `noise`; float32 coefficients in torch's order.
at::Tensor dpm_first_order_update(const std::string& algorithm, AlphaSigma t, AlphaSigma s, float h,
                                  const at::Tensor& m, const at::Tensor& sample, const at::Tensor& noise);

}  // namespace sdxlhost::schedulers
