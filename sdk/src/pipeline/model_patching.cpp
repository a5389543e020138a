// ModelPatch application as patched copies of a shared pipeline (see model_patching.hpp).
#include "sdxlhost/pipeline/model_patching.hpp"

#include <ATen/ATen.h>

#include "sdxlhost/nn/patchable_weights.hpp"
#include "sdxlhost/pipeline/slots.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/registries.hpp"

namespace sdxlhost::pipeline {
namespace {

/// Every patch applied to every overlay, patch by patch (the order the in-place patching used).
void apply_all(sdk::Context& context, const std::vector<std::shared_ptr<sdk::ModelPatch>>& patches,
               const std::vector<nn::WeightOverlay*>& overlays) {
  for (const auto& patch : patches)
    for (nn::WeightOverlay* overlay : overlays) patch->apply(context, *overlay);
}

}  // namespace

PatchedModels make_patched_models(sdk::Context& context, const SdxlModels& models, PatchedParts parts,
                                  const std::vector<std::shared_ptr<sdk::ModelPatch>>& patches) {
  auto copy = std::make_shared<SdxlModels>(models);  // shares every network and tokenizer...
  copy->patched_sets.reset();                       // ...but not the cache that will hold it
  PatchedModels out;
  if (parts == PatchedParts::Unet) {
    nn::WeightOverlay unet(models.unet->patchable_weights());
    apply_all(context, patches, {&unet});
    copy->unet = models.unet->with_weights(unet.changes());
    out.bytes = unet.bytes();
  } else {
    std::vector<std::unique_ptr<nn::WeightOverlay>> overlays;
    if (models.text_encoder) overlays.push_back(std::make_unique<nn::WeightOverlay>(models.text_encoder->patchable_weights()));
    overlays.push_back(std::make_unique<nn::WeightOverlay>(models.text_encoder_2->patchable_weights()));
    std::vector<nn::WeightOverlay*> list;
    for (auto& overlay : overlays) list.push_back(overlay.get());
    apply_all(context, patches, list);
    std::size_t next = 0;
    if (models.text_encoder) copy->text_encoder = models.text_encoder->with_weights(overlays[next++]->changes());
    copy->text_encoder_2 = models.text_encoder_2->with_weights(overlays[next]->changes());
    for (const auto& overlay : overlays) out.bytes += overlay->bytes();
  }
  copy->bytes = out.bytes;
  out.models = std::move(copy);
  return out;
}

PatchScope::PatchScope(sdk::Context& context, std::shared_ptr<const SdxlModels> models, PatchedParts parts,
                       int cached_sets, const std::string& expert)
    : models_(std::move(models)) {
  if (!models_) throw sdk::Error(sdk::ErrorCode::InternalError, "PatchScope without a pipeline");
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
  if (patches.empty()) return;  // the shared pipeline as loaded

  const SdxlModels& base = *models_;
  auto build = [&] { return make_patched_models(context, base, parts, patches); };
  const std::size_t limit = cached_sets > 0 ? static_cast<std::size_t>(cached_sets) : 0;
  PatchedModels patched = base.patched_sets ? base.patched_sets->get(key, limit, build, &from_cache_) : build();
  models_ = std::move(patched.models);
  applied_ = patches.size();
}

}  // namespace sdxlhost::pipeline
