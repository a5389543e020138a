// bench_gpu: one SDXL generation end to end with the sdxl plugin's stages (prompt encoding,
// latents, the denoise loop, VAE decode) on a device, per dtype: seconds per image, denoise it/s,
// seconds per stage, load time and peak device memory. scripts/device-check runs it on the full
// SDXL base architecture (random weights from tools/make_tiny_sdxl --preset sdxl) at 1024x1024,
// 30 steps, next to bench/diffusers_sdxl.py on the same weights. Not a test.
//   bench_gpu --model DIR [--device cuda] [--dtypes fp16,bf16] [--size 1024] [--steps 30]
//             [--warmup-steps 2] [--repeats 1] [--channels-last] [--table FILE]
// --channels-last adds a row per dtype with the UNet in channels-last order (docs/gpu.md).
// The device is waited for between stages (for the stage times) and never inside the loop.
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "schedulers.hpp"
#include "bench_args.hpp"
#include "sdxlhost/nn/device_runtime.hpp"
#include "sdxlhost/pipeline/settings.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/image.hpp"
#include "sdxlhost/sdk/models.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "sdxlhost/sdk/request.hpp"
#include "sdxlhost/sdk/stage.hpp"
#include "stages.hpp"

namespace {

using namespace sdxlhost;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string model;
  std::string device = "cuda";
  std::vector<std::string> dtypes = {"fp16", "bf16"};
  int size = 1024;
  int steps = 30;
  int warmup_steps = 2;
  int repeats = 1;
  bool channels_last = false;
  std::string table;
};

using bench::split_list;

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--model") o.model = value();
    else if (arg == "--device") o.device = value();
    else if (arg == "--dtypes") o.dtypes = split_list(value());
    else if (arg == "--size") o.size = std::stoi(value());
    else if (arg == "--steps") o.steps = std::stoi(value());
    else if (arg == "--warmup-steps") o.warmup_steps = std::stoi(value());
    else if (arg == "--repeats") o.repeats = std::stoi(value());
    else if (arg == "--table") o.table = value();
    else if (arg == "--channels-last") o.channels_last = true;
    else throw std::invalid_argument("unknown argument " + arg);
  }
  if (o.model.empty()) throw std::invalid_argument("--model DIR (a diffusers SDXL folder) is required");
  return o;
}

/// Resolves the one model the benchmark runs; caches what was loaded (as the host's cache does).
class OneModel : public sdk::ModelAccess {
 public:
  explicit OneModel(std::filesystem::path path) : path_(std::move(path)) {}
  std::filesystem::path resolve(const std::string&, const std::string&, const std::string&) const override {
    return path_;
  }
  std::shared_ptr<void> load(const std::string& kind, const std::string& name, const std::string& variant,
                             const std::string& field, const std::type_info&, const sdk::ModelLoadFn& load) override {
    const std::string key = kind + "/" + name + "/" + variant;
    auto it = cache_.find(key);
    if (it != cache_.end()) return it->second;
    return cache_[key] = load(resolve(kind, name, field)).object;
  }
  void clear() { cache_.clear(); }

 private:
  std::filesystem::path path_;
  std::map<std::string, std::shared_ptr<void>> cache_;
};

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

struct Run {
  std::map<std::string, double> stage_s;  ///< per stage, the device waited for at its end
  double total_s = 0;
  std::int64_t peak_bytes = -1;
};

