// ControlNet end to end through the host's Unix socket with the built plugins (sdxl, schedulers,
// controlnet): the single and multi pipeline goldens as images (within 1/255), canny bit-exact
// on every canny golden through the `preprocess` message, capabilities, load/unload_model of
// kind controlnet, every bad input answered with its code and field while the host keeps
// serving, img2img with a ControlNet, and the feature switched off.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "canny_goldens.hpp"
#include "common/host_fixture.hpp"
#include "common/goldens.hpp"
#include "sdxlhost/nn/image_decode.hpp"

namespace sdxlhost::test_support {
namespace {

namespace fs = std::filesystem;
using sdxlhost::test_support::golden;

std::string base64_file(const std::string& golden_path) {
  std::ifstream in(golden(golden_path), std::ios::binary);
  EXPECT_TRUE(in.good()) << golden_path;
  return nn::encode_base64(std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()));
}

json message(const std::string& type, const std::string& id, json data = json::object()) {
  return {{"message_type", type}, {"request_id", id}, {"data", data}};
}

/// A host serving the real plugins, with the golden tiny SDXL as checkpoints/tiny-golden and the
/// golden ControlNets as controlnet/tiny and controlnet/tiny_2.
class ControlNetHost {
 public:
  explicit ControlNetHost(json plugins = json::object())
      : fixture_(json{{"plugins", merge(json{{"dir", SDXLHOST_PLUGIN_DIR}}, plugins)}}) {
    const fs::path models = fixture_.dir() / "models";
    fs::copy(golden("models/tiny_sdxl"), models / "checkpoints" / "tiny-golden", fs::copy_options::recursive);
    fs::create_directories(models / "controlnet");
    fs::copy(golden("controlnet/controlnet_tiny"), models / "controlnet" / "tiny", fs::copy_options::recursive);
    fs::copy(golden("controlnet/controlnet_tiny_2"), models / "controlnet" / "tiny_2", fs::copy_options::recursive);
    client_ = fixture_.client();
  }
  WireClient& client() { return *client_; }
  fs::path models() const { return fixture_.dir() / "models"; }

 private:
  static json merge(json base, const json& patch) {
    base.update(patch, true);
    return base;
  }
  HostFixture fixture_;
  std::unique_ptr<WireClient> client_;
};

/// The pipeline goldens' request (3 Euler steps, 64x64, seed 0) with `controlnet`.
json cat_request(const std::string& id, json controlnet, json extra = json::object()) {
  json data = {{"prompt", "a photo of a cat"},
               {"models", {{"base", "tiny-golden"}}},
               {"hyperparameters", {{"num_inference_steps", 3}, {"guidance_scale", 5.0}, {"seed", 0}}},
               {"dimensions", {{"width", 64}, {"height", 64}}},
               {"scheduler", "EulerDiscreteScheduler"},
               {"controlnet", controlnet},
               {"output", {{"format", "png"}, {"return_base64", true}}}};
  data.update(extra, true);
  return message("inference_request", id, data);
}

json unit(const std::string& model, const std::string& image, double scale, double start, double end) {
  return {{"model", model}, {"image", base64_file("controlnet/" + image)}, {"conditioning_scale", scale},
          {"control_guidance_start", start}, {"control_guidance_end", end}};
}

json single_form() {
  return {{"enabled", true}, {"type", "tiny"}, {"control_image", base64_file("controlnet/control_image.png")},
          {"conditioning_scale", 0.7}, {"control_guidance_end", 0.67}};
}

json multi_form() {
  return {{"enabled", true},
          {"units", {unit("tiny", "control_image.png", 0.7, 0.0, 0.67), unit("tiny_2", "control_image_2.png", 0.4, 0.3, 1.0)}}};
}

sdk::Image response_image(const json& response) {
  return nn::decode_base64_image(response["data"]["generated_images"][0]["image_data"].get<std::string>(), "image");
}

/// Largest channel difference between two images of one size.
int max_difference(const sdk::Image& a, const sdk::Image& b) {
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.height, b.height);
  if (a.pixels.size() != b.pixels.size()) return 256;
  int worst = 0;
  for (std::size_t i = 0; i < a.pixels.size(); ++i) worst = std::max(worst, std::abs(a.pixels[i] - b.pixels[i]));
  return worst;
}

