#pragma once
/// @file scheduler_common.hpp
/// Pieces the ten schedulers share: the step-index bookkeeping of diffusers' schedulers, the
/// sigma-based family (Euler, Heun, KDPM2, LMS: `x / sqrt(sigma^2 + 1)` inputs, float32
/// timesteps) and the alpha/sigma family (DPM-Solver, UniPC: identity inputs, int64 timesteps).
/// Scalar coefficients are computed in float32 in the order torch evaluates diffusers'
/// expressions; tensors are touched only through ATen ops, so any device/dtype works.

#include <ATen/core/Tensor.h>

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "schedule_tables.hpp"
#include "scheduler_options.hpp"
#include "sdxlhost/sdk/scheduler.hpp"

namespace sdxlhost::schedulers {

/// Defaults of a class' beta options (diffusers' __init__ signature).
struct BetaDefaults {
  double beta_start = 0.0001;
  double beta_end = 0.02;
  std::string beta_schedule = "linear";
  std::vector<std::string> allowed_schedules = {"linear", "scaled_linear", "squaredcos_cap_v2"};
  bool has_rescale_zero_snr = true;
  bool floor_terminal_alpha = true;  ///< 2^-24 for the last alphas_cumprod after rescaling (not DDIM)
};

/// Reads num_train_timesteps / beta_* / trained_betas (/ rescale_betas_zero_snr) and builds
/// the float32 training schedule.
TrainSchedule read_train_schedule(OptionReader& reader, const BetaDefaults& defaults);

/// `timestep_spacing` + `steps_offset` with the class default spacing.
std::string read_spacing(OptionReader& reader, const std::string& fallback);

/// Timesteps of the sigma family (Euler, Heun, KDPM2, LMS): float32 values.
std::vector<double> sigma_family_timesteps(const std::string& spacing, int steps_offset,
                                           int num_train_timesteps, int n);

/// A sigma-family schedule before its final sigma: one timestep and one float64 sigma per step.
struct SigmaSchedule {
  std::vector<double> timesteps;
  std::vector<double> sigmas;
};

/// The start of every sigma-family set_timesteps (Euler, Euler a, Heun, KDPM2 (a), LMS): the
/// `spacing` timesteps and the training sigmas interpolated at them (np.interp on the index).
SigmaSchedule interpolated_sigma_schedule(const TrainSchedule& train, const std::string& spacing,
                                          int steps_offset, int n);

/// Which sigma ramp replaces the interpolated schedule (diffusers' use_*_sigmas flags).
enum class SigmaKind { Interpolated, Karras, Exponential, Beta };

/// Reads use_karras_sigmas / use_exponential_sigmas / use_beta_sigmas (at most one true).
SigmaKind read_sigma_kind(OptionReader& reader);

/// The ramp of `kind` (not Interpolated) from sigma_max down to sigma_min, float64.
std::vector<double> convert_sigmas(SigmaKind kind, double sigma_min, double sigma_max, int n);

/// Replaces the sigmas by the ramp of `kind` from `sigma_max` down to `sigma_min` and the
/// timesteps by diffusers' `_sigma_to_t` of each ramp sigma (float64, unrounded: each class
/// rounds them to the dtype it holds them in).
void use_sigma_ramp(SigmaSchedule& schedule, const TrainSchedule& train, SigmaKind kind, double sigma_min,
                    double sigma_max, int n);

/// Rounds each timestep to float32 (kept as double), how Euler, Heun and LMS hold them.
void round_to_float32(std::vector<double>& values);

/// The sigmas rounded to float32 with `final_sigma` appended: a sigma family's stored sigmas.
std::vector<float> float32_sigmas(const std::vector<double>& sigmas, float final_sigma);

/// diffusers' dynamic thresholding options (Imagen; meant for pixel-space models).
struct ThresholdOptions {
  bool enabled = false;
  double ratio = 0.995;      ///< dynamic_thresholding_ratio: the |x0| quantile used as the bound
  double max_value = 1.0;    ///< sample_max_value: upper clamp of that bound
};

/// Reads thresholding / dynamic_thresholding_ratio / sample_max_value.
ThresholdOptions read_threshold_options(OptionReader& reader);

/// diffusers' `_threshold_sample`: per batch item, s = clamp(quantile(|x|, ratio), 1, max_value),
/// x -> clamp(x, -s, s) / s (computed in float32 for other dtypes).
at::Tensor dynamic_threshold(const at::Tensor& x0, const ThresholdOptions& options);

/// `tensor * c` (c a float32 value; computed in the tensor's dtype).
at::Tensor scaled(const at::Tensor& t, float c);

/// `c0 * t0 + c1 * t1 + ...`, summed left to right (how torch evaluates diffusers' update
/// expressions; a subtraction is a negative coefficient, which rounds identically).
at::Tensor combine(std::initializer_list<std::pair<float, at::Tensor>> terms);

/// Draws standard-normal noise shaped like `like`, on its device and in `dtype`.
at::Tensor draw_noise(sdk::NoiseSource& noise, const at::Tensor& like, at::ScalarType dtype);

/// State and bookkeeping common to every scheduler.
class SchedulerBase : public sdk::Scheduler {
 public:
  std::string class_name() const override { return class_name_; }
  const nlohmann::json& config() const override { return config_; }
  at::Tensor timesteps() const override;
  at::Tensor sigmas() const override;
  void set_begin_index(int begin_index) override;

