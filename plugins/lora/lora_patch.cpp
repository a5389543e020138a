// The lora model patch (see lora_patch.hpp).
#include "lora_patch.hpp"

#include <ATen/ATen.h>

#include <sstream>

#include "lora_files.hpp"
#include "sdxlhost/pipeline/slots.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::lora {

using sdk::Error;
using sdk::ErrorCode;

namespace {

/// The expert the PatchScope is patching (pipeline::slots::kPatchExpert; "base" when absent).
std::string patched_expert(const sdk::Context& context) {
  return context.has(pipeline::slots::kPatchExpert) ? context.get<std::string>(pipeline::slots::kPatchExpert)
                                                     : std::string("base");
}

/// Whether LoRA `lora` patches `expert`: its weight is not 0 and its apply_to names the expert.
bool patches(const sdk::LoraSelection& lora, const std::string& expert) {
  return lora.weight != 0.0 && (lora.apply_to == "both" || lora.apply_to == expert);
}

}  // namespace

bool LoraPatch::applies(const sdk::GenerationRequest& request) const {
  if (!request.lora_enabled) return false;
  for (const auto& lora : request.loras)
    if (lora.weight != 0.0) return true;
  return false;
}

std::string LoraPatch::cache_key(sdk::Context& context) const {
  const auto& loras = context.request().loras;
  const std::string expert = patched_expert(context);
  std::ostringstream key;  // "" when no LoRA patches this expert: the scope skips the patch
  key.precision(17);
  for (std::size_t i = 0; i < loras.size(); ++i) {
    if (!patches(loras[i], expert)) continue;  // weight 0 means "not applied"
    const auto file = load_lora(context.models(), loras[i].name, lora_field(i));
    key << (key.tellp() > 0 ? "," : "") << loras[i].name << "#" << file->short_hash() << "@" << loras[i].weight;
  }
  return key.str();
}

void LoraPatch::apply(sdk::Context& context, sdk::WeightTarget& target) const {
  const auto& loras = context.request().loras;
  const std::string expert = patched_expert(context);
  for (std::size_t i = 0; i < loras.size(); ++i) {
    if (!patches(loras[i], expert)) continue;
    const std::string field = lora_field(i);
    const auto file = load_lora(context.models(), loras[i].name, field);
    const nn::LoraApplyResult result = nn::apply_lora(file->network, loras[i].weight, target, field);
    if (result.modules > 0 && result.matched == 0) {
      throw Error(ErrorCode::ValidationError,
                  "LoRA '" + loras[i].name + "' does not fit the " + expert + " model: none of its " +
                      std::to_string(result.modules) + " " + target.component() + " modules (e.g. '" +
                      result.unmatched.front() + "') is a layer of it (0 matched; a LoRA for another base model?)",
                  field);
    }
    if (!result.unmatched.empty()) {
      context.add_warning("LoRA '" + loras[i].name + "': " + std::to_string(result.unmatched.size()) + " of " +
                          std::to_string(result.modules) + " " + target.component() +
                          " modules have no matching layer and were skipped (first: " + result.unmatched.front() + ")");
    }
    context.log(sdk::LogLevel::Debug, "LoRA '" + loras[i].name + "' (" + nn::lora_format_name(file->network.format) +
                                          "): " + std::to_string(result.matched) + " " + target.component() +
                                          " modules at weight " + std::to_string(loras[i].weight));
  }
}

}  // namespace sdxlhost::lora
