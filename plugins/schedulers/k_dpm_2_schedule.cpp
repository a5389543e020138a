#include "k_dpm_2_schedule.hpp"

#include <cmath>

namespace sdxlhost::schedulers {

KDpm2Base k_dpm_2_base(const TrainSchedule& train, const std::string& spacing, int steps_offset, SigmaKind kind,
                       int n) {
  KDpm2Base base;
  base.timesteps = sigma_family_timesteps(spacing, steps_offset, train.num_train_timesteps, n);
  const std::vector<double> table = sigma_table_f64(train);
  std::vector<double> sigmas;
  for (double t : base.timesteps) sigmas.push_back(interp_on_index(t, table));
  if (kind != SigmaKind::Interpolated) {
    sigmas = convert_sigmas(kind, sigmas.back(), sigmas.front(), n);
    base.timesteps.clear();
    for (double s : sigmas) {
      const double t = sigma_to_t(s, train.log_sigmas);
      base.timesteps.push_back(kind == SigmaKind::Karras ? numpy_round(t) : t);
    }
    base.float64_timesteps = true;
  }
  for (double s : sigmas) base.sigmas.push_back(static_cast<float>(s));
  base.sigmas.push_back(0.0f);
  return base;
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
