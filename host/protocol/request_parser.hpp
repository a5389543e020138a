#pragma once
/// @file request_parser.hpp
/// `data` of an inference_request -> sdk::GenerationRequest. Legacy flat fields (`model_name`,
/// top-level `guidance_scale`, `num_inference_steps`, `seed`, `strength`, `width`, `height`,
/// `batch_size`, `priority`, `timeout`) are folded into the nested shape first; then every field
/// is type- and range-checked against the config's limits. An error is an sdk::Error with
/// VALIDATION_ERROR and the field's path ("data.dimensions.width"); unknown fields are kept in
/// `request.data` for plugins and reported as warnings.

#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/config/host_config.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::host::protocol {

/// Folds legacy flat fields into the nested shape (returns a new object). A legacy field that
/// conflicts with its nested form is dropped with a warning (the nested one wins).
nlohmann::json normalize_legacy_fields(const nlohmann::json& data, std::vector<std::string>& warnings);

/// Parses and validates `data`. `request_id` is copied into the request; `default_timeout_s` is
/// used when metadata.timeout is absent. The seed is drawn at random when absent or -1.
/// `request.data` receives the normalized object with every default filled in.
/// `plugin_sections` (the enabled plugins' names): `data.<name>` is that plugin's own section,
/// passed through in `request.data` without an "unknown field" warning.
sdk::GenerationRequest parse_generation_request(const nlohmann::json& data,
                                                const std::string& request_id,
                                                const Limits& limits, double default_timeout_s,
                                                std::vector<std::string>& warnings,
                                                const std::set<std::string>& plugin_sections = {});

/// An `upscale` message: the image to enlarge and a request that carries the rest.
struct UpscaleRequest {
  /// output (format, quality, save_path, return_base64), output.upscale = data.upscale,
  /// metadata (priority, timeout, tags), request_id, and `data` = the normalized message
  /// without the image bytes (what PNG metadata embeds).
  sdk::GenerationRequest request;
  std::string image;  ///< data.image: base64 PNG/JPEG, decoded when the job runs
};

/// Parses `data` of an `upscale` message: {"image": base64 (required), "upscale": {...}
/// (required; the upscaler plugin validates its keys), "output": {...}, "metadata": {...}}.
/// Throws Error(ValidationError, field) as parse_generation_request does; unknown fields warn.
UpscaleRequest parse_upscale_request(const nlohmann::json& data, const std::string& request_id,
                                     const Limits& limits, double default_timeout_s,
                                     std::vector<std::string>& warnings);

/// The normalized wire form of a request (what dry_run returns and PNG metadata embeds).
nlohmann::json request_to_json(const sdk::GenerationRequest& request);

}  // namespace sdxlhost::host::protocol
