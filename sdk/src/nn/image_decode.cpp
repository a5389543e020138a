// Request images: base64 -> PNG (libpng's simplified API) or JPEG (libjpeg) -> 8-bit RGB.
#include "sdxlhost/nn/image_decode.hpp"

#include <png.h>

#include <algorithm>
#include <atomic>
#include <csetjmp>
#include <cstdio>  // jpeglib.h needs FILE and size_t first
#include <cstring>

#include <jpeglib.h>
#include <jerror.h>  // JWRN_JPEG_EOF

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::nn {
namespace {

using sdk::Error;
using sdk::ErrorCode;

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

bool is_base64_filler(char c) { return c == '=' || c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

std::atomic<std::uint64_t> g_max_image_pixels{kDefaultMaxImagePixels};

bool size_acceptable(std::size_t width, std::size_t height) {
  return width > 0 && height > 0 && width <= kMaxDecodedImageSide && height <= kMaxDecodedImageSide &&
         static_cast<std::uint64_t>(width) * height <= g_max_image_pixels.load(std::memory_order_relaxed);
}

/// Refuses a header size before anything is allocated for it (decompression bombs: a few
/// hundred KiB of PNG can announce 16384 x 16384 pixels).
void check_side_lengths(std::size_t width, std::size_t height, const std::string& field) {
  if (width == 0 || height == 0 || width > kMaxDecodedImageSide || height > kMaxDecodedImageSide) {
    throw Error(ErrorCode::ValidationError,
                "image must be 1.." + std::to_string(kMaxDecodedImageSide) + " pixels a side, not " +
                    std::to_string(width) + "x" + std::to_string(height),
                field);
  }
  const std::uint64_t pixels = static_cast<std::uint64_t>(width) * height;
  const std::uint64_t limit = g_max_image_pixels.load(std::memory_order_relaxed);
  if (pixels > limit)
    throw Error(ErrorCode::ValidationError,
                "image is " + std::to_string(width) + "x" + std::to_string(height) + " = " + std::to_string(pixels) +
                    " pixels, more than limits.max_image_pixels (" + std::to_string(limit) + ")",
                field);
}

sdk::Image decode_png(std::string_view bytes, const std::string& field) {
  png_image png;
  std::memset(&png, 0, sizeof png);
  png.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&png, bytes.data(), bytes.size())) {
    throw Error(ErrorCode::ValidationError, std::string("image is not a readable PNG: ") + png.message, field);
  }
  png.format = PNG_FORMAT_RGB;
  try {
    check_side_lengths(png.width, png.height, field);
  } catch (...) {
    png_image_free(&png);
    throw;
  }
  sdk::Image image;
  image.width = static_cast<int>(png.width);
  image.height = static_cast<int>(png.height);
  image.channels = 3;
  image.pixels.resize(PNG_IMAGE_SIZE(png));
  if (!png_image_finish_read(&png, nullptr, image.pixels.data(), 0, nullptr)) {
    const std::string message = png.message;
    png_image_free(&png);
    throw Error(ErrorCode::ValidationError, "image is not a readable PNG: " + message, field);
  }
  return image;
}

/// libjpeg reports fatal errors through error_exit, which must not return: we longjmp back to
/// read_jpeg, whose frame holds no object with a destructor.
struct JpegErrors {
  jpeg_error_mgr manager;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  bool truncated;  ///< libjpeg hit the end of the data (it would fill the rest with gray)
};

void on_jpeg_fatal(j_common_ptr info) {
  auto* errors = reinterpret_cast<JpegErrors*>(info->err);
  (*info->err->format_message)(info, errors->message);
  std::longjmp(errors->jump, 1);
}

/// Warnings (e.g. extraneous bytes, which PIL also accepts) are tolerated, but a premature end
/// of data is remembered: such images are refused rather than half gray.
void on_jpeg_warning(j_common_ptr info) {
  auto* errors = reinterpret_cast<JpegErrors*>(info->err);
  if (info->err->msg_code != JWRN_JPEG_EOF || errors->truncated) return;
  errors->truncated = true;
  (*info->err->format_message)(info, errors->message);
}

/// What read_jpeg found: dimensions after the header, then the pixels. Plain data so that the
/// longjmp in read_jpeg skips no destructor.
struct JpegResult {
  JDIMENSION width = 0;
  JDIMENSION height = 0;
  bool header_read = false;
};

/// Reads an RGB JPEG into the buffer `allocate` gives once the header is known. Returns false
/// with `errors.message` set on a fatal error or truncated data.
bool read_jpeg(std::string_view bytes, JpegErrors& errors, JpegResult& result,
               unsigned char* (*allocate)(void* context, JDIMENSION width, JDIMENSION height), void* context) {
  jpeg_decompress_struct info;
  info.err = jpeg_std_error(&errors.manager);
  errors.manager.error_exit = on_jpeg_fatal;
  errors.manager.output_message = on_jpeg_warning;
  errors.message[0] = '\0';
  errors.truncated = false;
  if (setjmp(errors.jump)) {
    jpeg_destroy_decompress(&info);
    return false;
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&info, TRUE);
  info.out_color_space = JCS_RGB;
  result.width = info.image_width;
  result.height = info.image_height;
  result.header_read = true;
  unsigned char* pixels = allocate(context, info.image_width, info.image_height);
  if (pixels == nullptr) {
    jpeg_destroy_decompress(&info);
    return false;
  }
  jpeg_start_decompress(&info);
  const std::size_t stride = static_cast<std::size_t>(info.output_width) * 3;
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = pixels + info.output_scanline * stride;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  return !errors.truncated;
}

/// Target of read_jpeg's allocation: checks the sides and sizes the image.
struct JpegTarget {
  sdk::Image* image;
  bool size_ok = false;
};

unsigned char* allocate_jpeg_pixels(void* context, JDIMENSION width, JDIMENSION height) {
  auto* target = static_cast<JpegTarget*>(context);
  if (!size_acceptable(width, height)) return nullptr;
  target->size_ok = true;
  target->image->width = static_cast<int>(width);
  target->image->height = static_cast<int>(height);
  target->image->channels = 3;
  target->image->pixels.assign(static_cast<std::size_t>(width) * height * 3, 0);
  return target->image->pixels.data();
}

sdk::Image decode_jpeg(std::string_view bytes, const std::string& field) {
  sdk::Image image;
  JpegTarget target{&image};
  JpegErrors errors;
  JpegResult result;
  if (read_jpeg(bytes, errors, result, allocate_jpeg_pixels, &target)) return image;
  if (result.header_read && !target.size_ok) check_side_lengths(result.width, result.height, field);
  throw Error(ErrorCode::ValidationError, std::string("image is not a readable JPEG: ") + errors.message, field);
}

bool starts_with(std::string_view bytes, std::string_view signature) {
  return bytes.substr(0, signature.size()) == signature;
}

}  // namespace

