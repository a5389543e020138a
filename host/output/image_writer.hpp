#pragma once
/// @file image_writer.hpp
/// Turns the "images" slot into the response's generated_images: PNG (libpng, with tEXt
/// `parameters` = A1111 infotext and `sdxl_host` = the normalized request), JPEG (libjpeg) and
/// WebP (libwebp) with quality, base64, and sandboxed saving under output_root (never
/// overwriting: a numeric suffix is added; atomic: a temporary file, fsync, then link/rename to
/// a name that does not exist yet, so no partial file ever carries a final name).

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdxlhost/sdk/image.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::host {

/// The `output_root` configuration.
struct OutputSettings {
  std::filesystem::path output_root;
  /// False for images that were not generated (an image message): no seed/steps/model in
  /// their metadata and infotext, only what the post-processing stages recorded.
  bool generation = true;
};

/// Encodes and saves `images` as `request.output` asks. Returns one generated_images entry per
/// image: {image_path (absolute, when saved), image_data (base64, when return_base64 or no
/// save_path), format, width, height, metadata}. Throws Error(ValidationError or OutputError)
/// naming `data.output.save_path` when the path escapes output_root, Error(OutputError) on I/O.
nlohmann::json write_images(const std::vector<sdk::Image>& images,
                            const sdk::GenerationRequest& request, const OutputSettings& settings);

/// Removes temporary image files (`.sdxl-host-tmp-<pid>-...`) that a process which no longer
/// runs left anywhere under `output_root` (killed while writing). Returns how many. Called at
/// start; symlinks are not followed.
std::size_t remove_stale_temporaries(const std::filesystem::path& output_root);

/// Encodes one image: format "png" (text chunks from `png_text`: tEXt when the text is ASCII,
/// iTXt (UTF-8) otherwise), "jpeg"/"jpg" (`quality`
/// 1..100, `parameters` as a comment) or "webp" (`quality`). Throws Error(ValidationError,
/// "data.output.format") for another format, Error(OutputError) for an invalid image.
std::vector<std::uint8_t> encode_image(const sdk::Image& image, const std::string& format,
                                       int quality,
                                       const std::map<std::string, std::string>& png_text);

/// Standard base64 (RFC 4648, with padding).
std::string base64_encode(const std::vector<std::uint8_t>& bytes);

/// A1111 infotext: prompt, "Negative prompt: ...", then "Steps: N, Sampler: X, CFG scale: G,
/// Seed: S, Size: WxH, Model: M" (seed from image.metadata["seed"] when present), then the
/// entries the stages recorded (sdk::recorded_infotext). With `generation` false "Size: WxH"
/// and the recorded entries only.
std::string a1111_parameters(const sdk::GenerationRequest& request, const sdk::Image& image,
                             bool generation = true);

}  // namespace sdxlhost::host
