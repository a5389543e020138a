#include "scheduler_common.hpp"

#include <ATen/ATen.h>

#include <cmath>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::schedulers {

TrainSchedule read_train_schedule(OptionReader& reader, const BetaDefaults& defaults) {
  reader.integer("num_train_timesteps", 1000, 2, 100000);
  reader.number("beta_start", defaults.beta_start, 1e-12, 0.999);
  reader.number("beta_end", defaults.beta_end, 1e-12, 0.999);
  reader.choice("beta_schedule", defaults.beta_schedule, defaults.allowed_schedules);
  reader.trained_betas();  // like diffusers, num_train_timesteps still drives the spacing
  if (defaults.has_rescale_zero_snr) reader.flag("rescale_betas_zero_snr", false);
  return make_train_schedule(reader.effective(), defaults.floor_terminal_alpha);
}

std::string read_spacing(OptionReader& reader, const std::string& fallback) {
  reader.integer("steps_offset", 0, 0, 1000);
  return reader.choice("timestep_spacing", fallback, {"linspace", "leading", "trailing"});
}

std::vector<double> sigma_family_timesteps(const std::string& spacing, int steps_offset,
                                           int num_train_timesteps, int n) {
  std::vector<double> out;
  if (spacing == "linspace") {
    for (double v : numpy_linspace(0, num_train_timesteps - 1, n)) out.push_back(static_cast<float>(v));
    std::reverse(out.begin(), out.end());
  } else if (spacing == "leading") {
    const int step_ratio = num_train_timesteps / n;
    for (int i = n - 1; i >= 0; --i)
      out.push_back(static_cast<float>(static_cast<float>(i * step_ratio) + static_cast<float>(steps_offset)));
  } else {  // trailing
    const double step_ratio = static_cast<double>(num_train_timesteps) / n;
    for (double v : numpy_arange_down(num_train_timesteps, 0, -step_ratio))
      out.push_back(static_cast<float>(numpy_round(v)) - 1.0f);
  }
  return out;
}

SigmaSchedule interpolated_sigma_schedule(const TrainSchedule& train, const std::string& spacing,
                                          int steps_offset, int n) {
  SigmaSchedule schedule;
  schedule.timesteps = sigma_family_timesteps(spacing, steps_offset, train.num_train_timesteps, n);
  const std::vector<double> table = sigma_table_f64(train);
  for (double t : schedule.timesteps) schedule.sigmas.push_back(interp_on_index(t, table));
  return schedule;
}

void use_sigma_ramp(SigmaSchedule& schedule, const TrainSchedule& train, SigmaKind kind, double sigma_min,
                    double sigma_max, int n) {
  schedule.sigmas = convert_sigmas(kind, sigma_min, sigma_max, n);
  schedule.timesteps.clear();
  for (double s : schedule.sigmas) schedule.timesteps.push_back(sigma_to_t(s, train.log_sigmas));
}

void round_to_float32(std::vector<double>& values) {
  for (double& v : values) v = static_cast<float>(v);
}

std::vector<float> float32_sigmas(const std::vector<double>& sigmas, float final_sigma) {
  std::vector<float> rounded;
  rounded.reserve(sigmas.size() + 1);
  for (double s : sigmas) rounded.push_back(static_cast<float>(s));
  rounded.push_back(final_sigma);
  return rounded;
}

ThresholdOptions read_threshold_options(OptionReader& reader) {
  ThresholdOptions options;
  options.enabled = reader.flag("thresholding", false);
  options.ratio = reader.number("dynamic_thresholding_ratio", 0.995, 0.0, 1.0);
  options.max_value = reader.number("sample_max_value", 1.0, 0.0, 1e9);
  return options;
}

at::Tensor dynamic_threshold(const at::Tensor& x0, const ThresholdOptions& options) {
  const at::ScalarType dtype = x0.scalar_type();
  at::Tensor x = (dtype == at::kFloat || dtype == at::kDouble) ? x0 : x0.to(at::kFloat);
  const auto shape = x.sizes().vec();
  x = x.reshape({shape.at(0), -1});
  at::Tensor s = at::quantile(x.abs(), options.ratio, 1);
  s = at::clamp(s, 1.0, options.max_value).unsqueeze(1);
  x = at::div(at::clamp(x, -s, s), s);
  return x.reshape(shape).to(dtype);
}

