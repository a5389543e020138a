#include "sdxlhost/nn/cpu_runtime.hpp"

#include <dlfcn.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <utility>

#include <ATen/Parallel.h>

namespace sdxlhost::nn {
namespace {

// Set in the environment of the re-executed process: never re-execute twice.
constexpr const char* kReexecMarker = "SDXLHOST_BLAS_REEXEC";
// "library" keeps OpenBLAS's own detection.
constexpr const char* kBlasCoreSetting = "SDXLHOST_BLAS_CORE";
// "library" keeps the OpenBLAS build that loaded; "auto" (default) prefers the OpenMP build.
constexpr const char* kBlasThreadingSetting = "SDXLHOST_BLAS_THREADING";
// Set beside kReexecMarker when we switched to the OpenMP build (holds the folder we left).
constexpr const char* kThreadingMarker = "SDXLHOST_BLAS_SWITCHED_FROM";

std::string lower(std::string text) {
  std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
  return text;
}

std::string read_first_line(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

std::string cpuinfo_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string model = line.substr(colon + 1);
    model.erase(0, model.find_first_not_of(" \t"));
    return model;
  }
  return "";
}

/// (logical CPUs we may run on, distinct physical cores among them), from the affinity mask and
/// sysfs topology; falls back to sysconf when sysfs is missing.
std::pair<int, int> core_counts() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) {
    const int n = static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
    return {n, n};
  }
  int logical = 0;
  std::set<std::string> cores;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &set)) continue;
    ++logical;
    const std::string topology = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    const std::string package = read_first_line(topology + "physical_package_id");
    const std::string core = read_first_line(topology + "core_id");
    cores.insert(package.empty() || core.empty() ? "cpu" + std::to_string(cpu) : package + ":" + core);
  }
  logical = std::max(1, logical);
  return {logical, std::max(1, static_cast<int>(cores.size()))};
}

template <typename Fn>
Fn openblas_symbol(const char* name) {
  // OpenBLAS is loaded with libtorch (through libblas.so.3): look it up in the global scope, so
  // a build against another BLAS still links and simply reports "".
  return reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, name));
}

BlasChoice& current_choice() {
  static BlasChoice choice;
  return choice;
}

}  // namespace

CpuInfo cpu_info() {
  CpuInfo info;
  info.model = cpuinfo_model();
  __builtin_cpu_init();
  info.avx2 = __builtin_cpu_supports("avx2");
  info.avx512f = __builtin_cpu_supports("avx512f");
  info.avx512_bf16 = __builtin_cpu_supports("avx512bf16");
  // gcc 12 has no "amx-bf16" name for __builtin_cpu_supports: read the flag from /proc/cpuinfo.
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("flags", 0) == 0) {
      info.amx_bf16 = line.find(" amx_bf16") != std::string::npos;
      break;
    }
  const auto [logical, physical] = core_counts();
  info.logical_cpus = logical;
  info.physical_cores = physical;
  return info;
}

std::string blas_threading() {
  using GetParallel = int (*)();
  const auto parallel = openblas_symbol<GetParallel>("openblas_get_parallel");
  if (!parallel) return "";
  switch (parallel()) {
    case 0: return "sequential";
    case 1: return "pthreads";
    case 2: return "openmp";
    default: return "";
  }
}

std::string blas_core() {
  using CoreName = char* (*)();
  const auto corename = openblas_symbol<CoreName>("openblas_get_corename");
  if (!corename) return "";
  const char* name = corename();
  return name ? std::string(name) : std::string();
}

