// Issue 14, items 5, 6, 7, 10 without a socket: numbers out of range, log escaping, one
// save_path check, and messages that state the configured range and the expected type.
#include <gtest/gtest.h>

#include "host/common/log_escape.hpp"
#include "host/common/paths.hpp"
#include "host/protocol/envelope.hpp"
#include "host/protocol/request_parser.hpp"
#include "host/transport/line_framer.hpp"
#include "common/host_fixture.hpp"

namespace sdxlhost::test_support {
namespace {

using host::protocol::EnvelopeError;

/// The EnvelopeError parse_envelope throws for `line` (fails the test when it accepts it).
EnvelopeError envelope_failure(std::string_view line) {
  try {
    host::protocol::parse_envelope(line, {});
  } catch (const EnvelopeError& error) {
    return error;
  }
  ADD_FAILURE() << "accepted: " << line;
  return EnvelopeError(sdk::Error(sdk::ErrorCode::InternalError, "accepted"), "");
}

/// The ValidationError the request parser throws for `data` (code checked; message returned).
sdk::Error request_failure(const json& data, const host::Limits& limits = host::Limits{}) {
  std::vector<std::string> warnings;
  try {
    host::protocol::parse_generation_request(data, "r1", limits, 300.0, warnings);
  } catch (const sdk::Error& error) {
    EXPECT_EQ(error.code(), sdk::ErrorCode::ValidationError) << error.what();
    return error;
  }
  ADD_FAILURE() << "accepted: " << data.dump();
  return sdk::Error(sdk::ErrorCode::InternalError, "accepted");
}

TEST(NumbersOutOfRange, AreMalformedJsonWithTheFieldAndTheRequestId) {
  {
    const auto e = envelope_failure(
        R"({"message_type":"inference_request","request_id":"big-1","data":{"hyperparameters":{"seed":1e400}}})");
    EXPECT_EQ(e.code(), sdk::ErrorCode::MalformedJson);
    EXPECT_EQ(e.request_id(), "big-1");
    EXPECT_EQ(e.field(), "data.hyperparameters.seed");
    EXPECT_NE(std::string(e.what()).find("1e400"), std::string::npos) << e.what();
  }
  {  // the id after the bad number, inside an array, negative
    const auto e = envelope_failure(R"({"data": {"a": [1, {"b": -1E+400}]}, "message_type": "ping", "request_id" : 77})");
    EXPECT_EQ(e.code(), sdk::ErrorCode::MalformedJson);
    EXPECT_EQ(e.request_id(), "77");
    EXPECT_EQ(e.field(), "data.a[1].b");
  }
  {  // at the top level; the id is a string with escapes and a nested "request_id" is not it
    const auto e = envelope_failure(R"({"x": 2e999, "data": {"request_id": "inner"}, "request_id": "a\"b"})");
    EXPECT_EQ(e.code(), sdk::ErrorCode::MalformedJson);
    EXPECT_EQ(e.request_id(), "a\"b");
    EXPECT_EQ(e.field(), "x");
  }
  EXPECT_EQ(host::protocol::find_request_id(R"({"data": {"request_id": "inner"}})"), std::nullopt);
  EXPECT_EQ(host::protocol::find_request_id(R"({"request_id": "x)"), std::nullopt);
  EXPECT_EQ(host::protocol::find_request_id(R"(["request_id", "x"])"), std::nullopt);
}

TEST(NumbersOutOfRange, OverTheSocketTheAnswerCarriesTheId) {
  HostFixture fixture;
  auto client = fixture.client();
  client->send_raw(R"({"message_type":"ping","request_id":"huge","data":{"n":1e400}})" "\n");
  const json response = client->next();
  EXPECT_EQ(response["request_id"], "huge") << response.dump();
  EXPECT_EQ(response["error_code"], "MALFORMED_JSON");
  EXPECT_EQ(response["field"], "data.n");
  EXPECT_TRUE(client->request({{"message_type", "ping"}, {"request_id", "after"}})["success"].get<bool>());
}

TEST(LogEscaping, ControlCharactersAndInvalidUtf8AreEscaped) {
  EXPECT_EQ(host::escape_for_log("plain ascii, ünïcödé, 日本"), "plain ascii, ünïcödé, 日本");
  EXPECT_FALSE(host::needs_log_escape("plain ascii, ünïcödé, 日本"));
  EXPECT_EQ(host::escape_for_log("a\nb\rc\td"), "a\\nb\\rc\\td");
  EXPECT_EQ(host::escape_for_log(std::string("nul\0x", 5)), "nul\\x00x");
  EXPECT_EQ(host::escape_for_log("esc\x1b[31mred\x7f"), "esc\\x1B[31mred\\x7F");
  EXPECT_EQ(host::escape_for_log("back\\slash"), "back\\\\slash");
  EXPECT_EQ(host::escape_for_log("bad \xff\xfe end"), "bad \\xFF\\xFE end");
  EXPECT_EQ(host::escape_for_log("overlong \xc0\xaf"), "overlong \\xC0\\xAF");
  EXPECT_EQ(host::escape_for_log("surrogate \xed\xa0\x80"), "surrogate \\xED\\xA0\\x80");
  EXPECT_EQ(host::escape_for_log("cut \xe6\x97"), "cut \\xE6\\x97");
  EXPECT_EQ(host::escape_for_log("sep \xe2\x80\xa8 nel \xc2\x85"), "sep \\u2028 nel \\u0085");
  for (int c = 0; c < 256; ++c) {
    const std::string escaped = host::escape_for_log(std::string(1, static_cast<char>(c)));
    for (unsigned char e : escaped) EXPECT_TRUE(e >= 0x20 && e < 0x7F) << c;
  }
}

TEST(SavePath, OneCheckRefusesControlCharactersAndEscapes) {
  for (const std::string& bad :
       {std::string("x\0.png", 6), std::string("a\nb.png"), std::string("tab\t.png"), std::string("del\x7f.png"),
        std::string("dir\\x.png"), std::string("../x.png"), std::string("/abs.png"), std::string("bad\xff.png"),
        std::string("c1\xc2\x85.png")}) {
    try {
      host::check_save_path(bad, "data.output.save_path");
      ADD_FAILURE() << "accepted " << host::escape_for_log(bad);
    } catch (const sdk::Error& e) {
      EXPECT_EQ(e.code(), sdk::ErrorCode::ValidationError);
      EXPECT_EQ(e.field(), "data.output.save_path");
    }
    // The parser refuses the same paths: dry_run and a real run agree.
    const auto e = request_failure({{"prompt", "p"}, {"dry_run", true}, {"output", {{"save_path", bad}}}});
    EXPECT_EQ(e.field(), "data.output.save_path") << host::escape_for_log(bad);
  }
  EXPECT_NO_THROW(host::check_save_path("ok/näme 1.png", "f"));
  EXPECT_NO_THROW(host::check_save_path("", "f"));
}

TEST(Messages, StateTheConfiguredRangeAndTheExpectedType) {
  host::Limits limits;
  limits.min_width = 128;
  limits.max_width = 2048;
  auto e = request_failure({{"prompt", "p"}, {"dimensions", {{"width", -64}}}}, limits);
  EXPECT_EQ(e.field(), "data.dimensions.width");
  EXPECT_NE(std::string(e.what()).find("[128, 2048]"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("-64"), std::string::npos) << e.what();

  e = request_failure({{"prompt", "p"}, {"hyperparameters", {{"seed", 18446744073709551616.0}}}});
  EXPECT_EQ(e.field(), "data.hyperparameters.seed");
  EXPECT_NE(std::string(e.what()).find("must be in [-1, 9223372036854775807]"), std::string::npos) << e.what();
  e = request_failure(json::parse(R"({"prompt": "p", "hyperparameters": {"seed": 18446744073709551615}})"));
  EXPECT_NE(std::string(e.what()).find("must be in [-1, "), std::string::npos) << e.what();
  e = request_failure({{"prompt", "p"}, {"hyperparameters", {{"seed", "12"}}}});
  EXPECT_NE(std::string(e.what()).find("must be an integer (got a string)"), std::string::npos) << e.what();
  e = request_failure({{"prompt", 5}});
  EXPECT_NE(std::string(e.what()).find("must be a string (got an integer)"), std::string::npos) << e.what();
  e = request_failure({{"prompt", "p"}, {"hyperparameters", {{"guidance_scale", 99}}}});
  EXPECT_NE(std::string(e.what()).find("(got 99)"), std::string::npos) << e.what();

  // Envelope: a request_id of the wrong type says so, not "is required".
  const auto id = envelope_failure(R"({"message_type":"ping","request_id":[1]})");
  EXPECT_EQ(id.field(), "request_id");
  EXPECT_NE(std::string(id.what()).find("must be a string or an integer, got array"), std::string::npos) << id.what();
}

TEST(Messages, CancelAndModelNamesOfTheWrongTypeSaySo) {
  HostFixture fixture;
  auto client = fixture.client();
  json response = client->request({{"message_type", "cancel"}, {"request_id", "c1"}, {"data", {{"request_id", true}}}});
  EXPECT_EQ(response["field"], "data.request_id");
  EXPECT_NE(response["error"].get<std::string>().find("must be a string"), std::string::npos) << response.dump();
  response = client->request({{"message_type", "cancel"}, {"request_id", "c2"}, {"data", json::object()}});
  EXPECT_NE(response["error"].get<std::string>().find("is required"), std::string::npos) << response.dump();
  response = client->request({{"message_type", "load_model"}, {"request_id", "m1"}, {"data", {{"name", 12}}}});
  EXPECT_EQ(response["field"], "data.name");
  EXPECT_NE(response["error"].get<std::string>().find("must be a string"), std::string::npos) << response.dump();
  response = client->request({{"message_type", "unload_model"}, {"request_id", "m2"}, {"data", json::object()}});
  EXPECT_NE(response["error"].get<std::string>().find("is required"), std::string::npos) << response.dump();
}

// Found by fuzz_line_framer: a line of exactly limit + 1 bytes without a '\r' was delivered
// (one byte is buffered for a "\r\n" ending). It is oversized; with the '\r' it is not.
TEST(Framer, ALineOfLimitPlusOneBytesIsOversized) {
  std::vector<std::string> lines;
  std::vector<std::size_t> oversized;
  host::transport::LineFramer framer(
      10, [&](std::string&& line) { lines.push_back(line); }, [&](std::size_t n) { oversized.push_back(n); });
  framer.feed("0123456789A\n0123456789\r\n0123456789\nok\n");
  EXPECT_EQ(lines, (std::vector<std::string>{"0123456789", "0123456789", "ok"}));
  EXPECT_EQ(oversized, std::vector<std::size_t>{11});
}

}  // namespace
}  // namespace sdxlhost::test_support