std::uint64_t max_image_pixels() noexcept { return g_max_image_pixels.load(std::memory_order_relaxed); }

void set_max_image_pixels(std::uint64_t pixels) noexcept {
  g_max_image_pixels.store(pixels == 0 ? kDefaultMaxImagePixels : pixels, std::memory_order_relaxed);
}

std::string decode_base64(std::string_view text, const std::string& field) {
  const auto comma = text.find(',');
  if (text.rfind("data:", 0) == 0 && comma != std::string_view::npos) text.remove_prefix(comma + 1);
  std::string out;
  out.reserve(text.size() / 4 * 3);
  unsigned buffer = 0;
  int bits = 0;
  for (char c : text) {
    if (is_base64_filler(c)) continue;
    const int v = base64_value(c);
    if (v < 0) {
      throw Error(ErrorCode::ValidationError, "must be base64 text (found a non-base64 character)", field);
    }
    buffer = ((buffer << 6) | static_cast<unsigned>(v)) & 0xFFFFFFu;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((buffer >> bits) & 0xFF));
    }
  }
  if (out.empty()) throw Error(ErrorCode::ValidationError, "holds no base64 data", field);
  return out;
}

std::string encode_base64(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  unsigned buffer = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    buffer = ((buffer << 8) | c) & 0xFFFFu;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(buffer >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(buffer << (6 - bits)) & 63]);
  while (out.size() % 4 != 0) out.push_back('=');
  return out;
}

sdk::Image decode_image_rgb(std::string_view bytes, const std::string& field) {
  if (starts_with(bytes, "\x89PNG\r\n\x1a\n")) return decode_png(bytes, field);
  if (starts_with(bytes, "\xFF\xD8\xFF")) return decode_jpeg(bytes, field);
  throw Error(ErrorCode::ValidationError, "image must be a PNG or a JPEG (unknown file signature)", field);
}

namespace {
/// read_jpeg's allocation callback for a size-only read: records nothing, stops the decode.
unsigned char* stop_after_header(void*, JDIMENSION, JDIMENSION) { return nullptr; }
}  // namespace

ImageSize read_image_size(std::string_view bytes, const std::string& field) {
  ImageSize size;
  if (starts_with(bytes, "\x89PNG\r\n\x1a\n")) {
    png_image png;
    std::memset(&png, 0, sizeof png);
    png.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&png, bytes.data(), bytes.size()))
      throw Error(ErrorCode::ValidationError, std::string("image is not a readable PNG: ") + png.message, field);
    size.width = static_cast<int>(std::min<png_uint_32>(png.width, 1u << 30));
    size.height = static_cast<int>(std::min<png_uint_32>(png.height, 1u << 30));
    const std::uint64_t w = png.width, h = png.height;
    png_image_free(&png);
    check_side_lengths(w, h, field);
    return size;
  }
  if (starts_with(bytes, "\xFF\xD8\xFF")) {
    JpegErrors errors;
    JpegResult result;
    read_jpeg(bytes, errors, result, stop_after_header, nullptr);
    if (!result.header_read)
      throw Error(ErrorCode::ValidationError, std::string("image is not a readable JPEG: ") + errors.message, field);
    check_side_lengths(result.width, result.height, field);
    size.width = static_cast<int>(result.width);
    size.height = static_cast<int>(result.height);
    return size;
  }
  throw Error(ErrorCode::ValidationError, "image must be a PNG or a JPEG (unknown file signature)", field);
}

sdk::Image decode_base64_image(std::string_view text, const std::string& field) {
  return decode_image_rgb(decode_base64(text, field), field);
}

}  // namespace sdxlhost::nn
