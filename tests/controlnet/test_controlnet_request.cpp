// The controlnet plugin's pieces without a pipeline: data.controlnet parsing (three shapes, every
// bad field refused with its path), the guidance window (diffusers' controlnet_keep), the plugin
// settings, residual summing, and the canny preprocessor bit-exact on every canny golden (direct).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>

#include "canny_goldens.hpp"
#include "canny_preprocessor.hpp"
#include "controlnet_hook.hpp"
#include "controlnet_request.hpp"
#include "controlnet_settings.hpp"
#include "guidance_window.hpp"
#include "common/goldens.hpp"
#include "sdxlhost/nn/image_decode.hpp"
#include "sdxlhost/sdk/error.hpp"

using namespace sdxlhost;
using namespace sdxlhost::controlnet;
using nlohmann::json;

namespace {

const json kUnit = {{"model", "canny-xl"}, {"image", "aW1n"}};

/// The field of the ValidationError parsing `controlnet` throws ("(no error)" when it parses).
std::string failing_field(const json& controlnet, const ControlNetSettings& settings = {}) {
  try {
    parse_controlnet_request(controlnet, settings);
  } catch (const sdk::Error& e) {
    EXPECT_EQ(e.code(), sdk::ErrorCode::ValidationError) << e.what();
    return e.field();
  }
  return "(no error)";
}

json units(std::vector<json> list) { return {{"enabled", true}, {"units", list}}; }

json with(json base, const json& patch) {
  base.update(patch);
  return base;
}

}  // namespace

TEST(ControlNetRequest, UnitsArrayAndSingleFormsParseWithDefaults) {
  const auto multi = parse_controlnet_request(
      units({kUnit, with(kUnit, {{"conditioning_scale", 0.4}, {"control_guidance_start", 0.3},
                                 {"preprocessor", {{"name", "canny"}, {"low_threshold", 50}}}})}),
      {});
  ASSERT_EQ(multi.units.size(), 2u);
  EXPECT_EQ(multi.units[0].conditioning_scale, 1.0);
  EXPECT_EQ(multi.units[0].guidance_start, 0.0);
  EXPECT_EQ(multi.units[0].guidance_end, 1.0);
  EXPECT_TRUE(multi.units[0].preprocessor.name.empty());
  EXPECT_EQ(multi.units[1].field, "data.controlnet.units[1]");
  EXPECT_EQ(multi.units[1].preprocessor.name, "canny");
  EXPECT_EQ(multi.units[1].preprocessor.options["low_threshold"], 50);
  EXPECT_FALSE(multi.guess_mode);

  ControlNetSettings settings;
  settings.types["canny"] = "controlnet-canny-sdxl-1.0";
  const auto single = parse_controlnet_request(
      {{"enabled", true}, {"type", "canny"}, {"control_image", "aW1n"}, {"conditioning_scale", 0.5},
       {"preprocessor", {{"type", "canny"}, {"high_threshold", 150}}}, {"guess_mode", true}},
      settings);
  ASSERT_EQ(single.units.size(), 1u);
  EXPECT_EQ(single.units[0].model, "controlnet-canny-sdxl-1.0");  // type looked up in types
  EXPECT_EQ(single.units[0].model_field, "data.controlnet.type");
  EXPECT_EQ(single.units[0].image_field, "data.controlnet.control_image");
  EXPECT_EQ(single.units[0].preprocessor.name, "canny");
  EXPECT_TRUE(single.guess_mode);
  // an unmapped type is the model's name
  EXPECT_EQ(parse_controlnet_request({{"type", "my-net"}, {"image", "aW1n"}}, settings).units[0].model, "my-net");

  const auto array = parse_controlnet_request(json::array({kUnit, with(kUnit, {{"enabled", false}})}), {});
  ASSERT_EQ(array.units.size(), 1u);  // the disabled unit is dropped
  EXPECT_EQ(array.units[0].field, "data.controlnet[0]");
  EXPECT_EQ(parse_controlnet_request({{"enabled", false}, {"model", 5}}, {}).units.size(), 0u);
  EXPECT_EQ(parse_controlnet_request(nullptr, {}).units.size(), 0u);
  EXPECT_EQ(parse_controlnet_request(with(kUnit, {{"preprocessor", "none"}}), {}).units[0].preprocessor.name, "");
}

TEST(ControlNetRequest, UnknownKeysAreWarningsNamingThePath) {
  const auto parsed = parse_controlnet_request(units({with(kUnit, {{"wieght", 1}})}), {});
  ASSERT_EQ(parsed.warnings.size(), 1u);
  EXPECT_NE(parsed.warnings[0].find("data.controlnet.units[0].wieght"), std::string::npos);
}