/// Asserts `response` failed with `code` naming `field`.
void expect_error(const json& response, const std::string& code, const std::string& field) {
  EXPECT_FALSE(response.value("success", true)) << response.dump().substr(0, 400);
  EXPECT_EQ(response.value("error_code", ""), code) << response.dump().substr(0, 400);
  EXPECT_EQ(response.value("field", ""), field) << response.dump().substr(0, 400);
}

}  // namespace

TEST(ControlNetSocket, SingleAndMultiPipelineGoldensEndToEnd) {
  // the comparison tells the cases apart: without ControlNet, with one, with two differ by > 1/255
  const auto png = [](const std::string& path) { return nn::decode_base64_image(base64_file(path), path); };
  EXPECT_GT(max_difference(png("models/reference/pipeline_3steps.png"), png("controlnet/pipeline_controlnet.png")), 1);
  EXPECT_GT(max_difference(png("controlnet/pipeline_controlnet.png"), png("controlnet/pipeline_multi_controlnet.png")), 1);
  ControlNetHost host;
  const std::vector<std::tuple<std::string, json, std::string>> cases = {
      {"single", single_form(), "controlnet/pipeline_controlnet.png"},
      {"multi", multi_form(), "controlnet/pipeline_multi_controlnet.png"}};
  for (const auto& [name, controlnet, png] : cases) {
    SCOPED_TRACE(name);
    host.client().send(cat_request(name, controlnet));
    const auto all = host.client().until_response(name, 60s);
    ASSERT_FALSE(all.empty());
    const json& response = all.back();
    ASSERT_TRUE(response.value("success", false)) << response.dump().substr(0, 600);
    EXPECT_EQ(response["data"]["stages"],
              json({"encode_prompt", "prepare_latents", "controlnet_prepare", "denoise", "vae_decode"}));
    const sdk::Image expected = nn::decode_base64_image(base64_file(png), png);
    EXPECT_LE(max_difference(response_image(response), expected), 1);
  }
}

TEST(ControlNetSocket, CannyThroughThePreprocessMessageIsBitExactOnEveryGolden) {
  ControlNetHost host;
  const auto tensors = sdxlhost::test_support::load_tensors(golden("canny/canny.safetensors"));
  const auto records = sdxlhost::test_support::canny_records();
  ASSERT_GE(records.size(), 14u);
  for (const auto& record : records) {
    SCOPED_TRACE(record.key);
    const json response = host.client().request(
        message("preprocess", record.key,
                {{"preprocessor", record.options}, {"image", base64_file("canny/" + record.image + ".png")}}));
    ASSERT_TRUE(response.value("success", false)) << response.dump().substr(0, 400);
    EXPECT_EQ(response["data"]["format"], "png");
    EXPECT_EQ(response["data"]["options"]["low_threshold"], record.options["low_threshold"]);
    const sdk::Image out = nn::decode_base64_image(response["data"]["image"].get<std::string>(), "image");
    const at::Tensor got =
        at::from_blob(const_cast<std::uint8_t*>(out.pixels.data()), {out.height, out.width, 3}, at::kByte).clone();
    const at::Tensor edges = tensors.at(record.key);
    ASSERT_EQ(got.size(0), edges.size(0));
    ASSERT_EQ(got.size(1), edges.size(1));
    for (int c = 0; c < 3; ++c) EXPECT_TRUE(at::equal(got.select(2, c), edges)) << "channel " << c;
    if (const at::Tensor* stack = tensors.find(record.key + ".controlnet_rgb")) EXPECT_TRUE(at::equal(got, *stack));
  }
}

TEST(ControlNetSocket, CapabilitiesListThePreprocessorsWithTheirOptionsAndTheModelKind) {
  ControlNetHost host;
  const json caps = host.client().request(message("capabilities", "caps"))["data"];
  EXPECT_NE(std::find(caps["preprocessors"].begin(), caps["preprocessors"].end(), "canny"), caps["preprocessors"].end());
  EXPECT_NE(std::find(caps["message_types"].begin(), caps["message_types"].end(), "preprocess"),
            caps["message_types"].end());
  EXPECT_NE(std::find(caps["preloadable_model_kinds"].begin(), caps["preloadable_model_kinds"].end(), "controlnet"),
            caps["preloadable_model_kinds"].end());
  json canny;
  for (const auto& p : caps["preprocessor_details"])
    if (p["name"] == "canny") canny = p;
  ASSERT_TRUE(canny.is_object());
  std::vector<std::string> names;
  for (const auto& option : canny["options"]) names.push_back(option["name"]);
  EXPECT_EQ(names, (std::vector<std::string>{"low_threshold", "high_threshold", "gray", "l2_gradient", "aperture_size"}));
  EXPECT_EQ(canny["options"][0]["default"], 100);
  EXPECT_EQ(canny["options"][0]["maximum"], 2040.0);
}

