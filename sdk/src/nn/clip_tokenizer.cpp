// CLIP byte-level BPE tokenizer (transformers' slow CLIPTokenizer, BasicTokenizer clean-up path).
#include "sdxlhost/nn/clip_tokenizer.hpp"

#include <unicode/locid.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>

#include <algorithm>
#include <climits>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::nn {
namespace {

using sdk::Error;
using sdk::ErrorCode;

/// transformers keeps merges.txt lines [1, 49152 - 256 - 2 + 1): at most 48894 merges.
constexpr std::size_t kMaxMerges = 49152 - 256 - 2;

[[noreturn]] void load_error(const std::filesystem::path& file, const std::string& what) {
  throw Error(ErrorCode::ModelLoadError, "tokenizer file '" + file.string() + "': " + what);
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) load_error(path, "cannot be opened");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// ---- Unicode helpers (code points) -------------------------------------------------------------

std::u32string decode_utf8(std::string_view text) {
  std::u32string out;
  const icu::UnicodeString s = icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), static_cast<int32_t>(text.size())));
  for (int32_t i = 0; i < s.length();) {
    const UChar32 c = s.char32At(i);
    out.push_back(static_cast<char32_t>(c));
    i += U16_LENGTH(c);
  }
  return out;
}

void append_utf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string encode_utf8(const std::u32string& text) {
  std::string out;
  for (char32_t c : text) append_utf8(out, c);
  return out;
}

icu::UnicodeString to_icu(const std::u32string& text) {
  return icu::UnicodeString::fromUTF32(reinterpret_cast<const UChar32*>(text.data()),
                                       static_cast<int32_t>(text.size()));
}

std::u32string from_icu(const icu::UnicodeString& s) {
  std::string utf8;
  s.toUTF8String(utf8);
  return decode_utf8(utf8);
}

bool in_category(char32_t c, std::uint32_t mask) { return (U_GET_GC_MASK(static_cast<UChar32>(c)) & mask) != 0; }
bool is_letter(char32_t c) { return in_category(c, U_GC_L_MASK); }
bool is_number(char32_t c) { return in_category(c, U_GC_N_MASK); }

/// BasicTokenizer's whitespace: space, \t, \n, \r and category Zs.
bool is_basic_whitespace(char32_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || in_category(c, U_GC_ZS_MASK);
}

/// BasicTokenizer's control characters: category C* except \t, \n, \r.
bool is_basic_control(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  return in_category(c, U_GC_C_MASK);
}

/// Python's str.isspace() / str.split() whitespace.
bool is_python_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

/// The CJK ideograph blocks BasicTokenizer surrounds with spaces.
bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/// BasicTokenizer (lower case, no accent stripping, no punctuation split): the lower-cased words.
std::vector<std::u32string> basic_words(std::string_view text) {
  std::u32string cleaned;
  for (char32_t c : decode_utf8(text)) {
    if (c == 0 || c == 0xFFFD || is_basic_control(c)) continue;
    if (is_basic_whitespace(c)) {
      cleaned.push_back(' ');
    } else if (is_cjk(c)) {
      cleaned += U' ';
      cleaned.push_back(c);
      cleaned += U' ';
    } else {
      cleaned.push_back(c);
    }
  }
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
  if (U_FAILURE(status)) throw Error(ErrorCode::InternalError, "ICU NFC normaliser unavailable");
  icu::UnicodeString normalized = nfc->normalize(to_icu(cleaned), status);
  if (U_FAILURE(status)) throw Error(ErrorCode::InternalError, "ICU NFC normalisation failed");
  const std::u32string text32 = from_icu(normalized);

  std::vector<std::u32string> words;
  std::u32string word;
  auto flush = [&] {
    if (word.empty()) return;
    icu::UnicodeString lower = to_icu(word);
    lower.toLower(icu::Locale::getRoot());  // full case mapping, like Python's str.lower()
    words.push_back(from_icu(lower));
    word.clear();
  };
  for (char32_t c : text32) {
    if (is_python_space(c)) {
      flush();
    } else {
      word.push_back(c);
    }
  }
  flush();
  return words;
}

bool matches_at(const std::u32string& s, std::size_t i, std::u32string_view what) {
  return s.size() - i >= what.size() && std::u32string_view(s).substr(i, what.size()) == what;
}