TEST(ControlNetRequest, EveryBadFieldIsAValidationErrorNamingItsPath) {
  const std::string u1 = "data.controlnet.units[1]";
  const std::vector<std::pair<json, std::string>> cases = {
      {5, "data.controlnet"},
      {{{"enabled", "yes"}}, "data.controlnet.enabled"},
      {{{"units", json::array()}}, "data.controlnet.units"},
      {{{"units", "x"}}, "data.controlnet.units"},
      {units({kUnit, 7}), u1},
      {units({kUnit, {{"image", "aW1n"}}}), u1 + ".model"},
      {units({kUnit, with(kUnit, {{"model", ""}})}), u1 + ".model"},
      {units({kUnit, with(kUnit, {{"model", 3}})}), u1 + ".model"},
      {units({kUnit, {{"model", "m"}}}), u1 + ".image"},
      {units({kUnit, with(kUnit, {{"image", 12}})}), u1 + ".image"},
      {units({kUnit, with(kUnit, {{"conditioning_scale", -0.1}})}), u1 + ".conditioning_scale"},
      {units({kUnit, with(kUnit, {{"conditioning_scale", 2.5}})}), u1 + ".conditioning_scale"},
      {units({kUnit, with(kUnit, {{"conditioning_scale", "1"}})}), u1 + ".conditioning_scale"},
      {units({kUnit, with(kUnit, {{"control_guidance_start", 1.5}})}), u1 + ".control_guidance_start"},
      {units({kUnit, with(kUnit, {{"control_guidance_end", -1}})}), u1 + ".control_guidance_end"},
      {units({kUnit, with(kUnit, {{"control_guidance_start", 0.5}, {"control_guidance_end", 0.5}})}),
       u1 + ".control_guidance_end"},
      {units({kUnit, with(kUnit, {{"control_guidance_start", 0.8}, {"control_guidance_end", 0.2}})}),
       u1 + ".control_guidance_end"},
      {units({kUnit, with(kUnit, {{"preprocessor", 4}})}), u1 + ".preprocessor"},
      {units({kUnit, with(kUnit, {{"preprocessor", ""}})}), u1 + ".preprocessor"},
      {units({kUnit, with(kUnit, {{"preprocessor", {{"low_threshold", 1}}}})}), u1 + ".preprocessor.name"},
      {units({kUnit, with(kUnit, {{"enabled", 1}})}), u1 + ".enabled"},
      {{{"units", {kUnit}}, {"guess_mode", "no"}}, "data.controlnet.guess_mode"},
      {with(kUnit, {{"control_guidance_start", 1.0}}), "data.controlnet.control_guidance_end"},
  };
  for (const auto& [request, field] : cases) EXPECT_EQ(failing_field(request), field) << request.dump();
  ControlNetSettings two;
  two.max_units = 2;
  EXPECT_EQ(failing_field(units({kUnit, kUnit, kUnit}), two), "data.controlnet.units");
}