SigmaKind read_sigma_kind(OptionReader& reader) {
  const bool karras = reader.flag("use_karras_sigmas", false);
  const bool exponential = reader.flag("use_exponential_sigmas", false);
  const bool beta = reader.flag("use_beta_sigmas", false);
  if (karras + exponential + beta > 1)
    reader.fail(beta ? "use_beta_sigmas" : "use_exponential_sigmas",
                "only one of use_karras_sigmas, use_exponential_sigmas, use_beta_sigmas can be true");
  return karras ? SigmaKind::Karras : exponential ? SigmaKind::Exponential : beta ? SigmaKind::Beta
                                                                                : SigmaKind::Interpolated;
}

std::vector<double> convert_sigmas(SigmaKind kind, double sigma_min, double sigma_max, int n) {
  if (kind == SigmaKind::Karras) return karras_sigmas(sigma_min, sigma_max, n);
  if (kind == SigmaKind::Exponential) return exponential_sigmas(sigma_min, sigma_max, n);
  return beta_sigmas(sigma_min, sigma_max, n);
}

at::Tensor scaled(const at::Tensor& t, float c) { return at::mul(t, static_cast<double>(c)); }

at::Tensor combine(std::initializer_list<std::pair<float, at::Tensor>> terms) {
  at::Tensor sum;
  for (const auto& [c, t] : terms) {
    if (!t.defined()) continue;
    const at::Tensor term = scaled(t, c);
    sum = sum.defined() ? sum + term : term;
  }
  return sum;
}

at::Tensor draw_noise(sdk::NoiseSource& noise, const at::Tensor& like, at::ScalarType dtype) {
  at::Tensor drawn = noise.randn(like.sizes());
  if (!drawn.defined() || drawn.sizes() != like.sizes())
    throw sdk::Error(sdk::ErrorCode::InternalError, "noise source returned a tensor of the wrong shape");
  return drawn.to(like.device(), dtype);
}

// ---- SchedulerBase ------------------------------------------------------------------------

SchedulerBase::SchedulerBase(std::string class_name, nlohmann::json config, TrainSchedule train,
                             bool last_index_when_missing)
    : class_name_(std::move(class_name)),
      config_(std::move(config)),
      train_(std::move(train)),
      last_index_when_missing_(last_index_when_missing) {}

at::Tensor SchedulerBase::timesteps() const {
  at::Tensor out = at::empty({static_cast<int64_t>(timesteps_.size())}, at::TensorOptions().dtype(timestep_dtype_));
  for (size_t i = 0; i < timesteps_.size(); ++i) {
    if (timestep_dtype_ == at::kLong) out.data_ptr<int64_t>()[i] = static_cast<int64_t>(timesteps_[i]);
    else if (timestep_dtype_ == at::kDouble) out.data_ptr<double>()[i] = timesteps_[i];
    else out.data_ptr<float>()[i] = static_cast<float>(timesteps_[i]);
  }
  return out;
}

at::Tensor SchedulerBase::sigmas() const {
  at::Tensor out = at::empty({static_cast<int64_t>(sigmas_.size())}, at::TensorOptions().dtype(at::kFloat));
  std::copy(sigmas_.begin(), sigmas_.end(), out.data_ptr<float>());
  return out;
}

void SchedulerBase::set_begin_index(int begin_index) {
  if (begin_index < 0 || begin_index >= static_cast<int>(timesteps_.size()))
    throw sdk::Error(sdk::ErrorCode::ValidationError,
                     class_name_ + ": begin index " + std::to_string(begin_index) +
                         " is outside the schedule of " + std::to_string(timesteps_.size()) + " timesteps");
  begin_index_ = begin_index;
}

void SchedulerBase::store_schedule(std::vector<double> timesteps, at::ScalarType timestep_dtype,
                                   std::vector<float> sigmas) {
  timesteps_ = std::move(timesteps);
  timestep_dtype_ = timestep_dtype;
  sigmas_ = std::move(sigmas);
  step_index_ = -1;
  begin_index_ = -1;
}

void SchedulerBase::require_timesteps() const {
  if (timesteps_.empty())
    throw sdk::Error(sdk::ErrorCode::InternalError, class_name_ + ": set_timesteps() must run before stepping");
}

