// TensorMap: named tensors with prefix filtering and clear lookup errors.
#include "sdxlhost/nn/tensor_map.hpp"

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::nn {

bool TensorMap::erase(std::string_view name) {
  auto it = map_.find(name);
  if (it == map_.end()) return false;
  map_.erase(it);
  return true;
}

const at::Tensor& TensorMap::at(std::string_view name) const {
  auto it = map_.find(name);
  if (it == map_.end()) {
    std::string where = source_.empty() ? std::string() : " in '" + source_ + "'";
    throw sdk::Error(sdk::ErrorCode::ModelLoadError,
                     "missing tensor '" + std::string(name) + "'" + where);
  }
  return it->second;
}

const at::Tensor* TensorMap::find(std::string_view name) const {
  auto it = map_.find(name);
  return it == map_.end() ? nullptr : &it->second;
}

TensorMap TensorMap::with_prefix(std::string_view prefix, bool strip_prefix) const {
  TensorMap out(source_);
  for (auto it = map_.lower_bound(prefix); it != map_.end(); ++it) {
    if (it->first.compare(0, prefix.size(), prefix) != 0) break;
    out.set(strip_prefix ? it->first.substr(prefix.size()) : it->first, it->second);
  }
  return out;
}

std::vector<std::string> TensorMap::names() const {
  std::vector<std::string> out;
  out.reserve(map_.size());
  for (const auto& [name, tensor] : map_) out.push_back(name);
  return out;
}

}  // namespace sdxlhost::nn
