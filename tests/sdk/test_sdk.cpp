// The SDK's host-independent pieces: errors, context slots, cancellation, registries.
#include <gtest/gtest.h>

#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "sdxlhost/sdk/request.hpp"

using namespace sdxlhost::sdk;

TEST(Error, CodesRoundTripAndFieldPrefix) {
  for (ErrorCode code : {ErrorCode::ValidationError, ErrorCode::QueueFull, ErrorCode::Cancelled,
                         ErrorCode::InternalError, ErrorCode::FeatureDisabled}) {
    ErrorCode back{};
    ASSERT_TRUE(error_code_from_string(to_string(code), back));
    EXPECT_EQ(back, code);
  }
  ErrorCode unused{};
  EXPECT_FALSE(error_code_from_string("NOPE", unused));
  Error e(ErrorCode::ValidationError, "must be a multiple of 8", "data.dimensions.width");
  EXPECT_STREQ(e.what(), "data.dimensions.width: must be a multiple of 8");
  EXPECT_EQ(e.field(), "data.dimensions.width");
  EXPECT_EQ(e.message(), "must be a multiple of 8");
}

TEST(Context, SlotsAreTypedAndMissingSlotsAreErrors) {
  Context ctx(std::make_shared<GenerationRequest>(), ContextServices{});
  ctx.set("n", 42);
  EXPECT_TRUE(ctx.has("n"));
  EXPECT_EQ(ctx.get<int>("n"), 42);
  EXPECT_THROW(ctx.get<double>("n"), Error);
  EXPECT_THROW(ctx.get<int>("absent"), Error);
  ctx.erase("n");
  EXPECT_FALSE(ctx.has("n"));
}

TEST(Context, CancellationAndDeadline) {
  ContextServices services;
  Context ctx(std::make_shared<GenerationRequest>(), services);
  EXPECT_NO_THROW(ctx.throw_if_cancelled());
  ctx.token()->cancel();
  try {
    ctx.throw_if_cancelled();
    FAIL() << "expected Cancelled";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Cancelled);
  }
  services.deadline = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  Context late(std::make_shared<GenerationRequest>(), services);
  try {
    late.throw_if_cancelled();
    FAIL() << "expected Timeout";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::Timeout);
  }
}

TEST(Registries, UnknownSchedulerListsKnownNames) {
  Registries registries;
  registries.add_scheduler("EulerDiscreteScheduler", [](const nlohmann::json&) { return nullptr; });
  registries.add_scheduler_alias("Euler", {"EulerDiscreteScheduler", nlohmann::json::object()});
  EXPECT_EQ(registries.resolve_scheduler("euler").class_name, "EulerDiscreteScheduler");
  try {
    registries.resolve_scheduler("Nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ValidationError);
    EXPECT_EQ(e.field(), "data.scheduler");
    EXPECT_NE(std::string(e.what()).find("EulerDiscreteScheduler"), std::string::npos);
  }
}
