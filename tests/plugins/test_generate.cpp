// Test-only plugin "test_generate": a fake but honest generation flow for host tests.
//   test_prepare (order 200) writes "latents" = the per-image seeds (seed + i);
//   test_denoise (order 300) reads "latents", runs num_inference_steps steps (data.test.step_ms
//   ms each, default 5) with progress and cancellation checks, writes "images" drawn by
//   test_pixel(seed + i, x, y, c). data.test.throw = "error" | "std" | "int" | "torch" | "alloc"
//   throws inside run ("alloc": a 2^60-byte allocation, std::bad_alloc; "torch": a c10::Error).
// Config {"fail_initialize": true} makes initialize() throw.
// It also preloads "checkpoints" (load_model): the file's bytes are read into a cached object
// whose code lives in this library.
#include <c10/util/Exception.h>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <cstdlib>
#include <vector>

#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/image.hpp"
#include "sdxlhost/sdk/job_scope.hpp"
#include "sdxlhost/sdk/models.hpp"
#include "sdxlhost/sdk/plugin.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "sdxlhost/sdk/request.hpp"
#include "sdxlhost/sdk/stage.hpp"
#include "test_pattern.hpp"

namespace sdxlhost::test_plugins {
namespace {

/// What test_prepare hands to test_denoise in the "latents" slot.
struct TestLatents {
  std::vector<std::int64_t> seeds;
};

/// What the preloader caches: the checkpoint file's bytes (a folder model caches nothing). A
/// file that reads "ALLOC_MIB N" stands for N MiB of weights instead: N blocks of 1 MiB, each
/// followed by a small allocation that lives on after the model (as the small long-lived objects
/// a real load makes do), so freed weights in the heap cannot be trimmed from its top.
class TestModel {
 public:
  explicit TestModel(std::vector<char> bytes) : bytes_(std::move(bytes)) {
    const std::string text(bytes_.begin(), bytes_.end());
    if (text.rfind("ALLOC_MIB ", 0) != 0) return;
    static std::vector<std::unique_ptr<char[]>> long_lived;
    const long mib = std::strtol(text.c_str() + 10, nullptr, 10);
    for (long i = 0; i < mib; ++i) {
      weights_.emplace_back(std::size_t{1} << 20, static_cast<char>(i));  // touched: resident
      long_lived.emplace_back(new char[64]());
    }
  }
  virtual ~TestModel() = default;
  std::size_t size() const { return bytes_.size() + (weights_.size() << 20); }

 private:
  std::vector<char> bytes_;
  std::vector<std::vector<char>> weights_;
};

void preload_checkpoint(sdk::ModelAccess& models, const std::string& name) {
  models.load_as<TestModel>(sdk::kCheckpoints, name, "test_generate", "data.name",
                            [](const std::filesystem::path& file) {
                              std::ifstream in(file, std::ios::binary);
                              std::vector<char> bytes{std::istreambuf_iterator<char>(in),
                                                      std::istreambuf_iterator<char>()};
                              auto model = std::make_shared<TestModel>(std::move(bytes));
                              const std::uint64_t size = model->size();
                              return std::make_pair(model, size);
                            });
}

const nlohmann::json& test_options(const sdk::GenerationRequest& request) {
  static const nlohmann::json kEmpty = nlohmann::json::object();
  auto it = request.data.find("test");
  return (it != request.data.end() && it->is_object()) ? *it : kEmpty;
}

class PrepareStage : public sdk::Stage {
 public:
  std::string name() const override { return "test_prepare"; }
  std::vector<std::string> reads() const override { return {}; }
  std::vector<std::string> writes() const override { return {sdk::slots::kLatents}; }
  int order() const override { return 200; }
  std::string feature() const override { return "test_generate"; }
  bool applies(const sdk::GenerationRequest&) const override { return true; }
  void run(sdk::Context& context) const override {
    const auto& request = context.request();
    TestLatents latents;
    for (int i = 0; i < request.batch_size; ++i)
      latents.seeds.push_back(request.hyperparameters.seed + i);
    context.set(sdk::slots::kLatents, std::move(latents));
  }
};

class DenoiseStage : public sdk::Stage {
 public:
  std::string name() const override { return "test_denoise"; }
  std::vector<std::string> reads() const override { return {sdk::slots::kLatents}; }
  std::vector<std::string> writes() const override { return {sdk::slots::kImages}; }
  int order() const override { return 300; }
  std::string feature() const override { return "test_generate"; }
  bool applies(const sdk::GenerationRequest&) const override { return true; }

