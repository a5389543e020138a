// ModelPatch application around a stage (see model_patching.hpp).
#include "model_patching.hpp"

#include <ATen/ATen.h>

#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/registries.hpp"

namespace sdxlhost::sdxl {

ClipWeights::ClipWeights(std::string component, nn::ClipTextModel& model) : component_(std::move(component)) {
  for (const auto& [name, slot] : model.named_parameters()) slots_[name] = slot;
}

at::Tensor ClipWeights::weight(const std::string& key) const {
  auto it = slots_.find(key);
  if (it == slots_.end()) {
    throw sdk::Error(sdk::ErrorCode::NotFound, component_ + " has no weight '" + key + "'");
  }
  return *it->second;
}

void ClipWeights::add_delta(const std::string& key, const at::Tensor& delta) {
  auto it = slots_.find(key);
  if (it == slots_.end()) {
    throw sdk::Error(sdk::ErrorCode::ValidationError, component_ + " has no weight '" + key + "'");
  }
  at::Tensor& slot = *it->second;
  if (!delta.defined() || delta.sizes() != slot.sizes()) {
    throw sdk::Error(sdk::ErrorCode::ValidationError,
                     component_ + " weight '" + key + "': the delta's shape differs from the weight's");
  }
  originals_.emplace(key, slot);
  slot = slot + delta.to(slot.options());
}

void ClipWeights::restore() {
  for (auto& [key, original] : originals_) *slots_.at(key) = original;
  originals_.clear();
}

PatchScope::PatchScope(sdk::Context& context, SdxlModels& models, PatchedParts parts) : models_(models) {
  std::vector<std::shared_ptr<sdk::ModelPatch>> patches;
  for (const auto& patch : context.registries().model_patches()) {
    if (patch->applies(context.request())) patches.push_back(patch);
  }
  if (patches.empty()) {
    shared_ = std::shared_lock<std::shared_mutex>(models.patch_mutex);
    return;
  }
  exclusive_ = std::unique_lock<std::shared_mutex>(models.patch_mutex);
  try {
    if (parts == PatchedParts::TextEncoders) {
      if (models.text_encoder) clip_targets_.push_back(std::make_unique<ClipWeights>("text_encoder", *models.text_encoder));
      clip_targets_.push_back(std::make_unique<ClipWeights>("text_encoder_2", *models.text_encoder_2));
      for (const auto& patch : patches) {
        for (auto& target : clip_targets_) patch->apply(context, *target);
      }
    } else {
      unet_patched_ = true;
      for (const auto& patch : patches) patch->apply(context, *models.unet);
    }
    applied_ = patches.size();
  } catch (...) {
    restore();
    throw;
  }
}

PatchScope::~PatchScope() { restore(); }

void PatchScope::restore() noexcept {
  for (auto& target : clip_targets_) target->restore();
  clip_targets_.clear();
  if (unet_patched_) models_.unet->restore_weights();
  unet_patched_ = false;
}

}  // namespace sdxlhost::sdxl
