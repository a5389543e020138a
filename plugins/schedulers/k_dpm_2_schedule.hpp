#pragma once
/// @file k_dpm_2_schedule.hpp
/// Schedule pieces KDPM2DiscreteScheduler and KDPM2AncestralDiscreteScheduler share.

#include <string>
#include <vector>

#include "schedule_tables.hpp"
#include "scheduler_common.hpp"

namespace sdxlhost::schedulers {

/// The n timesteps and n+1 sigmas (last 0) both KDPM2 variants start from; `float64_timesteps`
/// tells whether diffusers holds the timesteps as float64 (karras: rounded numpy values).
struct KDpm2Base {
  std::vector<double> timesteps;
  std::vector<float> sigmas;
  bool float64_timesteps = false;
};

/// Spacing, interpolation and (optionally) a sigma ramp (karras: rounded timesteps).
KDpm2Base k_dpm_2_base(const TrainSchedule& train, const std::string& spacing, int steps_offset, SigmaKind kind,
                       int n);

/// What KDPM2DiscreteScheduler and KDPM2AncestralDiscreteScheduler share before their steps:
/// the same options with the same defaults (diffusers' two __init__ signatures) and the base
/// schedule they interleave.
class KDpm2FamilyScheduler : public SigmaFamilyScheduler {
 public:
  int order() const override { return 2; }

 protected:
  /// Reads both variants' options from `input` into this scheduler (config_ included).
  KDpm2FamilyScheduler(const std::string& class_name, const nlohmann::json& input);
  /// k_dpm_2_base over this scheduler's options.
  KDpm2Base base_schedule(int n) const;
};

/// exp(lerp(log a, log b, 0.5)) in float32 as torch computes it (weight 0.5 takes torch's
/// `end - (end - start) * 0.5` branch).
float log_midpoint(float a, float b);

/// [x0, x1, x1, x2, x2, ..., xn, xn, xn]: diffusers' interleaving of per-sigma values.
std::vector<float> interleave_pairs(const std::vector<float>& values);

/// Rounds a timestep to the dtype diffusers holds it in.
double timestep_value(double t, bool float64);

}  // namespace sdxlhost::schedulers
