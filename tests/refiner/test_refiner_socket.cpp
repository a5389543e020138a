// The refiner end to end through the host's Unix socket with the built plugins (sdxl,
// schedulers, refiner): both goldens as images (within 1/255), the plan, progress over both
// experts, model_info and the PNG's A1111 parameters, bad requests answered with their code and
// field while the host keeps serving, and the feature switched off. Requests come from the
// goldens' metadata.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include "common/host_fixture.hpp"
#include "refiner_goldens.hpp"
#include "common/goldens.hpp"
#include "sdxlhost/nn/image_decode.hpp"
#include "sdxlhost/nn/safetensors.hpp"

namespace sdxlhost::test_support {
namespace {

namespace fs = std::filesystem;
using sdxlhost::test_support::Golden;
using sdxlhost::test_support::load_golden;
using sdxlhost::test_support::golden;

std::string file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

json message(const std::string& type, const std::string& id, json data = json::object()) {
  return {{"message_type", type}, {"request_id", id}, {"data", data}};
}

/// A host serving the real plugins with the golden tiny SDXL as checkpoints/tiny-base and the
/// golden tiny refiner as checkpoints/tiny-refiner.
class RefinerHost {
 public:
  explicit RefinerHost(json plugins = json::object(), json extra = json::object())
      : fixture_(config(std::move(plugins), std::move(extra))) {
    const fs::path checkpoints = fixture_.dir() / "models" / "checkpoints";
    fs::create_directories(checkpoints);
    fs::copy(golden("models/tiny_sdxl"), checkpoints / "tiny-base", fs::copy_options::recursive);
    fs::copy(golden("refiner/tiny_sdxl_refiner"), checkpoints / "tiny-refiner", fs::copy_options::recursive);
    client_ = fixture_.client();
  }
  WireClient& client() { return *client_; }
  fs::path models() const { return fixture_.dir() / "models"; }

