// Request images: base64 PNG and JPEG decoded to RGB; bad input is a ValidationError naming the field.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <jpeglib.h>

#include "common/black_png.hpp"
#include "nn_test_util.hpp"
#include "sdxlhost/nn/image_decode.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/sdk/error.hpp"

using namespace sdxlhost::nn;
using sdxlhost::sdk::Error;
using sdxlhost::sdk::ErrorCode;

namespace {

const std::string kField = "data.init_image";

/// A JPEG of `pixels` (width x height x components) at `quality`, encoded by libjpeg.
std::string encode_jpeg(const std::vector<unsigned char>& pixels, int width, int height, int components,
                        int quality) {
  jpeg_compress_struct info;
  jpeg_error_mgr errors;
  info.err = jpeg_std_error(&errors);
  jpeg_create_compress(&info);
  unsigned char* buffer = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&info, &buffer, &size);
  info.image_width = width;
  info.image_height = height;
  info.input_components = components;
  info.in_color_space = components == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&info);
  jpeg_set_quality(&info, quality, TRUE);
  jpeg_start_compress(&info, TRUE);
  while (info.next_scanline < info.image_height) {
    JSAMPROW row = const_cast<unsigned char*>(pixels.data()) + info.next_scanline * width * components;
    jpeg_write_scanlines(&info, &row, 1);
  }
  jpeg_finish_compress(&info);
  jpeg_destroy_compress(&info);
  std::string out(reinterpret_cast<char*>(buffer), size);
  std::free(buffer);
  return out;
}

/// A smooth RGB gradient (JPEG keeps it within a few levels).
std::vector<unsigned char> gradient(int width, int height) {
  std::vector<unsigned char> pixels;
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c : {x * 255 / width, y * 255 / height, 128}) pixels.push_back(static_cast<unsigned char>(c));
  return pixels;
}

/// The error decode_base64_image gives (code ValidationError and field checked), as its message.
std::string refusal(const std::string& text) {
  try {
    decode_base64_image(text, kField);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ValidationError);
    EXPECT_EQ(e.field(), kField);
    return e.message();
  }
  return "(accepted)";
}

}  // namespace

