// The CPU runtime: which OpenBLAS core fits which CPU, and, in fresh processes (OpenBLAS picks
// its kernels when it loads), that the host's selection takes effect, that an operator's
// OPENBLAS_CORETYPE and SDXLHOST_BLAS_CORE=library win, and that outputs do not change.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/temp_dir.hpp"
#include "sdxlhost/nn/cpu_runtime.hpp"

namespace {

using namespace sdxlhost;

nn::CpuInfo cpu_with(bool avx2, bool avx512) {
  nn::CpuInfo cpu;
  cpu.avx2 = avx2;
  cpu.avx512f = avx512;
  return cpu;
}

TEST(CpuRuntime, BetterCoreOnlyWhenTheLibraryFellBackToAGenericOne) {
  EXPECT_EQ(nn::better_blas_core(cpu_with(true, true), "Prescott"), "SKYLAKEX");
  EXPECT_EQ(nn::better_blas_core(cpu_with(true, true), "Haswell"), "SKYLAKEX");
  EXPECT_EQ(nn::better_blas_core(cpu_with(true, true), "SkylakeX"), "");
  EXPECT_EQ(nn::better_blas_core(cpu_with(true, true), "Cooperlake"), "");
  EXPECT_EQ(nn::better_blas_core(cpu_with(true, false), "Prescott"), "HASWELL");
  EXPECT_EQ(nn::better_blas_core(cpu_with(true, false), "Haswell"), "");
  EXPECT_EQ(nn::better_blas_core(cpu_with(true, false), "Zen"), "");
  EXPECT_EQ(nn::better_blas_core(cpu_with(false, false), "Prescott"), "") << "nothing better known";
  EXPECT_EQ(nn::better_blas_core(cpu_with(true, true), ""), "") << "not OpenBLAS";
}

TEST(CpuRuntime, CpuInfoCountsCores) {
  const nn::CpuInfo cpu = nn::cpu_info();
  EXPECT_GE(cpu.logical_cpus, 1);
  EXPECT_GE(cpu.physical_cores, 1);
  EXPECT_LE(cpu.physical_cores, cpu.logical_cpus);
  EXPECT_EQ(nn::apply_threads(0), cpu.physical_cores) << "0 = the physical cores";
  EXPECT_EQ(nn::apply_threads(1), 1);
}

struct Probe {
  std::string core, selected, spin, threading;
  int threads = 0;
  std::vector<float> output;
};

/// Runs blas_probe with `environment` ("A=1 B=2" prefix for env(1)).
Probe run_probe(const std::string& environment, const std::string& extra = "") {
  test_support::TempDir dir;
  const std::string out = (dir.path() / "out.bin").string();
  const std::string command = "env -u OPENBLAS_CORETYPE -u SDXLHOST_BLAS_CORE -u SDXLHOST_BLAS_REEXEC -u GOMP_SPINCOUNT -u OMP_WAIT_POLICY "
                              "-u SDXLHOST_BLAS_THREADING -u SDXLHOST_BLAS_SWITCHED_FROM " +
                              environment + " " SDXLHOST_BLAS_PROBE " " + out + " " + extra;
  FILE* pipe = popen(command.c_str(), "r");
  EXPECT_NE(pipe, nullptr);
  Probe probe;
  char core[64] = {0}, selected[64] = {0}, spin[64] = {0}, threading[64] = {0};
  EXPECT_EQ(std::fscanf(pipe, "%63s %63s %d %63s %63s", core, selected, &probe.threads, spin, threading), 5) << command;
  EXPECT_EQ(pclose(pipe), 0) << command;
  probe.core = core;
  probe.selected = selected;
  probe.spin = spin;
  probe.threading = threading;
  std::ifstream in(out, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  probe.output.resize(bytes.size() / sizeof(float));
  std::memcpy(probe.output.data(), bytes.data(), probe.output.size() * sizeof(float));
  return probe;
}

double max_difference(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size() || a.empty()) return INFINITY;
  double diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff = std::max(diff, static_cast<double>(std::fabs(a[i] - b[i])));
  return diff;
}

TEST(CpuRuntime, SelectionInAFreshProcessKeepsOutputsWithin1e5) {
  const Probe library = run_probe("", "--no-select");  // what the library chose by itself
  if (library.core.empty()) GTEST_SKIP() << "the BLAS is not OpenBLAS";
  const std::string better = nn::better_blas_core(nn::cpu_info(), library.core);

  const Probe selected = run_probe("");
  if (better.empty()) {
    EXPECT_EQ(selected.core, library.core);
    EXPECT_EQ(selected.selected, "library");
  } else {
    EXPECT_NE(selected.core, library.core) << "the process was not re-executed with " << better;
    EXPECT_EQ(selected.selected, "auto");
  }
  EXPECT_LE(max_difference(library.output, selected.output), 1e-5);
  EXPECT_EQ(library.spin, "unset");
  EXPECT_EQ(run_probe("OMP_WAIT_POLICY=ACTIVE").spin, "unset");
  EXPECT_EQ(run_probe("GOMP_SPINCOUNT=1000").spin, "1000");
  // OpenBLAS's pthreads build is swapped for its OpenMP build when that is installed beside it
  // (one pool: libgomp's workers may spin); kept with SDXLHOST_BLAS_THREADING=library, and then
  // libgomp's workers stop spinning after parallel regions (they would take the cores OpenBLAS's
  // own threads need). Either way the outputs stay within 1e-5.
  const Probe own_pool = run_probe("SDXLHOST_BLAS_THREADING=library");
  EXPECT_EQ(own_pool.threading, library.threading);
  EXPECT_LE(max_difference(library.output, own_pool.output), 1e-5);
  if (library.threading == "pthreads") EXPECT_EQ(own_pool.spin, "0");
  const bool openmp_installed = std::filesystem::exists("/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3") ||
                                std::filesystem::exists("/usr/lib/aarch64-linux-gnu/openblas-openmp/libblas.so.3");
  if (library.threading == "pthreads" && openmp_installed) {
    EXPECT_EQ(selected.threading, "openmp");
    EXPECT_EQ(selected.spin, "unset");
  } else if (library.threading == "pthreads") {
    EXPECT_EQ(selected.spin, "0");
  }

  // The operator's choice wins, even a slower one.
  const Probe forced = run_probe("OPENBLAS_CORETYPE=PRESCOTT");
  EXPECT_EQ(forced.core, "Prescott");
  EXPECT_EQ(forced.selected, "operator");
  EXPECT_LE(max_difference(forced.output, selected.output), 1e-5);

  // The re-execution itself, on any CPU: a core named by the setting is selected the same way.
  const std::string other = library.core == "Prescott" ? "HASWELL" : "PRESCOTT";
  const Probe set = run_probe("SDXLHOST_BLAS_CORE=" + other);
  EXPECT_NE(set.core, library.core);
  EXPECT_EQ(set.selected, "setting");
  EXPECT_LE(max_difference(set.output, library.output), 1e-5);

  const Probe kept = run_probe("SDXLHOST_BLAS_CORE=library");
  EXPECT_EQ(kept.core, library.core);
  EXPECT_EQ(kept.selected, "library");
  EXPECT_EQ(kept.threads, nn::cpu_info().physical_cores);
}

}  // namespace
