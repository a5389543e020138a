// data.lora and A1111 prompt tags (label `lora`): what the host's parser makes of them.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "host/config/host_config.hpp"
#include "sdxlhost/sdk/lora_tags.hpp"
#include "host/protocol/request_parser.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace {

using nlohmann::json;
using sdxlhost::sdk::extract_lora_tags;
using sdxlhost::sdk::Error;

sdxlhost::sdk::GenerationRequest parse(const json& data, std::vector<std::string>& warnings) {
  return sdxlhost::host::protocol::parse_generation_request(data, "r1", sdxlhost::host::Limits{}, 300.0, warnings);
}

/// The field of the ValidationError `data` gives ("" when it parses).
std::string error_field(const json& data, std::string* message = nullptr) {
  std::vector<std::string> warnings;
  try {
    parse(data, warnings);
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), sdxlhost::sdk::ErrorCode::ValidationError);
    if (message) *message = e.what();
    return e.field();
  }
  return "";
}

TEST(LoraTags, AreRemovedFromTheTextAndReturnedInOrder) {
  std::string prompt = "a cat <lora:style:0.8>, <lyco:detail> on a mat <lora: ink sketch :-1.25>";
  const auto tags = extract_lora_tags(prompt, "data.prompt");
  EXPECT_EQ(prompt, "a cat ,  on a mat ");
  ASSERT_EQ(tags.size(), 3u);
  EXPECT_EQ(tags[0].name, "style");
  EXPECT_DOUBLE_EQ(tags[0].weight, 0.8);
  EXPECT_EQ(tags[1].name, "detail");
  EXPECT_DOUBLE_EQ(tags[1].weight, 1.0);
  EXPECT_EQ(tags[2].name, "ink sketch");
  EXPECT_DOUBLE_EQ(tags[2].weight, -1.25);
}

TEST(LoraTags, TextThatIsNoTagIsKept) {
  for (std::string text : {"a <b> c", "x < y", "<lora:unterminated", "<LORA:x:1>", "<loraX:1>", ""}) {
    std::string prompt = text;
    EXPECT_TRUE(extract_lora_tags(prompt, "data.prompt").empty()) << text;
    EXPECT_EQ(prompt, text);
  }
}

TEST(LoraTags, BadTagsNameTheirPrompt) {
  for (std::string bad : {"<lora::1>", "<lora:x:heavy>", "<lora:x:0.5:0.7>", "<lora:x:nan>", "<lora:x:1e999>"}) {
    std::string prompt = "a " + bad;
    try {
      extract_lora_tags(prompt, "data.prompt_2");
      ADD_FAILURE() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_EQ(e.field(), "data.prompt_2") << bad;
    }
  }
}

TEST(LoraRequest, TagsJoinTheModelsListAndEnableLora) {
  std::vector<std::string> warnings;
  const auto r = parse({{"prompt", "a cat <lora:style:0.5>"},
                        {"prompt_2", "<lora:ink>"},
                        {"lora", {{"models", {{{"name", "detail"}, {"weight", 0.3}}}}}}},
                       warnings);
  EXPECT_TRUE(r.lora_enabled);
  EXPECT_EQ(r.prompt, "a cat ");
  EXPECT_EQ(r.prompt_2, "");
  ASSERT_EQ(r.loras.size(), 3u);
  EXPECT_EQ(r.loras[0].name, "detail");
  EXPECT_EQ(r.loras[1].name, "style");
  EXPECT_DOUBLE_EQ(r.loras[1].weight, 0.5);
  EXPECT_EQ(r.loras[2].name, "ink");
  // the normalized data (what the PNG's sdxl_host chunk records) shows the folded list
  EXPECT_EQ(r.data["lora"]["models"].size(), 3u);
  EXPECT_EQ(r.data["prompt"], "a cat ");

  const auto only_tags = parse({{"prompt", "<lora:style>"}}, warnings);
  EXPECT_TRUE(only_tags.lora_enabled);
  ASSERT_EQ(only_tags.loras.size(), 1u);
}

TEST(LoraRequest, TagsWithLoraExplicitlyDisabledAreDroppedWithAWarning) {
  std::vector<std::string> warnings;
  const auto r = parse({{"prompt", "a cat <lora:style:0.5>"}, {"lora", {{"enabled", false}}}}, warnings);
  EXPECT_FALSE(r.lora_enabled);
  EXPECT_TRUE(r.loras.empty());
  EXPECT_EQ(r.prompt, "a cat ");
  bool warned = false;
  for (const auto& w : warnings) warned |= w.find("lora.enabled is false") != std::string::npos;
  EXPECT_TRUE(warned);
}

TEST(LoraRequest, TheSameLoraTwiceIsAValidationError) {
  std::string message;
  EXPECT_EQ(error_field({{"prompt", "a <lora:style:0.5>"},
                         {"lora", {{"models", {{{"name", "style.safetensors"}, {"weight", 1.0}}}}}}},
                        &message),
            "data.prompt");
  EXPECT_NE(message.find("data.lora.models[0]"), std::string::npos) << message;
  EXPECT_EQ(error_field({{"prompt", "a <lora:style:0.5> <lora:style:1>"}}), "data.prompt");
  EXPECT_EQ(error_field({{"prompt", "a"},
                         {"lora", {{"models", {{{"name", "x"}}, {{"name", "x"}, {"weight", 0.2}}}}}}}),
            "data.lora.models[1].name");
  EXPECT_EQ(error_field({{"prompt", "a <lora:style:20>"}}), "data.prompt");  // weight range as for models[i]
  EXPECT_EQ(error_field({{"prompt", "a"}, {"lora", {{"models", {{{"name", "x"}, {"weight", "high"}}}}}}}),
            "data.lora.models[0].weight");
}

}  // namespace
