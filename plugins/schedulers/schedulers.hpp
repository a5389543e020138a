#pragma once
/// @file schedulers.hpp
/// Factories of the ten diffusers schedulers (one per source file, named after the class).
/// Each takes the merged config, validates the keys its class knows and ignores the rest.

#include <memory>

#include <nlohmann/json.hpp>

#include "sdxlhost/sdk/scheduler.hpp"

namespace sdxlhost::schedulers {

/// EulerDiscreteScheduler.
std::unique_ptr<sdk::Scheduler> make_euler_discrete(const nlohmann::json& config);
/// EulerAncestralDiscreteScheduler.
std::unique_ptr<sdk::Scheduler> make_euler_ancestral_discrete(const nlohmann::json& config);
/// HeunDiscreteScheduler.
std::unique_ptr<sdk::Scheduler> make_heun_discrete(const nlohmann::json& config);
/// KDPM2DiscreteScheduler.
std::unique_ptr<sdk::Scheduler> make_k_dpm_2_discrete(const nlohmann::json& config);
/// KDPM2AncestralDiscreteScheduler.
std::unique_ptr<sdk::Scheduler> make_k_dpm_2_ancestral_discrete(const nlohmann::json& config);
/// LMSDiscreteScheduler.
std::unique_ptr<sdk::Scheduler> make_lms_discrete(const nlohmann::json& config);
/// DDIMScheduler.
std::unique_ptr<sdk::Scheduler> make_ddim(const nlohmann::json& config);
/// DPMSolverMultistepScheduler.
std::unique_ptr<sdk::Scheduler> make_dpmsolver_multistep(const nlohmann::json& config);
/// DPMSolverSinglestepScheduler.
std::unique_ptr<sdk::Scheduler> make_dpmsolver_singlestep(const nlohmann::json& config);
/// UniPCMultistepScheduler.
std::unique_ptr<sdk::Scheduler> make_unipc_multistep(const nlohmann::json& config);

}  // namespace sdxlhost::schedulers
