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
  target = add_weight_delta(target, delta);
}

at::Tensor add_weight_delta(const at::Tensor& weight, const at::Tensor& delta) {
  // Summed in float32 so a bf16 model is rounded once per delta, not once per operation.
  const at::Tensor sum = weight.to(at::kFloat) + delta.to(weight.device(), at::kFloat);
  return sum.to(weight.scalar_type());
}

void PatchableWeights::set_weight(const std::string& key, const at::Tensor& value) {
  at::Tensor& target = checked_slot(key, value);
  originals_.emplace(key, target);
  target = value;
}

void PatchableWeights::install(const std::string& key, const at::Tensor& value) {
  checked_slot(key, value) = value;
}

at::Tensor& PatchableWeights::checked_slot(const std::string& key, const at::Tensor& value) {
  at::Tensor& target = slot(key, ErrorCode::ValidationError);
  if (!value.defined() || value.sizes() != target.sizes() || value.scalar_type() != target.scalar_type() ||
      value.device() != target.device()) {
    throw Error(ErrorCode::ValidationError,
                component_ + " weight '" + key + "': the replacement differs in shape, dtype or device");
  }
  return target;
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

at::Tensor WeightOverlay::weight(const std::string& key) const {
  auto it = changes_.find(key);
  return it != changes_.end() ? it->second : base_.weight(key);
}

void WeightOverlay::add_delta(const std::string& key, const at::Tensor& delta) {
  if (!base_.has(key)) throw Error(ErrorCode::ValidationError, component() + " has no weight '" + key + "'");
  const at::Tensor current = weight(key);
  if (!delta.defined() || delta.sizes() != current.sizes()) {
    throw Error(ErrorCode::ValidationError,
                component() + " weight '" + key + "': the delta's shape differs from the weight's");
  }
  changes_[key] = add_weight_delta(current, delta);
}

std::uint64_t WeightOverlay::bytes() const {
  std::uint64_t total = 0;
  for (const auto& entry : changes_) total += entry.second.nbytes();
  return total;
}

}  // namespace sdxlhost::nn
