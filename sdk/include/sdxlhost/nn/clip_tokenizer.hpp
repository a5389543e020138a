#pragma once
/// @file clip_tokenizer.hpp
/// The CLIP byte-level BPE tokenizer, as Hugging Face's (slow) `CLIPTokenizer` computes it, read
/// from `vocab.json` + `merges.txt`:
///
///  1. the text is split on the special tokens (`<|startoftext|>`, `<|endoftext|>` and the pad
///     token; SDXL's second tokenizer pads with "!", so a literal "!" becomes its own token);
///  2. each other piece is cleaned as transformers' BasicTokenizer does when ftfy is absent (the
///     reference the goldens were made with): control characters dropped, whitespace normalised,
///     spaces around CJK ideographs, NFC, lower-cased word by word, accents kept;
///  3. split with CLIP's pattern (special tokens, 's 't 're 've 'm 'll 'd, letter runs, single
///     digits, runs of other symbols); each piece is UTF-8 bytes mapped to printable characters and
///     merged by BPE rank, the last symbol ending in `</w>`.
///
/// `encode_padded` adds `<|startoftext|>` / `<|endoftext|>`, truncates to `max_length` (77) and
/// pads with the pad token, like `tokenizer(text, padding="max_length", truncation=True)`.
/// `encode_chunks` splits long prompts into windows of 75 tokens (A1111 / ComfyUI style).
///
/// Thread-safety: immutable after loading; every method is const and may run concurrently.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::nn {

/// Special tokens and lengths (the fields of tokenizer_config.json / special_tokens_map.json).
struct ClipTokenizerConfig {
  std::string bos_token = "<|startoftext|>";  ///< prepended to every sequence
  std::string eos_token = "<|endoftext|>";    ///< appended to every sequence
  std::string unk_token = "<|endoftext|>";    ///< id for pieces not in the vocabulary
  std::string pad_token = "<|endoftext|>";  ///< SDXL's tokenizer_2 uses "!"
  int model_max_length = 77;                  ///< padded length, including bos and eos
};

/// Ids and mask of one padded sequence.
struct TokenizedText {
  std::vector<std::int64_t> input_ids;       ///< length = max_length
  std::vector<std::int64_t> attention_mask;  ///< 1 for bos, tokens and eos; 0 for padding
};

/// A CLIP BPE tokenizer.
class SDXLHOST_API ClipTokenizer {
 public:
  /// Loads `vocab.json` and `merges.txt` (as transformers: the first line of merges.txt is a
  /// header; at most 48894 merges are used). Throws sdk::Error(ModelLoadError) naming the file
  /// when a file is missing or malformed, or a special token is not in the vocabulary.
  static ClipTokenizer load(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt,
                            ClipTokenizerConfig config = {});
  /// Loads a diffusers `tokenizer/` or `tokenizer_2/` folder: vocab.json, merges.txt and, when
  /// present, the special tokens and model_max_length of tokenizer_config.json.
  static ClipTokenizer load_folder(const std::filesystem::path& folder);

  /// The BPE token strings of `text` (no start/end tokens), e.g. "a photo" -> {"a</w>", "photo</w>"}.
  std::vector<std::string> tokenize(std::string_view text) const;
  /// The ids of `tokenize(text)`.
  std::vector<std::int64_t> token_ids(std::string_view text) const;
  /// bos + token ids + eos, without truncation or padding.
  std::vector<std::int64_t> encode(std::string_view text) const;
  /// bos + ids (truncated to max_length - 2) + eos, padded with the pad id to max_length.
  TokenizedText encode_padded(std::string_view text) const;
  /// Wraps already tokenized ids (at most max_length - 2) into bos + ids + eos + padding.
  TokenizedText pad(const std::vector<std::int64_t>& ids) const;
  /// Long prompts: the token ids in windows of max_length - 2 (75), each wrapped as `pad` does;
  /// at least one window (an empty prompt gives one).
  std::vector<TokenizedText> encode_chunks(std::string_view text) const;

  /// The id of a vocabulary entry, or -1.
  std::int64_t id_of(const std::string& token) const;
  std::int64_t bos_id() const { return bos_id_; }  ///< id of `<|startoftext|>`
  std::int64_t eos_id() const { return eos_id_; }  ///< id of `<|endoftext|>`
  std::int64_t pad_id() const { return pad_id_; }  ///< id of the pad token
  int max_length() const { return config_.model_max_length; }  ///< 77
  std::size_t vocab_size() const { return vocab_.size(); }      ///< entries in vocab.json
  const ClipTokenizerConfig& config() const { return config_; }  ///< special tokens

 private:
  ClipTokenizer() = default;
  std::vector<std::string> bpe(const std::string& word) const;
  void tokenize_plain(std::string_view text, std::vector<std::string>& out) const;

  ClipTokenizerConfig config_;
  std::unordered_map<std::string, std::int64_t> vocab_;
  std::unordered_map<std::string, int> merge_ranks_;  ///< "first second" -> rank
  std::vector<std::string> special_tokens_;           ///< never split, matched before cleaning
  std::int64_t bos_id_ = -1, eos_id_ = -1, pad_id_ = -1, unk_id_ = -1;
};

}  // namespace sdxlhost::nn
