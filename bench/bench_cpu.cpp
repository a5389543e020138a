// bench_cpu: UNet step time on this CPU with the libraries' defaults (what diffusers gets here)
// against our kernel and thread choices (nn/cpu_runtime.hpp), and in bf16, for the tiny, the
// SDXL-width and the full SDXL base UNet (random weights, real shapes). Every measurement runs
// in a fresh process (OpenBLAS chooses its kernels when it loads), the modes alternate, and each
// row is the median over repeats. Outputs of every mode are compared with the defaults'.
// Not a test; docs/performance.md has the table and the command.
//   bench_cpu [--configs tiny,sdxl-width,sdxl] [--pixels 256] [--tiny-pixels 64] [--repeats 3]
//             [--steps 2] [--threads 0] [--modes defaults,threads,ours,bf16]
// Extra mode: prescott = defaults with OPENBLAS_CORETYPE=PRESCOTT, what the libraries run on a
// CPU that OpenBLAS 0.3.21 does not recognise (the machine issue 17 was measured on).
// The table also gives each config's multiply-add work per step (counted from the config) and
// the rate each mode reached, beside a 2048^3 sgemm in the "ours" setup: the machine's ceiling.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/version.h>
#include <dlfcn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "bench_args.hpp"
#include "sdxlhost/nn/cpu_runtime.hpp"
#include "sdxlhost/nn/unet.hpp"
#include "tiny_sdxl_model.hpp"

