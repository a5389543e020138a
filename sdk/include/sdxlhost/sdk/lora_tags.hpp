#pragma once
/// @file lora_tags.hpp
/// A1111's prompt tags for LoRA: `<lora:NAME>` or `<lora:NAME:WEIGHT>` (`<lyco:...>` too) in a
/// prompt are removed from the text and become entries of `data.lora.models`.
/// Thread-safety: pure functions.

#include <string>
#include <vector>

#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::sdk {

/// One tag found in a prompt.
struct LoraTag {
  std::string name;     ///< NAME as written (trimmed)
  double weight = 1.0;  ///< WEIGHT, 1 when absent
};

/// Removes every LoRA tag from `prompt` (the rest of the text is kept as it is, like A1111) and
/// returns the tags in order. Throws Error(ValidationError, field) for an empty name, a
/// weight that is not a finite number, or A1111's separate text-encoder/UNet weights
/// (`<lora:NAME:TE:UNET>`), which this host does not apply.
SDXLHOST_API std::vector<LoraTag> extract_lora_tags(std::string& prompt, const std::string& field);

/// The name a LoRA is compared by: without a trailing ".safetensors" (the store accepts both).
SDXLHOST_API std::string lora_identity(const std::string& name);

}  // namespace sdxlhost::sdk
