// bench_unet: UNet per-step time, VAE decode time, checkpoint load time and peak RSS for the tiny
// model and an SDXL-width model (random weights written by tools/'s writer), printed as a table
// with the machine and libtorch version. Not a test. See docs/models.md.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/version.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "sdxlhost/nn/key_map.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/nn/unet.hpp"
#include "sdxlhost/nn/vae.hpp"
#include "tiny_sdxl_model.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace sdxlhost;

struct Options {
  int steps = 3;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  bool wide = true;
  std::int64_t wide_pixels = 256;
  std::string device = "cpu";
  std::string dtype = "f32";
};

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

std::string cpu_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown CPU";
}

void synchronize(const at::Device& device) {
  if (device.is_cuda()) at::zeros({1}, at::TensorOptions().device(device)).cpu();  // waits for the stream
}

/// Median seconds of `repeats` calls after one warm-up call.
template <class Fn>
double median_seconds(int repeats, const at::Device& device, Fn&& fn) {
  fn();
  synchronize(device);
  std::vector<double> times;
  for (int i = 0; i < repeats; ++i) {
    const auto start = Clock::now();
    fn();
    synchronize(device);
    times.push_back(seconds_since(start));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

struct Row {
  std::string model;
  std::string what;
  std::string shape;
  double seconds;
  double rss_mib;
};

/// The benchmark's own pid (the children that write checkpoints use it too).
const pid_t kBenchPid = ::getpid();

fs::path checkpoint_path(const tools::SdxlSpec& spec) {
  return fs::temp_directory_path() /
         ("bench_" + spec.name + "_" + std::to_string(kBenchPid) + ".safetensors");
}

/// Writes the spec's single-file checkpoint (fp16, as downloaded checkpoints are) in a child
/// process, so that making the weights does not count in this process's peak RSS.
void write_checkpoint(const tools::SdxlSpec& spec) {
  const pid_t child = fork();
  if (child < 0) throw std::runtime_error("fork failed");
  if (child == 0) {
    try {
      tools::write_single_file(checkpoint_path(spec), tools::make_weights(spec, 0, at::kHalf));
      _exit(0);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "bench_unet: writing %s failed: %s\n", spec.name.c_str(), e.what());
      _exit(1);
    }
  }
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("writing the checkpoint failed");
}

/// Measures load (open + split + infer configs + bind/convert), UNet step and VAE decode of the
/// checkpoint write_checkpoint made.
void bench_model(const tools::SdxlSpec& spec, std::int64_t pixels, const Options& o,
                 std::vector<Row>& rows) {
  const at::Device device(o.device);
  const at::ScalarType dtype = o.dtype == "bf16" ? at::kBFloat16 : o.dtype == "f16" ? at::kHalf : at::kFloat;
  const fs::path file = checkpoint_path(spec);
  const double file_mib = static_cast<double>(fs::file_size(file)) / (1024.0 * 1024.0);

  const auto load_start = Clock::now();
  const auto checkpoint = nn::SafetensorsFile::open(file);
  auto split = nn::ldm_checkpoint_to_diffusers(checkpoint->tensors());
  const std::int64_t pooled =
      split.components.at(nn::Component::TextEncoder2).at("text_projection.weight").size(0);
  const nn::TensorMap& unet_weights = split.components.at(nn::Component::Unet);
  auto unet = nn::UNet2DConditionModel::load(nn::UNetConfig::infer(unet_weights, 64, pooled),
                                             unet_weights, dtype, device);
  const nn::TensorMap& vae_weights = split.components.at(nn::Component::Vae);
  nn::VaeConfig vae_config = nn::VaeConfig::infer(vae_weights);
  auto vae = nn::AutoencoderKL::load(vae_config, vae_weights, dtype, device);
  synchronize(device);
  const double load_s = seconds_since(load_start);
  split.components.clear();
  char size_text[64];
  std::snprintf(size_text, sizeof size_text, "%.0f MiB fp16", file_mib);
  rows.push_back({spec.name, "load checkpoint", size_text, load_s, peak_rss_mib()});

  const nn::UNetConfig& c = unet->config();
  const std::int64_t latent = pixels / vae->config().downscale_factor();
  const auto options = at::TensorOptions().device(device).dtype(dtype);
  const at::Tensor sample = at::randn({2, 4, latent, latent}).to(options);
  const at::Tensor context = at::randn({2, 77, c.cross_attention_dim}).to(options);
  const at::Tensor text_embeds = at::randn({2, pooled}).to(options);
  const at::Tensor time_ids =
      at::tensor({1.f * pixels, 1.f * pixels, 0.f, 0.f, 1.f * pixels, 1.f * pixels}).repeat({2, 1}).to(options);
  const at::Tensor t = at::tensor(500.f);
  at::NoGradGuard no_grad;
  const double step_s = median_seconds(o.steps, device, [&] {
    unet->forward(sample, t, context, text_embeds, time_ids);
  });
  const std::string step_shape = "batch 2 (CFG), " + std::to_string(pixels) + "x" +
                                 std::to_string(pixels) + " px = " + std::to_string(latent) + "^2 latents";
  rows.push_back({spec.name, "UNet step", step_shape, step_s, peak_rss_mib()});

  const at::Tensor latents = at::randn({1, 4, latent, latent}).to(options);
  const double decode_s = median_seconds(std::max(1, o.steps / 2), device, [&] { vae->decode(latents); });
  rows.push_back({spec.name, "VAE decode", "1 image " + std::to_string(pixels) + "x" + std::to_string(pixels),
                  decode_s, peak_rss_mib()});
  unet.reset();
  vae.reset();
  fs::remove(file);
}

void print_table(const std::vector<Row>& rows, const Options& o) {
  std::printf("bench_unet  libtorch %s  %s  %d intra-op threads  device %s  dtype %s\n", TORCH_VERSION,
              cpu_name().c_str(), at::get_num_threads(), o.device.c_str(), o.dtype.c_str());
  std::printf("| %-10s | %-16s | %-44s | %12s | %13s |\n", "model", "measure", "shape", "seconds",
              "peak RSS MiB");
  std::printf("|------------|------------------|----------------------------------------------|--------------|---------------|\n");
  for (const Row& r : rows) {
    std::printf("| %-10s | %-16s | %-44s | %12.4f | %13.0f |\n", r.model.c_str(), r.what.c_str(),
                r.shape.c_str(), r.seconds, r.rss_mib);
  }
  std::printf("(median of %d runs after a warm-up; peak RSS is the process maximum so far)\n", o.steps);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::cerr << "missing value for " << arg << "\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--steps") o.steps = std::max(1, std::stoi(next()));
    else if (arg == "--threads") o.threads = std::max(1, std::stoi(next()));
    else if (arg == "--tiny-only") o.wide = false;
    else if (arg == "--pixels") o.wide_pixels = std::stoll(next());
    else if (arg == "--device") o.device = next();
    else if (arg == "--dtype") o.dtype = next();
    else {
      std::cerr << "usage: bench_unet [--steps N] [--threads N] [--tiny-only] [--pixels 256]\n"
                   "                  [--device cpu|cuda:0] [--dtype f32|bf16|f16]\n";
      return 2;
    }
  }
  try {
    // children write the checkpoints before this process starts any torch thread pool
    write_checkpoint(tools::tiny_spec());
    if (o.wide) write_checkpoint(tools::sdxl_width_spec());
    at::set_num_threads(o.threads);
    std::vector<Row> rows;
    bench_model(tools::tiny_spec(), 64, o, rows);
    if (o.wide) bench_model(tools::sdxl_width_spec(), o.wide_pixels, o, rows);
    print_table(rows, o);
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_unet: " << e.what() << "\n";
    return 1;
  }
}
