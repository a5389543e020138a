#include "host/runtime/threads.hpp"

#include <ATen/Parallel.h>

#include "host/common/memory.hpp"
#include "sdxlhost/nn/cpu_runtime.hpp"

namespace sdxlhost::host::runtime {

using host::allocator_name;

int apply_thread_count(int threads) { return nn::apply_threads(threads); }

nlohmann::json cpu_report() {
  const nn::CpuInfo cpu = nn::cpu_info();
  const nn::BlasChoice blas = nn::blas_choice();
  nlohmann::json features = nlohmann::json::array();
  if (cpu.avx2) features.push_back("avx2");
  if (cpu.avx512f) features.push_back("avx512f");
  if (cpu.avx512_bf16) features.push_back("avx512_bf16");
  if (cpu.amx_bf16) features.push_back("amx_bf16");
  return {{"model", cpu.model},
          {"features", features},
          {"logical_cpus", cpu.logical_cpus},
          {"physical_cores", cpu.physical_cores},
          {"threads", at::get_num_threads()},
          {"blas_core", blas.core},
          {"blas_core_selected", blas.selected},
          {"blas_detail", blas.detail},
          {"openmp_wait", blas.openmp},
          {"blas_threading", blas.threading},
          {"blas_threading_detail", blas.threading_detail},
          {"allocator", allocator_name()}};
}

}  // namespace sdxlhost::host::runtime
