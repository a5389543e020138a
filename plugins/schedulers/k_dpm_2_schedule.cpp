#include "k_dpm_2_schedule.hpp"

#include <cmath>
#include <utility>

namespace sdxlhost::schedulers {

KDpm2Base k_dpm_2_base(const TrainSchedule& train, const std::string& spacing, int steps_offset, SigmaKind kind,
                       int n) {
  KDpm2Base base;
  SigmaSchedule schedule = interpolated_sigma_schedule(train, spacing, steps_offset, n);
  if (kind != SigmaKind::Interpolated) {
    use_sigma_ramp(schedule, train, kind, schedule.sigmas.back(), schedule.sigmas.front(), n);
    if (kind == SigmaKind::Karras)
      for (double& t : schedule.timesteps) t = numpy_round(t);
    base.float64_timesteps = true;
  }
  base.timesteps = std::move(schedule.timesteps);
  base.sigmas = float32_sigmas(schedule.sigmas, 0.0f);
  return base;
}

KDpm2FamilyScheduler::KDpm2FamilyScheduler(const std::string& class_name, const nlohmann::json& input)
    : SigmaFamilyScheduler(class_name, {}, {}, false) {
  OptionReader r(input, class_name_);
  BetaDefaults defaults;
  defaults.beta_start = 0.00085;
  defaults.beta_end = 0.012;
  defaults.has_rescale_zero_snr = false;
  train_ = read_train_schedule(r, defaults);
  sigma_kind_ = read_sigma_kind(r);
  prediction_type_ = r.choice("prediction_type", "epsilon", {"epsilon", "v_prediction"});
  read_spacing_options(r);
  config_ = r.effective();
}

KDpm2Base KDpm2FamilyScheduler::base_schedule(int n) const {
  return k_dpm_2_base(train_, spacing_, steps_offset_, sigma_kind_, n);
}

float log_midpoint(float a, float b) {
  const float start = std::log(a);
  const float end = std::log(b);
  return std::exp(end - (end - start) * 0.5f);
}

std::vector<float> interleave_pairs(const std::vector<float>& values) {
  std::vector<float> out{values.front()};
  for (size_t i = 1; i < values.size(); ++i) out.insert(out.end(), 2, values[i]);
  out.push_back(values.back());
  return out;
}

double timestep_value(double t, bool float64) { return float64 ? t : static_cast<double>(static_cast<float>(t)); }

}  // namespace sdxlhost::schedulers
