#pragma once
/// @file image_decode.hpp
/// Images that arrive in requests (img2img sources, control images): base64 text (optionally a
/// `data:image/...;base64,` URL) holding a PNG or a JPEG, decoded to 8-bit RGB. The bytes are
/// untrusted input: every failure is an sdk::Error(ValidationError) naming the request field,
/// never a crash. Thread-safety: pure functions.

#include <string>
#include <string_view>

#include "sdxlhost/sdk/export.hpp"
#include "sdxlhost/sdk/image.hpp"

namespace sdxlhost::nn {

/// Longest side accepted by decode_image_rgb (bounds the allocation an untrusted header asks for).
inline constexpr int kMaxDecodedImageSide = 16384;

/// Decodes base64 text: standard or URL-safe alphabet, '=' padding and whitespace ignored, an
/// optional `data:...;base64,` prefix dropped. Throws sdk::Error(ValidationError, `field`) for
/// other characters or empty input.
SDXLHOST_API std::string decode_base64(std::string_view text, const std::string& field);

/// Encodes bytes as standard base64 with '=' padding (what decode_base64 reads back; for
/// clients, tools and tests that build requests).
SDXLHOST_API std::string encode_base64(std::string_view bytes);

/// Decodes PNG or JPEG bytes (told apart by their signature) to 8-bit RGB (channels = 3; gray is
/// expanded, alpha dropped). Throws sdk::Error(ValidationError, `field`) for other formats,
/// corrupt or truncated data, and sides outside 1..kMaxDecodedImageSide.
SDXLHOST_API sdk::Image decode_image_rgb(std::string_view bytes, const std::string& field);

/// decode_image_rgb(decode_base64(text)): the usual path for a request's image field.
SDXLHOST_API sdk::Image decode_base64_image(std::string_view text, const std::string& field);

}  // namespace sdxlhost::nn
