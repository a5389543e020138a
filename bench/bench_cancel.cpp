// bench_cancel: cancel latency inside a UNet step (issue 14). A full-size SDXL base UNet
// (shared/goldens/keys/configs/sdxl_base_unet_config.json) with random weights runs one step at
// PIXELS x PIXELS (batch 2, CFG) on a worker thread bound to a job (sdk::JobScope); the job is
// cancelled CANCEL_MS after the step starts and the time from cancel to the worker being free
// is printed, with the uncancelled step time for comparison. Not a test.
//   bench_cancel [--pixels 256] [--cancel-ms 3000] [--dtype bf16|f32] [--repeat 3]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdxlhost/nn/unet.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/job_scope.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace {
using Clock = std::chrono::steady_clock;
using namespace sdxlhost;

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}
}  // namespace

int main(int argc, char** argv) {
  std::int64_t pixels = 256;
  int cancel_ms = 3000, repeat = 3;
  std::string dtype_name = "bf16";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string arg = argv[i], value = argv[i + 1];
    if (arg == "--pixels") pixels = std::stoll(value);
    else if (arg == "--cancel-ms") cancel_ms = std::stoi(value);
    else if (arg == "--dtype") dtype_name = value;
    else if (arg == "--repeat") repeat = std::stoi(value);
  }
  at::set_num_threads(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  const at::ScalarType dtype = dtype_name == "f32" ? at::kFloat : at::kBFloat16;
  std::ifstream config_file(std::string(SDXLHOST_SHARED_DIR) + "/goldens/keys/configs/sdxl_base_unet_config.json");
  const nn::UNetConfig config = nn::UNetConfig::from_json(nlohmann::json::parse(config_file));
  const auto created = Clock::now();
  auto unet = nn::UNet2DConditionModel::create(
      config, [](const std::string&, const std::vector<std::int64_t>& shape) { return at::randn(shape) * 0.02; }, dtype);
  std::printf("full-size SDXL UNet, random %s weights: created in %.1f s\n", dtype_name.c_str(),
              ms_between(created, Clock::now()) / 1000.0);

  const std::int64_t latent = pixels / 8;
  const auto options = at::TensorOptions().dtype(dtype);
  const at::Tensor sample = at::randn({2, 4, latent, latent}).to(options);
  const at::Tensor context = at::randn({2, 77, config.cross_attention_dim}).to(options);
  const at::Tensor text_embeds = at::randn({2, 1280}).to(options);
  const at::Tensor time_ids = at::tensor({1.f * pixels, 1.f * pixels, 0.f, 0.f, 1.f * pixels, 1.f * pixels}).repeat({2, 1}).to(options);
  const at::Tensor t = at::tensor(500.f);
  at::NoGradGuard no_grad;

  const auto step_start = Clock::now();
  unet->forward(sample, t, context, text_embeds, time_ids);
  const double step_ms = ms_between(step_start, Clock::now());
  std::printf("one step (batch 2, %lldx%lld px, %d threads): %.0f ms\n", static_cast<long long>(pixels),
              static_cast<long long>(pixels), at::get_num_threads(), step_ms);

  std::vector<double> latencies;
  for (int r = 0; r < repeat; ++r) {
    auto request = std::make_shared<sdk::GenerationRequest>();
    auto token = std::make_shared<sdk::CancellationToken>();
    sdk::Context job(request, sdk::ContextServices{}, token);
    std::promise<void> started;
    auto worker = std::async(std::launch::async, [&] {
      at::NoGradGuard guard;
      sdk::JobScope scope(job);
      started.set_value();
      try {
        unet->forward(sample, t, context, text_embeds, time_ids);
        return false;
      } catch (const sdk::Error& e) {
        return e.code() == sdk::ErrorCode::Cancelled;
      }
    });
    started.get_future().wait();
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min<int>(cancel_ms, static_cast<int>(step_ms * 0.5))));
    const auto cancelled_at = Clock::now();
    token->cancel();
    const bool stopped = worker.get();
    const double latency = ms_between(cancelled_at, Clock::now());
    latencies.push_back(latency);
    std::printf("run %d: cancel -> worker free: %.0f ms (%s)\n", r + 1, latency,
                stopped ? "stopped between blocks" : "ran to the end of the step");
  }
  std::sort(latencies.begin(), latencies.end());
  std::printf("cancel latency: median %.0f ms, max %.0f ms; a whole step takes %.0f ms\n",
              latencies[latencies.size() / 2], latencies.back(), step_ms);
  return 0;
}