namespace {

using namespace sdxlhost;
using Clock = std::chrono::steady_clock;

struct Options {
  std::vector<std::string> configs = {"tiny", "sdxl-width", "sdxl"};
  std::vector<std::string> modes = {"defaults", "threads", "ours", "bf16"};
  int pixels = 256;
  int tiny_pixels = 64;
  int repeats = 3;
  int steps = 2;
  int threads = 0;  // 0: physical cores
};

using bench::split_list;

tools::SdxlSpec spec_named(const std::string& name) {
  if (name == "tiny") return tools::tiny_spec();
  if (name == "sdxl-width") return tools::sdxl_width_spec();
  if (name == "sdxl") return tools::sdxl_base_spec();
  throw std::invalid_argument("unknown config '" + name + "' (tiny, sdxl-width, sdxl)");
}

// ---- the child: one mode, one config, prints "seconds threads core" and writes its output ----

/// Weights drawn in fp32 from a seeded generator, then stored as `dtype`: every process and
/// dtype gets the same model.
std::shared_ptr<nn::UNet2DConditionModel> make_unet(const nn::UNetConfig& config, at::ScalarType dtype) {
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(1234);
  auto init = [&](const std::string& key, const std::vector<std::int64_t>& shape) {
    const bool is_bias = key.size() > 5 && key.compare(key.size() - 5, 5, ".bias") == 0;
    if (shape.size() == 1 && !is_bias) return at::ones(shape).to(dtype);
    std::int64_t fan_in = 1;
    for (std::size_t i = 1; i < shape.size(); ++i) fan_in *= shape[i];
    if (shape.size() == 1) fan_in = shape[0];
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    return (at::rand(shape, generator) * (2 * bound) - bound).to(dtype);
  };
  return nn::UNet2DConditionModel::create(config, init, dtype);
}

/// "tcmalloc" when this process runs on it (the "ours" modes preload it, as sdxl-host links it).
const char* allocator() {
  return dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory") ? "tcmalloc" : "glibc";
}

bool is_ours(const std::string& mode) {
  return mode != "defaults" && mode != "threads" && mode != "prescott";
}

// ---- work per step ----

/// Floating-point operations (2 per multiply-add) of one UNet forward at `latent` x `latent`,
/// batch `batch`, `context` text tokens: convolutions, linear layers and attention products, as
/// diffusers' UNet2DConditionModel runs them. Norms, activations and the time embedding
/// (all well under 1%) are left out.
double unet_flops(const nn::UNetConfig& c, std::int64_t latent, std::int64_t batch, std::int64_t context = 77) {
  double macs = 0;
  const auto pixels = [&](std::size_t level) { return static_cast<double>((latent >> level) * (latent >> level)); };
  const auto conv = [&](double in, double out, double hw, double kernel) { macs += hw * in * out * kernel * kernel; };
  const auto resnet = [&](double in, double out, double hw) {
    conv(in, out, hw, 3);
    conv(out, out, hw, 3);
    if (in != out) conv(in, out, hw, 1);
  };
  const auto transformer = [&](double ch, std::int64_t depth, double tokens) {
    macs += 2 * tokens * ch * ch;  // proj_in, proj_out
    for (std::int64_t d = 0; d < depth; ++d) {
      macs += 4 * tokens * ch * ch + 2 * tokens * tokens * ch;  // self-attention: q k v out, scores, values
      macs += 2 * tokens * ch * ch + 2 * context * c.cross_attention_dim * ch + 2 * tokens * context * ch;
      macs += 12 * tokens * ch * ch;  // GEGLU feed-forward: ch -> 2 x 4ch, 4ch -> ch
    }
  };
  const std::size_t levels = c.block_out_channels.size();
  std::vector<double> skips;
  double ch = static_cast<double>(c.block_out_channels[0]);
  conv(static_cast<double>(c.in_channels), ch, pixels(0), 3);
  skips.push_back(ch);
  for (std::size_t level = 0; level < levels; ++level) {
    const double out = static_cast<double>(c.block_out_channels[level]);
    for (std::int64_t j = 0; j < c.layers_per_block; ++j) {
      resnet(ch, out, pixels(level));
      ch = out;
      if (c.down_attention[level]) transformer(ch, c.transformer_depth[level], pixels(level));
      skips.push_back(ch);
    }
    if (level + 1 < levels) {
      conv(ch, ch, pixels(level + 1), 3);  // stride-2 downsample
      skips.push_back(ch);
    }
  }
  resnet(ch, ch, pixels(levels - 1));
  if (c.mid_block_attention) transformer(ch, c.mid_transformer_depth, pixels(levels - 1));
  resnet(ch, ch, pixels(levels - 1));
  for (std::size_t up = 0; up < levels; ++up) {
    const std::size_t level = levels - 1 - up;
    const double out = static_cast<double>(c.block_out_channels[level]);
    for (std::int64_t j = 0; j <= c.layers_per_block; ++j) {
      resnet(ch + skips.back(), out, pixels(level));
      skips.pop_back();
      ch = out;
      if (c.up_attention[up]) transformer(ch, c.up_transformer_depth[up], pixels(level));
    }
    if (level > 0) conv(ch, ch, pixels(level - 1), 3);  // upsample
  }
  conv(ch, static_cast<double>(c.out_channels), pixels(0), 3);
  return 2 * macs * static_cast<double>(batch);
}

/// GFLOP/s of a 2048^3 float32 matrix product in this process's setup (best of 5).
double sgemm_gflops() {
  const at::Tensor a = at::rand({2048, 2048}), b = at::rand({2048, 2048});
  at::Tensor c = at::mm(a, b);
  double best = 1e9;
  for (int i = 0; i < 5; ++i) {
    const auto start = Clock::now();
    c = at::mm(a, b);
    best = std::min(best, std::chrono::duration<double>(Clock::now() - start).count());
  }
  return 2.0 * 2048 * 2048 * 2048 / best / 1e9;
}

int run_child(const std::string& mode, const std::string& config_name, int pixels, int steps, int threads,
              const std::string& output_file) {
  // "defaults": nothing set, as the libraries start. "threads": our thread count only.
  // "ours" / "bf16": what sdxl-host's start does (the child calls select_blas_kernels in main).
  if (mode != "defaults" && mode != "prescott") nn::apply_threads(threads);
  if (config_name == "sgemm") {  // the ceiling probe: GFLOP/s in the place of seconds
    const std::string threading = nn::blas_threading();
    std::printf("%.6f %d %s %s %s\n", sgemm_gflops(), at::get_num_threads(), nn::blas_core().c_str(),
                threading.empty() ? "-" : threading.c_str(), allocator());
    return 0;
  }
  const at::ScalarType dtype = mode == "bf16" ? at::kBFloat16 : at::kFloat;
  const tools::SdxlSpec spec = spec_named(config_name);
  auto unet = make_unet(spec.unet, dtype);
  const std::int64_t latent = pixels / 8;
  const std::int64_t pooled =
      spec.unet.projection_class_embeddings_input_dim - 6 * spec.unet.addition_time_embed_dim;
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(99);
  const at::Tensor sample = at::randn({2, 4, latent, latent}, generator).to(dtype);
  const at::Tensor context = at::randn({2, 77, spec.unet.cross_attention_dim}, generator).to(dtype);
  const at::Tensor text_embeds = at::randn({2, pooled}, generator).to(dtype);
  const at::Tensor time_ids = at::tensor({1.f * pixels, 1.f * pixels, 0.f, 0.f, 1.f * pixels, 1.f * pixels})
                                  .repeat({2, 1})
                                  .to(dtype);
  const at::Tensor t = at::tensor(500.f);
  c10::InferenceMode inference;
  at::Tensor out = unet->forward(sample, t, context, text_embeds, time_ids);  // warm-up
  std::vector<double> times;
  for (int i = 0; i < steps; ++i) {
    const auto start = Clock::now();
    out = unet->forward(sample, t, context, text_embeds, time_ids);
    times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
  }
  std::sort(times.begin(), times.end());
  const at::Tensor values = out.to(at::kFloat).contiguous();
  std::ofstream(output_file, std::ios::binary)
      .write(reinterpret_cast<const char*>(values.data_ptr<float>()),
             static_cast<std::streamsize>(values.numel() * sizeof(float)));
  const std::string threading = nn::blas_threading();
  std::printf("%.6f %d %s %s %s\n", times[times.size() / 2], at::get_num_threads(), nn::blas_core().c_str(),
              threading.empty() ? "-" : threading.c_str(), allocator());
  return 0;
}

// ---- the parent ----

struct Sample {
  double seconds = 0;
  int threads = 0;
  std::string core;
  std::string threading;  ///< OpenBLAS's threads: openmp / pthreads
  std::string allocator;  ///< tcmalloc / glibc
};

/// Runs one measurement in a fresh process of this program with the mode's environment.
Sample run_mode(const char* self, const std::string& mode, const std::string& config, int pixels, const Options& o,
                const std::string& output_file) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) throw std::runtime_error("pipe failed");
  const pid_t child = fork();
  if (child < 0) throw std::runtime_error("fork failed");
  if (child == 0) {
    dup2(pipe_fds[1], 1);
    close(pipe_fds[0]);
    // Each child starts from the libraries' defaults; the "ours" modes then select as
    // sdxl-host's main does (select_blas_kernels re-executes the child) on sdxl-host's allocator.
    for (const char* name : {"SDXLHOST_BLAS_REEXEC", "SDXLHOST_BLAS_SWITCHED_FROM", "OPENBLAS_CORETYPE",
                             "GOMP_SPINCOUNT", "LD_PRELOAD"})
      unsetenv(name);
#ifdef SDXLHOST_TCMALLOC_PATH
    if (is_ours(mode)) setenv("LD_PRELOAD", SDXLHOST_TCMALLOC_PATH, 1);
#endif
    if (mode == "prescott") setenv("OPENBLAS_CORETYPE", "PRESCOTT", 1);
    const std::string pixels_text = std::to_string(pixels), steps_text = std::to_string(o.steps),
                      threads_text = std::to_string(o.threads);
    execl(self, self, "--child", mode.c_str(), config.c_str(), pixels_text.c_str(), steps_text.c_str(),
          threads_text.c_str(), output_file.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(pipe_fds[1]);
  std::string text;
  char buffer[256];
  for (ssize_t n; (n = read(pipe_fds[0], buffer, sizeof buffer)) > 0;) text.append(buffer, static_cast<size_t>(n));
  close(pipe_fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("the " + mode + " run of " + config + " failed");
  Sample s;
  std::istringstream in(text);
  in >> s.seconds >> s.threads >> s.core >> s.threading >> s.allocator;
  return s;
}

std::vector<float> read_floats(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<float> out(bytes.size() / sizeof(float));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(float));
  return out;
}

/// (max |a - b|, max |a - b| / max |a|)
std::pair<double, double> difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size() || a.empty()) return {NAN, NAN};
  double diff = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, static_cast<double>(std::fabs(a[i] - b[i])));
    scale = std::max(scale, static_cast<double>(std::fabs(a[i])));
  }
  return {diff, scale > 0 ? diff / scale : diff};
}