TEST(ImageDecode, PngGoldenDecodesToTheReferencePixels) {
  const auto dir = sdxlhost::test_support::shared_dir() / "goldens/vae";
  std::ifstream in(dir / "input_image.png", std::ios::binary);
  ASSERT_TRUE(in.good());
  const std::string png((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto golden = SafetensorsFile::open(dir / "img2img_base.safetensors")->tensors();
  const at::Tensor expected = golden.at("input_image_u8").contiguous();
  for (const std::string& text : {encode_base64(png), "data:image/png;base64," + encode_base64(png)}) {
    const auto image = decode_base64_image(text, kField);
    ASSERT_EQ(image.channels, 3);
    ASSERT_EQ(static_cast<std::int64_t>(image.pixels.size()), expected.numel());
    EXPECT_EQ(0, std::memcmp(image.pixels.data(), expected.data_ptr<std::uint8_t>(), image.pixels.size()));
  }
}

TEST(ImageDecode, JpegColourAndGrayDecodeToRgb) {
  const int width = 40, height = 24;
  const auto pixels = gradient(width, height);
  const auto image = decode_base64_image(encode_base64(encode_jpeg(pixels, width, height, 3, 95)), kField);
  ASSERT_EQ(image.width, width);
  ASSERT_EQ(image.height, height);
  ASSERT_EQ(image.channels, 3);
  double total = 0;
  for (std::size_t i = 0; i < pixels.size(); ++i) total += std::abs(int(image.pixels[i]) - int(pixels[i]));
  EXPECT_LT(total / pixels.size(), 3.0);  // quality 95 on a smooth gradient: about 1 level

  std::vector<unsigned char> gray(width * height, 200);
  const auto rgb = decode_image_rgb(encode_jpeg(gray, width, height, 1, 95), kField);
  ASSERT_EQ(rgb.pixels.size(), gray.size() * 3);
  for (std::size_t i = 0; i < rgb.pixels.size(); ++i) ASSERT_NEAR(rgb.pixels[i], 200, 2) << i;
}

TEST(ImageDecode, Base64RoundTripsEveryLength) {
  std::string bytes;
  for (int n = 0; n < 70; ++n) {
    EXPECT_EQ(encode_base64(bytes).size() % 4, 0u);
    if (!bytes.empty()) EXPECT_EQ(decode_base64(encode_base64(bytes), kField), bytes) << n;
    bytes.push_back(static_cast<char>(n * 37 + 11));
  }
  EXPECT_EQ(encode_base64("Man"), "TWFu");
  EXPECT_EQ(encode_base64("Ma"), "TWE=");
}

TEST(ImageDecode, BadInputIsAValidationErrorNamingTheField) {
  EXPECT_NE(refusal("not base64!"), "(accepted)");
  EXPECT_NE(refusal(""), "(accepted)");
  EXPECT_NE(refusal(encode_base64("GIF89a\x01\x00\x01\x00")), "(accepted)");  // neither PNG nor JPEG
  const std::string jpeg = encode_jpeg(gradient(32, 32), 32, 32, 3, 90);
  EXPECT_NE(refusal(encode_base64(jpeg.substr(0, jpeg.size() / 2))), "(accepted)");  // truncated
  EXPECT_NE(refusal(encode_base64(jpeg.substr(0, 20))), "(accepted)");              // header cut
  std::string corrupt = jpeg;
  for (std::size_t i = 2; i < 200 && i < corrupt.size(); ++i) corrupt[i] = static_cast<char>(0x5A);
  EXPECT_NE(refusal(encode_base64(corrupt)), "(accepted)");
  // a header that claims 32767 x 32767 pixels is refused before any allocation
  std::string huge = jpeg;
  const auto sof = huge.find("\xFF\xC0");
  ASSERT_NE(sof, std::string::npos);
  for (int i : {5, 7}) huge[sof + i] = static_cast<char>(0x7F);
  for (int i : {6, 8}) huge[sof + i] = static_cast<char>(0xFF);
  EXPECT_NE(refusal(encode_base64(huge)).find("pixels a side"), std::string::npos);
  std::ifstream in(sdxlhost::test_support::shared_dir() / "goldens/vae/input_image.png", std::ios::binary);
  const std::string png((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(refusal(encode_base64(png.substr(0, png.size() - 40))), "(accepted)");  // truncated PNG
}

namespace {

using sdxlhost::test_support::black_png;

/// Restores the process-wide pixel limit when a test ends.
struct PixelLimitGuard {
  ~PixelLimitGuard() { set_max_image_pixels(0); }
};

}  // namespace

// Issue 14, item 2: a 16384 x 16384 PNG of a few hundred KiB is refused from its header
// (limits.max_image_pixels, PIL's 89478485 by default), before any pixel is allocated.
TEST(ImageDecode, ImagesOverTheMaxPixelsAreRefusedFromTheHeader) {
  PixelLimitGuard guard;
  EXPECT_EQ(max_image_pixels(), kDefaultMaxImagePixels);
  const std::string bomb = black_png(16384, 16384);
  EXPECT_LT(bomb.size(), 4u << 20);
  const std::string message = refusal(encode_base64(bomb));
  EXPECT_NE(message.find("16384x16384"), std::string::npos) << message;
  EXPECT_NE(message.find("limits.max_image_pixels (89478485)"), std::string::npos) << message;

  // The configured limit applies to PNG and JPEG alike; the default comes back with 0.
  set_max_image_pixels(32 * 32 - 1);
  EXPECT_NE(refusal(encode_base64(black_png(32, 32))).find("max_image_pixels (1023)"), std::string::npos);
  EXPECT_NE(refusal(encode_base64(encode_jpeg(gradient(32, 32), 32, 32, 3, 90))).find("max_image_pixels"),
            std::string::npos);
  set_max_image_pixels(32 * 32);
  EXPECT_EQ(decode_base64_image(encode_base64(black_png(32, 32)), kField).width, 32);
  EXPECT_EQ(decode_base64_image(encode_base64(encode_jpeg(gradient(32, 32), 32, 32, 3, 90)), kField).height, 32);
  set_max_image_pixels(0);
  EXPECT_EQ(max_image_pixels(), kDefaultMaxImagePixels);
}

TEST(ImageDecode, ReadImageSizeReadsTheHeaderOnly) {
  PixelLimitGuard guard;
  const auto png = read_image_size(black_png(128, 64), kField);
  EXPECT_EQ(png.width, 128);
  EXPECT_EQ(png.height, 64);
  const auto jpeg = read_image_size(encode_jpeg(gradient(40, 24), 40, 24, 3, 90), kField);
  EXPECT_EQ(jpeg.width, 40);
  EXPECT_EQ(jpeg.height, 24);
  try {
    read_image_size(black_png(16384, 16384), kField);
    ADD_FAILURE() << "the bomb's size was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.field(), kField);
    EXPECT_NE(e.message().find("max_image_pixels"), std::string::npos) << e.message();
  }
  EXPECT_THROW(read_image_size("GIF89a", kField), Error);
}
