#include "sdxlhost/nn/cpu_runtime.hpp"

#include <dlfcn.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
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

/// SDXLHOST_BLAS_CORE: "" / "auto" (pick for this CPU), "library" (keep its choice), or a core
/// type name for OPENBLAS_CORETYPE ("SKYLAKEX").
std::string blas_core_setting() {
  const char* setting = std::getenv(kBlasCoreSetting);
  return setting ? std::string(setting) : std::string();
}

bool is_auto(const std::string& setting) { return setting.empty() || lower(setting) == "auto"; }

void select_blas_kernels(char** argv) {
  BlasChoice& choice = current_choice();
  choice.core = blas_core();
  const std::string setting = blas_core_setting();
  if (const char* given = std::getenv("OPENBLAS_CORETYPE"); given && *given) {
    if (const char* library = std::getenv(kReexecMarker)) {  // set by us before re-executing
      choice.selected = is_auto(setting) ? "auto" : "setting";
      choice.detail = "OpenBLAS core " + choice.core + " (" +
                      (is_auto(setting) ? "selected for this CPU" : std::string(kBlasCoreSetting) + "=" + setting) +
                      "; the library chose " + library + ")";
    } else {
      choice.selected = "operator";
      choice.detail = std::string("OpenBLAS core ") + choice.core + " (OPENBLAS_CORETYPE=" + given + ")";
    }
    return;
  }
  choice.selected = "library";
  if (choice.core.empty()) {
    choice.detail = "the BLAS is not OpenBLAS (or not loaded): nothing to select";
    return;
  }
  if (lower(setting) == "library") {
    choice.detail = "OpenBLAS core " + choice.core + " (its own detection; " + kBlasCoreSetting + "=library)";
    return;
  }
  const std::string wanted = is_auto(setting) ? better_blas_core(cpu_info(), choice.core) : setting;
  if (wanted.empty() || lower(wanted) == lower(choice.core)) {
    choice.detail = "OpenBLAS core " + choice.core + " (its own detection; fits this CPU)";
    return;
  }
  if (std::getenv(kReexecMarker)) {  // never loop, whatever happened to the variable
    choice.detail = "OpenBLAS core " + choice.core + ": OPENBLAS_CORETYPE=" + wanted + " was not taken";
    return;
  }
  setenv("OPENBLAS_CORETYPE", wanted.c_str(), 1);
  setenv(kReexecMarker, choice.core.c_str(), 1);  // the library's core, for the log
  execv("/proc/self/exe", argv);
  // Still here: exec failed (no /proc?). Keep running on the library's core.
  const int error = errno;
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv(kReexecMarker);
  choice.detail = "OpenBLAS core " + choice.core + ": re-executing with OPENBLAS_CORETYPE=" + wanted +
                  " failed (" + std::strerror(error) + ")";
}

BlasChoice blas_choice() {
  BlasChoice choice = current_choice();
  if (choice.selected.empty()) {  // select_blas_kernels was not called (benchmarks, tests)
    choice.core = blas_core();
    const char* given = std::getenv("OPENBLAS_CORETYPE");
    choice.selected = given && *given ? "operator" : "library";
    choice.detail = "OpenBLAS core " + choice.core;
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
