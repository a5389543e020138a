// A1111 prompt emphasis: parser cases, weighted tokenization, the re-weighting formula.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "nn_test_util.hpp"
#include "sdxlhost/nn/prompt_weighting.hpp"

using namespace sdxlhost::nn;

namespace {

using Runs = std::vector<std::pair<std::string, double>>;

/// The parse as (text, weight) pairs; a BREAK shows as ("BREAK", -1).
Runs parse(std::string_view prompt) {
  Runs out;
  for (const auto& run : parse_prompt_weights(prompt))
    out.emplace_back(run.is_break ? "BREAK" : run.text, run.is_break ? -1.0 : run.weight);
  return out;
}

const ClipTokenizer& tokenizer() {
  static const ClipTokenizer tok = [] {
    const auto dir = sdxlhost::test_support::shared_dir() / "goldens/tokenizer/clip_vocab";
    return ClipTokenizer::load(dir / "vocab.json", dir / "merges.txt");
  }();
  return tok;
}

}  // namespace

TEST(PromptWeighting, ParsesA1111Syntax) {
  EXPECT_EQ(parse("a photo of a cat"), (Runs{{"a photo of a cat", 1.0}}));
  EXPECT_EQ(parse("a (cat) dog"), (Runs{{"a ", 1.0}, {"cat", 1.1}, {" dog", 1.0}}));
  EXPECT_EQ(parse("(cat:1.3), dog"), (Runs{{"cat", 1.3}, {", dog", 1.0}}));
  EXPECT_EQ(parse("((cat))"), (Runs{{"cat", 1.1 * 1.1}}));
  EXPECT_EQ(parse("[cat]"), (Runs{{"cat", 1.0 / 1.1}}));
  EXPECT_EQ(parse("(a [b] c:1.5)"), (Runs{{"a ", 1.5}, {"b", 1.5 / 1.1}, {" c", 1.5}}));
  EXPECT_EQ(parse("\\(cat\\) \\[x\\] \\\\"), (Runs{{"(cat) [x] \\", 1.0}}));
  EXPECT_EQ(parse("(unclosed"), (Runs{{"unclosed", 1.1}}));
  EXPECT_EQ(parse("a) b] c"), (Runs{{"a) b] c", 1.0}}));
  EXPECT_EQ(parse("time: noon"), (Runs{{"time: noon", 1.0}}));
  EXPECT_EQ(parse("(a:x)"), (Runs{{"a:x", 1.1}}));
  EXPECT_EQ(parse("(a:1.2.3)"), (Runs{{"a:1.2.3)", 1.1}}));
  EXPECT_EQ(parse("(a : -0.5 )"), (Runs{{"a ", -0.5}}));  // text before ":" keeps its space
  EXPECT_EQ(parse("a cat BREAK a dog"), (Runs{{"a cat", 1.0}, {"BREAK", -1.0}, {"a dog", 1.0}}));
  EXPECT_EQ(parse("BREAKFAST"), (Runs{{"BREAKFAST", 1.0}}));
  EXPECT_EQ(parse(""), (Runs{{"", 1.0}}));
}

TEST(PromptWeighting, PlainPromptsTokenizeExactlyAsTheReference) {
  for (const char* prompt : {"a photo of a cat", "A photo of a CAT, high quality; 4k!!", "time: noon", ""}) {
    const auto chunks = tokenize_weighted(tokenizer(), prompt, false);
    ASSERT_EQ(chunks.size(), 1u);
    EXPECT_EQ(chunks[0].tokens.input_ids, tokenizer().encode_padded(prompt).input_ids) << prompt;
    EXPECT_TRUE(all_weights_one(chunks)) << prompt;
  }
}

TEST(PromptWeighting, TokensCarryTheirSegmentWeights) {
  const auto chunks = tokenize_weighted(tokenizer(), "a (cat:1.5) [dog]", false);
  ASSERT_EQ(chunks.size(), 1u);
  const auto& ids = chunks[0].tokens.input_ids;
  EXPECT_EQ(std::vector<std::int64_t>(ids.begin(), ids.begin() + 5),
            (std::vector<std::int64_t>{49406, 320, 2368, 1929, 49407}));  // <s> a cat dog </s>
  EXPECT_FLOAT_EQ(chunks[0].weights[0], 1.0f);
  EXPECT_FLOAT_EQ(chunks[0].weights[1], 1.0f);
  EXPECT_FLOAT_EQ(chunks[0].weights[2], 1.5f);
  EXPECT_FLOAT_EQ(chunks[0].weights[3], static_cast<float>(1.0 / 1.1));
  EXPECT_FLOAT_EQ(chunks[0].weights[4], 1.0f);
  EXPECT_FALSE(all_weights_one(chunks));
}

TEST(PromptWeighting, LongPromptsAndBreakMakeChunks) {
  std::string prompt;
  for (int i = 0; i < 80; ++i) prompt += "(cat) ";
  prompt += "BREAK dog";
  const auto chunks = tokenize_weighted(tokenizer(), prompt, true);
  ASSERT_EQ(chunks.size(), 3u);  // 75 cats, 5 cats, then "dog" after BREAK
  EXPECT_FLOAT_EQ(chunks[0].weights[75], 1.1f);
  EXPECT_EQ(chunks[1].tokens.input_ids[5], 2368);
  EXPECT_EQ(chunks[1].tokens.input_ids[6], tokenizer().eos_id());
  EXPECT_EQ(chunks[2].tokens.input_ids[1], 1929);
  const auto truncated = tokenize_weighted(tokenizer(), prompt, false);
  ASSERT_EQ(truncated.size(), 1u);
  EXPECT_EQ(truncated[0].tokens.input_ids, chunks[0].tokens.input_ids);
}

TEST(PromptWeighting, ReweightingKeepsTheMeanAndScalesTokens) {
  at::manual_seed(0);
  const at::Tensor z = at::randn({2, 77, 8}) + 0.5;
  EXPECT_TRUE(at::allclose(apply_prompt_weights(z, at::ones({2, 77})), z, 1e-6, 1e-6));
  at::Tensor w = at::ones({77});
  w[3] = 1.5;
  const at::Tensor out = apply_prompt_weights(z, w);
  EXPECT_NEAR(out.mean().item<double>(), z.mean().item<double>(), 1e-6);
  const at::Tensor scale = z.mean() / (z * w.view({1, 77, 1})).mean();
  EXPECT_TRUE(at::allclose(out.select(1, 3), z.select(1, 3) * 1.5 * scale, 1e-5, 1e-6));
  EXPECT_TRUE(at::allclose(out.select(1, 4), z.select(1, 4) * scale, 1e-5, 1e-6));
}
