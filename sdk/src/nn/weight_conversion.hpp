#pragma once
// Internal to sdxlhost_nn: turning a checkpoint's tensor into a served weight.
#include <ATen/core/Tensor.h>

namespace sdxlhost::nn::detail {

/// `source` in `dtype` on `device`. When no conversion is needed, `source` itself, with its pages
/// of a memory-mapped checkpoint read in now (the load ends with the weights resident). When it is a copy (another dtype or device), the source's
/// whole pages are handed back to the kernel at once (MADV_PAGEOUT): the pages of a memory-mapped
/// checkpoint leave the resident set (they are read from the file again if touched), so a
/// converting load peaks near the served weights instead of the weights plus the whole file.
/// MADV_PAGEOUT is only a reclaim hint and never discards data (private or anonymous pages are
/// kept or swapped), so it is safe whatever memory the source lives in.
at::Tensor convert_weight(const at::Tensor& source, at::ScalarType dtype, at::Device device);

}  // namespace sdxlhost::nn::detail
