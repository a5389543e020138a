#pragma once
/// @file request_parser.hpp
/// The wire's request schema, read: `data` of an inference_request -> GenerationRequest. The
/// host parses every request with it; a broker worker or a test can parse the same way. Legacy flat fields (`model_name`,
/// top-level `guidance_scale`, `num_inference_steps`, `seed`, `strength`, `width`, `height`,
/// `batch_size`, `priority`, `timeout`) are folded into the nested shape first; then every field
/// is type- and range-checked against the config's limits. An error is an Error with
/// VALIDATION_ERROR and the field's path ("data.dimensions.width"); unknown fields are kept in
/// `request.data` for plugins and reported as warnings.

#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdxlhost/sdk/export.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::sdk {

/// The bounds a request is validated against (the host's `limits.*` configuration).
struct RequestLimits {
  int min_width = 64;  ///< image width bounds (multiple of 8)
  int max_width = 4096;
  int min_height = 64;  ///< image height bounds (multiple of 8)
  int max_height = 4096;
  int max_steps = 200;  ///< num_inference_steps in 1..max_steps
  double min_guidance = 0.0;  ///< guidance_scale range
  double max_guidance = 30.0;
  int max_batch = 8;  ///< batch.size in 1..max_batch
  double max_timeout_s = 3600.0;  ///< largest metadata.timeout accepted
};

/// Folds legacy flat fields into the nested shape (returns a new object). A legacy field that
/// conflicts with its nested form is dropped with a warning (the nested one wins).
SDXLHOST_API nlohmann::json normalize_legacy_fields(const nlohmann::json& data, std::vector<std::string>& warnings);

/// Parses and validates `data`. `request_id` is copied into the request; `default_timeout_s` is
/// used when metadata.timeout is absent. The seed is drawn at random when absent or -1.
/// `request.data` receives the normalized object with every default filled in.
/// `plugin_sections` (the enabled plugins' names and the top-level keys of the request features
/// plugins declare): `data.<name>` is a plugin's own section, passed through in `request.data`
/// without an "unknown field" warning.
SDXLHOST_API GenerationRequest parse_generation_request(const nlohmann::json& data,
                                                const std::string& request_id,
                                                const RequestLimits& limits, double default_timeout_s,
                                                std::vector<std::string>& warnings,
                                                const std::set<std::string>& plugin_sections = {});

/// A message that sends one image to be post-processed (ImageMessage): the image and a request
/// that carries the rest.
struct ImageMessageRequest {
  /// output (format, quality, save_path, return_base64), the options at the message's
  /// request_field, metadata (priority, timeout, tags), request_id, and `data` = the normalized
  /// message without the image bytes (what PNG metadata embeds).
  GenerationRequest request;
  std::string image;  ///< data.image: base64 PNG/JPEG, decoded when the job runs
};
using UpscaleRequest = ImageMessageRequest;

/// Parses `data` of an `upscale` message: {"image": base64 (required), "upscale": {...}
/// (required; the upscaler plugin validates its keys), "output": {...}, "metadata": {...}}.
/// Throws Error(ValidationError, field) as parse_generation_request does; unknown fields warn.
SDXLHOST_API ImageMessageRequest parse_upscale_request(const nlohmann::json& data, const std::string& request_id,
                                     const RequestLimits& limits, double default_timeout_s,
                                     std::vector<std::string>& warnings);

/// A message of the wire that sends one image to the stages of one feature outside a generation
/// (A1111's "Extras"). The host serves every message listed by image_messages() alike and names
/// none: parse, plan the stages of the feature that serves `request_field` (FEATURE_DISABLED
/// naming `options_field` when no enabled plugin does), run them over the decoded image, answer
/// as a generation does. Errors and warnings about request_field.X name options_field.X, the
/// field the client sent.
struct ImageMessage {
  std::string message_type;   ///< "upscale"
  std::string options_field;  ///< "data.upscale": where the client sends the options
  std::string request_field;  ///< "data.output.upscale": where the feature's stages read them
  /// Parses the message's `data` (parse_upscale_request for "upscale").
  ImageMessageRequest (*parse)(const nlohmann::json& data, const std::string& request_id, const RequestLimits& limits,
                               double default_timeout_s, std::vector<std::string>& warnings) = nullptr;
};

/// The image messages of the wire: `upscale` (options data.upscale, served by the feature of
/// data.output.upscale).
SDXLHOST_API const std::vector<ImageMessage>& image_messages();

/// The normalized wire form of a request (what dry_run returns and PNG metadata embeds).
SDXLHOST_API nlohmann::json request_to_json(const GenerationRequest& request);

}  // namespace sdxlhost::sdk
