#pragma once
/// @file prompt_weighting.hpp
/// A1111-style prompt emphasis: `(word)` x1.1, `[word]` /1.1, `(word:1.3)` x1.3, nesting
/// multiplies, `\(` `\)` `\[` `\]` `\\` are literal characters, unclosed brackets apply to the end,
/// and `BREAK` (upper case, a whole word) starts a new 75-token chunk. The parsed segments are
/// tokenized one by one and every token carries its segment's weight; the text-encoder stage then
/// applies the weights with `apply_prompt_weights` (formula in docs/nn.md).
///
/// A prompt without emphasis syntax gives exactly the tokenizer's plain ids (weights all 1), so
/// reference parity is unaffected; `all_weights_one` lets the caller skip the re-weighting.
///
/// Thread-safety: pure functions.

#include <ATen/core/Tensor.h>

#include <string>
#include <string_view>
#include <vector>

#include "sdxlhost/nn/clip_tokenizer.hpp"
#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::nn {

/// One run of prompt text with its emphasis weight, or a BREAK marker.
struct WeightedText {
  std::string text;     ///< the literal text (escapes resolved); empty for a BREAK
  double weight = 1.0;  ///< product of the enclosing brackets' factors
  bool is_break = false;  ///< a BREAK marker (new chunk), not text
};

/// Parses A1111 emphasis syntax into runs; adjacent runs of equal weight are merged. An empty
/// prompt gives one empty run of weight 1. Never throws on odd syntax: unmatched `)`/`]`, a lone
/// `:` or a weight that is not a number are kept as literal text.
SDXLHOST_API std::vector<WeightedText> parse_prompt_weights(std::string_view prompt);

/// One 77-token window with a weight per position (1 at start, end and padding).
struct WeightedChunk {
  TokenizedText tokens;        ///< ids and mask, max_length long
  std::vector<float> weights;  ///< one weight per position
};

/// Tokenizes `prompt` with per-token weights. `chunked` = long-prompt mode: every 75 tokens (and
/// every BREAK) start a new window; otherwise one window, truncated like the reference (BREAK
/// then only separates text).
SDXLHOST_API std::vector<WeightedChunk> tokenize_weighted(const ClipTokenizer& tokenizer, std::string_view prompt,
                                                          bool chunked);

/// True when every weight of every chunk is exactly 1 (nothing to re-weight).
SDXLHOST_API bool all_weights_one(const std::vector<WeightedChunk>& chunks);

/// A1111's "original" emphasis: z * w (per token, broadcast over channels), then rescaled so the
/// mean over the whole tensor equals the mean before weighting.
/// @param hidden  [B, T, C] encoder hidden states (e.g. SDXL's concatenated prompt embeds)
/// @param weights [B, T] (or [T]) per-token weights, any float dtype/device
SDXLHOST_API at::Tensor apply_prompt_weights(const at::Tensor& hidden, const at::Tensor& weights);

}  // namespace sdxlhost::nn