/// One generation of `steps` steps; the first stage's first call loads the model.
Run generate(OneModel& models, const sdk::Registries& registries,
             const std::vector<std::shared_ptr<sdk::Stage>>& stages, const Options& o, int steps,
             const at::Device& device) {
  sdk::GenerationRequest request;
  request.prompt = "a photo of an astronaut riding a horse on the moon";
  request.negative_prompt = "blurry";
  request.models.base = "bench";
  request.hyperparameters.num_inference_steps = steps;
  request.hyperparameters.guidance_scale = 5.0;
  request.hyperparameters.seed = 0;
  request.width = request.height = o.size;
  request.scheduler = "EulerDiscreteScheduler";
  sdk::ContextServices services;
  services.models = &models;
  services.registries = &registries;
  sdk::Context context(std::make_shared<const sdk::GenerationRequest>(request), services);
  nn::reset_peak_device_memory(device);
  Run run;
  const auto start = Clock::now();
  for (const auto& stage : stages) {
    const auto stage_start = Clock::now();
    stage->run(context);
    nn::synchronize(device);
    run.stage_s[stage->name()] = seconds_since(stage_start);
  }
  run.total_s = seconds_since(start);
  if (const auto memory = nn::device_memory(device)) run.peak_bytes = memory->peak_allocated;
  return run;
}

std::string gib(std::int64_t bytes) {
  if (bytes < 0) return "n/a";
  char text[32];
  std::snprintf(text, sizeof text, "%.2f", static_cast<double>(bytes) / (1024.0 * 1024 * 1024));
  return text;
}

std::string fixed(double value, int digits) {
  char text[32];
  std::snprintf(text, sizeof text, "%.*f", digits, value);
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const Options o = parse(argc, argv);
    const at::Device device(o.device);  // the stages run under NoGradGuard, as in the host
    sdk::Registries registries;
    registries.add_scheduler("EulerDiscreteScheduler", schedulers::make_euler_discrete);
    std::vector<std::string> rows;
    std::vector<std::pair<std::string, bool>> variants;  // (dtype, channels-last)
    for (const std::string& dtype : o.dtypes) {
      variants.emplace_back(dtype, false);
      if (o.channels_last) variants.emplace_back(dtype, true);
    }
    for (const auto& [dtype, channels_last] : variants) {
      OneModel models(o.model);
      const auto settings = std::make_shared<const pipeline::PipelineSettings>(pipeline::PipelineSettings::from_json(
          {{"device", o.device}, {"dtype", dtype}, {"channels_last", channels_last}}));
      const auto stages = sdxl::make_stages(settings);
      // Warm-up: loads the model (timed) and lets the libraries pick their kernels.
      const Run warmup = generate(models, registries, stages, o, o.warmup_steps, device);
      std::vector<Run> runs;
      for (int r = 0; r < o.repeats; ++r) runs.push_back(generate(models, registries, stages, o, o.steps, device));
      const Run& best = *std::min_element(runs.begin(), runs.end(),
                                          [](const Run& a, const Run& b) { return a.total_s < b.total_s; });
      const double denoise_s = best.stage_s.count("denoise") ? best.stage_s.at("denoise") : 0;
      std::ostringstream row;
      row << "| sdxl-host" << (channels_last ? " (channels-last)" : "") << " | " << dtype << " | " << o.size << "x" << o.size << " | " << o.steps << " | "
          << fixed(best.total_s, 2) << " | " << fixed(denoise_s > 0 ? o.steps / denoise_s : 0, 2) << " | "
          << fixed(best.stage_s.count("encode_prompt") ? best.stage_s.at("encode_prompt") : 0, 3) << " | "
          << fixed(denoise_s, 2) << " | " << fixed(best.stage_s.count("vae_decode") ? best.stage_s.at("vae_decode") : 0, 2)
          << " | " << gib(best.peak_bytes) << " | " << fixed(warmup.total_s, 1) << " |";
      rows.push_back(row.str());
      std::cout << rows.back() << std::endl;
    }
    std::ostringstream table;
    table << "| pipeline | dtype | size | steps | s/image | denoise it/s | encode s | denoise s | decode s | peak GiB "
             "| load+warm-up s |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
    for (const auto& row : rows) table << row << "\n";
    std::cout << "\n" << table.str();
    if (!o.table.empty()) std::ofstream(o.table) << table.str();
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_gpu: " << e.what() << "\n";
    return 1;
  }
}