int run_parent(const char* self, const Options& o) {
  const nn::CpuInfo cpu = nn::cpu_info();
  const std::string library_core = nn::blas_core();
  const std::string better = nn::better_blas_core(cpu, library_core);
  std::printf("bench_cpu  libtorch %s  %s  (%d logical / %d physical cores%s%s%s)\n", TORCH_VERSION,
              cpu.model.c_str(), cpu.logical_cpus, cpu.physical_cores, cpu.avx2 ? ", avx2" : "",
              cpu.avx512f ? ", avx512f" : "", cpu.avx512_bf16 ? ", avx512_bf16" : "");
  std::printf("OpenBLAS core: library's choice %s; ours %s\n", library_core.c_str(),
              better.empty() ? "(the same)" : better.c_str());
  std::printf("modes: defaults = libraries as they load (libtorch's and OpenBLAS's own thread counts, "
              "the library's BLAS core and build, libgomp's spinning, glibc malloc); threads = our thread "
              "count only; ours = what sdxl-host runs (select_blas_kernels at start: core, OpenBLAS on "
              "OpenMP when installed, spinning policy; our threads; tcmalloc); bf16 = ours with bf16 "
              "weights and activations; prescott = defaults with OpenBLAS's generic Prescott kernels (a CPU it "
              "does not recognise)\n");
  const double peak_gflops = run_mode(self, "ours", "sgemm", 0, o, "").seconds;
  std::printf("ceiling: a 2048^3 float32 sgemm in the ours setup runs at %.0f GFLOP/s\n", peak_gflops);
  std::printf("| %-10s | %-7s | %-8s | %7s | %-9s | %-9s | %-8s | %9s | %8s | %8s | %10s | %10s |\n", "UNet",
              "pixels", "mode", "threads", "BLAS core", "BLAS pool", "malloc", "s/step", "speed-up", "GFLOP/s",
              "max |diff|", "rel diff");
  std::printf("|------------|---------|----------|---------|-----------|-----------|----------|-----------|----------|"
              "----------|------------|------------|\n");
  std::vector<std::string> floors;
  const std::string prefix = "/tmp/bench_cpu_" + std::to_string(::getpid()) + "_";
  for (const std::string& config : o.configs) {
    const int pixels = config == "tiny" ? o.tiny_pixels : o.pixels;
    std::map<std::string, std::vector<Sample>> samples;
    for (int r = 0; r < o.repeats; ++r)
      for (const std::string& mode : o.modes)  // modes alternate: drift hits them alike
        samples[mode].push_back(run_mode(self, mode, config, pixels, o, prefix + mode + ".bin"));
    const std::vector<float> reference = read_floats(prefix + o.modes.front() + ".bin");
    const double flops = unet_flops(spec_named(config).unet, pixels / 8, 2);
    double reference_seconds = 0;
    for (const std::string& mode : o.modes) {
      auto& list = samples[mode];
      std::sort(list.begin(), list.end(), [](const Sample& a, const Sample& b) { return a.seconds < b.seconds; });
      const Sample& median = list[list.size() / 2];
      if (reference_seconds == 0) reference_seconds = median.seconds;
      const auto [diff, relative] = difference(reference, read_floats(prefix + mode + ".bin"));
      std::printf("| %-10s | %-7d | %-8s | %7d | %-9s | %-9s | %-8s | %9.3f | %7.2fx | %8.0f | %10.3g | %10.3g |\n",
                  config.c_str(), pixels, mode.c_str(), median.threads, median.core.c_str(), median.threading.c_str(),
                  median.allocator.c_str(), median.seconds, reference_seconds / median.seconds,
                  flops / median.seconds / 1e9, diff, relative);
    }
    char floor[256];
    std::snprintf(floor, sizeof floor,
                  "%s at %d px: %.3f TFLOP per step; at the sgemm ceiling %.3f s/step, %.2fx the first mode", config.c_str(),
                  pixels, flops / 1e12, flops / (peak_gflops * 1e9), reference_seconds / (flops / (peak_gflops * 1e9)));
    floors.push_back(floor);
    for (const std::string& mode : o.modes) std::remove((prefix + mode + ".bin").c_str());
  }
  std::printf("(batch 2 as with CFG; median of %d processes per mode, each the median of %d steps after a "
              "warm-up; diffs against the first mode's output)\n",
              o.repeats, o.steps);
  for (const std::string& line : floors) std::printf("(%s)\n", line.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc == 8 && std::string(argv[1]) == "--child") {
      if (is_ours(argv[2])) nn::select_blas_kernels(argv);  // as sdxl-host's main
      return run_child(argv[2], argv[3], std::stoi(argv[4]), std::stoi(argv[5]), std::stoi(argv[6]), argv[7]);
    }
    Options o;
    for (int i = 1; i + 1 < argc; i += 2) {
      const std::string key = argv[i], value = argv[i + 1];
      if (key == "--configs") o.configs = split_list(value);
      else if (key == "--modes") o.modes = split_list(value);
      else if (key == "--pixels") o.pixels = std::stoi(value);
      else if (key == "--tiny-pixels") o.tiny_pixels = std::stoi(value);
      else if (key == "--repeats") o.repeats = std::max(1, std::stoi(value));
      else if (key == "--steps") o.steps = std::max(1, std::stoi(value));
      else if (key == "--threads") o.threads = std::stoi(value);
      else throw std::invalid_argument("unknown option " + key);
    }
    if (argc % 2 == 0) throw std::invalid_argument("every option takes a value");
    return run_parent("/proc/self/exe", o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cpu: %s\n", e.what());
    return 1;
  }
}
