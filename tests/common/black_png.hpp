#pragma once
/// @file black_png.hpp
/// Shared by the image-decode and fault tests: a PNG that is small on disk and huge once decoded.

#include <png.h>

#include <cstdint>
#include <string>
#include <vector>

namespace sdxlhost::test_support {

/// A PNG of width x height 1-bit gray pixels, all black: a few hundred KiB that announce
/// width * height pixels (a decompression bomb when large).
inline std::string black_png(std::uint32_t width, std::uint32_t height) {
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_set_write_fn(
      png, &out,
      [](png_structp p, png_bytep data, png_size_t length) {
        static_cast<std::string*>(png_get_io_ptr(p))->append(reinterpret_cast<const char*>(data), length);
      },
      [](png_structp) {});
  png_set_compression_level(png, 1);
  png_set_IHDR(png, info, width, height, 1, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  std::vector<unsigned char> row((width + 7) / 8, 0);
  for (std::uint32_t y = 0; y < height; ++y) png_write_row(png, row.data());
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  return out;
}

}  // namespace sdxlhost::test_support
