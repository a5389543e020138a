// bench_upscaler: x4 upscaling with a Real-ESRGAN-size RRDBNet (23 blocks, 64 features, growth
// 32; random weights) through the plugin's tiler, per dtype and memory layout: seconds, output
// megapixels per second, peak RSS of the process, and the largest 8-bit difference from the
// first row. Each row runs in a child process so its peak RSS is its own. Not a test; see
// docs/upscaler.md for the numbers and the command.
//   bench_upscaler [--size 512] [--tile 256] [--overlap 16] [--threads N]
//                  [--rows fp32-nchw,fp32-nhwc,bf16-nchw,bf16-nhwc]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/version.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "rrdbnet.hpp"
#include "tiled_upscale.hpp"

namespace {

using namespace sdxlhost;
using Clock = std::chrono::steady_clock;

struct Options {
  int size = 512;
  int tile = 256;
  int overlap = 16;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<std::string> rows = {"fp32-nchw", "fp32-nhwc", "bf16-nchw", "bf16-nhwc"};
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--size") o.size = std::stoi(value);
    else if (key == "--tile") o.tile = std::stoi(value);
    else if (key == "--overlap") o.overlap = std::stoi(value);
    else if (key == "--threads") o.threads = std::stoi(value);
    else if (key == "--rows") {
      o.rows.clear();
      std::stringstream list(value);
      for (std::string row; std::getline(list, row, ',');) o.rows.push_back(row);
    }
  }
  return o;
}

/// Real-ESRGAN x4plus shapes with random weights (BasicSR names).
nn::TensorMap realesrgan_weights() {
  auto generator = at::make_generator<at::CPUGeneratorImpl>(1);
  nn::TensorMap w;
  auto conv = [&](const std::string& name, std::int64_t in, std::int64_t out, double gain, double bias = 0.0) {
    w.set(name + ".weight", at::randn({out, in, 3, 3}, generator, at::kFloat) * (gain * std::sqrt(1.0 / (in * 9))));
    w.set(name + ".bias", at::full({out}, bias));
  };
  conv("conv_first", 3, 64, 1.0);
  for (int b = 0; b < 23; ++b)
    for (int r = 1; r <= 3; ++r)
      for (int k = 1; k <= 5; ++k)
        conv("body." + std::to_string(b) + ".rdb" + std::to_string(r) + ".conv" + std::to_string(k), 64 + 32 * (k - 1),
             k == 5 ? 64 : 32, 0.1);
  for (const char* name : {"conv_body", "conv_up1", "conv_up2", "conv_hr"}) conv(name, 64, 64, 1.0);
  conv("conv_last", 64, 3, 0.05, 0.5);  // outputs near mid-grey: differences are not clipped away
  return w;
}

double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

std::string result_file(const std::string& row) { return "/tmp/bench_upscaler_" + std::to_string(getppid()) + "_" + row; }

/// One row, in the child: prints "seconds rss" to `out`, writes the 8-bit result beside.
void run_row(const Options& o, const std::string& row, FILE* out) {
  at::set_num_threads(o.threads);
  const at::ScalarType dtype = row.rfind("bf16", 0) == 0 ? at::kBFloat16 : at::kFloat;
  const bool channels_last = row.find("nhwc") != std::string::npos;
  upscaler::RRDBNet model(realesrgan_weights(), "bench");
  model.convert(dtype, channels_last);
  sdk::Image image;
  image.width = image.height = o.size;
  auto generator = at::make_generator<at::CPUGeneratorImpl>(2);
  const at::Tensor pixels = at::randint(0, 256, {o.size * o.size * 3}, generator, at::kByte);
  image.pixels.assign(pixels.data_ptr<std::uint8_t>(), pixels.data_ptr<std::uint8_t>() + pixels.numel());
  c10::InferenceMode inference;
  const upscaler::TileNetwork network = [&](const at::Tensor& tile) {
    at::Tensor x = tile.to(dtype);
    if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
    return model.forward(x).to(at::kFloat);
  };
  sdk::Image warm = image;  // one small tile first: oneDNN picks and caches its kernels
  warm.width = warm.height = 32;
  warm.pixels.resize(32 * 32 * 3);
  upscaler::tiled_upscale(warm, network, {4, 1}, {0, 0});
  const auto start = Clock::now();
  const sdk::Image result = upscaler::tiled_upscale(image, network, {4, 1}, {o.tile, o.overlap});
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::ofstream(result_file(row), std::ios::binary).write(reinterpret_cast<const char*>(result.pixels.data()),
                                                          static_cast<std::streamsize>(result.pixels.size()));
  std::fprintf(out, "%f %f\n", seconds, peak_rss_mib());
}

std::vector<std::uint8_t> read_result(const std::string& row) {
  std::ifstream in(result_file(row), std::ios::binary);
  return std::vector<std::uint8_t>(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  std::printf("bench_upscaler: RRDBNet x4 (23 blocks, 64 feat, 32 growth, random weights), %dx%d -> %dx%d, "
              "tile %d overlap %d, %d threads, libtorch %s\n",
              o.size, o.size, o.size * 4, o.size * 4, o.tile, o.overlap, o.threads, TORCH_VERSION);
  std::printf("| row | seconds | output Mpix/s | peak RSS MiB | max 8-bit diff vs %s |\n|---|---|---|---|---|\n",
              o.rows.front().c_str());
  std::vector<std::uint8_t> reference;
  for (const auto& row : o.rows) {
    int fds[2];
    if (pipe(fds) != 0) return 1;
    const pid_t child = fork();
    if (child == 0) {
      close(fds[0]);
      FILE* out = fdopen(fds[1], "w");
      run_row(o, row, out);
      std::fclose(out);
      _exit(0);
    }
    close(fds[1]);
    FILE* in = fdopen(fds[0], "r");
    double seconds = 0, rss = 0;
    const bool ok = std::fscanf(in, "%lf %lf", &seconds, &rss) == 2;
    std::fclose(in);
    int status = 0;
    waitpid(child, &status, 0);
    if (!ok) {
      std::printf("| %s | failed | | | |\n", row.c_str());
      continue;
    }
    const auto result = read_result(row);
    std::remove(result_file(row).c_str());
    if (reference.empty()) reference = result;
    int max_diff = 0;
    for (std::size_t i = 0; i < std::min(result.size(), reference.size()); ++i)
      max_diff = std::max(max_diff, std::abs(static_cast<int>(result[i]) - static_cast<int>(reference[i])));
    const double mpix = static_cast<double>(o.size) * 4 * o.size * 4 / 1e6;
    std::printf("| %s | %.2f | %.3f | %.0f | %d |\n", row.c_str(), seconds, mpix / seconds, rss, max_diff);
    std::fflush(stdout);
  }
  return 0;
}
