// The upscaler plugin in a served host, over the socket: data.output.upscale after a generation
// (test_generate draws the images), the `upscale` message (model and Lanczos), progress per tile,
// metadata and the PNG `parameters` chunk, bad fields with their paths, hostile model files, and
// plugins.enabled.upscaler = false.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "host/output/image_writer.hpp"
#include "common/host_fixture.hpp"
#include "lanczos.hpp"
#include "sdxlhost/nn/image_decode.hpp"
#include "tiled_upscale.hpp"
#include "torch_zip_writer.hpp"
#include "upscaler_model.hpp"
#include "upscaler_test_util.hpp"

namespace sdxlhost::test_support {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using sdxlhost::sdk::Image;
using sdxlhost::test_support::generation;
using sdxlhost::test_support::HostFixture;
using namespace sdxlhost::upscaler;
using namespace std::string_literals;

/// A plugin folder with the real upscaler and the test generation flow (no test_upscale, which
/// also provides "upscaler"), and models_root/upscalers with the golden weight files.
struct UpscalerHost {
  fs::path root = sdxlhost::test_support::make_temp_dir("upscaler-socket");
  std::unique_ptr<HostFixture> fixture;

  explicit UpscalerHost(bool upscaler_enabled = true) {
    fs::create_directories(root / "plugins");
    fs::copy_file(fs::path(SDXLHOST_TEST_PLUGIN_DIR) / "test_generate.so", root / "plugins" / "test_generate.so");
    fs::copy_file(fs::path(SDXLHOST_PLUGIN_DIR) / "upscaler.so", root / "plugins" / "upscaler.so");
    fs::create_directories(root / "models" / "upscalers");
    for (const auto& entry : fs::directory_iterator(golden_dir()))
      if (entry.path().filename().string().rfind("rrdbnet_", 0) == 0)
        fs::copy_file(entry.path(), root / "models" / "upscalers" / entry.path().filename());
    fixture = std::make_unique<HostFixture>(json{
        {"plugins", {{"dir", (root / "plugins").string()}, {"enabled", {{"upscaler", upscaler_enabled}}}}},
        {"models_root", (root / "models").string()}});
  }
  ~UpscalerHost() {
    fixture.reset();
    fs::remove_all(root);
  }
  fs::path upscalers() const { return root / "models" / "upscalers"; }
};

json upscale_message(const std::string& id, const Image& image, const json& upscale, json output = {{"return_base64", true}}) {
  const auto png = sdxlhost::host::encode_image(image, "png", 95, {});
  return {{"message_type", "upscale"},
          {"request_id", id},
          {"data", {{"image", sdxlhost::nn::encode_base64(std::string(png.begin(), png.end()))},
                    {"upscale", upscale},
                    {"output", output}}}};
}

Image decoded(const json& generated) {
  return sdxlhost::nn::decode_base64_image(generated["image_data"].get<std::string>(), "image_data");
}

Image gradient_image(int width, int height) {
  Image image;
  image.width = width;
  image.height = height;
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < 3; ++c) image.pixels.push_back(static_cast<std::uint8_t>((x * 11 + y * 7 + c * 50) % 256));
  return image;
}

/// What the stage must have produced: the same model, tiles and resize, run here.
Image expected_upscale(const Image& image, const fs::path& model_file, TileSettings tiles, std::optional<double> scale) {
  auto model = load_upscaler_model(model_file);
  Image out = tiled_upscale(image, [&](const at::Tensor& t) { return model->forward(t); },
                            {model->scale(), model->input_multiple()}, tiles);
  const double factor = scale.value_or(model->scale());
  const int w = static_cast<int>(std::round(image.width * factor)), h = static_cast<int>(std::round(image.height * factor));
  return out.width == w && out.height == h ? out : resize_lanczos(out, w, h);
}

/// The step events of `stage` (not its start event, step 0 of 0, nor progress inside a step).
std::vector<json> progress_of(const std::vector<json>& lines, const std::string& stage) {
  std::vector<json> out;
  for (const auto& line : lines) {
    if (line.value("message_type", "") != "progress" || line["data"]["stage"] != stage) continue;
    const json& data = line["data"];
    if ((data["step"] == 0 && data["total_steps"] == 0) || data.contains("detail")) continue;
    out.push_back(data);
  }
  return out;
}

