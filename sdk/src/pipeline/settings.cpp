// Reading a pipeline plugin's settings (see settings.hpp).
#include "sdxlhost/pipeline/settings.hpp"

#include <limits>

#include <ATen/ATen.h>

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/field_reader.hpp"

namespace sdxlhost::pipeline {
namespace {

using sdk::Error;
using sdk::ErrorCode;

[[noreturn]] void bad_setting(const std::string& plugin, const std::string& key, const std::string& message) {
  throw Error(ErrorCode::ValidationError, message, "plugins.config." + plugin + (key.empty() ? "" : "." + key));
}

/// VAE tiles are cut on latent pixels: tile and overlap must be multiples of the VAE's downscale
/// factor. 8 (the SDXL VAE's, the largest in this family) divides by every smaller factor, so a
/// setting that passes here tiles any VAE the plugin loads.
constexpr int kTileMultiple = 8;

/// Checks the tiling settings at initialization, so a bad pair fails the plugin with the reason
/// instead of every request that tiles.
void check_tiling_settings(const PipelineSettings& s, const std::string& plugin) {
  if (s.vae_tile_size <= 0) return;  // tiling off
  if (s.vae_tile_size % kTileMultiple != 0) {
    bad_setting(plugin, "vae_tile_size", "vae_tile_size must be a multiple of " + std::to_string(kTileMultiple) +
                                     " (the VAE's downscale factor), got " + std::to_string(s.vae_tile_size));
  }
  if (s.vae_tile_overlap % kTileMultiple != 0) {
    bad_setting(plugin, "vae_tile_overlap", "vae_tile_overlap must be a multiple of " +
                                        std::to_string(kTileMultiple) + " (the VAE's downscale factor), got " +
                                        std::to_string(s.vae_tile_overlap));
  }
  if (s.vae_tile_overlap * 2 > s.vae_tile_size) {
    bad_setting(plugin, "vae_tile_overlap", "vae_tile_overlap must be at most half of vae_tile_size");
  }
}

}  // namespace

at::ScalarType PipelineSettings::scalar_type() const {
  if (dtype == "bf16") return at::kBFloat16;
  if (dtype == "fp16") return at::kHalf;
  return at::kFloat;
}

at::Device PipelineSettings::torch_device() const { return at::Device(device); }

std::optional<nn::VaeTiling> PipelineSettings::tiling_for(std::int64_t height, std::int64_t width) const {
  if (vae_tile_size <= 0 || (height <= vae_tile_size && width <= vae_tile_size)) return std::nullopt;
  return nn::VaeTiling{vae_tile_size, vae_tile_overlap};
}

PipelineSettings PipelineSettings::from_json(const nlohmann::json& config, const std::string& plugin) {
  PipelineSettings s;
  if (config.is_null()) return s;
  sdk::FieldReader reader(config, "plugins.config." + plugin);
  reader.read_string("device", s.device);
  reader.read_string("dtype", s.dtype);
  reader.read_string("tokenizer_dir", s.tokenizer_dir);
  constexpr int kMaxInt = std::numeric_limits<int>::max();
  reader.read_int("vae_tile_size", s.vae_tile_size, 0, kMaxInt);
  reader.read_int("vae_tile_overlap", s.vae_tile_overlap, 0, kMaxInt);
  reader.read_int("patched_sets", s.patched_sets, 0, kMaxInt);
  reader.read_bool("channels_last", s.channels_last);
  check_tiling_settings(s, plugin);
  if (s.dtype != "fp32" && s.dtype != "bf16" && s.dtype != "fp16") {
    bad_setting(plugin, "dtype", "dtype must be fp32, bf16 or fp16");
  }
  try {
    const at::Device device(s.device);
    if (!device.is_cpu() && !device.is_cuda()) bad_setting(plugin, "device", "device must be cpu or cuda:N");
  } catch (const c10::Error&) {
    bad_setting(plugin, "device", "device must be cpu or cuda:N, not '" + s.device + "'");
  }
  if (s.channels_last && s.device == "cpu") {
    // It only costs there (oneDNN reorders), and libtorch 1.13's CPU bf16 kernels lose precision
    // in that order (tests/device): a GPU setting.
    bad_setting(plugin, "channels_last", "channels_last is for CUDA devices; on the CPU it is slower (and less exact in bf16)");
  }
  if (s.dtype == "fp16" && s.device == "cpu") {
    bad_setting(plugin, "dtype", "fp16 is not implemented on the CPU by this libtorch; use fp32 or bf16");
  }
  return s;
}

}  // namespace sdxlhost::pipeline