void SchedulerBase::check_step_count(int n) const {
  if (n < 1 || n > 10000)
    throw sdk::Error(sdk::ErrorCode::ValidationError,
                     class_name_ + ": num_inference_steps must be between 1 and 10000 (got " + std::to_string(n) + ")",
                     "data.hyperparameters.num_inference_steps");
}

int SchedulerBase::index_for_timestep(double t) const {
  std::vector<int> matches;
  for (size_t i = 0; i < timesteps_.size(); ++i)
    if (timesteps_[i] == t) matches.push_back(static_cast<int>(i));
  if (matches.empty()) {
    if (last_index_when_missing_) return static_cast<int>(timesteps_.size()) - 1;
    throw sdk::Error(sdk::ErrorCode::InternalError,
                     class_name_ + ": timestep " + std::to_string(t) + " is not in the schedule");
  }
  return matches.size() > 1 ? matches[1] : matches[0];
}

int SchedulerBase::step_index_for(const at::Tensor& timestep) {
  require_timesteps();
  if (step_index_ < 0) {
    step_index_ = begin_index_ >= 0 ? begin_index_ : index_for_timestep(timestep.item<double>());
  }
  return step_index_;
}

std::vector<int> SchedulerBase::noise_indices(const at::Tensor& timesteps) const {
  require_timesteps();
  const at::Tensor flat = timesteps.reshape({-1}).to(at::kDouble).cpu();
  std::vector<int> indices;
  for (int64_t i = 0; i < flat.numel(); ++i) {
    if (begin_index_ < 0) indices.push_back(index_for_timestep(flat.data_ptr<double>()[i]));
    else indices.push_back(step_index_ >= 0 ? step_index_ : begin_index_);
  }
  return indices;
}

at::Tensor SchedulerBase::per_batch(const std::vector<float>& values, const at::Tensor& like) {
  at::Tensor t = at::empty({static_cast<int64_t>(values.size())}, at::TensorOptions().dtype(at::kFloat));
  std::copy(values.begin(), values.end(), t.data_ptr<float>());
  t = t.to(like.device(), like.scalar_type());
  while (t.dim() < like.dim()) t = t.unsqueeze(-1);
  return t;
}

// ---- SigmaFamilyScheduler -----------------------------------------------------------------

double SigmaFamilyScheduler::init_noise_sigma() const {
  float max_sigma = 0.0f;
  for (float s : sigmas_) max_sigma = std::max(max_sigma, s);
  if (spacing_ == "linspace" || spacing_ == "trailing") return max_sigma;
  return std::sqrt(max_sigma * max_sigma + 1.0f);
}

at::Tensor SigmaFamilyScheduler::scale_model_input(const at::Tensor& sample, const at::Tensor& timestep) {
  const float sigma = input_sigma(step_index_for(timestep));
  return at::div(sample, static_cast<double>(std::sqrt(sigma * sigma + 1.0f)));
}

at::Tensor SigmaFamilyScheduler::add_noise(const at::Tensor& original, const at::Tensor& noise,
                                           const at::Tensor& timesteps) {
  std::vector<float> sigma;
  for (int index : noise_indices(timesteps)) sigma.push_back(sigmas_.at(index));
  return original + noise * per_batch(sigma, original);
}

at::Tensor SigmaFamilyScheduler::predict_original(const at::Tensor& model_output, const at::Tensor& sample,
                                                  float sigma) const {
  if (prediction_type_ == "epsilon") return sample - scaled(model_output, sigma);
  if (prediction_type_ == "v_prediction") {
    const float c = sigma * sigma + 1.0f;
    return scaled(model_output, -sigma / std::sqrt(c)) + at::div(sample, static_cast<double>(c));
  }
  return model_output;  // "sample"
}

// ---- AlphaSigmaFamilyScheduler ------------------------------------------------------------

void SigmaFamilyScheduler::read_spacing_options(OptionReader& reader) {
  spacing_ = read_spacing(reader, "linspace");
  steps_offset_ = reader.effective().at("steps_offset").get<int>();
}

SigmaSchedule SigmaFamilyScheduler::interpolated_schedule(int n) const {
  return interpolated_sigma_schedule(train_, spacing_, steps_offset_, n);
}

