// A1111-style prompt emphasis: parsing, weighted tokenization, re-weighting of hidden states.
#include "sdxlhost/nn/prompt_weighting.hpp"

#include <ATen/ATen.h>

#include <cctype>
#include <cstdlib>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::nn {
namespace {

constexpr double kRoundFactor = 1.1;
constexpr double kSquareFactor = 1.0 / 1.1;

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

/// A word character for `\b` (ASCII letters, digits, '_' and any non-ASCII byte, i.e. letters of
/// other scripts).
bool is_word(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || static_cast<unsigned char>(c) >= 0x80;
}

/// Splits plain text on `\s*\bBREAK\b\s*`, appending text runs and BREAK markers.
void add_plain(std::vector<WeightedText>& out, std::string_view text) {
  std::size_t start = 0;
  for (std::size_t pos = text.find("BREAK"); pos != std::string_view::npos; pos = text.find("BREAK", pos + 1)) {
    const std::size_t end = pos + 5;
    const bool boundary_before = pos == 0 || !is_word(text[pos - 1]);
    const bool boundary_after = end == text.size() || !is_word(text[end]);
    if (!boundary_before || !boundary_after || pos < start) continue;
    std::size_t left = pos;
    while (left > start && is_space(text[left - 1])) --left;
    std::size_t right = end;
    while (right < text.size() && is_space(text[right])) ++right;
    out.push_back({std::string(text.substr(start, left - start)), 1.0, false});
    out.push_back({std::string(), 1.0, true});
    start = right;
  }
  out.push_back({std::string(text.substr(start)), 1.0, false});
}

/// Matches `:\s*([+-]?[.\d]+)\s*\)` at `i`; returns the end position (0 when no match) and the
/// number's text.
std::size_t match_weight(std::string_view p, std::size_t i, std::string& number) {
  std::size_t j = i + 1;
  while (j < p.size() && is_space(p[j])) ++j;
  const std::size_t number_start = j;
  if (j < p.size() && (p[j] == '+' || p[j] == '-')) ++j;
  const std::size_t digits_start = j;
  while (j < p.size() && (std::isdigit(static_cast<unsigned char>(p[j])) != 0 || p[j] == '.')) ++j;
  if (j == digits_start) return 0;
  number = std::string(p.substr(number_start, j - number_start));
  while (j < p.size() && is_space(p[j])) ++j;
  if (j >= p.size() || p[j] != ')') return 0;
  return j + 1;
}

/// Parses a whole decimal number ("1.3", "+.5"); false for "1.2.3" or ".".
bool parse_number(const std::string& text, double& out) {
  char* end = nullptr;
  out = std::strtod(text.c_str(), &end);
  return end != text.c_str() && *end == '\0';
}

}  // namespace

std::vector<WeightedText> parse_prompt_weights(std::string_view p) {
  std::vector<WeightedText> runs;
  std::vector<std::size_t> round, square;
  auto multiply_from = [&runs](std::size_t from, double factor) {
    for (std::size_t k = from; k < runs.size(); ++k)
      if (!runs[k].is_break) runs[k].weight *= factor;
  };
  std::size_t i = 0;
  while (i < p.size()) {
    const char c = p[i];
    if (c == '\\') {
      const bool escape = i + 1 < p.size() && std::string_view("()[]\\").find(p[i + 1]) != std::string_view::npos;
      runs.push_back({escape ? std::string(1, p[i + 1]) : std::string(), 1.0, false});  // lone '\' vanishes
      i += escape ? 2 : 1;
    } else if (c == '(') {
      round.push_back(runs.size());
      ++i;
    } else if (c == '[') {
      square.push_back(runs.size());
      ++i;
    } else if (c == ':') {
      std::string number;
      const std::size_t end = match_weight(p, i, number);
      double weight = 0;
      if (end != 0 && !round.empty() && parse_number(number, weight)) {
        multiply_from(round.back(), weight);
        round.pop_back();
        i = end;
      } else if (end != 0) {
        add_plain(runs, p.substr(i, end - i));
        i = end;
      } else {
        add_plain(runs, ":");
        ++i;
      }
    } else if (c == ')' || c == ']') {
      auto& stack = c == ')' ? round : square;
      if (stack.empty()) {
        add_plain(runs, p.substr(i, 1));
      } else {
        multiply_from(stack.back(), c == ')' ? kRoundFactor : kSquareFactor);
        stack.pop_back();
      }
      ++i;
    } else {
      std::size_t end = i;
      while (end < p.size() && std::string_view("\\()[]:").find(p[end]) == std::string_view::npos) ++end;
      add_plain(runs, p.substr(i, end - i));
      i = end;
    }
  }
  for (std::size_t pos : round) multiply_from(pos, kRoundFactor);
  for (std::size_t pos : square) multiply_from(pos, kSquareFactor);
  if (runs.empty()) runs.push_back({std::string(), 1.0, false});

  std::vector<WeightedText> merged;
  for (auto& run : runs) {
    if (!merged.empty() && !run.is_break && !merged.back().is_break && merged.back().weight == run.weight)
      merged.back().text += run.text;
    else
      merged.push_back(std::move(run));
  }
  return merged;
}

std::vector<WeightedChunk> tokenize_weighted(const ClipTokenizer& tokenizer, std::string_view prompt, bool chunked) {
  const std::size_t window = static_cast<std::size_t>(tokenizer.max_length()) - 2;
  std::vector<WeightedChunk> chunks;
  std::vector<std::int64_t> ids;
  std::vector<float> weights;
  auto close_chunk = [&] {
    WeightedChunk chunk;
    chunk.tokens = tokenizer.pad(ids);
    chunk.weights.assign(static_cast<std::size_t>(tokenizer.max_length()), 1.0f);
    std::copy(weights.begin(), weights.end(), chunk.weights.begin() + 1);
    chunks.push_back(std::move(chunk));
    ids.clear();
    weights.clear();
  };
  bool full = false;  // truncating mode: the single window is full
  for (const WeightedText& run : parse_prompt_weights(prompt)) {
    if (run.is_break) {
      if (chunked) close_chunk();
      continue;
    }
    for (std::int64_t id : tokenizer.token_ids(run.text)) {
      if (ids.size() == window) {
        if (!chunked) {
          full = true;
          break;
        }
        close_chunk();
      }
      ids.push_back(id);
      weights.push_back(static_cast<float>(run.weight));
    }
    if (full) break;
  }
  if (!ids.empty() || chunks.empty()) close_chunk();
  if (!chunked) chunks.resize(1);
  return chunks;
}

bool all_weights_one(const std::vector<WeightedChunk>& chunks) {
  for (const auto& chunk : chunks)
    for (float w : chunk.weights)
      if (w != 1.0f) return false;
  return true;
}

at::Tensor apply_prompt_weights(const at::Tensor& hidden, const at::Tensor& weights) {
  if (!hidden.defined() || hidden.dim() != 3 || !weights.defined() || weights.dim() < 1 || weights.dim() > 2 ||
      weights.size(-1) != hidden.size(1))
    throw sdk::Error(sdk::ErrorCode::InternalError, "apply_prompt_weights: expected hidden [B, T, C] and weights [B, T]");
  at::Tensor w = weights.to(hidden.device(), hidden.scalar_type());
  if (w.dim() == 1) w = w.unsqueeze(0);
  const at::Tensor original_mean = hidden.mean();
  at::Tensor weighted = hidden * w.unsqueeze(-1);
  const at::Tensor new_mean = weighted.mean();
  return weighted * (original_mean / new_mean);
}

}  // namespace sdxlhost::nn