/// CLIP's pre-tokenisation pattern, applied to one lower-cased word (no whitespace inside):
/// <|startoftext|> | <|endoftext|> | 's|'t|'re|'ve|'m|'ll|'d | letters+ | one digit | other+.
std::vector<std::u32string> clip_pieces(const std::u32string& word) {
  static const std::u32string_view kFixed[] = {U"<|startoftext|>", U"<|endoftext|>", U"'s", U"'t", U"'re",
                                               U"'ve", U"'m", U"'ll", U"'d"};
  std::vector<std::u32string> out;
  std::size_t i = 0;
  while (i < word.size()) {
    std::size_t length = 0;
    for (auto fixed : kFixed)
      if (matches_at(word, i, fixed)) {
        length = fixed.size();
        break;
      }
    if (length == 0) {
      const char32_t c = word[i];
      if (is_letter(c)) {
        while (i + length < word.size() && is_letter(word[i + length])) ++length;
      } else if (is_number(c)) {
        length = 1;
      } else if (!u_isUWhiteSpace(static_cast<UChar32>(c))) {
        while (i + length < word.size()) {
          const char32_t d = word[i + length];
          if (is_letter(d) || is_number(d) || u_isUWhiteSpace(static_cast<UChar32>(d))) break;
          ++length;
        }
      } else {
        ++i;  // no alternative matches whitespace
        continue;
      }
    }
    out.push_back(word.substr(i, length));
    i += length;
  }
  return out;
}

/// GPT-2/CLIP bytes_to_unicode: every byte as one printable character (UTF-8 encoded).
const std::vector<std::string>& byte_symbols() {
  static const std::vector<std::string> table = [] {
    std::vector<std::string> out(256);
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      std::string symbol;
      append_utf8(symbol, printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++));
      out[b] = symbol;
    }
    return out;
  }();
  return table;
}

}  // namespace

// ---- loading ----------------------------------------------------------------------------------

ClipTokenizer ClipTokenizer::load(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt,
                                  ClipTokenizerConfig config) {
  ClipTokenizer tok;
  tok.config_ = std::move(config);
  if (tok.config_.model_max_length < 2) load_error(vocab_json, "model_max_length must be at least 2");

  const nlohmann::json vocab = nlohmann::json::parse(read_file(vocab_json), nullptr, false);
  if (vocab.is_discarded() || !vocab.is_object()) load_error(vocab_json, "not a JSON object");
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer()) load_error(vocab_json, "id of '" + token + "' is not an integer");
    tok.vocab_[token] = id.get<std::int64_t>();
  }

  std::istringstream merges(read_file(merges_txt));
  std::string line;
  std::getline(merges, line);  // "#version: 0.2" header, skipped as transformers does
  int rank = 0;
  while (static_cast<std::size_t>(rank) < kMaxMerges && std::getline(merges, line)) {
    std::istringstream parts(line);
    std::string first, second, extra;
    if (!(parts >> first >> second) || (parts >> extra)) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      load_error(merges_txt, "line " + std::to_string(rank + 2) + " is not 'first second'");
    }
    tok.merge_ranks_.emplace(first + " " + second, rank++);
  }

  auto require = [&](const std::string& token, const char* role) {
    const std::int64_t id = tok.id_of(token);
    if (id < 0) load_error(vocab_json, std::string(role) + " token '" + token + "' is not in the vocabulary");
    return id;
  };
  tok.bos_id_ = require(tok.config_.bos_token, "bos");
  tok.eos_id_ = require(tok.config_.eos_token, "eos");
  tok.unk_id_ = require(tok.config_.unk_token, "unk");
  tok.pad_id_ = require(tok.config_.pad_token, "pad");
  for (const auto* special : {&tok.config_.bos_token, &tok.config_.eos_token, &tok.config_.unk_token,
                              &tok.config_.pad_token})
    if (std::find(tok.special_tokens_.begin(), tok.special_tokens_.end(), *special) == tok.special_tokens_.end())
      tok.special_tokens_.push_back(*special);
  return tok;
}

namespace {

/// A special token in tokenizer_config.json: a string or {"content": ...}.
void read_token(const nlohmann::json& config, const char* key, std::string& out) {
  auto it = config.find(key);
  if (it == config.end()) return;
  if (it->is_string()) out = it->get<std::string>();
  else if (it->is_object() && it->contains("content") && (*it)["content"].is_string())
    out = (*it)["content"].get<std::string>();
}

}  // namespace

ClipTokenizer ClipTokenizer::load_folder(const std::filesystem::path& folder) {
  ClipTokenizerConfig config;
  for (const char* name : {"special_tokens_map.json", "tokenizer_config.json"}) {
    const auto path = folder / name;
    if (!std::filesystem::exists(path)) continue;
    const nlohmann::json json = nlohmann::json::parse(read_file(path), nullptr, false);
    if (json.is_discarded() || !json.is_object()) load_error(path, "not a JSON object");
    read_token(json, "bos_token", config.bos_token);
    read_token(json, "eos_token", config.eos_token);
    read_token(json, "unk_token", config.unk_token);
    read_token(json, "pad_token", config.pad_token);
    auto length = json.find("model_max_length");
    if (length != json.end() && length->is_number_integer() && length->get<std::int64_t>() <= 4096)
      config.model_max_length = length->get<int>();
  }
  return load(folder / "vocab.json", folder / "merges.txt", config);
}

