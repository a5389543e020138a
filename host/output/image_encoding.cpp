// PNG (libpng), JPEG (libjpeg) and WebP (libwebp) encoding of sdk::Image, and base64.
#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <jpeglib.h>
#include <png.h>
#include <webp/encode.h>

#include "host/output/image_writer.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::host {
namespace {

using sdk::Error;
using sdk::ErrorCode;

constexpr int kMaxWebpDimension = 16383;
constexpr std::size_t kMaxJpegComment = 65533;

void check_image(const sdk::Image& image) {
  if (image.width <= 0 || image.height <= 0)
    throw Error(ErrorCode::OutputError, "image has no pixels (" + std::to_string(image.width) +
                                            "x" + std::to_string(image.height) + ")");
  if (image.channels != 1 && image.channels != 3 && image.channels != 4)
    throw Error(ErrorCode::OutputError,
                "image has " + std::to_string(image.channels) + " channels; 1, 3 or 4 are supported");
  const std::size_t expected = static_cast<std::size_t>(image.width) * image.height * image.channels;
  if (image.pixels.size() != expected)
    throw Error(ErrorCode::OutputError, "image holds " + std::to_string(image.pixels.size()) +
                                            " bytes, expected " + std::to_string(expected));
}

/// The image as packed RGB (gray is replicated, alpha dropped).
std::vector<std::uint8_t> to_rgb(const sdk::Image& image) {
  if (image.channels == 3) return image.pixels;
  const std::size_t n = static_cast<std::size_t>(image.width) * image.height;
  std::vector<std::uint8_t> rgb(n * 3);
  for (std::size_t i = 0; i < n; ++i)
    for (int c = 0; c < 3; ++c)
      rgb[i * 3 + c] = image.pixels[i * image.channels + (image.channels == 1 ? 0 : c)];
  return rgb;
}

bool is_ascii(const std::string& text) {
  for (unsigned char c : text)
    if (c >= 0x80) return false;
  return true;
}

// ---- PNG ------------------------------------------------------------------------------------

void png_append(png_structp png, png_bytep data, png_size_t length) {
  auto* out = static_cast<std::vector<std::uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), data, data + length);
}

void png_flush_nothing(png_structp) {}

