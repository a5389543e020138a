// The SDK's one field reader, relative-path check and request-feature declarations.
#include <gtest/gtest.h>

#include <cstdint>

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/field_reader.hpp"
#include "sdxlhost/sdk/models.hpp"
#include "sdxlhost/sdk/relative_path.hpp"
#include "sdxlhost/sdk/request_features.hpp"

using namespace sdxlhost::sdk;
using nlohmann::json;

namespace {

/// The error `read` throws (fails the test when it throws none).
template <class Read>
Error error_of(Read read) {
  try {
    read();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no error";
  return Error(ErrorCode::InternalError, "none");
}

}  // namespace

TEST(FieldReader, NamesTheFieldTheTypeAndTheRange) {
  const json data = {{"steps", 300}, {"name", 5}, {"scale", "x"}, {"flag", 1}, {"size", {64, 3.5}}};
  FieldReader reader(data, "data.section");
  int steps = 30;
  Error e = error_of([&] { reader.read_int("steps", steps, 1, 200); });
  EXPECT_EQ(e.code(), ErrorCode::ValidationError);
  EXPECT_EQ(e.field(), "data.section.steps");
  EXPECT_EQ(e.message(), "must be in [1, 200] (got 300)");
  EXPECT_EQ(steps, 30);
  std::string name;
  EXPECT_EQ(error_of([&] { reader.read_string("name", name); }).message(), "must be a string (got an integer)");
  double scale = 0;
  EXPECT_EQ(error_of([&] { reader.read_number("scale", scale, 0, 1); }).message(), "must be a number (got a string)");
  bool flag = false;
  EXPECT_EQ(error_of([&] { reader.read_bool("flag", flag); }).message(), "must be true or false (got an integer)");
  std::vector<int> size;
  e = error_of([&] { reader.read_int_array("size", size, 2, 8, 4096); });
  EXPECT_EQ(e.field(), "data.section.size[1]");
  EXPECT_EQ(e.message(), "must be an integer (got 3.5)");
  EXPECT_EQ(error_of([&] { reader.read_string("absent", name, /*required=*/true); }).message(), "is required");
  EXPECT_EQ(error_of([] { FieldReader(json::array(), "data.x"); }).field(), "data.x");
}

TEST(FieldReader, ReadsEveryIntegralTypeAndWholeFloats) {
  const json data = {{"bytes", 1ULL << 40}, {"count", 3.0}, {"huge", 18446744073709551615ULL}};
  FieldReader reader(data, "");
  std::uint64_t bytes = 0;
  std::size_t count = 0;
  reader.read_int("bytes", bytes, 0, 1LL << 62);
  reader.read_int("count", count, 0, 10);
  EXPECT_EQ(bytes, 1ULL << 40);
  EXPECT_EQ(count, 3u);
  long long huge = 0;
  const Error e = error_of([&] { reader.read_int("huge", huge, 0, 1LL << 62); });
  EXPECT_EQ(e.field(), "huge");  // an empty reader path: keys are paths themselves (the config file)
  EXPECT_NE(e.message().find("must be in [0, "), std::string::npos) << e.message();
}

TEST(FieldReader, ChoicesChildrenAndUnknownKeys) {
  const json data = {{"mode", "slow"}, {"inner", {{"a", 1}, {"b", 2}}}, {"extra", true}};
  FieldReader reader(data, "data");
  std::string mode = "fast";
  const Error e = error_of([&] { reader.read_choice("mode", mode, {"fast", "exact"}); });
  EXPECT_EQ(e.message(), "must be one of: 'fast', 'exact' (got 'slow')");
  auto inner = reader.child("inner");
  ASSERT_TRUE(inner.has_value());
  int a = 0;
  inner->read_int("a", a, 0, 5);
  EXPECT_EQ(inner->unknown_fields(), std::vector<std::string>{"data.inner.b"});
  EXPECT_EQ(reader.unknown_fields(), std::vector<std::string>{"data.extra"});
  std::vector<std::string> warnings;
  reader.warn_unknown(warnings, "ignored");
  EXPECT_EQ(warnings, std::vector<std::string>{"unknown field 'data.extra': ignored"});
  EXPECT_FALSE(reader.child("absent").has_value());
}

TEST(FieldReader, WordingForSchedulerOptionsAndModelConfigs) {
  const json options = {{"solver_order", 4}, {"eta", -1}};
  FieldErrors diffusers;
  diffusers.prefix = "DPMSolverMultistepScheduler: ";
  diffusers.key_in_message = true;
  diffusers.range_as_between = true;
  FieldReader reader(options, "data.scheduler_options", diffusers);
  int order = 2;
  Error e = error_of([&] { reader.read_int("solver_order", order, 1, 3); });
  EXPECT_EQ(e.field(), "data.scheduler_options.solver_order");
  EXPECT_EQ(e.message(), "DPMSolverMultistepScheduler: 'solver_order' must be between 1 and 3 (got 4)");
  double eta = 0;
  EXPECT_NE(error_of([&] { reader.read_number("eta", eta, 0, 1); }).message().find("'eta' must be between 0 and 1"),
            std::string::npos);

  FieldErrors model_file;
  model_file.code = ErrorCode::ModelLoadError;
  model_file.prefix = "unet config: ";
  model_file.key_in_message = true;
  model_file.field_in_error = false;
  const json config = {{"in_channels", "four"}};
  FieldReader unet(config, "", model_file);
  e = error_of([&] { unet.value_or<int>("in_channels", 4); });
  EXPECT_EQ(e.code(), ErrorCode::ModelLoadError);
  EXPECT_EQ(e.field(), "");  // the host adds the request field that chose the model
  EXPECT_EQ(e.message(), "unet config: 'in_channels' has the wrong type: \"four\"");
  EXPECT_EQ(unet.value_or<int>("out_channels", 4), 4);
}

TEST(RelativePath, RefusesWhatLeavesTheRoot) {
  RelativePathRules rules;
  rules.subject = "model name ";
  const auto message = [&](const std::string& path) {
    return error_of([&] { check_relative_path(path, "data.name", rules); }).message();
  };
  EXPECT_EQ(message("/etc/passwd"), "model name must be relative to its folder");
  EXPECT_EQ(message("a/../../b"), "model name must not leave its folder ('..')");
  EXPECT_EQ(message("a\\b"), "model name must not contain a backslash (use '/' between folders)");
  EXPECT_EQ(message(std::string("a\0b", 3)), "model name must not contain control characters (found 0x00 at byte 1)");
  EXPECT_EQ(message(""), "model name is empty");
  EXPECT_EQ(message("bad\xff"), "model name must be valid UTF-8 text without control characters");
  EXPECT_NO_THROW(check_relative_path("sub/näme.safetensors", "data.name", rules));
  rules.allow_folders = false;
  EXPECT_EQ(message("sub/x"), "model name must be a plain file name in its folder (no '/')");
  rules.max_bytes = 4;
  EXPECT_EQ(message("12345"), "model name is too long (more than 4 bytes)");
  EXPECT_NO_THROW(check_save_path("", "data.output.save_path"));
  EXPECT_EQ(error_of([] { check_save_path("../x.png", "data.output.save_path"); }).message(),
            "must not leave output_root ('..')");
}

TEST(RequestFeatures, OneReadingOfEnabled) {
  EXPECT_FALSE(option_requested(nullptr));
  EXPECT_FALSE(option_requested(false));
  EXPECT_FALSE(option_requested(""));
  EXPECT_FALSE(option_requested(json::object()));
  EXPECT_FALSE(option_requested(json::array()));
  EXPECT_FALSE(option_requested({{"enabled", false}, {"scale", 2}}));
  EXPECT_TRUE(option_requested(true));
  EXPECT_TRUE(option_requested("name"));
  EXPECT_TRUE(option_requested({{"scale", 2}}));
  EXPECT_TRUE(option_requested({{"enabled", true}}));
  EXPECT_TRUE(option_requested(json::array({1})));
}

TEST(RequestFeatures, TypedFieldsAndPluginSectionsAreReadAlike) {
  GenerationRequest request;
  for (const auto& feature : request_schema_features()) EXPECT_FALSE(feature_requested(feature, request)) << feature.name;
  request.lora_enabled = true;
  request.models.refiner = "refiner";
  request.output.upscale = {{"scale", 2}};
  request.controlnet = {{"enabled", false}};
  std::vector<std::string> asked;
  for (const auto& feature : request_schema_features())
    if (feature_requested(feature, request)) asked.push_back(feature.name);
  EXPECT_EQ(asked, (std::vector<std::string>{"lora", "refiner", "upscaler"}));

  const RequestFeature mine{"my_feature", "data.my_feature.options"};
  EXPECT_FALSE(feature_requested(mine, request));
  request.data = {{"my_feature", {{"options", {{"enabled", false}}}}}};
  EXPECT_FALSE(feature_requested(mine, request));
  request.data["my_feature"]["options"] = {{"strength", 0.5}};
  EXPECT_TRUE(feature_requested(mine, request));
  EXPECT_EQ(request_field(request, "data.my_feature.options.strength"), 0.5);
  EXPECT_TRUE(request_field(request, "data.nothing.here").is_null());
}

TEST(RequestFeatures, ModelReferencesNameTheirFields) {
  GenerationRequest request;
  request.models.base = "base";
  request.models.vae = "vae";
  request.loras = {{"style", 0.5}, {"detail", 1.0}};
  const auto refs = model_references(request);
  ASSERT_EQ(refs.size(), 4u);
  EXPECT_EQ(refs[0].kind, kCheckpoints);
  EXPECT_EQ(refs[1].kind, kVae);
  EXPECT_EQ(refs[3].kind, kLoras);
  EXPECT_EQ(refs[3].name, "detail");
  EXPECT_EQ(refs[3].field, "data.lora.models[1].name");
}
