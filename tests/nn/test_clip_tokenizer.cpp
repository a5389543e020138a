// CLIP tokenizer: exact on every golden case (real 49408 vocab and tiny vocab, both pad tokens).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "nn_test_util.hpp"
#include "sdxlhost/nn/clip_tokenizer.hpp"
#include "sdxlhost/sdk/error.hpp"

using sdxlhost::nn::ClipTokenizer;
using sdxlhost::nn::ClipTokenizerConfig;

namespace {

nlohmann::json read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return nlohmann::json::parse(in);
}

/// Checks tokens, unpadded ids and the padded (77) ids + mask of every case in `cases`.
void expect_goldens(const ClipTokenizer& tokenizer, const nlohmann::json& cases, const std::string& what) {
  ASSERT_GE(cases.size(), 15u) << what;
  for (const auto& c : cases) {
    const std::string prompt = c["prompt"].get<std::string>();
    const std::string label = what + " prompt '" + prompt.substr(0, 40) + "'";
    EXPECT_EQ(tokenizer.tokenize(prompt), c["tokens"].get<std::vector<std::string>>()) << label;
    EXPECT_EQ(tokenizer.encode(prompt), c["ids_no_padding_no_truncation"].get<std::vector<std::int64_t>>()) << label;
    const auto padded = tokenizer.encode_padded(prompt);
    EXPECT_EQ(padded.input_ids, c["input_ids_max_length_77"].get<std::vector<std::int64_t>>()) << label;
    EXPECT_EQ(padded.attention_mask, c["attention_mask_max_length_77"].get<std::vector<std::int64_t>>()) << label;
  }
}

}  // namespace

TEST(ClipTokenizer, FullVocabGoldensBothPadTokens) {
  const auto dir = sdxlhost::test_support::shared_dir() / "goldens/tokenizer";
  const auto goldens = read_json(dir / "tokenizer_goldens_full_vocab.json");
  const auto first = ClipTokenizer::load(dir / "clip_vocab/vocab.json", dir / "clip_vocab/merges.txt");
  EXPECT_EQ(first.vocab_size(), 49408u);
  EXPECT_EQ(first.bos_id(), 49406);
  EXPECT_EQ(first.eos_id(), 49407);
  expect_goldens(first, goldens["tokenizer (pad=<|endoftext|>, SDXL tokenizer/)"], "full tokenizer");
  ClipTokenizerConfig bang;
  bang.pad_token = "!";
  const auto second = ClipTokenizer::load(dir / "clip_vocab/vocab.json", dir / "clip_vocab/merges.txt", bang);
  EXPECT_EQ(second.pad_id(), 0);
  expect_goldens(second, goldens["tokenizer_2 (pad=!, SDXL tokenizer_2/)"], "full tokenizer_2");
}

TEST(ClipTokenizer, TinyVocabGoldensFromThePipelineFolders) {
  const auto root = sdxlhost::test_support::shared_dir() / "goldens";
  const auto goldens = read_json(root / "tokenizer/tokenizer_goldens_tiny_vocab.json");
  const auto first = ClipTokenizer::load_folder(root / "models/tiny_sdxl/tokenizer");
  const auto second = ClipTokenizer::load_folder(root / "models/tiny_sdxl/tokenizer_2");
  EXPECT_EQ(first.pad_id(), 999);
  EXPECT_EQ(second.pad_id(), 0);
  expect_goldens(first, goldens["tokenizer"], "tiny tokenizer");
  expect_goldens(second, goldens["tokenizer_2"], "tiny tokenizer_2");
}

TEST(ClipTokenizer, LongPromptsInChunksOf75) {
  const auto dir = sdxlhost::test_support::shared_dir() / "goldens/tokenizer/clip_vocab";
  const auto tokenizer = ClipTokenizer::load(dir / "vocab.json", dir / "merges.txt");
  std::string prompt;
  for (int i = 0; i < 160; ++i) prompt += "cat ";
  const auto chunks = tokenizer.encode_chunks(prompt);
  ASSERT_EQ(chunks.size(), 3u);  // 75 + 75 + 10
  for (const auto& chunk : chunks) {
    ASSERT_EQ(chunk.input_ids.size(), 77u);
    EXPECT_EQ(chunk.input_ids.front(), tokenizer.bos_id());
  }
  EXPECT_EQ(chunks[0].input_ids[76], tokenizer.eos_id());
  EXPECT_EQ(chunks[0].input_ids[75], 2368);  // "cat</w>"
  EXPECT_EQ(chunks[2].input_ids[11], tokenizer.eos_id());
  EXPECT_EQ(chunks[2].attention_mask[11], 1);
  EXPECT_EQ(chunks[2].attention_mask[12], 0);
  // Default (reference) behaviour truncates.
  EXPECT_EQ(tokenizer.encode_padded(prompt).input_ids, chunks[0].input_ids);
  EXPECT_EQ(tokenizer.encode_chunks("").size(), 1u);
}

TEST(ClipTokenizer, MissingOrBrokenFilesAreClearErrors) {
  sdxlhost::test_support::TempDir dir;
  EXPECT_THROW(ClipTokenizer::load(dir.path() / "vocab.json", dir.path() / "merges.txt"), sdxlhost::sdk::Error);
  std::ofstream(dir.path() / "vocab.json") << "{\"a</w>\": 0}";
  std::ofstream(dir.path() / "merges.txt") << "#version: 0.2\n";
  try {
    ClipTokenizer::load(dir.path() / "vocab.json", dir.path() / "merges.txt");
    FAIL();
  } catch (const sdxlhost::sdk::Error& e) {
    EXPECT_NE(std::string(e.what()).find("<|startoftext|>"), std::string::npos) << e.what();
  }
  std::ofstream(dir.path() / "vocab.json") << "[1, 2";
  EXPECT_THROW(ClipTokenizer::load(dir.path() / "vocab.json", dir.path() / "merges.txt"), sdxlhost::sdk::Error);
}