 private:
  static json config(json plugins, json extra) {
    json p = {{"dir", SDXLHOST_PLUGIN_DIR}};
    p.update(plugins, true);
    json c = {{"plugins", p}};  // the fixture sends every progress event (progress_interval_ms 0)
    c.update(extra, true);
    return c;
  }
  HostFixture fixture_;
  std::unique_ptr<WireClient> client_;
};

/// The request a golden's metadata records, over the wire.
json golden_data(const Golden& g) {
  return {{"prompt", g.text("prompt")},
          {"hyperparameters",
           {{"num_inference_steps", static_cast<int>(g.number("num_inference_steps"))},
            {"guidance_scale", g.number("guidance_scale")},
            {"seed", static_cast<std::int64_t>(g.number("seed"))},
            {"aesthetic_score", g.number("aesthetic_score")},
            {"negative_aesthetic_score", g.number("negative_aesthetic_score")}}},
          {"dimensions", {{"width", static_cast<int>(g.number("width"))}, {"height", static_cast<int>(g.number("height"))}}},
          {"scheduler", g.scheduler()},
          {"output", {{"format", "png"}, {"return_base64", true}}}};
}

json ensemble_request(const std::string& id, const Golden& g, bool with_split = true) {
  json data = golden_data(g);
  data["models"] = {{"base", "tiny-base"}, {"refiner", "tiny-refiner"}};
  if (with_split) data["hyperparameters"]["denoising_end"] = g.number("denoising_end_base");
  return message("inference_request", id, data);
}

json img2img_request(const std::string& id, const Golden& g) {
  json data = golden_data(g);
  data["models"] = {{"base", "tiny-refiner"}};
  data["init_image"] = nn::encode_base64(file_bytes(golden("refiner/img2img_input.png")));
  data["hyperparameters"]["strength"] = g.number("strength");
  return message("inference_request", id, data);
}

std::string image_base64(const json& response) {
  return response["data"]["generated_images"][0]["image_data"].get<std::string>();
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

int difference_to_golden_png(const json& response, const std::string& png) {
  const sdk::Image got = nn::decode_base64_image(image_base64(response), "response");
  const sdk::Image expected = nn::decode_base64_image(nn::encode_base64(file_bytes(golden(png))), png);
  return max_difference(got, expected);
}

/// The tEXt chunks of a PNG (keyword -> text).
std::map<std::string, std::string> png_text(const std::string& png) {
  std::map<std::string, std::string> out;
  std::size_t at = 8;  // signature
  while (at + 8 <= png.size()) {
    const auto* p = reinterpret_cast<const unsigned char*>(png.data() + at);
    const std::size_t length = (std::size_t{p[0]} << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
    const std::string type = png.substr(at + 4, 4);
    if (at + 12 + length > png.size()) break;
    if (type == "tEXt") {
      const std::string body = png.substr(at + 8, length);
      const auto zero = body.find('\0');
      if (zero != std::string::npos) out[body.substr(0, zero)] = body.substr(zero + 1);
    }
    at += 12 + length;
  }
  return out;
}

void expect_error(const json& response, const std::string& code, const std::string& field) {
  EXPECT_FALSE(response.value("success", true)) << response.dump().substr(0, 400);
  EXPECT_EQ(response.value("error_code", ""), code) << response.dump().substr(0, 400);
  EXPECT_EQ(response.value("field", ""), field) << response.dump().substr(0, 400);
}

}  // namespace

TEST(RefinerSocket, EnsembleOfExpertsGoldenEndToEnd) {
  const Golden g = load_golden("ensemble_of_experts.safetensors");
  const int base_steps = static_cast<int>(g.tensors.at("base.timesteps").numel());
  const int total = base_steps + static_cast<int>(g.tensors.at("refiner.timesteps").numel());
  RefinerHost host;
  host.client().send(ensemble_request("eoe", g));
  const auto all = host.client().until_response("eoe", 120s);
  ASSERT_FALSE(all.empty());
  const json& response = all.back();
  ASSERT_TRUE(response.value("success", false)) << response.dump().substr(0, 600);
  EXPECT_EQ(response["data"]["stages"], json({"encode_prompt", "refiner_encode_prompt", "prepare_latents", "denoise",
                                              "refine", "vae_decode", "refiner_info"}));
  EXPECT_LE(difference_to_golden_png(response, "refiner/ensemble_of_experts.png"), 1);
  // progress: both experts' steps counted in one total, each event naming its stage
  std::vector<json> steps;
  for (const auto& line : all)
    if (line.value("message_type", "") == "progress" &&
        (line["data"]["stage"] == "denoise" || line["data"]["stage"] == "refine") &&
        line["data"].value("total_steps", 0) > 0 && !line["data"].contains("detail"))  // steps, not stage starts or details
      steps.push_back(line["data"]);
  ASSERT_FALSE(steps.empty());
  for (const auto& s : steps) EXPECT_EQ(s["total_steps"], total) << s.dump();
  EXPECT_EQ(steps.front()["stage"], "denoise");
  EXPECT_EQ(steps.front()["step"], 1);
  const auto first_refine = std::find_if(steps.begin(), steps.end(), [](const json& s) { return s["stage"] == "refine"; });
  ASSERT_NE(first_refine, steps.end());
  EXPECT_EQ((*first_refine)["step"], base_steps + 1);
  EXPECT_EQ(steps.back()["stage"], "refine");
  EXPECT_EQ(steps.back()["step"], total);
  // metadata: model_info and A1111's "Refiner" / "Refiner switch at"
  const json& meta = response["data"]["generated_images"][0]["metadata"];
  EXPECT_EQ(meta["model_info"]["refiner_model"], "tiny-refiner");
  const std::string parameters = png_text(nn::decode_base64(image_base64(response), "image_data"))["parameters"];
  EXPECT_NE(parameters.find("Refiner: tiny-refiner, Refiner switch at: " + g.text("denoising_end_base")),
            std::string::npos)
      << parameters;
  // without denoising_end the switch is 0.8: the same image when the golden used 0.8
  if (g.number("denoising_end_base") == 0.8) {
    const json defaulted = host.client().request(ensemble_request("default", g, false), 120s);
    ASSERT_TRUE(defaulted.value("success", false)) << defaulted.dump().substr(0, 600);
    // the pixels are equal (the PNG's request text differs: denoising_end null vs given)
    EXPECT_EQ(max_difference(nn::decode_base64_image(image_base64(defaulted), "defaulted"),
                             nn::decode_base64_image(image_base64(response), "explicit")),
              0);
  }
}

/// A kohya LoRA (rank 4, alpha 4, fixed seed) on every self-attention query and feed-forward
/// output Linear of the UNet in `unet_weights`, written to `file`: made from the model's own key
/// list, so it fits whatever refiner the goldens hold.
void write_unet_lora(const fs::path& unet_weights, const fs::path& file) {
  const auto unet = nn::SafetensorsFile::open(unet_weights);
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(11);
  nn::TensorMap lora("refiner lora");
  for (const auto& key : unet->tensors().names()) {
    const bool q = key.size() > 17 && key.compare(key.size() - 17, 17, "attn1.to_q.weight") == 0;
    const bool ff = key.size() > 15 && key.compare(key.size() - 15, 15, "ff.net.2.weight") == 0;
    if (!q && !ff) continue;
    const at::Tensor weight = unet->tensors().at(key);
    std::string module = "lora_unet_" + key.substr(0, key.size() - 7);  // without ".weight"
    std::replace(module.begin(), module.end(), '.', '_');
    lora.set(module + ".lora_down.weight", at::randn({4, weight.size(1)}, generator) * 0.5);
    lora.set(module + ".lora_up.weight", at::randn({weight.size(0), 4}, generator) * 0.5);
    lora.set(module + ".alpha", at::tensor(4.0f));
  }
  ASSERT_GT(lora.names().size(), 0u);
  nn::write_safetensors(file, lora);
}

// "LoRA applies to the base only unless a LoRA says otherwise": apply_to "refiner" patches the
// refiner's UNet and nothing of the base (a LoRA made for the refiner does not even fit the
// base), the image changes, and the next plain request is the golden again (weights restored).
TEST(RefinerSocket, ALoraWithApplyToRefinerPatchesOnlyTheRefiner) {
  const Golden g = load_golden("ensemble_of_experts.safetensors");
  RefinerHost host;
  fs::create_directories(host.models() / "loras");
  write_unet_lora(golden("refiner/tiny_sdxl_refiner/unet/diffusion_pytorch_model.safetensors"),
                  host.models() / "loras" / "refiner_style.safetensors");
  // The golden's split leaves the refiner one low-noise step, too little to see a LoRA in 8-bit
  // pixels: switch at 0.4 so the refiner runs most of the schedule, and compare with itself.
  auto at_split = [&](const std::string& id, const json& lora) {
    json request = ensemble_request(id, g);
    request["data"]["hyperparameters"]["denoising_end"] = 0.4;
    if (!lora.is_null()) request["data"]["lora"] = lora;
    const json response = host.client().request(request, 120s);
    EXPECT_TRUE(response.value("success", false)) << response.dump().substr(0, 600);
    return response.value("success", false) ? nn::decode_base64_image(image_base64(response), id) : sdk::Image{};
  };
  auto lora = [](const std::string& apply_to) {
    return json{{"enabled", true}, {"models", {{{"name", "refiner_style"}, {"weight", 1.0}, {"apply_to", apply_to}}}}};
  };
  const sdk::Image plain = at_split("plain", nullptr);
  const sdk::Image refined = at_split("lora-refiner", lora("refiner"));
  EXPECT_GT(max_difference(refined, plain), 1) << "the LoRA changed nothing in the refiner";
  // "both" patches the base too (the tiny base shares some of these layers): another image
  const sdk::Image both = at_split("lora-both", lora("both"));
  EXPECT_GT(max_difference(both, refined), 0) << "apply_to both did not patch the base";
  // afterwards the refiner's weights are the checkpoint's again: the same image as before, and
  // the golden at the golden's split
  EXPECT_EQ(max_difference(at_split("plain-again", nullptr), plain), 0);
  const json golden_again = host.client().request(ensemble_request("golden-after", g), 120s);
  ASSERT_TRUE(golden_again.value("success", false)) << golden_again.dump().substr(0, 600);
  EXPECT_LE(difference_to_golden_png(golden_again, "refiner/ensemble_of_experts.png"), 1);
  // apply_to "refiner" without a refiner: not applied, and said so
  json no_refiner = ensemble_request("no-refiner", g);
  no_refiner["data"]["models"] = {{"base", "tiny-base"}};
  no_refiner["data"]["hyperparameters"].erase("denoising_end");
  no_refiner["data"]["lora"] = {{"models", {{{"name", "refiner_style"}, {"apply_to", "refiner"}}}}};
  const json warned = host.client().request(no_refiner, 120s);
  ASSERT_TRUE(warned.value("success", false)) << warned.dump().substr(0, 600);
  EXPECT_NE(warned["warnings"].dump().find("is not applied"), std::string::npos) << warned.dump().substr(0, 1500);
  // a bad apply_to names its field
  json bad = ensemble_request("bad-apply", g);
  bad["data"]["lora"] = {{"models", {{{"name", "refiner_style"}, {"apply_to", "everything"}}}}};
  expect_error(host.client().request(bad), "VALIDATION_ERROR", "data.lora.models[0].apply_to");
}

TEST(RefinerSocket, RefinerImg2ImgGoldenEndToEnd) {
  const Golden g = load_golden("refiner_img2img.safetensors");
  RefinerHost host;
  const json response = host.client().request(img2img_request("i2i", g), 120s);
  ASSERT_TRUE(response.value("success", false)) << response.dump().substr(0, 600);
  EXPECT_EQ(response["data"]["stages"], json({"encode_prompt", "prepare_latents", "denoise", "vae_decode"}));
  EXPECT_LE(difference_to_golden_png(response, "refiner/refiner_img2img.png"), 1);
}

TEST(RefinerSocket, BadRequestsAreRefusedWithTheirFieldAndTheHostKeepsServing) {
  const Golden g = load_golden("refiner_img2img.safetensors");
  RefinerHost host;
  auto& c = host.client();
  json no_image = img2img_request("no-image", g);
  no_image["data"].erase("init_image");
  expect_error(c.request(no_image, 60s), "VALIDATION_ERROR", "data.models.base");
  json missing = ensemble_request("missing", load_golden("ensemble_of_experts.safetensors"));
  missing["data"]["models"]["refiner"] = "no-such-refiner";
  expect_error(c.request(missing, 60s), "MODEL_NOT_FOUND", "data.models.refiner");
  json escape = missing;
  escape["request_id"] = "escape";
  escape["data"]["models"]["refiner"] = "../tiny-refiner";
  expect_error(c.request(escape, 60s), "VALIDATION_ERROR", "data.models.refiner");
  json split = missing;
  split["request_id"] = "split";
  split["data"]["models"]["refiner"] = "tiny-refiner";
  split["data"]["hyperparameters"]["denoising_end"] = 1.5;
  expect_error(c.request(split, 60s), "VALIDATION_ERROR", "data.hyperparameters.denoising_end");
  const json ok = c.request(img2img_request("after", g), 120s);
  EXPECT_TRUE(ok.value("success", false)) << ok.dump().substr(0, 400);
}

TEST(RefinerSocket, DisablingThePluginMakesRefinerRequestsFeatureDisabledAndChangesNothingElse) {
  const Golden eoe = load_golden("ensemble_of_experts.safetensors");
  const Golden i2i = load_golden("refiner_img2img.safetensors");
  json plain = ensemble_request("plain", eoe);
  plain["data"]["models"].erase("refiner");
  plain["data"]["hyperparameters"].erase("denoising_end");
  std::string enabled_image;
  {
    RefinerHost host;
    const json response = host.client().request(plain, 120s);
    ASSERT_TRUE(response.value("success", false)) << response.dump().substr(0, 400);
    EXPECT_EQ(response["data"]["stages"], json({"encode_prompt", "prepare_latents", "denoise", "vae_decode"}));
    enabled_image = image_base64(response);
  }
  RefinerHost host(json{{"enabled", {{"refiner", false}}}});
  auto& c = host.client();
  expect_error(c.request(ensemble_request("eoe", eoe), 60s), "FEATURE_DISABLED", "data.models.refiner");
  const json response = c.request(plain, 120s);
  ASSERT_TRUE(response.value("success", false)) << response.dump().substr(0, 400);
  EXPECT_EQ(image_base64(response), enabled_image);  // the same PNG, byte for byte
  // refining an image with a refiner checkpoint as the base is the sdxl plugin's img2img
  const json refined = c.request(img2img_request("i2i", i2i), 120s);
  ASSERT_TRUE(refined.value("success", false)) << refined.dump().substr(0, 400);
  EXPECT_LE(difference_to_golden_png(refined, "refiner/refiner_img2img.png"), 1);
}

// on_disabled_feature "warn": the ensemble request runs on the base alone, says so, and its
// metadata names only what ran (no refiner in model_info or the PNG's parameters).
TEST(RefinerSocket, ASkippedRefinerIsNotNamedInTheMetadata) {
  const Golden eoe = load_golden("ensemble_of_experts.safetensors");
  RefinerHost host(json{{"enabled", {{"refiner", false}}}}, json{{"on_disabled_feature", "warn"}});
  const json response = host.client().request(ensemble_request("warned", eoe), 120s);
  ASSERT_TRUE(response.value("success", false)) << response.dump().substr(0, 600);
  EXPECT_NE(response["warnings"].dump().find("refiner"), std::string::npos) << response["warnings"].dump();
  const json& meta = response["data"]["generated_images"][0]["metadata"];
  EXPECT_EQ(meta["model_info"]["refiner_model"], "") << meta.dump();
  EXPECT_FALSE(meta.contains("refiner"));
  const std::string parameters = png_text(nn::decode_base64(image_base64(response), "image_data"))["parameters"];
  EXPECT_EQ(parameters.find("Refiner:"), std::string::npos) << parameters;
}

}  // namespace sdxlhost::test_support
