#pragma once
/// @file scheduler_defaults.hpp
/// The scheduler config a model brings: its `scheduler/scheduler_config.json` when it has one,
/// else SDXL base 1.0's (stabilityai/stable-diffusion-xl-base-1.0). Pass the result as
/// `base_config` to Registries::create_scheduler; the request's scheduler_options go on top.
/// Header-only: plugins need no extra library for it.

#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::nn {

/// SDXL base 1.0's scheduler_config.json (what diffusers uses when a checkpoint has none).
inline nlohmann::json sdxl_scheduler_config() {
  return nlohmann::json{{"_class_name", "EulerDiscreteScheduler"},
                        {"num_train_timesteps", 1000},
                        {"beta_start", 0.00085},
                        {"beta_end", 0.012},
                        {"beta_schedule", "scaled_linear"},
                        {"steps_offset", 1},
                        {"timestep_spacing", "leading"},
                        {"prediction_type", "epsilon"},
                        {"clip_sample", false},
                        {"set_alpha_to_one", false},
                        {"sample_max_value", 1.0},
                        {"skip_prk_steps", true},
                        {"trained_betas", nullptr},
                        {"use_karras_sigmas", false},
                        {"interpolation_type", "linear"}};
}

/// `<model_dir>/scheduler/scheduler_config.json` if the model folder has one, else
/// sdxl_scheduler_config(). Throws Error(ModelLoadError) when the file exists but is not a
/// JSON object.
inline nlohmann::json model_scheduler_config(const std::filesystem::path& model_dir) {
  const std::filesystem::path file = model_dir / "scheduler" / "scheduler_config.json";
  std::error_code ec;
  if (model_dir.empty() || !std::filesystem::is_regular_file(file, ec)) return sdxl_scheduler_config();
  std::ifstream in(file);
  nlohmann::json config = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!config.is_object())
    throw sdk::Error(sdk::ErrorCode::ModelLoadError, "'" + file.string() + "' is not a JSON object");
  return config;
}

}  // namespace sdxlhost::nn
