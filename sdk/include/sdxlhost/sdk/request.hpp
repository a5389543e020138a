#pragma once
/// @file request.hpp
/// The normalized generation request every stage reads. The host's protocol layer builds it from
/// the wire's `data` object (legacy flat fields already folded in, every field validated), so a
/// stage never re-validates what is here. Names follow the wire and diffusers.
/// Thread-safety: immutable once a job starts; shared read-only by the stages of one job.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sdxlhost::sdk {

/// `data.models`: names resolved under models_root (see ModelAccess).
struct ModelSelection {
  std::string base;     ///< models_root/checkpoints/NAME (.safetensors file or diffusers folder)
  std::string refiner;  ///< models_root/checkpoints/NAME; empty: no refiner
  std::string vae;      ///< models_root/vae/NAME; empty: the checkpoint's own VAE
};

/// `data.hyperparameters`: diffusers' argument names.
struct Hyperparameters {
  int num_inference_steps = 30;
  double guidance_scale = 7.5;
  std::int64_t seed = 0;          ///< always set after normalization (random if not given)
  double strength = 0.8;          ///< img2img only, in (0, 1]
  double guidance_rescale = 0.0;  ///< diffusers' guidance_rescale (phi), 0 = off
  int clip_skip = 0;              ///< 0 = SDXL default (penultimate layer); n = n more layers skipped
  std::optional<double> denoising_end;          ///< fraction in (0,1): hand latents to a refiner
  std::optional<std::vector<int>> original_size;           ///< (height, width); default = target
  std::vector<int> crops_coords_top_left = {0, 0};         ///< (top, left)
  std::optional<std::vector<int>> target_size;             ///< (height, width); default = image size
  double aesthetic_score = 6.0;           ///< refiner conditioning
  double negative_aesthetic_score = 2.5;  ///< refiner conditioning
};

/// One LoRA in `data.lora.models`.
struct LoraSelection {
  std::string name;     ///< models_root/loras/NAME
  double weight = 1.0;  ///< multiplier of the LoRA delta
  /// Which expert it patches: "base" (default), "refiner" (only the refiner of an ensemble of
  /// experts) or "both".
  std::string apply_to = "base";
};

/// `data.output`.
struct OutputOptions {
  std::string format = "png";  ///< png | jpeg | webp
  int quality = 95;            ///< 1..100, jpeg and webp
  std::string save_path;       ///< relative to output_root; empty: not saved
  bool return_base64 = false;  ///< also (or only, when no save_path) return image_data
  nlohmann::json upscale;      ///< upscaler options, or null
};

/// `data.metadata`.
struct RequestMetadata {
  std::string priority = "normal";  ///< high | normal | low
  double timeout_s = 300.0;         ///< covers queue wait and run
  std::vector<std::string> tags;
};

/// The whole normalized request (the wire's `data`).
struct GenerationRequest {
  std::string request_id;

  std::string prompt;
  std::string prompt_2;  ///< second text encoder's prompt; empty: same as prompt
  std::string negative_prompt;
  std::string negative_prompt_2;
  bool long_prompt = false;  ///< encode > 75 tokens in chunks of 75 (A1111/ComfyUI style)

  ModelSelection models;
  Hyperparameters hyperparameters;
  int width = 1024;
  int height = 1024;
  /// True when the client sent data.dimensions (or the legacy top-level width/height):
  /// image-to-image then resizes the init image to width x height. Without them it runs at the
  /// init image's own size (rounded down to the VAE's factor), as diffusers' img2img does.
  bool dimensions_given = false;

  std::string scheduler = "EulerDiscreteScheduler";  ///< class name or accepted alias
  nlohmann::json scheduler_options = nlohmann::json::object();  ///< overrides of its config

  bool lora_enabled = false;
  std::vector<LoraSelection> loras;

  nlohmann::json controlnet;  ///< controlnet options (the controlnet plugin parses it), or null
  std::string init_image;     ///< img2img source: base64 PNG/JPEG or a path under input root; empty: txt2img

  OutputOptions output;
  int batch_size = 1;
  RequestMetadata metadata;
  bool dry_run = false;

  /// The normalized `data` object as JSON, for plugin-specific fields not modelled above.
  nlohmann::json data = nlohmann::json::object();

  /// True when the request is image-to-image.
  bool is_img2img() const { return !init_image.empty(); }
};

}  // namespace sdxlhost::sdk