std::string better_blas_core(const CpuInfo& cpu, const std::string& running) {
  if (running.empty()) return "";  // not OpenBLAS
  const std::string core = lower(running);
  // Cores at least as fast as what we would pick for each extension.
  static const std::set<std::string> kAvx512Cores = {"skylakex", "cooperlake", "sapphirerapids"};
  static const std::set<std::string> kAvx2Cores = {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"};
  if (cpu.avx512f && !kAvx512Cores.count(core)) return "SKYLAKEX";
  if (!cpu.avx512f && cpu.avx2 && !kAvx2Cores.count(core)) return "HASWELL";
  return "";
}

namespace {

/// SDXLHOST_BLAS_CORE: "" / "auto" (pick for this CPU), "library" (keep its choice), or a core
/// type name for OPENBLAS_CORETYPE ("SKYLAKEX").
std::string blas_core_setting() {
  const char* setting = std::getenv(kBlasCoreSetting);
  return setting ? std::string(setting) : std::string();
}

bool is_auto(const std::string& setting) { return setting.empty() || lower(setting) == "auto"; }

/// The OpenBLAS core to switch to ("" = keep the library's), filling in `choice`'s
/// selected/detail for the cases that keep it.
std::string blas_core_to_select(BlasChoice& choice) {
  const std::string setting = blas_core_setting();
  if (const char* given = std::getenv("OPENBLAS_CORETYPE"); given && *given) {
    if (const char* library = std::getenv(kReexecMarker); library && *library) {  // we set it
      choice.selected = is_auto(setting) ? "auto" : "setting";
      choice.detail = "OpenBLAS core " + choice.core + " (" +
                      (is_auto(setting) ? "selected for this CPU" : std::string(kBlasCoreSetting) + "=" + setting) +
                      "; the library chose " + library + ")";
    } else {
      choice.selected = "operator";
      choice.detail = std::string("OpenBLAS core ") + choice.core + " (OPENBLAS_CORETYPE=" + given + ")";
    }
    return "";
  }
  choice.selected = "library";
  if (choice.core.empty()) {
    choice.detail = "the BLAS is not OpenBLAS (or not loaded): nothing to select";
    return "";
  }
  if (lower(setting) == "library") {
    choice.detail = "OpenBLAS core " + choice.core + " (its own detection; " + kBlasCoreSetting + "=library)";
    return "";
  }
  const std::string wanted = is_auto(setting) ? better_blas_core(cpu_info(), choice.core) : setting;
  if (wanted.empty() || lower(wanted) == lower(choice.core)) {
    choice.detail = "OpenBLAS core " + choice.core + " (its own detection; fits this CPU)";
    return "";
  }
  return wanted;
}

/// libgomp's workers spin for a while after each parallel region (GOMP_SPINCOUNT), on the cores
/// OpenBLAS's own threads need for the next GEMM: with both pools at 2 threads on 2 cores the
/// SDXL-width step was 1.2x slower than with 1 libtorch thread; with GOMP_SPINCOUNT=0 it is
/// 1.25x faster (bench_cpu). "" = leave the environment (the operator set OpenMP's policy).
std::string openmp_spin_to_select(BlasChoice& choice) {
  if (const char* policy = std::getenv("OMP_WAIT_POLICY"); policy && *policy) {
    choice.openmp = std::string("OMP_WAIT_POLICY=") + policy + " (operator)";
    return "";
  }
  if (const char* spin = std::getenv("GOMP_SPINCOUNT"); spin && *spin) {
    choice.openmp = std::string("GOMP_SPINCOUNT=") + spin + (std::getenv(kReexecMarker) ? " (set at start)" : " (operator)");
    return "";
  }
  return "0";
}

/// The folder of OpenBLAS's OpenMP build when the loaded OpenBLAS is its pthreads build and the
/// OpenMP one is installed beside it (Debian: .../openblas-pthread/ and .../openblas-openmp/);
/// "" otherwise, with `choice.threading_detail` saying why.
std::string openmp_blas_to_select(BlasChoice& choice) {
  choice.threading = blas_threading();
  if (choice.threading.empty()) return "";
  if (const char* from = std::getenv(kThreadingMarker); from && *from) {
    choice.threading_detail = "OpenBLAS on " + choice.threading + " (its OpenMP build, selected at start; " + from +
                              " was loaded first)";
    return "";
  }
  choice.threading_detail = "OpenBLAS on " + choice.threading + " (the build that loaded)";
  if (choice.threading != "pthreads") return "";
  const char* setting = std::getenv(kBlasThreadingSetting);
  if (setting && lower(setting) == "library") {
    choice.threading_detail += "; " + std::string(kBlasThreadingSetting) + "=library";
    return "";
  }
  Dl_info info{};
  const auto corename = openblas_symbol<char* (*)()>("openblas_get_corename");
  if (!corename || dladdr(reinterpret_cast<void*>(corename), &info) == 0 || !info.dli_fname) return "";
  std::error_code error;
  const std::filesystem::path loaded = std::filesystem::canonical(info.dli_fname, error);
  if (error || loaded.parent_path().filename() != "openblas-pthread") return "";
  const std::filesystem::path openmp = loaded.parent_path().parent_path() / "openblas-openmp";
  if (!std::filesystem::exists(openmp / "libblas.so.3", error)) {
    choice.threading_detail += "; install libopenblas0-openmp to share libtorch's OpenMP pool";
    return "";
  }
  return openmp.string();
}

}  // namespace

void select_blas_kernels(char** argv) {
  BlasChoice& choice = current_choice();
  choice.core = blas_core();
  const std::string core = blas_core_to_select(choice);
  const std::string openmp_blas = openmp_blas_to_select(choice);
  // One OpenMP pool: its workers may spin (the next parallel region is theirs too).
  const bool one_pool = !openmp_blas.empty() || choice.threading == "openmp";
  const std::string spin = one_pool ? std::string() : openmp_spin_to_select(choice);
  if (core.empty() && spin.empty() && openmp_blas.empty()) return;
  if (std::getenv(kReexecMarker)) {  // never loop, whatever happened to the variables
    if (!core.empty()) choice.detail = "OpenBLAS core " + choice.core + ": OPENBLAS_CORETYPE=" + core + " was not taken";
    if (!openmp_blas.empty()) choice.threading_detail += "; " + openmp_blas + " was not taken";
    return;
  }
  const char* library_path = std::getenv("LD_LIBRARY_PATH");
  const std::string old_library_path = library_path ? library_path : "";
  if (!core.empty()) setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
  if (!spin.empty()) setenv("GOMP_SPINCOUNT", spin.c_str(), 1);
  if (!openmp_blas.empty()) {
    const std::string path = old_library_path.empty() ? openmp_blas : openmp_blas + ":" + old_library_path;
    setenv("LD_LIBRARY_PATH", path.c_str(), 1);
    setenv(kThreadingMarker, "openblas-pthread", 1);
  }
  // the marker holds the library's core when we changed it, for the log ("" otherwise)
  setenv(kReexecMarker, core.empty() ? "" : choice.core.c_str(), 1);
  execv("/proc/self/exe", argv);
  // Still here: exec failed (no /proc?). Keep running as the libraries started.
  const int error = errno;
  if (!core.empty()) unsetenv("OPENBLAS_CORETYPE");
  if (!spin.empty()) unsetenv("GOMP_SPINCOUNT");
  if (!openmp_blas.empty()) {
    if (library_path) setenv("LD_LIBRARY_PATH", old_library_path.c_str(), 1);
    else unsetenv("LD_LIBRARY_PATH");
    unsetenv(kThreadingMarker);
  }
  unsetenv(kReexecMarker);
  choice.detail += std::string("; re-executing with the selected environment failed (") + std::strerror(error) + ")";
  choice.openmp = "libgomp's default spinning (re-executing failed)";
}

BlasChoice blas_choice() {
  BlasChoice choice = current_choice();
  if (choice.selected.empty()) {  // select_blas_kernels was not called (benchmarks, tests)
    choice.core = blas_core();
    const char* given = std::getenv("OPENBLAS_CORETYPE");
    choice.selected = given && *given ? "operator" : "library";
    choice.detail = "OpenBLAS core " + choice.core;
  }
  if (choice.threading.empty()) {
    choice.threading = blas_threading();
    if (!choice.threading.empty()) choice.threading_detail = "OpenBLAS on " + choice.threading;
  }
  if (choice.openmp.empty()) {
    const char* spin = std::getenv("GOMP_SPINCOUNT");
    const char* policy = std::getenv("OMP_WAIT_POLICY");
    choice.openmp = policy && *policy ? std::string("OMP_WAIT_POLICY=") + policy
                    : spin && *spin   ? std::string("GOMP_SPINCOUNT=") + spin
                                      : std::string("libgomp's default spinning");
  }
  return choice;
}

int apply_threads(int threads) {
  int wanted = threads > 0 ? threads : cpu_info().physical_cores;
  wanted = std::max(1, wanted);
  at::set_num_threads(wanted);  // libtorch's intra-op pool; with OpenMP builds also omp/oneDNN
  using SetThreads = void (*)(int);
  if (const auto set_blas_threads = openblas_symbol<SetThreads>("openblas_set_num_threads"))
    set_blas_threads(wanted);
  return at::get_num_threads();
}

}  // namespace sdxlhost::nn
