// VAE: parity with goldens/models/reference/vae_io and goldens/vae (encode, sample with given
// noise, decode, custom VAE), config inference, force_upcast, tiled vs untiled, errors.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>

#include "model_test_util.hpp"
#include "sdxlhost/nn/vae.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/job_scope.hpp"
#include "sdxlhost/sdk/request.hpp"

using sdxlhost::nn::AutoencoderKL;
using sdxlhost::nn::VaeConfig;
using sdxlhost::nn::VaeTiling;
using namespace sdxlhost::test_support;

namespace {

std::shared_ptr<AutoencoderKL> load_folder(const std::filesystem::path& dir,
                                           at::ScalarType dtype = at::kFloat) {
  return AutoencoderKL::load(VaeConfig::from_json(read_json(dir / "config.json")),
                             load_tensors(dir / "diffusion_pytorch_model.safetensors"), dtype);
}

AutoencoderKL& tiny() {
  static auto vae = load_folder(golden("models/tiny_sdxl/vae"));
  return *vae;
}

/// Checks every `intermediate.<phase>.X` of the golden against the trace entry X.
void expect_intermediates(const TensorMap& io, const std::string& phase,
                          const std::map<std::string, at::Tensor>& seen, int expected_count) {
  int compared = 0;
  const std::string prefix = "intermediate." + phase + ".";
  for (const auto& [key, expected] : io) {
    if (key.rfind(prefix, 0) != 0) continue;
    const std::string name = key.substr(prefix.size());
    auto it = seen.find(name);
    ASSERT_NE(it, seen.end()) << "no trace for " << name;
    EXPECT_LT(max_abs_diff(it->second, expected), kAtol) << name;
    ++compared;
  }
  EXPECT_EQ(compared, expected_count) << phase;
}

}  // namespace

TEST(Vae, EncodeMatchesVaeIoWithIntermediates) {
  const TensorMap io = load_tensors(golden("models/reference/vae_io.safetensors"));
  std::map<std::string, at::Tensor> seen;
  const auto dist = tiny().encode(io.at("input.image"), [&](const std::string& n, const at::Tensor& v) {
    seen[n] = v;
  });
  EXPECT_LT(max_abs_diff(dist.parameters, io.at("output.encode.parameters")), kAtol);
  EXPECT_LT(max_abs_diff(dist.mean, io.at("output.encode.mean")), kAtol);
  EXPECT_LT(max_abs_diff(dist.logvar, io.at("output.encode.logvar")), kAtol);
  EXPECT_LT(max_abs_diff(dist.std, io.at("output.encode.std")), kAtol);
  EXPECT_LT(max_abs_diff(dist.mode(), io.at("output.encode.mode")), kAtol);
  expect_intermediates(io, "encode", seen, 6);
}

TEST(Vae, DecodeMatchesVaeIoWithIntermediates) {
  const TensorMap io = load_tensors(golden("models/reference/vae_io.safetensors"));
  std::map<std::string, at::Tensor> seen;
  const at::Tensor image = tiny().decode(io.at("input.latents"), [&](const std::string& n, const at::Tensor& v) {
    seen[n] = v;
  });
  EXPECT_LT(max_abs_diff(image, io.at("output.decode.sample")), kAtol);
  expect_intermediates(io, "decode", seen, 6);
}

TEST(Vae, EncodeSampleScaleAndDecodeMatchVaeEncodeGolden) {
  const TensorMap g = load_tensors(golden("vae/vae_encode.safetensors"));
  // the float image is u8 / 255 * 2 - 1 of the stored HWC bytes
  const at::Tensor from_u8 =
      g.at("input.image_u8").permute({2, 0, 1}).unsqueeze(0).to(at::kFloat) / 255.0 * 2.0 - 1.0;
  EXPECT_LT(max_abs_diff(from_u8, g.at("input.image")), 1e-6);
  const auto dist = tiny().encode(g.at("input.image"));
  EXPECT_LT(max_abs_diff(dist.parameters, g.at("output.parameters")), kAtol);
  EXPECT_LT(max_abs_diff(dist.mean, g.at("output.mean")), kAtol);
  EXPECT_LT(max_abs_diff(dist.logvar, g.at("output.logvar")), kAtol);
  EXPECT_LT(max_abs_diff(dist.std, g.at("output.std")), kAtol);
  const at::Tensor sample = dist.sample(g.at("input.eps"));
  EXPECT_LT(max_abs_diff(sample, g.at("output.sample")), kAtol);
  EXPECT_DOUBLE_EQ(tiny().config().scaling_factor, 0.13025);
  EXPECT_LT(max_abs_diff(sample * tiny().config().scaling_factor, g.at("output.latents_scaled")), kAtol);
  EXPECT_LT(max_abs_diff(tiny().decode(dist.mean), g.at("output.decode_of_mean")), kAtol);
  EXPECT_THROW(dist.sample(at::zeros({1, 4, 8, 8})), Error);
}

