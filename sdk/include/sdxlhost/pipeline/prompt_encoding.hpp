#pragma once
/// @file prompt_encoding.hpp
/// SDXL prompt encoding as diffusers' `encode_prompt`: the penultimate hidden states (or
/// clip_skip more layers back) of each text encoder, concatenated, plus text_encoder_2's pooled
/// projection; emphasis weights ("(word:1.2)") and > 75-token prompts in chunks of 75 as
/// prompt_weighting.hpp does them. A refiner pipeline has only text_encoder_2: it encodes
/// `prompt` / `negative_prompt` with it (diffusers zips [prompt, prompt_2] with the encoders it
/// has, so the first prompt goes to the only encoder).
/// Thread-safety: pure functions over shared, read-only models (a PatchScope's models()).

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <vector>

#include "sdxlhost/nn/clip_text_model.hpp"
#include "sdxlhost/nn/clip_tokenizer.hpp"
#include "sdxlhost/nn/prompt_weighting.hpp"
#include "sdxlhost/pipeline/conditioning.hpp"
#include "sdxlhost/pipeline/sdxl_models.hpp"
#include "sdxlhost/sdk/export.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::pipeline {

/// Hidden states (1, 77 x count, C) of the layer SDXL uses (penultimate, or `clip_skip` more),
/// weighted when the prompt has emphasis; `chunks` is padded with empty chunks up to `count`.
/// When `text_embeds` is given it gets the first chunk's projected pooled output (1, P).
/// Throws sdk::Error(ValidationError, data.hyperparameters.clip_skip) when clip_skip is larger
/// than the encoder allows.
SDXLHOST_API at::Tensor encode_chunks(const nn::ClipTextModel& encoder, const nn::ClipTokenizer& tokenizer,
                                      std::vector<nn::WeightedChunk> chunks, std::size_t count, int clip_skip,
                                      at::Tensor* text_embeds);

/// The request's prompts through the pipeline's text encoders (both for a base, text_encoder_2
/// alone for a refiner), with the negative half for classifier-free guidance: zeros for an empty
/// negative prompt when the model's force_zeros_for_empty_prompt is set, else the encoding of the
/// negative prompt ("" when none). All prompts are padded to the same number of chunks.
SDXLHOST_API SdxlConditioning encode_prompts(const SdxlModels& models, const sdk::GenerationRequest& request);

}  // namespace sdxlhost::pipeline