TEST(ControlNetSocket, LoadAndUnloadModelOfKindControlnet) {
  ControlNetHost host;
  const json loaded = host.client().request(message("load_model", "load", {{"kind", "controlnet"}, {"name", "tiny"}}));
  ASSERT_TRUE(loaded.value("success", false)) << loaded.dump();
  EXPECT_GT(loaded["data"]["cache"]["loaded_bytes"].get<double>(), 0.0) << loaded.dump();
  const json unloaded = host.client().request(message("unload_model", "unload", {{"kind", "controlnet"}, {"name", "tiny"}}));
  EXPECT_TRUE(unloaded["data"]["unloaded"].get<bool>()) << unloaded.dump();
  expect_error(host.client().request(message("load_model", "missing", {{"kind", "controlnet"}, {"name", "nope"}})),
               "MODEL_NOT_FOUND", "data.name");
}

TEST(ControlNetSocket, BadInputsAreAnsweredWithTheirCodeAndFieldAndTheHostKeepsServing) {
  ControlNetHost host;
  auto& c = host.client();
  const json good = unit("tiny", "control_image.png", 0.7, 0.0, 1.0);
  auto with = [](json base, const json& patch) {
    base.update(patch);
    return base;
  };
  const std::string u0 = "data.controlnet.units[0]", u1 = "data.controlnet.units[1]";
  // refused when submitted (the plan validates data.controlnet)
  expect_error(c.request(cat_request("order", {{"units", {good, with(good, {{"control_guidance_start", 0.5},
                                                                             {"control_guidance_end", 0.5}})}}})),
               "VALIDATION_ERROR", u1 + ".control_guidance_end");
  expect_error(c.request(cat_request("scale", {{"units", {with(good, {{"conditioning_scale", 3}})}}})),
               "VALIDATION_ERROR", u0 + ".conditioning_scale");
  // refused when the job runs: names, bytes and options that need the models or plugins
  expect_error(c.request(cat_request("model", {{"units", {with(good, {{"model", "no-such-net"}})}}}), 60s),
               "MODEL_NOT_FOUND", u0 + ".model");
  expect_error(c.request(cat_request("escape", {{"units", {with(good, {{"model", "../checkpoints/tiny-golden"}})}}}), 60s),
               "VALIDATION_ERROR", u0 + ".model");
  expect_error(c.request(cat_request("pre", {{"units", {with(good, {{"preprocessor", "sobel"}})}}}), 60s),
               "VALIDATION_ERROR", u0 + ".preprocessor");
  expect_error(c.request(cat_request("option", {{"units", {with(good, {{"preprocessor", {{"name", "canny"},
                                                                                         {"low_threshold", "x"}}}})}}}),
                         60s),
               "VALIDATION_ERROR", u0 + ".preprocessor.low_threshold");
  expect_error(c.request(cat_request("corrupt", {{"units", {with(good, {{"image", nn::encode_base64("\x89PNG\r\n\x1a\nbroken")}})}}}), 60s),
               "VALIDATION_ERROR", u0 + ".image");
  expect_error(c.request(cat_request("notb64", {{"units", {with(good, {{"image", "%%%"}})}}}), 60s),
               "VALIDATION_ERROR", u0 + ".image");
  // the preprocess message
  const std::string png = base64_file("canny/img0_gray_64x64.png");
  expect_error(c.request(message("preprocess", "p1", {{"preprocessor", {{"name", "sobel"}}}, {"image", png}})),
               "VALIDATION_ERROR", "data.preprocessor.name");
  expect_error(c.request(message("preprocess", "p2", {{"preprocessor", {{"name", "canny"}, {"aperture_size", 4}}},
                                                      {"image", png}})),
               "VALIDATION_ERROR", "data.preprocessor.aperture_size");
  expect_error(c.request(message("preprocess", "p3", {{"preprocessor", "canny"}, {"image", "aGVsbG8="}})),
               "VALIDATION_ERROR", "data.image");
  expect_error(c.request(message("preprocess", "p4", {{"image", png}})), "VALIDATION_ERROR", "data.preprocessor");
  expect_error(c.request(message("preprocess", "p5", {{"preprocessor", "canny"}})), "VALIDATION_ERROR", "data.image");
  // still serving: a good request succeeds afterwards
  EXPECT_TRUE(c.request(message("ping", "ping"))["success"].get<bool>());
  const json ok = c.request(cat_request("ok", {{"units", {good}}}), 60s);
  EXPECT_TRUE(ok.value("success", false)) << ok.dump().substr(0, 400);
}