TEST(Vae, CustomVaeDecodesThePipelineLatentsLikeTheReference) {
  const TensorMap g = load_tensors(golden("vae/pipeline_custom_vae.safetensors"));
  auto custom = load_folder(golden("vae/custom_vae"));
  const at::Tensor latents = g.at("final_latents") / custom->config().scaling_factor;
  const at::Tensor raw = custom->decode(latents);
  EXPECT_LT(max_abs_diff(raw, g.at("vae_decoded_raw")), kAtol);
  const at::Tensor np = at::clamp(raw / 2 + 0.5, 0, 1).permute({0, 2, 3, 1});
  EXPECT_LT(max_abs_diff(np, g.at("image_np_float")), kAtol);
  const at::Tensor stock = at::clamp(tiny().decode(latents) / 2 + 0.5, 0, 1).permute({0, 2, 3, 1});
  EXPECT_LT(max_abs_diff(stock, g.at("default_vae.image_np_float")), kAtol);
  EXPECT_GT(max_abs_diff(np, stock), 1e-2);  // the custom VAE really differs
}

TEST(Vae, ConfigInferredFromShapesMatchesConfigJson) {
  const auto dir = golden("models/tiny_sdxl/vae");
  VaeConfig from_json = VaeConfig::from_json(read_json(dir / "config.json"));
  VaeConfig inferred = VaeConfig::infer(load_tensors(dir / "diffusion_pytorch_model.safetensors"));
  inferred.sample_size = from_json.sample_size;  // not in the weights
  EXPECT_EQ(inferred.to_json().dump(), from_json.to_json().dump());

  // full-size SDXL VAE: every listed key is consumed (meta tensors, no memory)
  const VaeConfig sdxl = VaeConfig::from_json(read_json(golden("keys/configs/sdxl_vae_config.json")));
  const TensorMap keys = meta_tensors(golden("keys/sdxl_base_diffusers_vae.json"));
  auto model = AutoencoderKL::load(sdxl, keys, at::kFloat, at::kMeta);
  EXPECT_EQ(model->parameter_names().size(), keys.size());
  VaeConfig sdxl_inferred = VaeConfig::infer(keys);
  sdxl_inferred.sample_size = sdxl.sample_size;
  EXPECT_EQ(sdxl_inferred.to_json().dump(), sdxl.to_json().dump());
  EXPECT_EQ(sdxl.downscale_factor(), 8);
}

TEST(Vae, ForceUpcastRunsHalfWeightsInFloat32) {
  const auto dir = golden("models/tiny_sdxl/vae");
  VaeConfig config = VaeConfig::from_json(read_json(dir / "config.json"));
  ASSERT_TRUE(config.force_upcast);
  const TensorMap weights = load_tensors(dir / "diffusion_pytorch_model.safetensors");
  auto upcast = AutoencoderKL::load(config, weights, at::kHalf);
  EXPECT_EQ(upcast->dtype(), at::kFloat);
  const at::Tensor latents = at::randn({1, 4, 8, 8});
  EXPECT_EQ(upcast->decode(latents.to(at::kHalf)).scalar_type(), at::kFloat);
  config.force_upcast = false;
  EXPECT_EQ(AutoencoderKL::load(config, weights, at::kHalf)->dtype(), at::kHalf);
  // bf16 is not upcast (diffusers upcasts only float16); it runs on CPU
  auto bf16 = AutoencoderKL::load(config, weights, at::kBFloat16);
  EXPECT_EQ(bf16->decode(latents).scalar_type(), at::kBFloat16);
}

namespace {
double mean_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().mean().item<double>();
}
}  // namespace

TEST(Vae, TiledMatchesUntiledOnAnImageSeveralTilesWide) {
  // Tiling cannot be exact: each tile's GroupNorms and mid-block attention see only the tile.
  // To test the tiling itself (positions, overlap blending, borders) the image is stationary:
  // the golden 64x64 input repeated 2 x 5 (128 x 320), so every 64-px-periodic window has the
  // image's statistics. Tiles of 128 px overlapping by 64 px -> 4 tiles across, 2 down in the
  // encoder and 4 across in the decoder. Measured on this random-weight tiny VAE (which
  // amplifies differences far more than a trained one): encode mean |diff| 0.0043 (max 0.045),
  // decode mean |diff| 0.0145 (max 0.24) on a pixel range of 4.6. Limits: about 2x those.
  const TensorMap g = load_tensors(golden("vae/vae_encode.safetensors"));
  const at::Tensor image = g.at("input.image").repeat({1, 1, 2, 5});
  const VaeTiling tiling{128, 64};
  const auto full = tiny().encode(image);
  const auto tiles = tiny().encode_tiled(image, tiling);
  ASSERT_EQ(tiles.mean.sizes(), full.mean.sizes());
  EXPECT_LT(mean_abs_diff(tiles.mean, full.mean), 0.01);
  EXPECT_LT(max_abs_diff(tiles.mean, full.mean), 0.1);
  EXPECT_LT(mean_abs_diff(tiles.logvar, full.logvar), 0.02);

  const at::Tensor latents = full.mean;
  const at::Tensor decoded = tiny().decode(latents);
  const at::Tensor decoded_tiled = tiny().decode_tiled(latents, tiling);
  ASSERT_EQ(decoded_tiled.sizes(), decoded.sizes());
  const double blended = mean_abs_diff(decoded_tiled, decoded);
  EXPECT_LT(blended, 0.03);
  EXPECT_LT(max_abs_diff(decoded_tiled, decoded), 0.5);

  // the blending matters: without overlap (hard seams) the error is 2.5x larger (measured)
  EXPECT_LT(blended * 2, mean_abs_diff(tiny().decode_tiled(latents, VaeTiling{128, 0}), decoded));
  // one tile covering the image is exactly the untiled result
  EXPECT_EQ(max_abs_diff(tiny().decode_tiled(latents, VaeTiling{320, 32}), decoded), 0.0);
  EXPECT_EQ(max_abs_diff(tiny().encode_tiled(image, VaeTiling{320, 32}).mean, full.mean), 0.0);
}

