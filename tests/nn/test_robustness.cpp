// Untrusted text never crashes the tokenizer or the emphasis parser; TensorMap basics.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <random>

#include "nn_test_util.hpp"
#include "sdxlhost/nn/clip_tokenizer.hpp"
#include "sdxlhost/nn/prompt_weighting.hpp"
#include "sdxlhost/nn/tensor_map.hpp"
#include "sdxlhost/sdk/error.hpp"

using namespace sdxlhost::nn;

TEST(Robustness, RandomBytesAndSyntaxNeverCrashTheTokenizerOrParser) {
  const auto dir = sdxlhost::test_support::shared_dir() / "goldens/models/tiny_sdxl/tokenizer_2";
  const auto tokenizer = ClipTokenizer::load_folder(dir);
  std::mt19937 rng(7);
  const std::string alphabet = "ab (:)[]\\1.5 BREAK,!<|endoftext|>\xc3\xa9\xe6\x97\xa5";
  for (int round = 0; round < 500; ++round) {
    std::string text;
    const int length = static_cast<int>(rng() % 120);
    for (int i = 0; i < length; ++i)
      text.push_back(round % 2 == 0 ? static_cast<char>(rng() & 0xff) : alphabet[rng() % alphabet.size()]);
    const auto padded = tokenizer.encode_padded(text);
    ASSERT_EQ(padded.input_ids.size(), 77u);
    for (auto id : padded.input_ids) ASSERT_TRUE(id >= 0 && id < static_cast<int64_t>(tokenizer.vocab_size()));
    for (bool chunked : {false, true}) {
      const auto chunks = tokenize_weighted(tokenizer, text, chunked);
      ASSERT_FALSE(chunks.empty());
      for (const auto& chunk : chunks) ASSERT_EQ(chunk.weights.size(), 77u);
    }
  }
}

TEST(Robustness, TensorMapPrefixesAndMissingKeys) {
  TensorMap map("model.safetensors");
  map.set("a.b.weight", at::zeros({1}));
  map.set("a.c.weight", at::zeros({2}));
  map.set("ab.weight", at::zeros({3}));
  const TensorMap a = map.with_prefix("a.");
  EXPECT_EQ(a.names(), (std::vector<std::string>{"b.weight", "c.weight"}));
  EXPECT_EQ(map.with_prefix("a.", false).names(), (std::vector<std::string>{"a.b.weight", "a.c.weight"}));
  EXPECT_EQ(a.source(), "model.safetensors");
  EXPECT_TRUE(map.erase("ab.weight"));
  EXPECT_FALSE(map.erase("ab.weight"));
  EXPECT_EQ(map.find("nope"), nullptr);
  try {
    map.at("nope");
    FAIL();
  } catch (const sdxlhost::sdk::Error& e) {
    EXPECT_EQ(e.code(), sdxlhost::sdk::ErrorCode::ModelLoadError);
    EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos);
  }
}