TEST(UpscalerSocket, OutputUpscaleAfterAGenerationRunsTheModelPerTile) {
  UpscalerHost host;
  auto client = host.fixture->client();
  json plain = client->request(generation("plain", 1, 1, {{"output", {{"return_base64", true}}}}));
  ASSERT_TRUE(plain["success"].get<bool>()) << plain.dump();
  const Image generated = decoded(plain["data"]["generated_images"][0]);

  const json upscale = {{"enabled", true}, {"model", "rrdbnet_x4_tiny.pth"}, {"tile_size", 16}, {"tile_overlap", 2}};
  client->send(generation("up", 1, 1, {{"output", {{"upscale", upscale}, {"save_path", "up.png"}, {"return_base64", true}}}}));
  const auto lines = client->until_response("up");
  const json& response = lines.back();
  ASSERT_TRUE(response["success"].get<bool>()) << response.dump();
  EXPECT_EQ(response["data"]["stages"].back(), "upscale");
  const json& image = response["data"]["generated_images"][0];
  EXPECT_EQ(image["width"], generated.width * 4);
  EXPECT_EQ(image["height"], generated.height * 4);
  const json& meta = image["metadata"]["upscaler"];
  EXPECT_EQ(meta["name"], "rrdbnet_x4_tiny.pth");
  EXPECT_EQ(meta["architecture"], "RRDBNet");
  EXPECT_EQ(meta["width"], generated.width * 4);
  EXPECT_EQ(image["metadata"]["seed"], 7);  // the generation's own metadata is kept

  // The pixels are the model's output over the generated image, tile by tile.
  const Image expected = expected_upscale(generated, host.upscalers() / "rrdbnet_x4_tiny.pth", {16, 2}, std::nullopt);
  EXPECT_EQ(decoded(image).pixels, expected.pixels);
  const auto progress = progress_of(lines, "upscale");
  const int tiles = tile_count(generated.width, generated.height, {4, 1}, {16, 2});
  EXPECT_GT(tiles, 1);
  ASSERT_EQ(progress.size(), static_cast<std::size_t>(tiles));
  EXPECT_EQ(progress.back()["step"], tiles);
  EXPECT_EQ(progress.back()["total_steps"], tiles);

  // The saved PNG's `parameters` chunk names the upscaler and the final size.
  const std::string png = read_bytes(image["image_path"].get<std::string>());
  EXPECT_NE(png.find("Postprocess upscaler: rrdbnet_x4_tiny.pth"), std::string::npos);
  EXPECT_NE(png.find("Postprocess upscale to: " + std::to_string(generated.width * 4) + "x" +
                     std::to_string(generated.height * 4)), std::string::npos);
}