std::int64_t ClipTokenizer::id_of(const std::string& token) const {
  auto it = vocab_.find(token);
  return it == vocab_.end() ? -1 : it->second;
}

// ---- tokenizing -------------------------------------------------------------------------------

std::vector<std::string> ClipTokenizer::bpe(const std::string& piece) const {
  if (piece == "<|startoftext|>" || piece == "<|endoftext|>") return {piece};
  // Symbols = the byte characters of the piece; the last one carries the end-of-word marker.
  std::vector<std::string> word;
  for (unsigned char byte : piece) word.push_back(byte_symbols()[byte]);
  if (word.empty()) return {};
  word.back() += "</w>";
  while (word.size() > 1) {
    int best_rank = INT_MAX;
    std::size_t best = 0;
    for (std::size_t i = 0; i + 1 < word.size(); ++i) {
      auto it = merge_ranks_.find(word[i] + " " + word[i + 1]);
      if (it != merge_ranks_.end() && it->second < best_rank) {
        best_rank = it->second;
        best = i;
      }
    }
    if (best_rank == INT_MAX) break;
    // Merge every non-overlapping occurrence of the best pair, left to right.
    const std::string first = word[best], second = word[best + 1];
    std::vector<std::string> merged;
    for (std::size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
        merged.push_back(first + second);
        i += 2;
      } else {
        merged.push_back(word[i++]);
      }
    }
    word.swap(merged);
  }
  return word;
}

void ClipTokenizer::tokenize_plain(std::string_view text, std::vector<std::string>& out) const {
  for (const std::u32string& word : basic_words(text))
    for (const std::u32string& piece : clip_pieces(word))
      for (std::string& token : bpe(encode_utf8(piece))) out.push_back(std::move(token));
}

std::vector<std::string> ClipTokenizer::tokenize(std::string_view text) const {
  // Special tokens are cut out first (leftmost, then longest match) and kept whole.
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t best_pos = std::string_view::npos, best_len = 0;
    for (const auto& special : special_tokens_) {
      const std::size_t pos = text.find(special, start);
      if (pos == std::string_view::npos) continue;
      if (pos < best_pos || (pos == best_pos && special.size() > best_len)) {
        best_pos = pos;
        best_len = special.size();
      }
    }
    if (best_pos == std::string_view::npos) {
      tokenize_plain(text.substr(start), out);
      break;
    }
    tokenize_plain(text.substr(start, best_pos - start), out);
    out.emplace_back(text.substr(best_pos, best_len));
    start = best_pos + best_len;
  }
  return out;
}

std::vector<std::int64_t> ClipTokenizer::token_ids(std::string_view text) const {
  std::vector<std::int64_t> ids;
  for (const auto& token : tokenize(text)) {
    const std::int64_t id = id_of(token);
    ids.push_back(id < 0 ? unk_id_ : id);
  }
  return ids;
}

std::vector<std::int64_t> ClipTokenizer::encode(std::string_view text) const {
  std::vector<std::int64_t> ids = token_ids(text);
  ids.insert(ids.begin(), bos_id_);
  ids.push_back(eos_id_);
  return ids;
}

TokenizedText ClipTokenizer::pad(const std::vector<std::int64_t>& ids) const {
  const std::size_t length = static_cast<std::size_t>(config_.model_max_length);
  const std::size_t kept = std::min(ids.size(), length - 2);
  TokenizedText out;
  out.input_ids.reserve(length);
  out.input_ids.push_back(bos_id_);
  out.input_ids.insert(out.input_ids.end(), ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(kept));
  out.input_ids.push_back(eos_id_);
  out.attention_mask.assign(out.input_ids.size(), 1);
  out.input_ids.resize(length, pad_id_);
  out.attention_mask.resize(length, 0);
  return out;
}

TokenizedText ClipTokenizer::encode_padded(std::string_view text) const { return pad(token_ids(text)); }

std::vector<TokenizedText> ClipTokenizer::encode_chunks(std::string_view text) const {
  const std::vector<std::int64_t> ids = token_ids(text);
  const std::size_t window = static_cast<std::size_t>(config_.model_max_length) - 2;
  std::vector<TokenizedText> out;
  for (std::size_t start = 0; start < ids.size(); start += window) {
    const std::size_t end = std::min(ids.size(), start + window);
    out.push_back(pad(std::vector<std::int64_t>(ids.begin() + static_cast<std::ptrdiff_t>(start),
                                                ids.begin() + static_cast<std::ptrdiff_t>(end))));
  }
  if (out.empty()) out.push_back(pad({}));
  return out;
}

}  // namespace sdxlhost::nn
