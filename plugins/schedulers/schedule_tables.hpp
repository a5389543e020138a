#pragma once
/// @file schedule_tables.hpp
/// The training noise schedule and the timestep/sigma arithmetic every diffusers scheduler
/// shares, computed the way diffusers 0.36.0 computes it: `betas` and `alphas_cumprod` in
/// float32 (as torch holds them), the sigma table in float32, then numpy float64 for
/// interpolation / Karras ramps, rounded to float32 at the end by the caller.

#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

namespace sdxlhost::schedulers {

/// Everything derived from `num_train_timesteps` and the beta options.
struct TrainSchedule {
  int num_train_timesteps = 1000;
  std::vector<float> betas;           ///< float32, as torch holds them
  std::vector<float> alphas_cumprod;  ///< float32 cumprod (accumulated in double like torch CPU)
  std::vector<float> sigmas;          ///< float32 sqrt((1 - acp) / acp), ascending with t
  std::vector<float> log_sigmas;      ///< float32 log of `sigmas` (numpy's float32 log_sigmas)
};

/// torch.linspace(start, end, steps, dtype=float32) on the CPU (AVX2 kernel of libtorch 1.13).
std::vector<float> torch_linspace_f32(double start, double end, int steps);

/// numpy.linspace(start, stop, num) in float64 (endpoint included).
std::vector<double> numpy_linspace(double start, double stop, int num);

/// numpy.arange(start, stop, step) in float64 for a negative step (diffusers' "trailing").
std::vector<double> numpy_arange_down(double start, double stop, double step);

/// numpy 1.x's float32 `np.log` (its SIMD kernel, up to ~4 ulp from the exact log).
float numpy_logf(float x);

/// Round half to even, as numpy.round.
double numpy_round(double value);

/// Builds the schedule from a validated effective config (`beta_schedule`, `beta_start`,
/// `beta_end`, `num_train_timesteps`, `trained_betas`, `rescale_betas_zero_snr` if present).
/// With zero-SNR rescaling, `floor_terminal_alpha` sets the last alphas_cumprod to 2^-24 (all
/// classes but DDIM do, so that the last sigma stays finite).
TrainSchedule make_train_schedule(const nlohmann::json& config, bool floor_terminal_alpha = true);

/// numpy.interp(x, arange(len(fp)), fp) for one point.
double interp_on_index(double x, const std::vector<double>& fp);

/// diffusers' `_convert_to_karras`: rho-7 ramp from sigma_max down to sigma_min, float64.
std::vector<double> karras_sigmas(double sigma_min, double sigma_max, int num_inference_steps);

/// diffusers' `_convert_to_exponential`: log-linear from sigma_max down to sigma_min, float64.
std::vector<double> exponential_sigmas(double sigma_min, double sigma_max, int num_inference_steps);

/// diffusers' `_convert_to_beta` (alpha = beta = 0.6): sigma_min + ppf * (sigma_max - sigma_min)
/// with ppf = scipy.stats.beta.ppf(1 - linspace(0, 1, n), 0.6, 0.6), float64.
std::vector<double> beta_sigmas(double sigma_min, double sigma_max, int num_inference_steps);

/// The regularized incomplete beta function I_x(a, b) (scipy.special.betainc).
double regularized_incomplete_beta(double x, double a, double b);

/// diffusers' `_sigma_to_t` on a numpy float64 sigma: fractional timestep by log-sigma
/// interpolation. numpy 1.x keeps the float32 table's precision for the weight (value-based
/// casting), then combines the indices in float64.
double sigma_to_t(double sigma, const std::vector<float>& log_sigmas);

/// The same on a float32 torch sigma (KDPM2's interpolated sigmas): all in float32.
float sigma_to_t_f32(float sigma, const std::vector<float>& log_sigmas);

/// The float32 sigma table as float64 (numpy's `np.array(((1 - acp) / acp) ** 0.5)`).
std::vector<double> sigma_table_f64(const TrainSchedule& schedule);

}  // namespace sdxlhost::schedulers