TEST(UpscalerSocket, UpscaleMessageWithAModelAndWithLanczos) {
  UpscalerHost host;
  auto client = host.fixture->client();
  const Image source = gradient_image(20, 12);

  // x2plus (pixel-unshuffle) model, then Lanczos to 3x ("upscale by" 3).
  client->send(upscale_message("m1", source, {{"model", "rrdbnet_x2_tiny.safetensors"}, {"scale", 3}, {"tile_size", 0}},
                               {{"return_base64", true}, {"save_path", "extras/"}}));
  const auto lines = client->until_response("m1");
  const json& response = lines.back();
  ASSERT_TRUE(response["success"].get<bool>()) << response.dump();
  EXPECT_EQ(response["data"]["stages"], json({"upscale"}));
  const json& image = response["data"]["generated_images"][0];
  EXPECT_EQ(image["width"], 60);
  EXPECT_EQ(image["height"], 36);
  EXPECT_EQ(image["metadata"]["upscaler"]["model_scale"], 2);
  EXPECT_EQ(image["metadata"]["upscaler"]["scale"], 3.0);
  EXPECT_FALSE(image["metadata"].contains("seed")) << "an upscale is not a generation";
  const Image expected = expected_upscale(source, host.upscalers() / "rrdbnet_x2_tiny.safetensors", {0, 0}, 3.0);
  EXPECT_EQ(decoded(image).pixels, expected.pixels);
  EXPECT_FALSE(progress_of(lines, "upscale").empty());
  const std::string png = read_bytes(image["image_path"].get<std::string>());
  EXPECT_NE(png.find("Size: 60x36, Postprocess upscaler: rrdbnet_x2_tiny.safetensors, Postprocess upscale by: 3.0"),
            std::string::npos);

  // Lanczos alone: no model, OpenCV's INTER_LANCZOS4.
  json lanczos = client->request(upscale_message("m2", source, {{"method", "lanczos"}, {"scale", 2}, {"sharpen", 1}}));
  ASSERT_TRUE(lanczos["success"].get<bool>()) << lanczos.dump();
  // A warning names the message's own field, not the generation's data.output.upscale.
  EXPECT_NE(lanczos["warnings"].dump().find("data.upscale.sharpen"), std::string::npos) << lanczos.dump();
  EXPECT_EQ(lanczos["warnings"].dump().find("data.output.upscale"), std::string::npos) << lanczos.dump();
  const json& resized = lanczos["data"]["generated_images"][0];
  EXPECT_EQ(resized["metadata"]["upscaler"]["name"], "lanczos");
  EXPECT_EQ(decoded(resized).pixels, resize_lanczos(source, 40, 24).pixels);

  // load_model preloads an upscaler into the cache.
  json loaded = client->request({{"message_type", "load_model"}, {"request_id", "l1"},
                                 {"data", {{"kind", "upscalers"}, {"name", "rrdbnet_x4_tiny_params_ema.pth"}}}});
  ASSERT_TRUE(loaded["success"].get<bool>()) << loaded.dump();
  EXPECT_TRUE(loaded["data"]["loaded"].get<bool>());
}

TEST(UpscalerSocket, BadFieldsAndHostileFilesAreRefusedWithTheirPaths) {
  UpscalerHost host;
  const fs::path marker = host.root / "pwned";
  // A .pth whose pickle calls os.system (what pickle.dumps writes for such a __reduce__).
  const std::string command = "touch " + marker.string();
  std::string length;
  put(length, command.size(), 4);
  const std::string pickle = "\x80\x02" "cposix\nsystem\nq\x00X"s + length + command + "q\x01\x85q\x02Rq\x03.";
  write_bytes(host.upscalers() / "evil.pth", stored_zip({{"evil/data.pkl", pickle}, {"evil/version", "3\n"}}));
  write_bytes(host.upscalers() / "garbage.safetensors", "not a model");
  auto client = host.fixture->client();
  const Image source = gradient_image(8, 8);

  struct Case {
    json message;
    std::string code;
    std::string field;
  };
  const std::vector<Case> cases = {
      {upscale_message("b1", source, {{"model", "rrdbnet_x4_tiny.pth"}, {"tile_size", "big"}}), "VALIDATION_ERROR", "data.upscale.tile_size"},
      {upscale_message("b2", source, {{"model", "rrdbnet_x4_tiny.pth"}, {"scale", -1}}), "VALIDATION_ERROR", "data.upscale.scale"},
      {upscale_message("b3", source, {{"method", "bicubic"}}), "VALIDATION_ERROR", "data.upscale.method"},
      {upscale_message("b4", source, {{"enabled", true}}), "VALIDATION_ERROR", "data.upscale.model"},
      {upscale_message("b5", source, {{"enabled", false}}), "VALIDATION_ERROR", "data.upscale"},
      {upscale_message("b6", source, {{"model", "missing.pth"}}), "MODEL_NOT_FOUND", "data.upscale.model"},
      {upscale_message("b7", source, {{"model", "../escape.pth"}}), "VALIDATION_ERROR", "data.upscale.model"},
      {upscale_message("b8", source, {{"model", "evil.pth"}}), "VALIDATION_ERROR", "data.upscale.model"},
      {upscale_message("b9", source, {{"model", "garbage"}}), "MODEL_LOAD_ERROR", "data.upscale.model"},
      {{{"message_type", "upscale"}, {"request_id", "b10"}, {"data", {{"upscale", {{"method", "lanczos"}}}}}}, "VALIDATION_ERROR", "data.image"},
      {{{"message_type", "upscale"}, {"request_id", "b11"}, {"data", {{"image", "bm90IGFuIGltYWdl"}, {"upscale", {{"method", "lanczos"}}}}}},
       "VALIDATION_ERROR", "data.image"},
      {generation("b12", 1, 1, {{"output", {{"upscale", {{"model", "rrdbnet_x4_tiny.pth"}, {"tile_size", 64}, {"tile_overlap", 20}}}}}}),
       "VALIDATION_ERROR", "data.output.upscale.tile_overlap"},
      {generation("b13", 1, 1, {{"output", {{"upscale", {{"model", "evil.pth"}}}}}}), "VALIDATION_ERROR", "data.output.upscale.model"},
  };
  for (const auto& c : cases) {
    json response = client->request(c.message);
    SCOPED_TRACE(response.dump());
    EXPECT_FALSE(response["success"].get<bool>());
    EXPECT_EQ(response["error_code"], c.code);
    EXPECT_EQ(response["field"], c.field);
  }
  json evil = client->request(upscale_message("b14", source, {{"model", "evil.pth"}}));
  EXPECT_NE(evil["error"].get<std::string>().find("refused global 'posix.system'"), std::string::npos) << evil.dump();
  EXPECT_FALSE(fs::exists(marker)) << "the pickle ran a command in the host";
  EXPECT_TRUE(client->request({{"message_type", "ping"}, {"request_id", "alive"}})["success"].get<bool>());
}