 protected:
  SchedulerBase(std::string class_name, nlohmann::json config, TrainSchedule train,
                bool last_index_when_missing);

  /// Stores the schedule set_timesteps computed and resets the step index.
  void store_schedule(std::vector<double> timesteps, at::ScalarType timestep_dtype,
                      std::vector<float> sigmas);
  /// diffusers' `_init_step_index` then `step_index`.
  int step_index_for(const at::Tensor& timestep);
  /// diffusers' `index_for_timestep`.
  int index_for_timestep(double t) const;
  /// Throws unless set_timesteps ran.
  void require_timesteps() const;
  /// Throws Error(ValidationError) unless 1 <= n <= 10000 (set_timesteps' argument).
  void check_step_count(int n) const;
  /// Step indices of add_noise's timesteps (begin_index, step_index or a lookup each).
  std::vector<int> noise_indices(const at::Tensor& timesteps) const;
  /// A [B, 1, 1, ...] (or scalar) tensor of per-batch values for broadcasting over `like`.
  static at::Tensor per_batch(const std::vector<float>& values, const at::Tensor& like);

  std::string class_name_;
  nlohmann::json config_;
  TrainSchedule train_;
  std::vector<double> timesteps_;
  at::ScalarType timestep_dtype_ = at::kFloat;
  std::vector<float> sigmas_;
  int num_inference_steps_ = 0;
  int step_index_ = -1;
  int begin_index_ = -1;
  bool last_index_when_missing_ = false;
};

/// Euler, Euler a, Heun, KDPM2 (a), LMS: sigma-scaled inputs, `x + noise * sigma` img2img.
class SigmaFamilyScheduler : public SchedulerBase {
 public:
  double init_noise_sigma() const override;
  at::Tensor scale_model_input(const at::Tensor& sample, const at::Tensor& timestep) override;
  at::Tensor add_noise(const at::Tensor& original, const at::Tensor& noise,
                       const at::Tensor& timesteps) override;

 protected:
  using SchedulerBase::SchedulerBase;
  /// The sigma scale_model_input divides by at `index` (KDPM2 uses interpolated sigmas).
  virtual float input_sigma(int index) const { return sigmas_.at(index); }
  /// x0 prediction from the model output at `sigma` (epsilon / v_prediction / sample).
  at::Tensor predict_original(const at::Tensor& model_output, const at::Tensor& sample,
                              float sigma) const;
  /// Reads `timestep_spacing` (default "linspace", as every sigma-family class) and `steps_offset`.
  void read_spacing_options(OptionReader& reader);
  /// interpolated_sigma_schedule over this scheduler's training schedule and spacing.
  SigmaSchedule interpolated_schedule(int n) const;
  /// interpolated_schedule, then (unless sigma_kind_ is Interpolated) the ramp of sigma_kind_
  /// between its end sigmas with float32 timesteps (Heun's and LMS's schedule).
  SigmaSchedule ramped_schedule(int n) const;
  std::string prediction_type_;
  std::string spacing_;
  int steps_offset_ = 0;
  SigmaKind sigma_kind_ = SigmaKind::Interpolated;  ///< use_karras/exponential/beta_sigmas, when read
};

/// DPM-Solver (multi/single step) and UniPC: identity inputs, alpha_t x + sigma_t noise.
class AlphaSigmaFamilyScheduler : public SchedulerBase {
 public:
  double init_noise_sigma() const override { return 1.0; }
  at::Tensor scale_model_input(const at::Tensor& sample, const at::Tensor& timestep) override;
  at::Tensor add_noise(const at::Tensor& original, const at::Tensor& noise,
                       const at::Tensor& timesteps) override;

 protected:
  using SchedulerBase::SchedulerBase;
  /// (alpha_t, sigma_t) of a sigma, float32 like diffusers' `_sigma_to_alpha_sigma_t`.
  static std::pair<float, float> alpha_sigma(float sigma);
  /// log(alpha_t) - log(sigma_t) of the schedule entry `index`.
  float lambda_at(int index) const;
  /// alpha_t of entry `index`.
  float alpha_at(int index) const { return alpha_sigma(sigmas_.at(index)).first; }
  /// sigma_t of entry `index`.
  float sigma_t_at(int index) const { return alpha_sigma(sigmas_.at(index)).second; }
  /// The last sigma for `final_sigmas_type` "zero" (0) or "sigma_min" (the table's first).
  float final_sigma(const std::string& final_sigmas_type) const;
  /// Appends `sigma_last`, rounds the sigmas to float32 and stores the int64 schedule.
  void store_with_final_sigma(const std::vector<double>& timesteps, const std::vector<double>& sigmas,
                              double sigma_last);
  /// Timesteps for `spacing` over [0, last_timestep) with `num + 1` points, the last dropped
  /// (DPM-Solver multistep / UniPC), plus `steps_offset` for "leading".
  static std::vector<double> dpm_timesteps(const std::string& spacing, int steps_offset,
                                           int num_train_timesteps, int last_timestep, int n);
  /// Sigmas for int timesteps: a ramp of `kind` over the full table (replacing `timesteps` by
  /// the ramp's: karras ones rounded when `round_karras`, others truncated like the int64
  /// cast), or interpolation.
  std::vector<double> dpm_sigmas(std::vector<double>& timesteps, SigmaKind kind, int n, bool round_karras) const;
};

}  // namespace sdxlhost::schedulers
