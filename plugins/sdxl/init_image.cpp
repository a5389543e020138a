// Decoding the image-to-image source (base64 PNG) and converting it for the VAE.
#include "init_image.hpp"

#include <ATen/ATen.h>
#include <png.h>

#include <cstring>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::sdxl {
namespace {

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

}  // namespace

std::string decode_base64(const std::string& text, const std::string& field) {
  std::string input = text;
  const auto comma = input.find(',');
  if (input.rfind("data:", 0) == 0 && comma != std::string::npos) input = input.substr(comma + 1);
  std::string out;
  unsigned buffer = 0;
  int bits = 0;
  for (char c : input) {
    if (c == '=' || c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    const int v = base64_value(c);
    if (v < 0) {
      throw sdk::Error(sdk::ErrorCode::ValidationError,
                       "init_image must be a base64-encoded PNG (found a non-base64 character)", field);
    }
    buffer = (buffer << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  return out;
}

sdk::Image decode_png_rgb(const std::string& bytes, const std::string& field) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&png, bytes.data(), bytes.size())) {
    throw sdk::Error(sdk::ErrorCode::ValidationError,
                     std::string("init_image is not a readable PNG: ") + png.message, field);
  }
  png.format = PNG_FORMAT_RGB;
  if (png.width == 0 || png.height == 0 || png.width > 16384 || png.height > 16384) {
    png_image_free(&png);
    throw sdk::Error(sdk::ErrorCode::ValidationError, "init_image must be 1..16384 pixels a side", field);
  }
  sdk::Image image;
  image.width = static_cast<int>(png.width);
  image.height = static_cast<int>(png.height);
  image.channels = 3;
  image.pixels.resize(PNG_IMAGE_SIZE(png));
  if (!png_image_finish_read(&png, nullptr, image.pixels.data(), 0, nullptr)) {
    const std::string message = png.message;
    png_image_free(&png);
    throw sdk::Error(sdk::ErrorCode::ValidationError, "init_image is not a readable PNG: " + message, field);
  }
  return image;
}

at::Tensor image_to_tensor(const sdk::Image& image) {
  if (image.width <= 0 || image.height <= 0 || image.channels < 1 ||
      image.pixels.size() != static_cast<std::size_t>(image.width) * image.height * image.channels) {
    throw sdk::Error(sdk::ErrorCode::ValidationError, "init_image has inconsistent pixel data",
                     "data.init_image");
  }
  at::Tensor hwc = at::from_blob(const_cast<std::uint8_t*>(image.pixels.data()),
                                 {image.height, image.width, image.channels}, at::kByte);
  if (image.channels == 1 || image.channels == 2) {
    hwc = hwc.slice(2, 0, 1).repeat({1, 1, 3});
  } else {
    hwc = hwc.slice(2, 0, 3);
  }
  return hwc.permute({2, 0, 1}).unsqueeze(0).to(at::kFloat) / 255.0 * 2.0 - 1.0;
}

}  // namespace sdxlhost::sdxl