SigmaSchedule SigmaFamilyScheduler::ramped_schedule(int n) const {
  SigmaSchedule schedule = interpolated_schedule(n);
  if (sigma_kind_ != SigmaKind::Interpolated) {
    use_sigma_ramp(schedule, train_, sigma_kind_, schedule.sigmas.back(), schedule.sigmas.front(), n);
    round_to_float32(schedule.timesteps);
  }
  return schedule;
}

at::Tensor AlphaSigmaFamilyScheduler::scale_model_input(const at::Tensor& sample, const at::Tensor&) {
  return sample;
}

std::pair<float, float> AlphaSigmaFamilyScheduler::alpha_sigma(float sigma) {
  const float alpha = 1.0f / std::sqrt(sigma * sigma + 1.0f);
  return {alpha, sigma * alpha};
}

float AlphaSigmaFamilyScheduler::lambda_at(int index) const {
  const auto [alpha, sigma] = alpha_sigma(sigmas_.at(index));
  return std::log(alpha) - std::log(sigma);
}

at::Tensor AlphaSigmaFamilyScheduler::add_noise(const at::Tensor& original, const at::Tensor& noise,
                                                const at::Tensor& timesteps) {
  std::vector<float> alphas, sigmas;
  for (int index : noise_indices(timesteps)) {
    const auto [alpha, sigma] = alpha_sigma(sigmas_.at(index));
    alphas.push_back(alpha);
    sigmas.push_back(sigma);
  }
  return per_batch(alphas, original) * original + per_batch(sigmas, original) * noise;
}

float AlphaSigmaFamilyScheduler::final_sigma(const std::string& final_sigmas_type) const {
  return final_sigmas_type == "sigma_min" ? train_.sigmas.front() : 0.0f;
}

void AlphaSigmaFamilyScheduler::store_with_final_sigma(const std::vector<double>& timesteps,
                                                       const std::vector<double>& sigmas, double sigma_last) {
  std::vector<float> rounded;
  for (double s : sigmas) rounded.push_back(static_cast<float>(s));
  rounded.push_back(static_cast<float>(sigma_last));
  std::vector<double> ints;
  for (double t : timesteps) ints.push_back(static_cast<double>(static_cast<int64_t>(t)));
  store_schedule(std::move(ints), at::kLong, std::move(rounded));
  num_inference_steps_ = static_cast<int>(timesteps_.size());
}

std::vector<double> AlphaSigmaFamilyScheduler::dpm_timesteps(const std::string& spacing, int steps_offset,
                                                             int num_train_timesteps, int last_timestep,
                                                             int n) {
  std::vector<double> out;
  if (spacing == "linspace") {
    const std::vector<double> points = numpy_linspace(0, last_timestep - 1, n + 1);
    for (int i = n; i >= 1; --i) out.push_back(numpy_round(points[i]));
  } else if (spacing == "leading") {
    const int step_ratio = last_timestep / (n + 1);
    for (int i = n; i >= 1; --i) out.push_back(static_cast<double>(i * step_ratio + steps_offset));
  } else {  // trailing
    const double step_ratio = static_cast<double>(num_train_timesteps) / n;
    for (double v : numpy_arange_down(last_timestep, 0, -step_ratio))
      out.push_back(static_cast<double>(static_cast<int64_t>(numpy_round(v)) - 1));
  }
  return out;
}

std::vector<double> AlphaSigmaFamilyScheduler::dpm_sigmas(std::vector<double>& timesteps, SigmaKind kind, int n,
                                                          bool round_karras) const {
  const std::vector<double> table = sigma_table_f64(train_);
  std::vector<double> sigmas;
  if (kind != SigmaKind::Interpolated) {
    sigmas = convert_sigmas(kind, table.front(), table.back(), n);
    timesteps.clear();
    for (double s : sigmas) {
      const double t = sigma_to_t(s, train_.log_sigmas);
      timesteps.push_back(kind == SigmaKind::Karras && round_karras ? numpy_round(t) : std::trunc(t));
    }
  } else {
    for (double t : timesteps) sigmas.push_back(interp_on_index(t, table));
  }
  return sigmas;
}

}  // namespace sdxlhost::schedulers
