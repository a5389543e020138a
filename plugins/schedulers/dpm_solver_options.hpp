#pragma once
/// @file dpm_solver_options.hpp
/// Options DPMSolverMultistepScheduler, DPMSolverSinglestepScheduler and UniPCMultistepScheduler
/// share (diffusers names and defaults), and their common model-output conversion.

#include <ATen/core/Tensor.h>

#include <string>

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

}  // namespace sdxlhost::schedulers