  void run(sdk::Context& context) const override {
    const auto& request = context.request();
    const auto& options = test_options(request);
    const int steps = request.hyperparameters.num_inference_steps;
    context.log(sdk::LogLevel::Info, "test_denoise: " + std::to_string(steps) + " steps");
    throw_if_asked(options);
    const auto step_time = std::chrono::milliseconds(options.value("step_ms", 5));
    // data.test.blocks = N: each step is N "model blocks" that check cancellation and report
    // their progress through sdk/job_scope.hpp, as the SDK's UNet and VAE do.
    const int blocks = options.value("blocks", 0);
    for (int step = 1; step <= steps; ++step) {
      context.throw_if_cancelled();
      if (blocks <= 0) std::this_thread::sleep_for(step_time);
      for (int block = 1; block <= blocks; ++block) {
        std::this_thread::sleep_for(step_time / blocks);
        sdk::check_cancelled();
        sdk::report_detail("test_blocks", block, blocks);
      }
      context.report_progress(name(), step, steps);
    }
    context.throw_if_cancelled();
    std::vector<sdk::Image> images;
    for (std::int64_t seed : context.get<TestLatents>(sdk::slots::kLatents).seeds)
      images.push_back(draw(seed, request));
    context.erase(sdk::slots::kLatents);
    context.set(sdk::slots::kImages, std::move(images));
  }

 private:
  static void throw_if_asked(const nlohmann::json& options) {
    const std::string kind = options.value("throw", std::string());
    if (kind == "error")
      throw sdk::Error(sdk::ErrorCode::PluginError, "test_denoise: failure requested by data.test.throw");
    if (kind == "std") throw std::runtime_error("test_denoise: std::runtime_error requested");
    if (kind == "int") throw 42;
    // A libtorch error: its what() carries a C++ backtrace and this file's path.
    if (kind == "torch") TORCH_CHECK(false, "test_denoise: a libtorch check failed as requested");
    if (kind == "alloc") {  // an allocation no machine can satisfy (std::bad_alloc)
      volatile std::size_t huge = std::size_t{1} << 60;
      std::vector<char> buffer(huge);
      buffer[0] = 1;
    }
  }

  static sdk::Image draw(std::int64_t seed, const sdk::GenerationRequest& request) {
    sdk::Image image;
    image.width = request.width;
    image.height = request.height;
    image.channels = 3;
    image.pixels.resize(static_cast<std::size_t>(image.width) * image.height * 3);
    std::size_t i = 0;
    for (int y = 0; y < image.height; ++y)
      for (int x = 0; x < image.width; ++x)
        for (int c = 0; c < 3; ++c) image.pixels[i++] = test_pixel(seed, x, y, c);
    image.metadata = {{"seed", seed},
                      {"steps", request.hyperparameters.num_inference_steps},
                      {"guidance_scale", request.hyperparameters.guidance_scale},
                      {"scheduler", request.scheduler}};
    return image;
  }
};

class TestGeneratePlugin : public sdk::Plugin {
 public:
  sdk::PluginInfo info() const override {
    return {"test_generate", "1.0.0", "test-only generation flow (patterned images, no model)",
            {"test_prepare", "test_denoise"}, {}};
  }
  /// Config (plugins.config.test_generate): {"fail_initialize": true} refuses to load, so
  /// tests can see the config section arrive.
  void initialize(const nlohmann::json& config, sdk::Registries& registries) override {
    if (config.is_object() && config.value("fail_initialize", false))
      throw sdk::Error(sdk::ErrorCode::PluginError,
                       "test_generate: plugins.config.test_generate.fail_initialize is set");
    registries.add_stage(std::make_shared<PrepareStage>());
    registries.add_stage(std::make_shared<DenoiseStage>());
    registries.add_model_preloader(sdk::kCheckpoints, preload_checkpoint);
  }
};

}  // namespace
}  // namespace sdxlhost::test_plugins

SDXLHOST_PLUGIN(sdxlhost::test_plugins::TestGeneratePlugin)
