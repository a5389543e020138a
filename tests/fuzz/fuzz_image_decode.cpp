// libFuzzer target: PNG/JPEG request images (sdxlhost::nn::decode_image_rgb) and base64. Bad
// images must be an sdk::Error(ValidationError); a decoded image must be consistent. The pixel
// limit is lowered so that a header announcing a huge image is refused, as in the host.
#include <cstdint>
#include <string_view>

#include "sdxlhost/nn/image_decode.hpp"
#include "sdxlhost/sdk/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const bool limited = (sdxlhost::nn::set_max_image_pixels(4u << 20), true);
  (void)limited;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  try {
    const auto image = sdxlhost::nn::decode_image_rgb(bytes, "data.image");
    if (image.width <= 0 || image.height <= 0 || image.channels != 3 ||
        image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * 3)
      __builtin_trap();
  } catch (const sdxlhost::sdk::Error& e) {
    if (e.code() != sdxlhost::sdk::ErrorCode::ValidationError) __builtin_trap();
  }
  try {
    (void)sdxlhost::nn::decode_base64(bytes, "data.image");
  } catch (const sdxlhost::sdk::Error&) {
  }
  return 0;
}
