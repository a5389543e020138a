// Framing, envelope and request parsing without a socket.
#include <gtest/gtest.h>

#include "host/protocol/envelope.hpp"
#include "host/protocol/request_parser.hpp"
#include "host/transport/line_framer.hpp"
#include "host/transport/pipe_path.hpp"
#include "common/host_fixture.hpp"

namespace sdxlhost::test_support {
namespace {

using host::protocol::Envelope;
using host::protocol::EnvelopeError;
using host::protocol::MessageType;

sdk::ErrorCode envelope_error(std::string_view line, host::protocol::EnvelopeLimits limits = {}) {
  try {
    host::protocol::parse_envelope(line, limits);
  } catch (const EnvelopeError& error) {
    return error.code();
  }
  return sdk::ErrorCode::InternalError;  // "accepted"
}

sdk::GenerationRequest parse_request(const json& data, std::vector<std::string>& warnings) {
  return host::protocol::parse_generation_request(data, "r1", host::Limits{}, 300.0, warnings);
}

std::string failing_field(const json& data) {
  std::vector<std::string> warnings;
  try {
    parse_request(data, warnings);
  } catch (const sdk::Error& error) {
    EXPECT_EQ(error.code(), sdk::ErrorCode::ValidationError) << error.what();
    return error.field();
  }
  return "<accepted>";
}

TEST(Framer, SplitsLinesAcrossChunksAndSkipsOversized) {
  std::vector<std::string> lines;
  std::vector<std::size_t> oversized;
  host::transport::LineFramer framer(
      10, [&](std::string&& line) { lines.push_back(line); }, [&](std::size_t n) { oversized.push_back(n); });
  framer.feed("ab");
  framer.feed("c\r\nde");
  framer.feed("f\n\n");
  framer.feed("0123456789abcdef");  // too long: reported once, skipped to the newline
  framer.feed("ghijklmnop");
  EXPECT_LE(framer.pending_bytes(), 10u);
  framer.feed("qrs\nok\n");
  EXPECT_EQ(lines, (std::vector<std::string>{"abc", "def", "ok"}));
  ASSERT_EQ(oversized.size(), 1u);
}

TEST(PipePath, FollowsDotNetRule) {
  setenv("TMPDIR", "/var/tmp/", 1);
  EXPECT_EQ(host::transport::pipe_endpoint("sdxl"), "/var/tmp/CoreFxPipe_sdxl");
  unsetenv("TMPDIR");
  EXPECT_EQ(host::transport::pipe_endpoint("sdxl"), "/tmp/CoreFxPipe_sdxl");
  EXPECT_EQ(host::transport::pipe_endpoint("/run/x.sock"), "/run/x.sock");
}

TEST(Envelope, ParsesAliasesAndGeneratesIds) {
  Envelope e = host::protocol::parse_envelope(R"({"action":"enhanced_inference_request","data":{"prompt":"x"},"extra":1})", {});
  EXPECT_EQ(e.type, MessageType::InferenceRequest);
  EXPECT_TRUE(e.request_id_generated);
  EXPECT_FALSE(e.request_id.empty());
  ASSERT_EQ(e.warnings.size(), 1u);
  EXPECT_NE(e.warnings[0].find("extra"), std::string::npos);
  Envelope numeric = host::protocol::parse_envelope(R"({"message_type":"ping","request_id":42})", {});
  EXPECT_EQ(numeric.request_id, "42");
}

TEST(Envelope, RefusesBadLines) {
  using C = sdk::ErrorCode;
  EXPECT_EQ(envelope_error("{not json"), C::MalformedJson);
  EXPECT_EQ(envelope_error(R"({"message_type":"ping")"), C::MalformedJson);  // truncated
  EXPECT_EQ(envelope_error("[1,2]"), C::MalformedJson);
  EXPECT_EQ(envelope_error(std::string("{\"message_type\":\"ping\",\"x\":\"\xff\xfe\"}")), C::MalformedJson);
  EXPECT_EQ(envelope_error(std::string("\x00\x01\x02", 3)), C::MalformedJson);
  EXPECT_EQ(envelope_error(std::string(100, '[') + std::string(100, ']')), C::MalformedJson);
  EXPECT_EQ(envelope_error(R"({"message_type":"dance"})"), C::UnknownMessageType);
  EXPECT_EQ(envelope_error(R"({"data":{}})"), C::ValidationError);
  EXPECT_EQ(envelope_error(R"({"message_type":"ping","data":[1]})"), C::ValidationError);
  EXPECT_EQ(envelope_error(std::string(2000, ' '), {1000, 64}), C::MessageTooLarge);
  // Brackets inside strings do not count as nesting.
  EXPECT_EQ(envelope_error(R"({"message_type":"ping","data":{"s":"[[[[[[[[[[[["}})", {1000, 4}), C::InternalError);
  EXPECT_EQ(host::protocol::json_nesting_depth(R"({"a":[{"b":"]]]"}]})", 100), 3);
}

TEST(Request, LegacyFlatFieldsAreNormalized) {
  std::vector<std::string> warnings;
  auto r = parse_request({{"prompt", "p"}, {"model_name", "base1"}, {"guidance_scale", 5.5},
                          {"num_inference_steps", 12}, {"seed", 99}, {"width", 512}, {"height", 768},
                          {"batch_size", 2}},
                         warnings);
  EXPECT_TRUE(warnings.empty());
  EXPECT_EQ(r.models.base, "base1");
  EXPECT_DOUBLE_EQ(r.hyperparameters.guidance_scale, 5.5);
  EXPECT_EQ(r.hyperparameters.num_inference_steps, 12);
  EXPECT_EQ(r.hyperparameters.seed, 99);
  EXPECT_EQ(r.width, 512);
  EXPECT_EQ(r.height, 768);
  EXPECT_EQ(r.batch_size, 2);
  EXPECT_EQ(r.data["models"]["base"], "base1");
  EXPECT_FALSE(r.data.contains("model_name"));
  // Nested wins over legacy, with a warning.
  auto both = parse_request({{"prompt", "p"}, {"seed", 1}, {"hyperparameters", {{"seed", 2}}}}, warnings);
  EXPECT_EQ(both.hyperparameters.seed, 2);
  EXPECT_EQ(warnings.size(), 1u);
}

TEST(Request, DefaultsSeedAndUnknownFields) {
  std::vector<std::string> warnings;
  auto a = parse_request({{"prompt", "p"}, {"colour", "red"}, {"output", {{"shiny", true}}}}, warnings);
  auto b = parse_request({{"prompt", "p"}, {"hyperparameters", {{"seed", -1}}}}, warnings);
  EXPECT_GE(a.hyperparameters.seed, 0);
  EXPECT_GE(b.hyperparameters.seed, 0);
  EXPECT_EQ(a.data["hyperparameters"]["seed"], a.hyperparameters.seed);
  EXPECT_EQ(warnings.size(), 2u);
  EXPECT_EQ(a.data["colour"], "red");  // kept for plugins
  EXPECT_EQ(a.width, 1024);
  EXPECT_EQ(a.output.format, "png");
  EXPECT_EQ(a.metadata.priority, "normal");
  EXPECT_DOUBLE_EQ(a.metadata.timeout_s, 300.0);
}

TEST(Request, StrengthWithoutInitImageIsWarnedAboutOnlyWhenGiven) {
  auto warnings_for = [](const json& data) {
    std::vector<std::string> warnings;
    parse_request(data, warnings);
    return json(warnings).dump();
  };
  const std::string field = "data.hyperparameters.strength";
  EXPECT_NE(warnings_for({{"prompt", "p"}, {"hyperparameters", {{"strength", 0.5}}}}).find(field), std::string::npos);
  EXPECT_NE(warnings_for({{"prompt", "p"}, {"strength", 0.5}}).find(field), std::string::npos);  // legacy flat
  EXPECT_EQ(warnings_for({{"prompt", "p"}}), "[]");  // the default strength is not "given"
  EXPECT_EQ(warnings_for({{"prompt", "p"}, {"init_image", "in.png"}, {"hyperparameters", {{"strength", 0.5}}}}), "[]");
  // The seed's C# transformer sends strength 0.8 (the default) on every request: not worth a warning.
  EXPECT_EQ(warnings_for({{"prompt", "p"}, {"hyperparameters", {{"strength", 0.8}}}}), "[]");
}

TEST(Request, WarningsOnlyWhenSomethingDisagreesOrIsIgnored) {
  auto warnings_for = [](const json& data, const std::string& request_id = "r1") {
    std::vector<std::string> warnings;
    host::protocol::parse_generation_request(data, request_id, host::Limits{}, 300.0, warnings);
    return json(warnings).dump();
  };
  // model_name equal to models.base (the seed's transformer sends both): quiet; different: told
  EXPECT_EQ(warnings_for({{"prompt", "p"}, {"model_name", "b"}, {"models", {{"base", "b"}}}}), "[]");
  EXPECT_NE(warnings_for({{"prompt", "p"}, {"model_name", "a"}, {"models", {{"base", "b"}}}}).find("differs"),
            std::string::npos);
  // worker_type: the seed's values quietly, anything else told
  EXPECT_EQ(warnings_for({{"prompt", "p"}, {"worker_type", "enhanced_sdxl_worker"}}), "[]");
  EXPECT_EQ(warnings_for({{"prompt", "p"}, {"worker_type", "sdxl_worker"}}), "[]");
  EXPECT_NE(warnings_for({{"prompt", "p"}, {"worker_type", "sdxl_wroker"}}).find("data.worker_type"), std::string::npos);
  // metadata.request_id: the same as the message's is quiet, another one is told
  EXPECT_EQ(warnings_for({{"prompt", "p"}, {"metadata", {{"request_id", "r1"}}}}), "[]");
  EXPECT_NE(warnings_for({{"prompt", "p"}, {"metadata", {{"request_id", "other"}}}}).find("data.metadata.request_id"),
            std::string::npos);
  // save_path whose extension does not fit the format says what the file becomes
  EXPECT_EQ(warnings_for({{"prompt", "p"}, {"output", {{"save_path", "a/b.png"}}}}), "[]");
  EXPECT_EQ(warnings_for({{"prompt", "p"}, {"output", {{"format", "jpeg"}, {"save_path", "b.JPG"}}}}), "[]");
  EXPECT_EQ(warnings_for({{"prompt", "p"}, {"output", {{"save_path", "folder/"}}}}), "[]");
  const std::string changed = warnings_for({{"prompt", "p"}, {"output", {{"format", "webp"}, {"save_path", "b.png"}}}});
  EXPECT_NE(changed.find("saved as b.webp"), std::string::npos) << changed;
}

TEST(Request, APluginsOwnSectionIsPassedThroughWithoutAWarning) {
  std::vector<std::string> warnings;
  const json data = {{"prompt", "p"}, {"sdxl", {{"tile", 1}}}, {"mystery", 1}};
  auto request = host::protocol::parse_generation_request(data, "r", host::Limits{}, 300.0, warnings, {"sdxl"});
  ASSERT_EQ(warnings.size(), 1u) << json(warnings).dump();
  EXPECT_NE(warnings[0].find("data.mystery"), std::string::npos) << warnings[0];
  EXPECT_EQ(request.data["sdxl"], json({{"tile", 1}}));
  warnings.clear();
  parse_request(data, warnings);  // no plugin named sdxl: both are unknown
  EXPECT_EQ(warnings.size(), 2u) << json(warnings).dump();
}

TEST(Request, EveryFieldIsValidatedWithItsPath) {
  json ok = {{"prompt", "p"}};
  auto with = [&](json patch) {
    json d = ok;
    d.update(patch, true);
    return d;
  };
  EXPECT_EQ(failing_field(json::object()), "data.prompt");
  EXPECT_EQ(failing_field({{"prompt", 3}}), "data.prompt");
  EXPECT_EQ(failing_field(with({{"dimensions", {{"width", 1001}}}})), "data.dimensions.width");
  EXPECT_EQ(failing_field(with({{"dimensions", {{"height", 8192}}}})), "data.dimensions.height");
  EXPECT_EQ(failing_field(with({{"height", 100}})), "data.dimensions.height");
  EXPECT_EQ(failing_field(with({{"hyperparameters", {{"num_inference_steps", 0}}}})),
            "data.hyperparameters.num_inference_steps");
  EXPECT_EQ(failing_field(with({{"hyperparameters", {{"num_inference_steps", 2.5}}}})),
            "data.hyperparameters.num_inference_steps");
  EXPECT_EQ(failing_field(with({{"hyperparameters", {{"guidance_scale", 31}}}})), "data.hyperparameters.guidance_scale");
  EXPECT_EQ(failing_field(with({{"hyperparameters", {{"strength", 0}}}})), "data.hyperparameters.strength");
  EXPECT_EQ(failing_field(with({{"hyperparameters", {{"strength", 1.5}}}})), "data.hyperparameters.strength");
  EXPECT_EQ(failing_field(with({{"hyperparameters", {{"seed", "x"}}}})), "data.hyperparameters.seed");
  EXPECT_EQ(failing_field(with({{"hyperparameters", {{"original_size", {1}}}}})), "data.hyperparameters.original_size");
  EXPECT_EQ(failing_field(with({{"batch", {{"size", 9}}}})), "data.batch.size");
  EXPECT_EQ(failing_field(with({{"output", {{"format", "gif"}}}})), "data.output.format");
  EXPECT_EQ(failing_field(with({{"output", {{"quality", 0}}}})), "data.output.quality");
  EXPECT_EQ(failing_field(with({{"output", {{"save_path", "../x.png"}}}})), "data.output.save_path");
  EXPECT_EQ(failing_field(with({{"output", {{"save_path", "/etc/x.png"}}}})), "data.output.save_path");
  EXPECT_EQ(failing_field(with({{"metadata", {{"priority", "urgent"}}}})), "data.metadata.priority");
  EXPECT_EQ(failing_field(with({{"metadata", {{"timeout", -1}}}})), "data.metadata.timeout");
  EXPECT_EQ(failing_field(with({{"metadata", {{"tags", {1}}}}})), "data.metadata.tags[0]");
  EXPECT_EQ(failing_field(with({{"lora", {{"enabled", true}}}})), "data.lora.models");
  EXPECT_EQ(failing_field(with({{"lora", {{"models", {{{"name", "a"}, {"weight", "heavy"}}}}}}})),
            "data.lora.models[0].weight");
  EXPECT_EQ(failing_field(with({{"scheduler", ""}})), "data.scheduler");
  EXPECT_EQ(failing_field(with({{"controlnet", 5}})), "data.controlnet");
  EXPECT_EQ(failing_field(with({{"dry_run", "yes"}})), "data.dry_run");
  EXPECT_EQ(failing_field(with({{"output", {{"format", "JPG"}}}})), "<accepted>");
  // The default size (1024) is held to the limits as well.
  std::vector<std::string> warnings;
  host::Limits small;
  small.max_width = 512;
  try {
    host::protocol::parse_generation_request(ok, "r", small, 300.0, warnings);
    ADD_FAILURE() << "default width over limits.max_width accepted";
  } catch (const sdk::Error& error) {
    EXPECT_EQ(error.field(), "data.dimensions.width");
  }
}

TEST(Request, DisabledFeatureObjectsBecomeNull) {
  std::vector<std::string> warnings;
  auto r = parse_request({{"prompt", "p"}, {"controlnet", {{"enabled", false}}}, {"output", {{"upscale", false}}},
                          {"lora", {{"enabled", false}, {"models", {{{"name", "x"}}}}}}},
                         warnings);
  EXPECT_TRUE(r.controlnet.is_null());
  EXPECT_TRUE(r.output.upscale.is_null());
  EXPECT_FALSE(r.lora_enabled);
  EXPECT_TRUE(r.loras.empty());
}

}  // namespace
}  // namespace sdxlhost::test_support
