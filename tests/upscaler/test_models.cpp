// Upscaler networks against the goldens: every weight file in ../shared/goldens/upscaler (each
// spelling and container) gives the reference forward, intermediates and 8-bit image; and
// SRVGGNetCompact against a plain-loop implementation of its formula.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <regex>

#include "rrdbnet.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "srvgg_compact.hpp"
#include "tiled_upscale.hpp"
#include "upscaler_model.hpp"
#include "upscaler_test_util.hpp"

namespace sdxlhost::test_support {
namespace {

namespace fs = std::filesystem;
using namespace sdxlhost::upscaler;

constexpr double kAtol = 1e-4;  // goldens' README: single model forwards, float32

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes()) return std::numeric_limits<double>::infinity();
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

/// Weight files of the golden folder: every .safetensors / .pth except the forward records.
std::vector<fs::path> weight_files() {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(golden_dir())) {
    const auto name = entry.path().filename().string();
    const auto ext = entry.path().extension();
    if ((ext == ".safetensors" || ext == ".pth") && name.rfind("forward_", 0) != 0) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST(UpscalerGoldens, EveryWeightFileMatchesItsForwardGolden) {
  const auto files = weight_files();
  ASSERT_GE(files.size(), 2u) << golden_dir();
  for (const auto& file : files) {
    SCOPED_TRACE(file.filename().string());
    auto model = load_upscaler_model(file);
    // The folder's naming rule (README): weights "..._x{scale}_..." go with forward_x{scale}.
    std::smatch m;
    const std::string name = file.filename().string();
    ASSERT_TRUE(std::regex_search(name, m, std::regex("_x(\\d+)_"))) << "no _x<scale>_ in the name";
    EXPECT_EQ(model->scale(), std::stoi(m[1].str())) << model->describe();
    const auto golden = sdxlhost::nn::SafetensorsFile::open(golden_dir() / ("forward_x" + m[1].str() + ".safetensors"));
    const at::Tensor input = golden->tensor("input.image");

    Trace trace;
    const at::Tensor output = model->forward(input, {}, &trace);
    EXPECT_LE(max_abs_diff(output, golden->tensor("output.raw")), kAtol);
    int intermediates = 0;
    for (const auto& key : golden->names()) {
      const std::string prefix = "intermediate.";
      if (key.rfind(prefix, 0) != 0) continue;
      ++intermediates;
      const std::string stage = key.substr(prefix.size());
      ASSERT_TRUE(trace.count(stage)) << "the forward does not record " << stage;
      EXPECT_LE(max_abs_diff(trace.at(stage), golden->tensor(key)), kAtol) << stage;
    }
    EXPECT_GT(intermediates, 0);

    // The 8-bit image through the tiler's conversion, the network replaced by this forward.
    sdxlhost::sdk::Image image;
    image.width = static_cast<int>(input.size(3));
    image.height = static_cast<int>(input.size(2));
    image.pixels.assign(static_cast<std::size_t>(image.width) * image.height * 3, 0);
    const auto u8 = tiled_upscale(image, [&](const at::Tensor&) { return output; }, {model->scale(), model->input_multiple()},
                                  {0, 0});
    const at::Tensor expected = golden->tensor("output.u8")[0].permute({1, 2, 0}).to(at::kInt);
    const at::Tensor got = at::from_blob(const_cast<std::uint8_t*>(u8.pixels.data()),
                                         {u8.height, u8.width, 3}, at::kByte).to(at::kInt);
    ASSERT_EQ(got.sizes(), expected.sizes());
    EXPECT_LE((got - expected).abs().max().item<int>(), 1);
  }
}

TEST(UpscalerGoldens, ConfigurationIsReadFromTheWeights) {
  const auto report = read_bytes(golden_dir() / "report.json");
  for (const auto& file : weight_files()) {
    SCOPED_TRACE(file.filename().string());
    auto model = load_upscaler_model(file);
    auto* rrdb = dynamic_cast<RRDBNet*>(model.get());
    ASSERT_NE(rrdb, nullptr);
    // report.json "arch": num_feat 16, num_block 2, num_grow_ch 8 (read as text to stay data-driven).
    for (const auto& [key, value] : {std::pair<std::string, std::int64_t>{"num_feat", rrdb->config().num_feat},
                                     {"num_block", rrdb->config().num_block},
                                     {"num_grow_ch", rrdb->config().num_grow_ch}})
      EXPECT_NE(report.find("\"" + key + "\": " + std::to_string(value)), std::string::npos) << key;
    EXPECT_EQ(rrdb->config().unshuffle * rrdb->config().scale, 4);  // x4plus: none; x2plus: unshuffle 2
  }
}

TEST(UpscalerGoldens, InconsistentWeightsAreRefusedWithTheKey) {
  fs::path safetensors;
  for (const auto& file : weight_files())
    if (file.extension() == ".safetensors" && safetensors.empty()) safetensors = file;
  auto weights = sdxlhost::nn::SafetensorsFile::open(safetensors)->tensors();
  auto missing = weights;
  missing.erase("conv_hr.weight");
  missing.erase("model.8.weight");
  auto error = error_of([&] { model_from_weights(missing, "m.safetensors"); });
  EXPECT_EQ(error.code(), sdxlhost::sdk::ErrorCode::ModelLoadError);
  auto extra = weights;
  extra.set("something_else.weight", at::zeros({1}));
  error = error_of([&] { model_from_weights(extra, "m.safetensors"); });
  EXPECT_NE(std::string(error.what()).find("something_else"), std::string::npos) << error.what();
  sdxlhost::nn::TensorMap unknown;
  unknown.set("encoder.weight", at::zeros({4, 4}));
  error = error_of([&] { model_from_weights(unknown, "m.safetensors"); });
  EXPECT_NE(std::string(error.what()).find("no supported architecture"), std::string::npos) << error.what();
}

TEST(UpscalerGoldens, BsrganAliasesLoadLikeBasicSRNames) {
  // RRDB_trunk / trunk_conv / upconvN / HRconv (BSRGAN, RealSR) are the same tensors renamed.
  for (const auto& file : weight_files()) {
    if (file.extension() != ".safetensors" || file.filename().string().find("old") != std::string::npos) continue;
    SCOPED_TRACE(file.filename().string());
    const auto weights = sdxlhost::nn::SafetensorsFile::open(file)->tensors();
    sdxlhost::nn::TensorMap aliased;
    const std::regex body(R"(^body\.(\d+)\.rdb(\d)\.conv(\d)\.(weight|bias)$)");
    for (const auto& [key, tensor] : weights) {
      std::smatch m;
      std::string name = key;
      if (std::regex_match(key, m, body)) name = "RRDB_trunk." + m[1].str() + ".RDB" + m[2].str() + ".conv" + m[3].str() + "." + m[4].str();
      else if (key.rfind("conv_body.", 0) == 0) name = "trunk_conv." + key.substr(10);
      else if (key.rfind("conv_up", 0) == 0) name = "upconv" + key.substr(7);
      else if (key.rfind("conv_hr.", 0) == 0) name = "HRconv." + key.substr(8);
      aliased.set(name, tensor);
    }
    ASSERT_TRUE(aliased.contains("RRDB_trunk.0.RDB1.conv1.weight"));
    const auto reference = model_from_weights(weights, "basicsr");
    const auto renamed = model_from_weights(aliased, "bsrgan");
    const at::Tensor x = at::rand({1, 3, 8, 8});
    EXPECT_TRUE(at::equal(reference->forward(x), renamed->forward(x)));
  }
}

// ---- SRVGGNetCompact ------------------------------------------------------------------------

/// Random weights for SRVGGNetCompact: feat channels, num_conv middle convs, x`scale`.
sdxlhost::nn::TensorMap srvgg_weights(int feat, int num_conv, int scale, std::uint64_t seed) {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(seed);
  sdxlhost::nn::TensorMap weights;
  auto conv = [&](int index, int in, int out) {
    weights.set("body." + std::to_string(index) + ".weight",
                at::randn({out, in, 3, 3}, generator, at::kFloat) * std::sqrt(1.0 / (in * 9)));
    weights.set("body." + std::to_string(index) + ".bias", at::randn({out}, generator, at::kFloat) * 0.05);
  };
  conv(0, 3, feat);
  for (int i = 0; i <= num_conv; ++i) {
    weights.set("body." + std::to_string(2 * i + 1) + ".weight", at::rand({feat}, generator, at::kFloat) * 0.5);
    if (i < num_conv) conv(2 * i + 2, feat, feat);
  }
  conv(2 * num_conv + 2, feat, 3 * scale * scale);
  return weights;
}

/// The formula with plain loops: zero-padded 3x3 conv + bias, PReLU, pixel shuffle, + nearest.
std::vector<float> srvgg_reference(const sdxlhost::nn::TensorMap& w, int num_conv, int scale, const at::Tensor& x) {
  const int H = static_cast<int>(x.size(2)), W = static_cast<int>(x.size(3));
  auto conv = [&](const std::vector<float>& in, int cin, const std::string& name) {
    const at::Tensor weight = w.at(name + ".weight").contiguous(), bias = w.at(name + ".bias");
    const int cout = static_cast<int>(weight.size(0));
    const float* k = weight.data_ptr<float>();
    std::vector<float> out(static_cast<std::size_t>(cout) * H * W);
    for (int o = 0; o < cout; ++o)
      for (int y = 0; y < H; ++y)
        for (int xx = 0; xx < W; ++xx) {
          double sum = bias[o].item<float>();
          for (int i = 0; i < cin; ++i)
            for (int dy = -1; dy <= 1; ++dy)
              for (int dx = -1; dx <= 1; ++dx) {
                const int yy = y + dy, xs = xx + dx;
                if (yy < 0 || yy >= H || xs < 0 || xs >= W) continue;
                sum += static_cast<double>(k[((o * cin + i) * 3 + dy + 1) * 3 + dx + 1]) * in[(i * H + yy) * W + xs];
              }
          out[(o * H + y) * W + xx] = static_cast<float>(sum);
        }
    return out;
  };
  auto prelu = [&](std::vector<float>& v, const std::string& name, int channels) {
    const at::Tensor a = w.at(name + ".weight");
    for (int c = 0; c < channels; ++c)
      for (int i = 0; i < H * W; ++i) {
        float& value = v[c * H * W + i];
        if (value < 0) value *= a[c].item<float>();
      }
  };
  const at::Tensor xc = x.contiguous();
  std::vector<float> input(xc.data_ptr<float>(), xc.data_ptr<float>() + xc.numel());
  const int feat = static_cast<int>(w.at("body.0.weight").size(0));
  std::vector<float> h = conv(input, 3, "body.0");
  prelu(h, "body.1", feat);
  for (int i = 0; i < num_conv; ++i) {
    h = conv(h, feat, "body." + std::to_string(2 * i + 2));
    prelu(h, "body." + std::to_string(2 * i + 3), feat);
  }
  h = conv(h, feat, "body." + std::to_string(2 * num_conv + 2));
  // out[c, y*s+i, x*s+j] = h[c*s*s + i*s + j, y, x] + input[c, y, x]
  const int s = scale;
  std::vector<float> out(static_cast<std::size_t>(3) * H * s * W * s);
  for (int c = 0; c < 3; ++c)
    for (int y = 0; y < H * s; ++y)
      for (int xx = 0; xx < W * s; ++xx)
        out[(c * H * s + y) * W * s + xx] =
            h[((c * s * s + (y % s) * s + xx % s) * H + y / s) * W + xx / s] + input[(c * H + y / s) * W + xx / s];
  return out;
}

TEST(SRVGGNetCompact, DetectsItsConfigurationAndFollowsTheFormula) {
  const fs::path dir = fs::temp_directory_path() / ("srvgg-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (const auto& [feat, num_conv, scale] : {std::tuple{8, 2, 4}, std::tuple{6, 3, 2}}) {
    SCOPED_TRACE("feat " + std::to_string(feat) + " convs " + std::to_string(num_conv) + " x" + std::to_string(scale));
    const auto weights = srvgg_weights(feat, num_conv, scale, 77 + scale);
    const fs::path file = dir / "srvgg.safetensors";
    sdxlhost::nn::write_safetensors(file, weights);
    auto model = load_upscaler_model(file);
    auto* srvgg = dynamic_cast<SRVGGNetCompact*>(model.get());
    ASSERT_NE(srvgg, nullptr) << model->describe();
    EXPECT_EQ(srvgg->config().num_feat, feat);
    EXPECT_EQ(srvgg->config().num_conv, num_conv);
    EXPECT_EQ(model->scale(), scale);

    auto generator = at::make_generator<at::CPUGeneratorImpl>(5);
    const at::Tensor x = at::rand({1, 3, 5, 7}, generator, at::kFloat);
    const at::Tensor y = model->forward(x);
    ASSERT_EQ(y.sizes(), (std::vector<std::int64_t>{1, 3, 5 * scale, 7 * scale}));
    const auto reference = srvgg_reference(weights, num_conv, scale, x);
    const at::Tensor expected = at::from_blob(const_cast<float*>(reference.data()), y.sizes(), at::kFloat);
    EXPECT_LE(max_abs_diff(y, expected), 1e-5);
  }
  // With the last conv zeroed, the output is the nearest-neighbour enlargement of the input.
  auto weights = srvgg_weights(4, 1, 2, 3);
  weights.set("body.4.weight", at::zeros_like(weights.at("body.4.weight")));
  weights.set("body.4.bias", at::zeros_like(weights.at("body.4.bias")));
  auto model = model_from_weights(weights, "zero");
  const at::Tensor x = at::rand({1, 3, 3, 4});
  EXPECT_TRUE(at::equal(model->forward(x), at::upsample_nearest2d(x, {6, 8})));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace sdxlhost::test_support