TEST(ControlNetRequest, SettingsAreCheckedNamingTheirKey) {
  auto field = [](const json& config) {
    try {
      ControlNetSettings::from_json(config);
    } catch (const sdk::Error& e) {
      return e.field();
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(field({{"types", {{"canny", 1}}}}), "plugins.config.controlnet.types.canny");
  EXPECT_EQ(field({{"types", 1}}), "plugins.config.controlnet.types");
  EXPECT_EQ(field({{"dtype", "fp8"}}), "plugins.config.controlnet.dtype");
  EXPECT_EQ(field({{"device", "tpu"}}), "plugins.config.controlnet.device");
  EXPECT_EQ(field({{"max_units", 0}}), "plugins.config.controlnet.max_units");
  EXPECT_EQ(field({{"max_image_side", "big"}}), "plugins.config.controlnet.max_image_side");
  EXPECT_EQ(field({{"device", "cpu"}, {"dtype", "bf16"}, {"types", {{"canny", "cn"}}}}), "(no error)");
  EXPECT_EQ(ControlNetSettings::from_json({{"dtype", "bf16"}}).cache_variant(), "controlnet:cpu:bf16");
}

TEST(GuidanceWindow, KeepMatchesDiffusersForTheGoldensAndEdges) {
  // goldens/controlnet/report.json: 3 steps, [0, 0.67] -> [1, 1, 0]; [0.3, 1] -> [0, 1, 1]
  EXPECT_EQ(controlnet_keep(0, 3, 0.0, 0.67), 1.0);
  EXPECT_EQ(controlnet_keep(1, 3, 0.0, 0.67), 1.0);
  EXPECT_EQ(controlnet_keep(2, 3, 0.0, 0.67), 0.0);
  EXPECT_EQ(controlnet_keep(0, 3, 0.3, 1.0), 0.0);
  EXPECT_EQ(controlnet_keep(1, 3, 0.3, 1.0), 1.0);
  EXPECT_EQ(controlnet_keep(2, 3, 0.3, 1.0), 1.0);
  for (int i = 0; i < 30; ++i) EXPECT_EQ(controlnet_keep(i, 30, 0.0, 1.0), 1.0);
  EXPECT_EQ(controlnet_keep(4, 10, 0.5, 1.0), 0.0);  // 0.4 < 0.5
  EXPECT_EQ(controlnet_keep(5, 10, 0.5, 1.0), 1.0);
  EXPECT_EQ(controlnet_keep(5, 10, 0.0, 0.5), 0.0);  // 0.6 > 0.5
}

TEST(Residuals, UnitsAreSummedInOrderAndMismatchedUnetsRefused) {
  sdk::UNetResiduals sum;
  accumulate_residuals(sum, {{at::ones({1, 2})}, at::ones({1})});
  accumulate_residuals(sum, {{at::full({1, 2}, 2.0)}, at::full({1}, 3.0)});
  EXPECT_EQ(sum.down[0].sum().item<double>(), 6.0);
  EXPECT_EQ(sum.mid.item<double>(), 4.0);
  EXPECT_THROW(accumulate_residuals(sum, {{at::ones({1}), at::ones({1})}, at::ones({1})}), sdk::Error);
}

TEST(Canny, EveryGoldenIsBitExactWithItsThreeChannelStack) {
  const auto tensors = sdxlhost::test_support::load_tensors(sdxlhost::test_support::golden("canny/canny.safetensors"));
  const CannyPreprocessor canny;
  const auto records = sdxlhost::test_support::canny_records();
  ASSERT_GE(records.size(), 14u);
  for (const auto& record : records) {
    SCOPED_TRACE(record.key);
    std::ifstream png(sdxlhost::test_support::golden("canny/" + record.image + ".png"), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(png)), std::istreambuf_iterator<char>());
    const sdk::Image input = nn::decode_image_rgb(bytes, "image");
    const sdk::Image out = canny.apply(input, record.options, "data.preprocessor");
    ASSERT_EQ(out.channels, 3);
    const at::Tensor got = at::from_blob(const_cast<std::uint8_t*>(out.pixels.data()), {out.height, out.width, 3},
                                         at::kByte).clone();
    const at::Tensor edges = tensors.at(record.key);
    ASSERT_EQ(got.size(0), edges.size(0));
    ASSERT_EQ(got.size(1), edges.size(1));
    for (int c = 0; c < 3; ++c) EXPECT_TRUE(at::equal(got.select(2, c), edges)) << "channel " << c;
    if (const at::Tensor* stack = tensors.find(record.key + ".controlnet_rgb")) EXPECT_TRUE(at::equal(got, *stack));
  }
}

TEST(Canny, OptionsAreDescribedAndBadOnesNamed) {
  const CannyPreprocessor canny;
  const json described = canny.describe();
  EXPECT_EQ(described["name"], "canny");
  ASSERT_EQ(described["options"].size(), 5u);
  EXPECT_EQ(described["options"][0]["name"], "low_threshold");
  EXPECT_EQ(described["options"][0]["default"], 100);
  sdk::Image image;
  image.width = image.height = 8;
  image.pixels.assign(8 * 8 * 3, 0);
  auto field = [&](const json& options) {
    try {
      canny.apply(image, options, "data.preprocessor");
    } catch (const sdk::Error& e) {
      EXPECT_EQ(e.code(), sdk::ErrorCode::ValidationError) << e.what();
      return e.field();
    }
    return std::string("(no error)");
  };
  EXPECT_EQ(field({{"low_threshold", "high"}}), "data.preprocessor.low_threshold");
  EXPECT_EQ(field({{"low_threshold", -1}}), "data.preprocessor.low_threshold");
  EXPECT_EQ(field({{"high_threshold", 5000}}), "data.preprocessor.high_threshold");
  EXPECT_EQ(field({{"low_threshold", 200}, {"high_threshold", 100}}), "data.preprocessor.low_threshold");
  EXPECT_EQ(field({{"aperture_size", 4}}), "data.preprocessor.aperture_size");
  EXPECT_EQ(field({{"aperture_size", 3.5}}), "data.preprocessor.aperture_size");
  EXPECT_EQ(field({{"gray", 1}}), "data.preprocessor.gray");
  EXPECT_EQ(field({{"sigma", 1}}), "data.preprocessor.sigma");
  EXPECT_EQ(field({{"name", "canny"}, {"low_threshold", 10}}), "(no error)");
  EXPECT_EQ(field(nullptr), "(no error)");
}
