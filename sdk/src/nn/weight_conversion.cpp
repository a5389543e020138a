#include "weight_conversion.hpp"

#include <ATen/ATen.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>

namespace sdxlhost::nn::detail {
namespace {

/// Gives `advice` for the pages of `tensor`; `whole_pages_only` leaves out the partial pages at
/// both ends (they may hold a neighbour that is still needed).
/// False when the kernel refused the advice.
bool advise(const at::Tensor& tensor, int advice, bool whole_pages_only) {
  if (!tensor.device().is_cpu() || !tensor.is_contiguous() || tensor.nbytes() == 0) return true;
  static const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<std::uintptr_t>(tensor.data_ptr());
  const auto end = begin + tensor.nbytes();
  const std::uintptr_t first = whole_pages_only ? (begin + page - 1) / page * page : begin / page * page;
  const std::uintptr_t last = whole_pages_only ? end / page * page : (end + page - 1) / page * page;
  return last <= first || ::madvise(reinterpret_cast<void*>(first), last - first, advice) == 0;
}

void release_source_pages(const at::Tensor& source) {
#ifdef MADV_PAGEOUT
  advise(source, MADV_PAGEOUT, true);
#else
  (void)source;
#endif
}

/// A weight served without a copy is a view of the memory-mapped file: its pages are read now,
/// during the load (a loaded model is ready to run), not by page faults in the first denoising
/// step. MADV_POPULATE_READ needs Linux 5.14; older kernels get the read-ahead hint only.
void bring_in_pages(const at::Tensor& weight) {
#ifdef MADV_POPULATE_READ
  if (advise(weight, MADV_POPULATE_READ, false)) return;
#endif
  advise(weight, MADV_WILLNEED, false);
}

}  // namespace

at::Tensor convert_weight(const at::Tensor& source, at::ScalarType dtype, at::Device device) {
  at::Tensor served = source.to(device, dtype);
  if (served.is_same(source)) {
    bring_in_pages(served);
  } else {
    release_source_pages(source);
  }
  return served;
}

}  // namespace sdxlhost::nn::detail