TEST(ControlNetSocket, Img2ImgWithAControlNetUsesTheInitImagesSize) {
  ControlNetHost host;
  const json response = host.client().request(
      cat_request("i2i", {{"units", {{{"model", "tiny"}, {"image", base64_file("canny/img3_rgb_softedges_w128_h96.png")},
                                      {"preprocessor", "canny"}}}}},
                  {{"init_image", base64_file("vae/input_image.png")}, {"hyperparameters", {{"strength", 0.6}}}}),
      60s);
  ASSERT_TRUE(response.value("success", false)) << response.dump().substr(0, 600);
  EXPECT_EQ(response_image(response).width, 64);
}

TEST(ControlNetSocket, BatchesAndLoraCombineWithAControlNet) {
  ControlNetHost host;
  auto& c = host.client();
  // A batch of 2: image i uses seed + i, and the control image is batched with it, so image 0 is
  // the single-image golden and image 1 is what seed 1 alone gives.
  const json batch = c.request(cat_request("batch", single_form(), {{"batch", {{"size", 2}}}}), 120s);
  ASSERT_TRUE(batch.value("success", false)) << batch.dump().substr(0, 600);
  ASSERT_EQ(batch["data"]["generated_images"].size(), 2u);
  const auto image_at = [](const json& response, int i) {
    return nn::decode_base64_image(response["data"]["generated_images"][i]["image_data"].get<std::string>(), "png");
  };
  const sdk::Image golden_single =
      nn::decode_base64_image(base64_file("controlnet/pipeline_controlnet.png"), "png");
  EXPECT_LE(max_difference(image_at(batch, 0), golden_single), 1);
  const json seed1 = c.request(cat_request("seed1", single_form(), {{"hyperparameters", {{"seed", 1}}}}), 60s);
  ASSERT_TRUE(seed1.value("success", false)) << seed1.dump().substr(0, 600);
  EXPECT_LE(max_difference(image_at(batch, 1), response_image(seed1)), 1);
  EXPECT_GT(max_difference(image_at(batch, 1), golden_single), 1) << "the seeds did not differ";

  // LoRA on the base model together with the ControlNet: a different image, and the next
  // ControlNet-only request is the golden again (the LoRA was reverted).
  const fs::path loras = host.models() / "loras";
  fs::create_directories(loras);
  fs::copy_file(golden("lora/kohya_lora.safetensors"), loras / "style.safetensors");
  const json with_lora =
      c.request(cat_request("lora", single_form(), {{"lora", {{"enabled", true}, {"models", {{{"name", "style"}, {"weight", 0.8}}}}}}}), 60s);
  ASSERT_TRUE(with_lora.value("success", false)) << with_lora.dump().substr(0, 600);
  EXPECT_GT(max_difference(response_image(with_lora), golden_single), 1) << "the LoRA changed nothing";
  const json after = c.request(cat_request("after", single_form()), 60s);
  ASSERT_TRUE(after.value("success", false)) << after.dump().substr(0, 600);
  EXPECT_LE(max_difference(response_image(after), golden_single), 1);
}

TEST(ControlNetSocket, DisablingThePluginMakesControlNetRequestsFeatureDisabledOnly) {
  ControlNetHost host(json{{"enabled", {{"controlnet", false}}}});
  auto& c = host.client();
  expect_error(c.request(cat_request("cn", single_form())), "FEATURE_DISABLED", "data.controlnet");
  expect_error(c.request(message("preprocess", "pre", {{"preprocessor", "canny"},
                                                       {"image", base64_file("canny/img0_gray_64x64.png")}})),
               "FEATURE_DISABLED", "data.preprocessor");
  const json plain = c.request(cat_request("plain", nullptr), 60s);
  ASSERT_TRUE(plain.value("success", false)) << plain.dump().substr(0, 400);
  const sdk::Image expected = nn::decode_base64_image(base64_file("models/reference/pipeline_3steps.png"), "png");
  EXPECT_LE(max_difference(response_image(plain), expected), 1);
}

}  // namespace sdxlhost::test_support
