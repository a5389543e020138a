#pragma once
/// @file controlnet_loader.hpp
/// ControlNet weights from models_root/controlnet/NAME, through the host's model cache:
///  - a diffusers folder: `config.json` + `diffusion_pytorch_model.safetensors` (or the `.fp16`
///    variant when that is the only one);
///  - a single `NAME.safetensors` in diffusers key names: the config comes from the file's
///    `__metadata__["sdxlhost.config.controlnet"]` (a config.json text) when present, else it is
///    inferred from the shapes (nn::ControlNetConfig::infer, SDXL head size 64).
/// Thread-safety: the cache serialises loads of one name; loaded models are immutable.

#include <filesystem>
#include <memory>
#include <string>

#include "controlnet_settings.hpp"
#include "sdxlhost/nn/controlnet.hpp"
#include "sdxlhost/sdk/models.hpp"

namespace sdxlhost::controlnet {

/// The metadata key under which a single file may carry its config.json text.
inline constexpr const char* kConfigMetadataKey = "sdxlhost.config.controlnet";

/// Loads the ControlNet at `path` (folder or file) with the settings' dtype and device. Throws
/// sdk::Error(ModelLoadError) naming what is missing or wrong.
std::shared_ptr<nn::ControlNetModel> load_controlnet_file(const std::filesystem::path& path,
                                                          const ControlNetSettings& settings);

/// The ControlNet `name` from the host's model cache (kind "controlnet"), loaded on first use.
/// Errors name `field` (the request field that named the model): MODEL_NOT_FOUND when there is
/// no such model, MODEL_LOAD_ERROR when it cannot be read.
std::shared_ptr<nn::ControlNetModel> load_controlnet(sdk::ModelAccess& models, const std::string& name,
                                                     const ControlNetSettings& settings, const std::string& field);

}  // namespace sdxlhost::controlnet
