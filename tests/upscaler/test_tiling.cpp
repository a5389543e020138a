// Tiling: spans, exactness with a per-pixel network, a real network tiled vs untiled, the size
// of what the network is given, Lanczos, and the request options with their field paths.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "lanczos.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "tiled_upscale.hpp"
#include "upscale_options.hpp"
#include "upscaler_model.hpp"
#include "upscaler_test_util.hpp"

namespace sdxlhost::test_support {
namespace {

using namespace sdxlhost::upscaler;
using nlohmann::json;
using sdxlhost::sdk::Image;

Image random_image(int width, int height, int channels, std::uint64_t seed) {
  Image image;
  image.width = width;
  image.height = height;
  image.channels = channels;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  const at::Tensor pixels = at::randint(0, 256, {height * width * channels}, generator, at::kByte);
  image.pixels.assign(pixels.data_ptr<std::uint8_t>(), pixels.data_ptr<std::uint8_t>() + pixels.numel());
  return image;
}

at::Tensor pixels_of(const Image& image) {
  return at::from_blob(const_cast<std::uint8_t*>(image.pixels.data()), {image.height, image.width, image.channels},
                       at::kByte).to(at::kInt);
}

TEST(Tiling, SpansCoverTheAxisWithExactOverlaps) {
  for (int length : {1, 15, 16, 17, 64, 100, 257}) {
    for (auto [tile, overlap] : {std::pair{16, 4}, std::pair{32, 0}, std::pair{20, 8}}) {
      const auto spans = tile_spans(length, tile, overlap);
      ASSERT_FALSE(spans.empty());
      EXPECT_EQ(spans.front().start, 0);
      EXPECT_EQ(spans.back().start + spans.back().size, length);
      for (std::size_t i = 0; i < spans.size(); ++i) {
        EXPECT_LE(spans[i].size, std::max(tile, 0) ? std::min(tile, length) : length);
        if (i == 0) continue;
        EXPECT_EQ(spans[i - 1].start + spans[i - 1].size - spans[i].start, overlap) << length << " " << i;
        EXPECT_GT(spans[i].size, overlap);
        if (i >= 2) EXPECT_GE(spans[i].start, spans[i - 2].start + spans[i - 2].size) << "three tiles share a pixel";
      }
    }
  }
  EXPECT_EQ(tile_spans(50, 0, 0).size(), 1u);
}

TEST(Tiling, APerPixelNetworkGivesTheUntiledResultExactly) {
  // Nearest-neighbour enlargement is exact per pixel: cross-faded tiles must reproduce it bit
  // for bit (the fade weights sum to 1), so any seam or misplaced tile shows.
  const Image image = random_image(53, 37, 3, 1);
  for (int scale : {1, 2, 4}) {
    const TileNetwork nearest = [scale](const at::Tensor& t) {
      return at::upsample_nearest2d(t, {t.size(2) * scale, t.size(3) * scale});
    };
    const Image whole = tiled_upscale(image, nearest, {scale, 1}, {0, 0});
    const Image tiled = tiled_upscale(image, nearest, {scale, 1}, {20, 4});
    ASSERT_EQ(tiled.width, 53 * scale);
    ASSERT_EQ(tiled.height, 37 * scale);
    EXPECT_EQ(whole.pixels, tiled.pixels) << "x" << scale;
    EXPECT_TRUE(at::equal(pixels_of(whole), at::upsample_nearest2d(pixels_of(image).permute({2, 0, 1}).unsqueeze(0).to(at::kFloat),
                                                                   {37 * scale, 53 * scale})[0].permute({1, 2, 0}).to(at::kInt)));
  }
}

/// The first RRDBNet .safetensors of the golden folder at the given scale.
std::shared_ptr<UpscalerModel> golden_model(int scale) {
  for (const auto& entry : std::filesystem::directory_iterator(golden_dir()))
    if (entry.path().extension() == ".safetensors" && entry.path().filename().string().rfind("forward_", 0) != 0) {
      auto model = load_upscaler_model(entry.path());
      if (model->scale() == scale) return model;
    }
  return nullptr;
}

TEST(Tiling, RealNetworkTiledMatchesUntiledWithinTolerance) {
  // 96x80 input, tiles of 48 with overlap 8 (cores of 32 + 8 px of context): 4 x 3 tiles.
  // Stated tolerance (docs/upscaler.md): every 8-bit value within 1 level of the untiled image
  // and mean |difference| under 0.01 levels (context hides the cut receptive field, the
  // cross-fade the rest).
  for (int scale : {4, 2}) {
    auto model = golden_model(scale);
    ASSERT_NE(model, nullptr) << scale;
    const Image image = random_image(96, 80, 3, 2);
    std::int64_t largest = 0;
    const TileNetwork network = [&](const at::Tensor& t) {
      largest = std::max({largest, t.size(2), t.size(3)});
      return model->forward(t);
    };
    const NetworkShape shape{model->scale(), model->input_multiple()};
    const Image whole = tiled_upscale(image, network, shape, {0, 0});
    largest = 0;
    int progress_calls = 0;
    const Image tiled = tiled_upscale(image, network, shape, {48, 8}, [&](int done, int total) {
      ++progress_calls;
      EXPECT_EQ(total, 12);
      EXPECT_EQ(done, progress_calls);
    });
    EXPECT_EQ(progress_calls, 12);
    EXPECT_LE(largest, 48) << "the network was given more than one tile";
    const at::Tensor diff = (pixels_of(whole) - pixels_of(tiled)).abs().to(at::kFloat);
    const double mean = diff.mean().item<double>();
    const double max = diff.max().item<double>();
    std::printf("x%d tiled vs untiled (12 tiles): mean |diff| %.4f, max %.0f (8-bit levels)\n", scale, mean, max);
    EXPECT_LE(max, 1.0);
    EXPECT_LT(mean, 0.01);
  }
}

TEST(Tiling, OddSidesArePaddedForPixelUnshuffleAndCropped) {
  auto model = golden_model(2);
  ASSERT_NE(model, nullptr);
  ASSERT_EQ(model->input_multiple(), 2);
  const Image image = random_image(33, 21, 4, 3);  // RGBA: alpha dropped
  const Image out = tiled_upscale(image, [&](const at::Tensor& t) { return model->forward(t); },
                                  {model->scale(), model->input_multiple()}, {17, 3});
  EXPECT_EQ(out.width, 66);
  EXPECT_EQ(out.height, 42);
  EXPECT_EQ(out.channels, 3);
  EXPECT_EQ(out.pixels.size(), 66u * 42u * 3u);
}

TEST(Lanczos, ResizesLikeOpenCV) {
  // A constant image stays constant (Lanczos weights sum to 1); sizes are as asked.
  Image flat = random_image(10, 6, 3, 4);
  std::fill(flat.pixels.begin(), flat.pixels.end(), 77);
  const Image big = resize_lanczos(flat, 25, 15);
  EXPECT_EQ(big.width, 25);
  EXPECT_EQ(big.height, 15);
  for (auto value : big.pixels) ASSERT_EQ(value, 77);
  // A gradient keeps its ends and stays monotonic away from the borders.
  Image ramp = random_image(16, 1, 1, 5);
  for (int x = 0; x < 16; ++x) ramp.pixels[x] = static_cast<std::uint8_t>(x * 16);
  const Image wide = resize_lanczos(ramp, 64, 1);
  for (int x = 8; x < 56; ++x) EXPECT_LE(wide.pixels[x], wide.pixels[x + 1] + 1) << x;
}

TEST(UpscaleOptions, DefaultsAndBadFieldsWithTheirPaths) {
  const std::string field = "data.output.upscale";
  auto options = parse_upscale_options(json{{"enabled", true}, {"model", "x4.pth"}}, field);
  EXPECT_EQ(options.method, "model");
  EXPECT_EQ(options.tiles.tile_size, 256);
  EXPECT_EQ(options.tiles.tile_overlap, 16);
  EXPECT_FALSE(options.scale.has_value());
  options = parse_upscale_options(json{{"method", "lanczos"}, {"scale", 1.5}, {"colour", "red"}}, field);
  EXPECT_EQ(options.method, "lanczos");
  EXPECT_EQ(*options.scale, 1.5);
  EXPECT_EQ(options.ignored, std::vector<std::string>{"data.output.upscale.colour"});

  const std::vector<std::pair<json, std::string>> bad = {
      {json::array(), field},
      {json{{"enabled", true}}, field + ".model"},
      {json{{"model", 5}}, field + ".model"},
      {json{{"model", ""}}, field + ".model"},
      {json{{"model", "m"}, {"method", "bicubic"}}, field + ".method"},
      {json{{"model", "m"}, {"scale", 0}}, field + ".scale"},
      {json{{"model", "m"}, {"scale", 100}}, field + ".scale"},
      {json{{"model", "m"}, {"scale", "2"}}, field + ".scale"},
      {json{{"model", "m"}, {"tile_size", "big"}}, field + ".tile_size"},
      {json{{"model", "m"}, {"tile_size", 8}}, field + ".tile_size"},
      {json{{"model", "m"}, {"tile_size", 100000}}, field + ".tile_size"},
      {json{{"model", "m"}, {"tile_size", 64}, {"tile_overlap", 32}}, field + ".tile_overlap"},
      {json{{"model", "m"}, {"tile_overlap", -1}}, field + ".tile_overlap"},
      {json{{"model", "m"}, {"tile_overlap", 1.5}}, field + ".tile_overlap"},
  };
  for (const auto& [value, expected] : bad) {
    const auto error = error_of([&] { parse_upscale_options(value, field); });
    EXPECT_EQ(error.code(), sdxlhost::sdk::ErrorCode::ValidationError) << value.dump();
    EXPECT_EQ(error.field(), expected) << value.dump() << ": " << error.what();
  }
  const auto error = error_of([&] { output_size(4000, 3000, 8.0, field); });
  EXPECT_EQ(error.field(), field + ".scale");
}

}  // namespace
}  // namespace sdxlhost::test_support
