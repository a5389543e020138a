// The patchable-parameter table (see patchable_weights.hpp).
#include "sdxlhost/nn/patchable_weights.hpp"

#include <ATen/ATen.h>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::nn {

using sdk::Error;
using sdk::ErrorCode;

PatchableWeights::PatchableWeights(std::string component, std::map<std::string, at::Tensor*> slots)
    : component_(std::move(component)), slots_(std::move(slots)) {}

PatchableWeights::PatchableWeights(std::string component,
                                   const std::vector<std::pair<std::string, at::Tensor*>>& slots)
    : component_(std::move(component)) {
  for (const auto& [key, tensor] : slots) slots_[key] = tensor;
}

std::vector<std::string> PatchableWeights::keys() const {
  std::vector<std::string> out;
  out.reserve(slots_.size());
  for (const auto& entry : slots_) out.push_back(entry.first);
  return out;
}

at::Tensor& PatchableWeights::slot(const std::string& key, ErrorCode code) {
  auto it = slots_.find(key);
  if (it == slots_.end()) throw Error(code, component_ + " has no weight '" + key + "'");
  return *it->second;
}

at::Tensor PatchableWeights::weight(const std::string& key) const {
  auto it = slots_.find(key);
  if (it == slots_.end()) throw Error(ErrorCode::NotFound, component_ + " has no weight '" + key + "'");
  return *it->second;
}

void PatchableWeights::add_delta(const std::string& key, const at::Tensor& delta) {
  at::Tensor& target = slot(key, ErrorCode::ValidationError);
  if (!delta.defined() || delta.sizes() != target.sizes()) {
    throw Error(ErrorCode::ValidationError,
                component_ + " weight '" + key + "': the delta's shape differs from the weight's");
  }
  originals_.emplace(key, target);  // keeps the first original only
  // Summed in float32 so a bf16 model is rounded once, not once per LoRA.
  const at::Tensor sum = target.to(at::kFloat) + delta.to(target.device(), at::kFloat);
  target = sum.to(target.scalar_type());
}

void PatchableWeights::set_weight(const std::string& key, const at::Tensor& value) {
  at::Tensor& target = slot(key, ErrorCode::ValidationError);
  if (!value.defined() || value.sizes() != target.sizes() || value.scalar_type() != target.scalar_type() ||
      value.device() != target.device()) {
    throw Error(ErrorCode::ValidationError,
                component_ + " weight '" + key + "': the replacement differs in shape, dtype or device");
  }
  originals_.emplace(key, target);
  target = value;
}

std::size_t PatchableWeights::restore() {
  const std::size_t restored = originals_.size();
  for (auto& [key, original] : originals_) *slots_.at(key) = original;
  originals_.clear();
  return restored;
}

std::vector<std::string> PatchableWeights::patched_keys() const {
  std::vector<std::string> out;
  for (const auto& entry : originals_) out.push_back(entry.first);
  return out;
}

at::Tensor PatchableWeights::original(const std::string& key) const {
  auto it = originals_.find(key);
  return it != originals_.end() ? it->second : weight(key);
}

std::uint64_t PatchableWeights::bytes() const {
  std::uint64_t total = 0;
  for (const auto& entry : slots_) total += entry.second->nbytes();
  return total;
}

}  // namespace sdxlhost::nn
