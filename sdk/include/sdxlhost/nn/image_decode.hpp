#pragma once
/// @file image_decode.hpp
/// Images that arrive in requests (img2img sources, control images): base64 text (optionally a
/// `data:image/...;base64,` URL) holding a PNG or a JPEG, decoded to 8-bit RGB. The bytes are
/// untrusted input: every failure is an sdk::Error(ValidationError) naming the request field,
/// never a crash. Thread-safety: pure functions.

#include <cstdint>
#include <string>
#include <string_view>

#include "sdxlhost/sdk/export.hpp"
#include "sdxlhost/sdk/image.hpp"

namespace sdxlhost::nn {

/// Longest side accepted by decode_image_rgb (bounds the allocation an untrusted header asks for).
inline constexpr int kMaxDecodedImageSide = 16384;

/// Default of max_image_pixels(): PIL's decompression-bomb guard (`Image.MAX_IMAGE_PIXELS`,
/// 1024 * 1024 * 1024 // 4 // 3 = 89478485 pixels, about 256 MiB of RGB).
inline constexpr std::uint64_t kDefaultMaxImagePixels = 89478485;

/// Most pixels (width x height) a request image may have; checked from the header, before any
/// pixel is decoded or allocated. Process-wide (the host sets it from `limits.max_image_pixels`
/// at start and on reload); thread-safe.
SDXLHOST_API std::uint64_t max_image_pixels() noexcept;

/// Sets max_image_pixels() (0 restores the default).
SDXLHOST_API void set_max_image_pixels(std::uint64_t pixels) noexcept;

/// Decodes base64 text: standard or URL-safe alphabet, '=' padding and whitespace ignored, an
/// optional `data:...;base64,` prefix dropped. Throws sdk::Error(ValidationError, `field`) for
/// other characters or empty input.
SDXLHOST_API std::string decode_base64(std::string_view text, const std::string& field);

/// Encodes bytes as standard base64 with '=' padding (what decode_base64 reads back; for
/// clients, tools and tests that build requests).
SDXLHOST_API std::string encode_base64(std::string_view bytes);

/// Decodes PNG or JPEG bytes (told apart by their signature) to 8-bit RGB (channels = 3; gray is
/// expanded, alpha dropped). Throws sdk::Error(ValidationError, `field`) for other formats,
/// corrupt or truncated data, sides outside 1..kMaxDecodedImageSide and more than
/// max_image_pixels() pixels (both read from the header, before decoding).
SDXLHOST_API sdk::Image decode_image_rgb(std::string_view bytes, const std::string& field);

/// Width and height of an image, read from its header only.
struct ImageSize {
  int width = 0;
  int height = 0;
};

/// The size a PNG or JPEG announces in its header, without decoding any pixel. Throws
/// sdk::Error(ValidationError, `field`) as decode_image_rgb does for what it cannot read, and for
/// sizes over kMaxDecodedImageSide or max_image_pixels().
SDXLHOST_API ImageSize read_image_size(std::string_view bytes, const std::string& field);

/// decode_image_rgb(decode_base64(text)): the usual path for a request's image field.
SDXLHOST_API sdk::Image decode_base64_image(std::string_view text, const std::string& field);

}  // namespace sdxlhost::nn