TEST(Vae, TiledErrorShrinksAsTilesGrowOnANonStationaryImage) {
  // A smooth, non-repeating image (the input stretched to 96 x 320): tile-local statistics
  // differ from the image's, so the error is larger, but it falls as tiles grow.
  const TensorMap g = load_tensors(golden("vae/vae_encode.safetensors"));
  const at::Tensor image = at::upsample_bilinear2d(g.at("input.image"), {96, 320}, false);
  const at::Tensor latents = tiny().encode(image).mean;
  const at::Tensor decoded = tiny().decode(latents);
  const double small = mean_abs_diff(tiny().decode_tiled(latents, VaeTiling{64, 32}), decoded);
  const double large = mean_abs_diff(tiny().decode_tiled(latents, VaeTiling{128, 64}), decoded);
  EXPECT_LT(large, small);
  EXPECT_LT(large, 0.05 * (decoded.max() - decoded.min()).item<double>());
}

TEST(Vae, BadInputsGiveValidationErrors) {
  EXPECT_EQ(validation_field([] { tiny().encode(at::zeros({1, 4, 64, 64})); }), "image");
  EXPECT_EQ(validation_field([] { tiny().encode(at::zeros({1, 3, 63, 64})); }), "image");
  EXPECT_EQ(validation_field([] { tiny().decode(at::zeros({1, 3, 8, 8})); }), "latents");
  EXPECT_EQ(validation_field([] { tiny().decode_tiled(at::zeros({1, 4, 8, 8}), VaeTiling{63, 8}); }), "tiling");
  EXPECT_EQ(validation_field([] { tiny().decode_tiled(at::zeros({1, 4, 8, 8}), VaeTiling{64, 40}); }), "tiling");
  auto bad = read_json(golden("models/tiny_sdxl/vae/config.json"));
  bad["down_block_types"][0] = "AttnDownEncoderBlock2D";
  EXPECT_THROW(VaeConfig::from_json(bad), Error);
  TensorMap missing = load_tensors(golden("models/tiny_sdxl/vae/diffusion_pytorch_model.safetensors"));
  missing.erase("decoder.conv_out.bias");
  try {
    AutoencoderKL::load(tiny().config(), missing);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ModelLoadError);
    EXPECT_NE(std::string(e.what()).find("decoder.conv_out.bias"), std::string::npos);
  }
}

// Issue 14, items 3 and 9: the VAE decode reports its progress block by block and stops between
// blocks when its job is cancelled.
TEST(Vae, DecodeReportsProgressAndStopsBetweenBlocksWhenCancelled) {
  const TensorMap io = load_tensors(golden("models/reference/vae_io.safetensors"));
  auto request = std::make_shared<sdxlhost::sdk::GenerationRequest>();
  auto token = std::make_shared<sdxlhost::sdk::CancellationToken>();
  sdxlhost::sdk::Context context(request, sdxlhost::sdk::ContextServices{}, token);
  std::vector<int> seen;
  int cancel_at = 0;  // 0: never
  const sdxlhost::sdk::DetailSink details = [&](std::string_view part, int index, int count) {
    EXPECT_EQ(part, "vae_decode");
    EXPECT_GE(count, 2);
    seen.push_back(index);
    if (index == cancel_at) token->cancel();
  };
  sdxlhost::sdk::JobScope scope(context, &details);
  tiny().decode(io.at("input.latents"));
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen.front(), 1);
  const int parts = static_cast<int>(seen.size());
  EXPECT_EQ(seen.back(), parts);

  seen.clear();
  cancel_at = 1;
  try {
    tiny().decode(io.at("input.latents"));
    FAIL() << "the decode ran to its end after the cancel";
  } catch (const sdxlhost::sdk::Error& e) {
    EXPECT_EQ(e.code(), sdxlhost::sdk::ErrorCode::Cancelled);
  }
  EXPECT_EQ(seen, std::vector<int>{1});
}
