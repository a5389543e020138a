#pragma once
/// @file conditioning.hpp
/// The type of the `conditioning` slot (sdk::slots::kConditioning) for SDXL-family pipelines:
/// what the prompt-encoding stage writes and the denoising stages read. A plugin that writes or
/// reads this slot uses exactly this type (Context::get<pipeline::SdxlConditioning>); it is an SDK
/// contract, so the sdxl, refiner and ControlNet plugins agree on it without sharing code.
/// Thread-safety: a value type owned by one job's Context.

#include <ATen/core/Tensor.h>

namespace sdxlhost::pipeline {

/// The prompt embeddings one job uses, for one image (batch 1; the denoise loop repeats them for
/// the batch and stacks negative + positive for classifier-free guidance).
struct SdxlConditioning {
  /// (1, 77 x chunks, C): base: text_encoder | text_encoder_2 penultimate hidden states
  /// concatenated (C = 768 + 1280 = 2048 full size); refiner: text_encoder_2's alone (C = 1280).
  at::Tensor prompt_embeds;
  at::Tensor pooled_prompt_embeds;    ///< (1, P) text_encoder_2's projected pooled output (P = 1280)
  at::Tensor negative_prompt_embeds;  ///< same shapes; zeros for an empty negative prompt when the
                                      ///< model's force_zeros_for_empty_prompt is set
  at::Tensor negative_pooled_prompt_embeds;
};

}  // namespace sdxlhost::pipeline
