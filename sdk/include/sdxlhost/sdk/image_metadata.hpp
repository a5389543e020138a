#pragma once
/// @file image_metadata.hpp
/// What a stage records on an image (Image::metadata) and what the host makes of it.
///
/// Every key of `metadata` reaches the client in the image's `metadata` as it is. The host fills
/// in what no stage recorded: seed, steps, guidance_scale, scheduler, and model_info
/// (default_model_info() under the keys a stage set). The `parameters` text the host writes
/// into a PNG/JPEG/WebP (A1111's infotext) is its own "prompt / Negative prompt: ... / Steps,
/// Sampler, CFG scale, Seed, Size, Model" followed by the entries stages add here:
///   - add_infotext(): a generation parameter ("Lora hashes", "Refiner"), kept in
///     metadata.infotext {key: value} and written in key order;
///   - add_postprocess_infotext(): a post-processing entry ("Postprocess upscaler"), kept in
///     metadata.postprocess_infotext [[key, value], ...] and written last, in the order the
///     stages added them (A1111 writes post-processing last). For an image the client sent in
///     (no generation) the text is "Size: WxH" followed by these entries.
/// A feature's plugin records its own entries; the host knows none of them.
/// Thread-safety: pure functions; `metadata` belongs to the caller.
#include <string>

#include <nlohmann/json.hpp>

#include "sdxlhost/sdk/export.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::sdk {

/// Records the A1111 generation parameter `key: value` (a string is written as is, anything
/// else as JSON). A second call with the same key replaces the value.
SDXLHOST_API void add_infotext(nlohmann::json& metadata, const std::string& key, nlohmann::json value);

/// Appends the A1111 post-processing entry `key: value`, written after every generation
/// parameter in the order added.
SDXLHOST_API void add_postprocess_infotext(nlohmann::json& metadata, const std::string& key,
                                           const std::string& value);

/// The entries stages recorded, as A1111 writes them after its own: the generation parameters
/// in key order, then the post-processing entries in order, joined by ", " ("" when none).
SDXLHOST_API std::string recorded_infotext(const nlohmann::json& metadata);

/// A number as A1111 (Python) writes a float in the infotext: 15 significant digits, and ".0"
/// on whole numbers ("7.0", "0.8", "3.0").
SDXLHOST_API std::string infotext_number(double value);

/// The model_info the client gets when no stage recorded one: {base_model, refiner_model,
/// vae_model} from the request's model names, with refiner_model "" (a stage that ran a refiner
/// sets it: the client must not read a refiner as used when it was skipped).
SDXLHOST_API nlohmann::json default_model_info(const GenerationRequest& request);

}  // namespace sdxlhost::sdk