TEST(UpscalerSocket, DisablingTheUpscalerRefusesItAndChangesNothingElse) {
  json enabled_plain, disabled_plain, enabled_caps, disabled_caps;
  {
    UpscalerHost host(true);
    auto client = host.fixture->client();
    enabled_plain = client->request(generation("p", 1, 1, {{"output", {{"return_base64", true}}}}));
    enabled_caps = client->request({{"message_type", "capabilities"}, {"request_id", "c"}});
  }
  UpscalerHost host(false);
  auto client = host.fixture->client();
  json refused = client->request(upscale_message("d1", gradient_image(8, 8), {{"method", "lanczos"}}));
  EXPECT_EQ(refused["error_code"], "FEATURE_DISABLED") << refused.dump();
  EXPECT_EQ(refused["field"], "data.upscale");
  EXPECT_NE(refused["error"].get<std::string>().find("plugins.enabled.upscaler"), std::string::npos) << refused.dump();
  json refused_generation = client->request(generation("d2", 1, 1, {{"output", {{"upscale", {{"model", "rrdbnet_x4_tiny.pth"}}}}}}));
  EXPECT_EQ(refused_generation["error_code"], "FEATURE_DISABLED") << refused_generation.dump();
  EXPECT_EQ(refused_generation["field"], "data.output.upscale");

  disabled_plain = client->request(generation("p", 1, 1, {{"output", {{"return_base64", true}}}}));
  disabled_caps = client->request({{"message_type", "capabilities"}, {"request_id", "c"}});
  ASSERT_TRUE(disabled_plain["success"].get<bool>());
  EXPECT_EQ(disabled_plain["data"]["generated_images"][0]["image_data"], enabled_plain["data"]["generated_images"][0]["image_data"]);
  EXPECT_EQ(disabled_plain["data"]["stages"], enabled_plain["data"]["stages"]);
  json enabled_stages = json::array();
  for (const auto& stage : enabled_caps["data"]["stages"])
    if (stage["name"] != "upscale") enabled_stages.push_back(stage);
  EXPECT_EQ(disabled_caps["data"]["stages"], enabled_stages);
  EXPECT_EQ(disabled_caps["data"]["schedulers"], enabled_caps["data"]["schedulers"]);
}

}  // namespace
}  // namespace sdxlhost::test_support
