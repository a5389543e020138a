// Config: defaults, validation naming the key, unknown keys as warnings.
#include <fstream>

#include <gtest/gtest.h>

#include "host/config/host_config.hpp"
#include "common/host_fixture.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::test_support {
namespace {

using host::HostConfig;

HostConfig parse(const json& document, std::vector<std::string>& warnings) {
  return host::parse_config(document, "/base", warnings);
}

std::string failing_key(const json& document) {
  std::vector<std::string> warnings;
  try {
    parse(document, warnings);
  } catch (const sdk::Error& error) {
    EXPECT_EQ(error.code(), sdk::ErrorCode::ValidationError);
    return error.field();
  }
  return "<accepted>";
}

TEST(Config, EveryKeyHasADefault) {
  std::vector<std::string> warnings;
  HostConfig config = parse(json::object(), warnings);
  for (const auto& warning : warnings)  // only "folder does not exist" ones (/base/models)
    EXPECT_EQ(warning.find("unknown"), std::string::npos) << warning;
  EXPECT_FALSE(warnings.empty());
  EXPECT_EQ(config.pipe_name, "sdxl_host");
  EXPECT_EQ(config.models_root, "/base/models");
  EXPECT_EQ(config.output_root, "/base/outputs");
  EXPECT_EQ(config.limits.max_message_bytes, 64u * 1024 * 1024);
  EXPECT_EQ(config.queue.executors, 1);
  EXPECT_EQ(config.socket_mode, 0600u);
  EXPECT_EQ(config.on_disabled_feature, host::DisabledFeaturePolicy::Error);
  EXPECT_EQ(config.threads, 0);
  EXPECT_FALSE(config.plugins.dir.empty());
  // to_json round-trips through the parser unchanged.
  HostConfig again = parse(config.to_json(), warnings);
  EXPECT_EQ(again.to_json(), config.to_json());
}

TEST(Config, BadValuesNameTheirKey) {
  EXPECT_EQ(failing_key({{"limits", {{"max_steps", 0}}}}), "limits.max_steps");
  EXPECT_EQ(failing_key({{"limits", {{"max_width", 1001}}}}), "limits.max_width");
  EXPECT_EQ(failing_key({{"limits", {{"min_width", 512}, {"max_width", 256}}}}), "limits.min_width");
  EXPECT_EQ(failing_key({{"queue", {{"executors", "two"}}}}), "queue.executors");
  EXPECT_EQ(failing_key({{"log_level", "loud"}}), "log_level");
  EXPECT_EQ(failing_key({{"on_disabled_feature", "ignore"}}), "on_disabled_feature");
  EXPECT_EQ(failing_key({{"socket_mode", "0644x"}}), "socket_mode");
  EXPECT_EQ(failing_key({{"socket_mode", "0400"}}), "socket_mode");
  EXPECT_EQ(failing_key({{"device", "tpu"}}), "device");
  EXPECT_EQ(failing_key({{"dtype", "int8"}}), "dtype");
  EXPECT_EQ(failing_key({{"plugins", {{"enabled", {{"lora", "yes"}}}}}}), "plugins.enabled.lora");
  EXPECT_EQ(failing_key({{"plugins", {{"config", {{"lora", 3}}}}}}), "plugins.config.lora");
  EXPECT_EQ(failing_key({{"pipe_name", "a/b"}}), "pipe_name");
  EXPECT_EQ(failing_key({{"cache", {{"max_bytes", -1}}}}), "cache.max_bytes");
  EXPECT_EQ(failing_key(json::array()), "<root>");
  EXPECT_EQ(failing_key({{"device", "cuda:1"}}), "<accepted>");
  EXPECT_EQ(failing_key({{"socket_mode", "0660"}}), "<accepted>");
}

TEST(Config, DtypeTakesBothSpellingsAndIsNormalized) {
  std::vector<std::string> warnings;
  EXPECT_EQ(parse(json::object(), warnings).dtype, "fp32");
  const std::pair<const char*, const char*> spellings[] = {
      {"fp32", "fp32"}, {"float32", "fp32"}, {"bf16", "bf16"},
      {"bfloat16", "bf16"}, {"fp16", "fp16"}, {"float16", "fp16"}};
  for (const auto& [given, stored] : spellings)
    EXPECT_EQ(parse({{"dtype", given}}, warnings).dtype, stored) << given;
  EXPECT_EQ(failing_key({{"dtype", "FP32"}}), "dtype");
}

TEST(Config, UnknownKeysWarnEverywhere) {
  std::vector<std::string> warnings;
  parse({{"colour", "blue"}, {"limits", {{"max_stepz", 3}}}, {"queue", {{"x", 1}}}, {"models_root", "/"},
         {"plugins", {{"dir", "/"}}}},
        warnings);
  ASSERT_EQ(warnings.size(), 3u);
  std::string all = warnings[0] + warnings[1] + warnings[2];
  EXPECT_NE(all.find("'colour'"), std::string::npos);
  EXPECT_NE(all.find("'limits.max_stepz'"), std::string::npos);
  EXPECT_NE(all.find("'queue.x'"), std::string::npos);
}

TEST(Config, FileErrorsAreValidationErrors) {
  auto dir = make_temp_dir("config");
  std::vector<std::string> warnings;
  EXPECT_THROW(host::load_config(dir / "missing.json", warnings), sdk::Error);
  std::ofstream(dir / "bad.json") << "{ not json";
  EXPECT_THROW(host::load_config(dir / "bad.json", warnings), sdk::Error);
  std::ofstream(dir / "good.json") << R"({"pipe_name": "p", "models_root": "m"})";
  HostConfig config = host::load_config(dir / "good.json", warnings);
  EXPECT_EQ(config.models_root, dir / "m");
  EXPECT_EQ(config.source_file, dir / "good.json");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace sdxlhost::test_support
