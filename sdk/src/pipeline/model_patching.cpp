// ModelPatch application around a stage, with a cache of patched sets (see model_patching.hpp).
#include "sdxlhost/pipeline/model_patching.hpp"

#include <ATen/ATen.h>

#include "sdxlhost/pipeline/slots.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/registries.hpp"

namespace sdxlhost::pipeline {

PatchScope::PatchScope(sdk::Context& context, SdxlModels& models, PatchedParts parts, int cached_sets,
                       const std::string& expert)
    : models_(models), parts_(parts) {
  context.set(slots::kPatchExpert, expert);
  std::vector<std::shared_ptr<sdk::ModelPatch>> patches;
  std::string key = parts == PatchedParts::Unet ? "unet" : "text_encoders";
  key += "@" + expert;
  for (const auto& patch : context.registries().model_patches()) {
    if (!patch->applies(context.request())) continue;
    const std::string patch_key = patch->cache_key(context);  // may load (hash) the files
    if (patch_key.empty()) continue;                          // nothing for this expert
    patches.push_back(patch);
    key += "|" + patch->name() + "=" + patch_key;
  }
  if (patches.empty()) {
    shared_ = std::shared_lock<std::shared_mutex>(models.patch_mutex);
    return;
  }
  exclusive_ = std::unique_lock<std::shared_mutex>(models.patch_mutex);
  patched_ = true;
  try {
    std::vector<nn::PatchableWeights*> list = targets();
    if (const PatchedSet* cached = models.find_patched_set(key)) {
      for (const auto& w : cached->weights) list.at(w.target)->set_weight(w.key, w.value);
      from_cache_ = true;
    } else {
      apply(context, patches);
      if (cached_sets > 0) {
        PatchedSet set;
        set.key = key;
        for (std::size_t t = 0; t < list.size(); ++t)
          for (const auto& k : list[t]->patched_keys()) set.weights.push_back({t, k, list[t]->weight(k)});
        models.store_patched_set(std::move(set), static_cast<std::size_t>(cached_sets));
      }
    }
    applied_ = patches.size();
  } catch (...) {
    restore();
    throw;
  }
}

std::vector<nn::PatchableWeights*> PatchScope::targets() {
  if (parts_ == PatchedParts::Unet) return {&models_.unet->patchable_weights()};
  if (clip_targets_.empty()) {
    if (models_.text_encoder)
      clip_targets_.push_back(
          std::make_unique<nn::PatchableWeights>("text_encoder", models_.text_encoder->named_parameters()));
    clip_targets_.push_back(
        std::make_unique<nn::PatchableWeights>("text_encoder_2", models_.text_encoder_2->named_parameters()));
  }
  std::vector<nn::PatchableWeights*> out;
  for (auto& t : clip_targets_) out.push_back(t.get());
  return out;
}

void PatchScope::apply(sdk::Context& context, const std::vector<std::shared_ptr<sdk::ModelPatch>>& patches) {
  for (const auto& patch : patches)
    for (nn::PatchableWeights* target : targets()) patch->apply(context, *target);
}

PatchScope::~PatchScope() { restore(); }

void PatchScope::restore() noexcept {
  if (!patched_) return;
  for (auto& target : clip_targets_) target->restore();
  clip_targets_.clear();
  if (parts_ == PatchedParts::Unet) models_.unet->patchable_weights().restore();
  patched_ = false;
}

}  // namespace sdxlhost::pipeline