std::vector<std::uint8_t> encode_png(const sdk::Image& image,
                                     const std::map<std::string, std::string>& text) {
  std::vector<std::uint8_t> out;
  std::vector<std::string> keys;
  for (const auto& [key, value] : text) keys.push_back(key.substr(0, 79));  // PNG keyword limit
  std::vector<png_text> chunks(text.size());
  std::size_t k = 0;
  for (const auto& [key, value] : text) {
    png_text& chunk = chunks[k];
    std::memset(&chunk, 0, sizeof chunk);
    // ASCII goes into tEXt (what A1111 readers expect); other UTF-8 into iTXt.
    chunk.compression = is_ascii(value) ? PNG_TEXT_COMPRESSION_NONE : PNG_ITXT_COMPRESSION_NONE;
    chunk.key = const_cast<char*>(keys[k].c_str());
    chunk.text = const_cast<char*>(value.c_str());
    chunk.text_length = chunk.compression == PNG_TEXT_COMPRESSION_NONE ? value.size() : 0;
    chunk.itxt_length = chunk.compression == PNG_TEXT_COMPRESSION_NONE ? 0 : value.size();
    ++k;
  }
  const std::size_t stride = static_cast<std::size_t>(image.width) * image.channels;
  std::vector<png_bytep> rows(image.height);
  for (int y = 0; y < image.height; ++y)
    rows[y] = const_cast<png_bytep>(image.pixels.data() + y * stride);
  const int color = image.channels == 1 ? PNG_COLOR_TYPE_GRAY
                    : image.channels == 3 ? PNG_COLOR_TYPE_RGB
                                          : PNG_COLOR_TYPE_RGB_ALPHA;

  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  if (!png) throw Error(ErrorCode::OutputError, "PNG encoder could not start");
  png_infop info = png_create_info_struct(png);
  if (!info || setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    throw Error(ErrorCode::OutputError, "PNG encoding failed");
  }
  png_set_write_fn(png, &out, png_append, png_flush_nothing);
  png_set_IHDR(png, info, image.width, image.height, 8, color, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (!chunks.empty()) png_set_text(png, info, chunks.data(), static_cast<int>(chunks.size()));
  png_write_info(png, info);
  png_write_image(png, rows.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

// ---- JPEG -----------------------------------------------------------------------------------

struct JpegErrorTrap {
  jpeg_error_mgr manager;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_error_to_trap(j_common_ptr info) {
  auto* trap = reinterpret_cast<JpegErrorTrap*>(info->err);
  (*info->err->format_message)(info, trap->message);
  std::longjmp(trap->jump, 1);
}

std::vector<std::uint8_t> encode_jpeg(const sdk::Image& image, int quality,
                                      const std::string& comment) {
  const bool gray = image.channels == 1;
  const std::vector<std::uint8_t> pixels = gray ? image.pixels : to_rgb(image);
  const int components = gray ? 1 : 3;
  const std::size_t stride = static_cast<std::size_t>(image.width) * components;

  jpeg_compress_struct info;
  JpegErrorTrap trap;
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  info.err = jpeg_std_error(&trap.manager);
  trap.manager.error_exit = jpeg_error_to_trap;
  if (setjmp(trap.jump)) {
    jpeg_destroy_compress(&info);
    std::free(buffer);
    throw Error(ErrorCode::OutputError, std::string("JPEG encoding failed: ") + trap.message);
  }
  jpeg_create_compress(&info);
  jpeg_mem_dest(&info, &buffer, &size);
  info.image_width = static_cast<JDIMENSION>(image.width);
  info.image_height = static_cast<JDIMENSION>(image.height);
  info.input_components = components;
  info.in_color_space = gray ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&info);
  jpeg_set_quality(&info, quality, TRUE);
  jpeg_start_compress(&info, TRUE);
  if (!comment.empty()) {
    const std::size_t length = std::min(comment.size(), kMaxJpegComment);
    jpeg_write_marker(&info, JPEG_COM, reinterpret_cast<const JOCTET*>(comment.data()),
                      static_cast<unsigned int>(length));
  }
  while (info.next_scanline < info.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(pixels.data() + info.next_scanline * stride);
    jpeg_write_scanlines(&info, &row, 1);
  }
  jpeg_finish_compress(&info);
  std::vector<std::uint8_t> out(buffer, buffer + size);
  jpeg_destroy_compress(&info);
  std::free(buffer);
  return out;
}

// ---- WebP -----------------------------------------------------------------------------------

std::vector<std::uint8_t> encode_webp(const sdk::Image& image, int quality) {
  if (image.width > kMaxWebpDimension || image.height > kMaxWebpDimension)
    throw Error(ErrorCode::OutputError, "WebP images are limited to 16383 pixels per side",
                "data.output.format");
  std::uint8_t* encoded = nullptr;
  std::size_t size = 0;
  if (image.channels == 4) {
    size = WebPEncodeRGBA(image.pixels.data(), image.width, image.height, image.width * 4,
                          static_cast<float>(quality), &encoded);
  } else {
    const std::vector<std::uint8_t> rgb = to_rgb(image);
    size = WebPEncodeRGB(rgb.data(), image.width, image.height, image.width * 3,
                         static_cast<float>(quality), &encoded);
  }
  if (size == 0 || !encoded) {
    WebPFree(encoded);
    throw Error(ErrorCode::OutputError, "WebP encoding failed");
  }
  std::vector<std::uint8_t> out(encoded, encoded + size);
  WebPFree(encoded);
  return out;
}

}  // namespace

std::vector<std::uint8_t> encode_image(const sdk::Image& image, const std::string& format,
                                       int quality,
                                       const std::map<std::string, std::string>& png_text) {
  if (format != "png" && format != "jpeg" && format != "jpg" && format != "webp")
    throw Error(ErrorCode::ValidationError,
                "unknown image format '" + format + "'; use png, jpeg or webp", "data.output.format");
  if (quality < 1 || quality > 100)
    throw Error(ErrorCode::ValidationError, "quality must be within 1..100", "data.output.quality");
  check_image(image);
  if (format == "png") return encode_png(image, png_text);
  if (format == "webp") return encode_webp(image, quality);
  auto parameters = png_text.find("parameters");
  return encode_jpeg(image, quality, parameters == png_text.end() ? std::string() : parameters->second);
}

std::string base64_encode(const std::vector<std::uint8_t>& bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const std::uint32_t v = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest) {
    const std::uint32_t v = (bytes[i] << 16) | (rest == 2 ? bytes[i + 1] << 8 : 0);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace sdxlhost::host
