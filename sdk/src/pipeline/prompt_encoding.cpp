// SDXL prompt encoding (see prompt_encoding.hpp).
#include "sdxlhost/pipeline/prompt_encoding.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <string>
#include <utility>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::pipeline {

using sdk::Error;
using sdk::ErrorCode;

at::Tensor encode_chunks(const nn::ClipTextModel& encoder, const nn::ClipTokenizer& tokenizer,
                         std::vector<nn::WeightedChunk> chunks, std::size_t count, int clip_skip,
                         at::Tensor* text_embeds) {
  while (chunks.size() < count) {
    nn::WeightedChunk empty;
    empty.tokens = tokenizer.pad({});
    empty.weights.assign(empty.tokens.input_ids.size(), 1.0f);
    chunks.push_back(std::move(empty));
  }
  std::vector<std::int64_t> ids;
  std::vector<float> weights;
  for (const auto& chunk : chunks) {
    ids.insert(ids.end(), chunk.tokens.input_ids.begin(), chunk.tokens.input_ids.end());
    weights.insert(weights.end(), chunk.weights.begin(), chunk.weights.end());
  }
  const auto n = static_cast<std::int64_t>(chunks.size());
  const at::Tensor input = at::tensor(ids, at::kLong).view({n, -1});
  const nn::ClipTextOutput out = encoder.forward(input);
  const auto layers = static_cast<int>(out.hidden_states.size());
  const int index = layers - 2 - clip_skip;
  if (index < 0) {
    throw Error(ErrorCode::ValidationError,
                "clip_skip " + std::to_string(clip_skip) + " is larger than the text encoder allows (" +
                    std::to_string(layers - 2) + ")",
                "data.hyperparameters.clip_skip");
  }
  at::Tensor hidden = out.hidden_states[static_cast<std::size_t>(index)].to(at::kFloat);
  hidden = hidden.reshape({1, -1, hidden.size(-1)});
  if (!nn::all_weights_one(chunks)) {
    hidden = nn::apply_prompt_weights(hidden, at::tensor(weights).view({1, -1}).to(hidden.device()));
  }
  if (text_embeds != nullptr) *text_embeds = out.text_embeds.slice(0, 0, 1).to(at::kFloat);
  return hidden;
}

namespace {

/// One text encoder with its tokenizer and the prompt / negative prompt it gets.
struct EncoderInput {
  const nn::ClipTextModel* encoder;
  const nn::ClipTokenizer* tokenizer;
  std::vector<nn::WeightedChunk> positive;
  std::vector<nn::WeightedChunk> negative;
};

}  // namespace

SdxlConditioning encode_prompts(const SdxlModels& models, const sdk::GenerationRequest& r) {
  if (!models.text_encoder_2 || !models.tokenizer_2) {
    throw Error(ErrorCode::InternalError, "the pipeline has no text_encoder_2 / tokenizer_2");
  }
  const int clip_skip = r.hyperparameters.clip_skip;
  const bool chunked = r.long_prompt;
  const bool zero_negative =
      r.negative_prompt.empty() && r.negative_prompt_2.empty() && models.force_zeros_for_empty_prompt;
  // diffusers zips [prompt, prompt_2] with the encoders the pipeline has: a base gets both, a
  // refiner (text_encoder_2 alone) gets the first prompt.
  std::vector<EncoderInput> inputs;
  if (models.text_encoder && models.tokenizer) {
    const std::string& prompt_2 = r.prompt_2.empty() ? r.prompt : r.prompt_2;
    const std::string& negative_2 = r.negative_prompt_2.empty() ? r.negative_prompt : r.negative_prompt_2;
    inputs.push_back({models.text_encoder.get(), models.tokenizer.get(),
                      nn::tokenize_weighted(*models.tokenizer, r.prompt, chunked), {}});
    inputs.push_back({models.text_encoder_2.get(), models.tokenizer_2.get(),
                      nn::tokenize_weighted(*models.tokenizer_2, prompt_2, chunked), {}});
    if (!zero_negative) {
      inputs[0].negative = nn::tokenize_weighted(*models.tokenizer, r.negative_prompt, chunked);
      inputs[1].negative = nn::tokenize_weighted(*models.tokenizer_2, negative_2, chunked);
    }
  } else {
    inputs.push_back({models.text_encoder_2.get(), models.tokenizer_2.get(),
                      nn::tokenize_weighted(*models.tokenizer_2, r.prompt, chunked), {}});
    if (!zero_negative) inputs[0].negative = nn::tokenize_weighted(*models.tokenizer_2, r.negative_prompt, chunked);
  }
  std::size_t count = 0;
  for (const auto& in : inputs) count = std::max({count, in.positive.size(), in.negative.size()});

  SdxlConditioning c;
  const std::size_t last = inputs.size() - 1;  // text_encoder_2 gives the pooled embeds
  std::vector<at::Tensor> positive, negative;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    positive.push_back(encode_chunks(*inputs[i].encoder, *inputs[i].tokenizer, inputs[i].positive, count, clip_skip,
                                     i == last ? &c.pooled_prompt_embeds : nullptr));
  }
  c.prompt_embeds = positive.size() == 1 ? positive[0] : at::cat(positive, -1);
  if (zero_negative) {
    c.negative_prompt_embeds = at::zeros_like(c.prompt_embeds);
    c.negative_pooled_prompt_embeds = at::zeros_like(c.pooled_prompt_embeds);
  } else {
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      negative.push_back(encode_chunks(*inputs[i].encoder, *inputs[i].tokenizer, inputs[i].negative, count,
                                       clip_skip, i == last ? &c.negative_pooled_prompt_embeds : nullptr));
    }
    c.negative_prompt_embeds = negative.size() == 1 ? negative[0] : at::cat(negative, -1);
  }
  return c;
}

}  // namespace sdxlhost::pipeline
