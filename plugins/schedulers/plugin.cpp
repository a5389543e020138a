// The schedulers plugin: registers the ten diffusers schedulers under their class names and the
// A1111/ComfyUI sampler names that correspond to them (docs/schedulers.md has the table).
#include <string>
#include <utility>
#include <vector>

#include "schedulers.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/plugin.hpp"
#include "sdxlhost/sdk/registries.hpp"

namespace sdxlhost::schedulers {
namespace {

using Factory = std::unique_ptr<sdk::Scheduler> (*)(const nlohmann::json&);

const std::vector<std::pair<std::string, Factory>>& scheduler_classes() {
  static const std::vector<std::pair<std::string, Factory>> classes = {
      {"DPMSolverMultistepScheduler", make_dpmsolver_multistep},
      {"DDIMScheduler", make_ddim},
      {"EulerDiscreteScheduler", make_euler_discrete},
      {"EulerAncestralDiscreteScheduler", make_euler_ancestral_discrete},
      {"DPMSolverSinglestepScheduler", make_dpmsolver_singlestep},
      {"KDPM2DiscreteScheduler", make_k_dpm_2_discrete},
      {"KDPM2AncestralDiscreteScheduler", make_k_dpm_2_ancestral_discrete},
      {"HeunDiscreteScheduler", make_heun_discrete},
      {"LMSDiscreteScheduler", make_lms_discrete},
      {"UniPCMultistepScheduler", make_unipc_multistep},
  };
  return classes;
}

struct AliasEntry {
  const char* alias;
  const char* class_name;
  nlohmann::json overrides;
};

/// A1111 names (as diffusers' docs map them) and ComfyUI sampler names. Only exact
/// correspondences: no "DPM++ SDE" (DPMSolverSDEScheduler, not provided), no "DPM++ 2S a".
std::vector<AliasEntry> alias_table() {
  const nlohmann::json karras = {{"use_karras_sigmas", true}};
  const nlohmann::json sde = {{"algorithm_type", "sde-dpmsolver++"}};
  const nlohmann::json sde_karras = {{"algorithm_type", "sde-dpmsolver++"}, {"use_karras_sigmas", true}};
  const nlohmann::json none = nlohmann::json::object();
  return {
      {"DPM++ 2M", "DPMSolverMultistepScheduler", none},
      {"DPM++ 2M Karras", "DPMSolverMultistepScheduler", karras},
      {"DPM++ 2M SDE", "DPMSolverMultistepScheduler", sde},
      {"DPM++ 2M SDE Karras", "DPMSolverMultistepScheduler", sde_karras},
      {"DPM2", "KDPM2DiscreteScheduler", none},
      {"DPM2 Karras", "KDPM2DiscreteScheduler", karras},
      {"DPM2 a", "KDPM2AncestralDiscreteScheduler", none},
      {"DPM2 a Karras", "KDPM2AncestralDiscreteScheduler", karras},
      {"Euler", "EulerDiscreteScheduler", none},
      {"Euler a", "EulerAncestralDiscreteScheduler", none},
      {"Heun", "HeunDiscreteScheduler", none},
      {"LMS", "LMSDiscreteScheduler", none},
      {"LMS Karras", "LMSDiscreteScheduler", karras},
      {"DDIM", "DDIMScheduler", none},
      {"UniPC", "UniPCMultistepScheduler", none},
      {"euler", "EulerDiscreteScheduler", none},
      {"euler_ancestral", "EulerAncestralDiscreteScheduler", none},
      {"heun", "HeunDiscreteScheduler", none},
      {"dpm_2", "KDPM2DiscreteScheduler", none},
      {"dpm_2_ancestral", "KDPM2AncestralDiscreteScheduler", none},
      {"lms", "LMSDiscreteScheduler", none},
      {"dpmpp_2m", "DPMSolverMultistepScheduler", none},
      {"dpmpp_2m_sde", "DPMSolverMultistepScheduler", sde},
      {"ddim", "DDIMScheduler", none},
      {"uni_pc", "UniPCMultistepScheduler", none},
  };
}

/// Runs a factory, turning stray JSON type errors into ValidationError.
std::unique_ptr<sdk::Scheduler> create_checked(Factory factory, const std::string& name, const nlohmann::json& config) {
  try {
    return factory(config);
  } catch (const nlohmann::json::exception& e) {
    throw sdk::Error(sdk::ErrorCode::ValidationError, name + ": invalid scheduler config: " + e.what(),
                     "data.scheduler_options");
  }
}

class SchedulersPlugin final : public sdk::Plugin {
 public:
  sdk::PluginInfo info() const override {
    sdk::PluginInfo info;
    info.name = "schedulers";
    info.version = "1.0.0";
    info.description = "The ten diffusers 0.36.0 schedulers (exact float32 schedules) and A1111/ComfyUI aliases";
    for (const auto& [name, factory] : scheduler_classes()) info.provides.push_back(name);
    for (const auto& entry : alias_table()) info.provides.push_back(entry.alias);
    return info;
  }

  void initialize(const nlohmann::json&, sdk::Registries& registries) override {
    for (const auto& [name, factory] : scheduler_classes()) {
      const Factory f = factory;
      const std::string class_name = name;
      registries.add_scheduler(name, [f, class_name](const nlohmann::json& config) {
        return create_checked(f, class_name, config);
      });
    }
    for (const auto& entry : alias_table())
      registries.add_scheduler_alias(entry.alias, sdk::SchedulerAlias{entry.class_name, entry.overrides});
  }
};

}  // namespace
}  // namespace sdxlhost::schedulers

SDXLHOST_PLUGIN(sdxlhost::schedulers::SchedulersPlugin)
