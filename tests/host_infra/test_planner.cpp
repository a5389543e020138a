// Planner: stage selection and ordering, unwritten slots, disabled features (error and warn),
// and run_plan over the real test_generate plugin (pixels by seed, error mapping, cancel).
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "../plugins/test_pattern.hpp"
#include "error_capture.hpp"
#include "host/graph/plan_runner.hpp"
#include "host/graph/planner.hpp"
#include "host/plugins/plugin_manager.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/registries.hpp"

using namespace sdxlhost;
using host::OnDisabledFeature;
using sdk::ErrorCode;
using test_support::code_of;

namespace {

/// A stage defined by data, for planner tests.
class FakeStage : public sdk::Stage {
 public:
  FakeStage(std::string name, int order, std::vector<std::string> reads,
            std::vector<std::string> writes, bool only_with_upscale = false)
      : name_(std::move(name)), order_(order), reads_(std::move(reads)), writes_(std::move(writes)),
        only_with_upscale_(only_with_upscale) {}
  std::string name() const override { return name_; }
  std::vector<std::string> reads() const override { return reads_; }
  std::vector<std::string> writes() const override { return writes_; }
  int order() const override { return order_; }
  std::string feature() const override { return only_with_upscale_ ? "upscaler" : "sdxl"; }
  bool applies(const sdk::GenerationRequest& r) const override {
    return !only_with_upscale_ || !r.output.upscale.is_null();
  }
  void run(sdk::Context& context) const override {
    for (const auto& slot : writes_) context.set(slot, name_);
  }

 private:
  std::string name_;
  int order_;
  std::vector<std::string> reads_, writes_;
  bool only_with_upscale_;
};

std::shared_ptr<host::PluginSet> make_set(std::vector<std::shared_ptr<sdk::Stage>> stages,
                                          std::vector<host::PluginRecord> records = {}) {
  auto registries = std::make_unique<sdk::Registries>();
  for (auto& stage : stages) registries->add_stage(stage);
  return std::make_shared<host::PluginSet>(std::move(records), std::move(registries));
}

std::vector<std::shared_ptr<sdk::Stage>> sdxl_like_stages() {
  // Registered out of order on purpose.
  return {std::make_shared<FakeStage>("upscale", 600, std::vector<std::string>{"images"},
                                      std::vector<std::string>{"images"}, true),
          std::make_shared<FakeStage>("vae_decode", 500, std::vector<std::string>{"latents"},
                                      std::vector<std::string>{"images"}),
          std::make_shared<FakeStage>("denoise", 300, std::vector<std::string>{"conditioning", "latents"},
                                      std::vector<std::string>{"latents"}),
          std::make_shared<FakeStage>("prepare_latents", 200, std::vector<std::string>{},
                                      std::vector<std::string>{"latents"}),
          std::make_shared<FakeStage>("encode_prompt", 100, std::vector<std::string>{},
                                      std::vector<std::string>{"conditioning"})};
}

}  // namespace

TEST(Planner, OrdersApplicableStagesBySlotsThenOrder) {
  auto set = make_set(sdxl_like_stages());
  sdk::GenerationRequest request;
  std::vector<std::string> warnings;
  auto plan = host::plan_request(*set, request, OnDisabledFeature::Error, warnings);
  EXPECT_EQ(plan.names(), (std::vector<std::string>{"encode_prompt", "prepare_latents", "denoise",
                                                    "vae_decode"}));
  request.output.upscale = {{"scale", 2}};
  plan = host::plan_request(*set, request, OnDisabledFeature::Error, warnings);
  EXPECT_EQ(plan.names().back(), "upscale");
  EXPECT_TRUE(warnings.empty());
}

TEST(Planner, SlotDependenciesOverrideAMisleadingOrderHint) {
  auto stages = sdxl_like_stages();
  // Claims to run first, but consumes what vae_decode produces.
  stages.push_back(std::make_shared<FakeStage>("thumbnail", 10, std::vector<std::string>{"images"},
                                               std::vector<std::string>{"thumbnail"}));
  auto set = make_set(stages);
  std::vector<std::string> warnings;
  auto names = host::plan_request(*set, sdk::GenerationRequest{}, OnDisabledFeature::Error, warnings).names();
  auto pos = [&](const std::string& n) { return std::find(names.begin(), names.end(), n) - names.begin(); };
  EXPECT_GT(pos("thumbnail"), pos("vae_decode"));
}

TEST(Planner, AReadSlotNoEarlierStageWritesIsAnErrorNamingStageAndSlot) {
  auto stages = sdxl_like_stages();
  stages.push_back(std::make_shared<FakeStage>("controlnet_apply", 250,
                                               std::vector<std::string>{"control_hint"},
                                               std::vector<std::string>{"residuals"}));
  auto set = make_set(stages);
  std::vector<std::string> warnings;
  std::string message;
  EXPECT_EQ(code_of([&] { host::plan_request(*set, {}, OnDisabledFeature::Error, warnings); }, &message),
            ErrorCode::PluginError);
  EXPECT_NE(message.find("controlnet_apply"), std::string::npos) << message;
  EXPECT_NE(message.find("control_hint"), std::string::npos) << message;
}

TEST(Planner, CyclicSlotDependenciesAreAnError) {
  auto set = make_set({std::make_shared<FakeStage>("a", 1, std::vector<std::string>{"y"},
                                                   std::vector<std::string>{"x", "images"}),
                       std::make_shared<FakeStage>("b", 2, std::vector<std::string>{"x"},
                                                   std::vector<std::string>{"y"})});
  std::vector<std::string> warnings;
  std::string message;
  EXPECT_EQ(code_of([&] { host::plan_request(*set, {}, OnDisabledFeature::Error, warnings); }, &message),
            ErrorCode::PluginError);
  EXPECT_NE(message.find("cycle"), std::string::npos) << message;
}

TEST(Planner, DisabledFeatureIsAnErrorNamingFeatureAndConfigKey) {
  host::PluginRecord upscaler_record;
  upscaler_record.name = "test_upscale";
  upscaler_record.state = "disabled";
  upscaler_record.provides = {"upscaler"};
  auto stages = sdxl_like_stages();
  stages.erase(stages.begin());  // no upscale stage: its plugin is disabled
  auto set = make_set(stages, {upscaler_record});
  std::vector<std::string> warnings;

  sdk::GenerationRequest lora_request;
  lora_request.lora_enabled = true;
  lora_request.loras = {{"style", 0.8}};
  std::string message, field;
  EXPECT_EQ(code_of([&] { host::plan_request(*set, lora_request, OnDisabledFeature::Error, warnings); },
                    &message, &field),
            ErrorCode::FeatureDisabled);
  EXPECT_NE(message.find("'lora'"), std::string::npos) << message;
  EXPECT_NE(message.find("plugins.enabled.lora"), std::string::npos) << message;
  EXPECT_EQ(field, "data.lora.enabled");

  sdk::GenerationRequest upscale_request;
  upscale_request.output.upscale = {{"scale", 2}};
  EXPECT_EQ(code_of([&] { host::plan_request(*set, upscale_request, OnDisabledFeature::Error, warnings); },
                    &message, &field),
            ErrorCode::FeatureDisabled);
  EXPECT_NE(message.find("plugins.enabled.test_upscale"), std::string::npos) << message;
  EXPECT_EQ(field, "data.output.upscale");

  sdk::GenerationRequest refiner_request;
  refiner_request.models.refiner = "sdxl_refiner";
  EXPECT_EQ(code_of([&] { host::plan_request(*set, refiner_request, OnDisabledFeature::Error, warnings); }),
            ErrorCode::FeatureDisabled);
  EXPECT_TRUE(warnings.empty());
}

TEST(Planner, AFeatureAPluginDeclaresIsPlannedLikeTheSchemaOnes) {
  // The host knows no feature: a disabled plugin's info() declares {feature, request field}.
  host::PluginRecord record;
  record.name = "test_sketch";
  record.state = "disabled";
  record.request_features = {{"sketch", "data.sketch"}};
  auto set = make_set(sdxl_like_stages(), {record});
  sdk::GenerationRequest request;
  request.data = {{"sketch", {{"enabled", false}, {"strokes", 3}}}};
  std::vector<std::string> warnings;
  EXPECT_NO_THROW(host::plan_request(*set, request, OnDisabledFeature::Error, warnings));
  EXPECT_TRUE(host::required_features(*set, request).empty());

  request.data["sketch"]["enabled"] = true;
  EXPECT_EQ(host::required_features(*set, request), std::vector<std::string>{"sketch"});
  std::string message, field;
  EXPECT_EQ(code_of([&] { host::plan_request(*set, request, OnDisabledFeature::Error, warnings); }, &message,
                    &field),
            ErrorCode::FeatureDisabled);
  EXPECT_EQ(field, "data.sketch");
  EXPECT_NE(message.find("'sketch'"), std::string::npos) << message;
  EXPECT_NE(message.find("plugins.enabled.test_sketch"), std::string::npos) << message;
  host::plan_request(*set, request, OnDisabledFeature::Warn, warnings);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("data.sketch ignored"), std::string::npos) << warnings[0];
}

TEST(Planner, WarnModeRunsWithoutTheFeatureAndSaysSo) {
  auto set = make_set(sdxl_like_stages());
  sdk::GenerationRequest request;
  request.lora_enabled = true;
  request.controlnet = {{"enabled", true}, {"models", {{{"name", "canny"}}}}};
  std::vector<std::string> warnings;
  auto plan = host::plan_request(*set, request, OnDisabledFeature::Warn, warnings);
  EXPECT_EQ(plan.names().size(), 4u);
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_NE(warnings[0].find("lora"), std::string::npos);
  EXPECT_NE(warnings[0].find("plugins.enabled.lora"), std::string::npos);
  EXPECT_NE(warnings[1].find("controlnet"), std::string::npos);
}

TEST(Planner, RequiredFeaturesFollowTheRequest) {
  sdk::GenerationRequest request;
  EXPECT_TRUE(host::required_features(request).empty());
  request.controlnet = {{"enabled", false}};
  request.output.upscale = false;
  EXPECT_TRUE(host::required_features(request).empty());
  request.lora_enabled = true;
  request.models.refiner = "r";
  request.output.upscale = {{"scale", 4}};
  EXPECT_EQ(host::required_features(request),
            (std::vector<std::string>{"lora", "refiner", "upscaler"}));
}

TEST(Planner, NoStageWritingImagesIsFeatureDisabledSdxl) {
  // An upscaler alone transforms images but does not generate them.
  auto set = make_set({std::make_shared<FakeStage>("upscale", 600, std::vector<std::string>{"images"},
                                                   std::vector<std::string>{"images"})});
  std::vector<std::string> warnings;
  std::string message;
  for (auto mode : {OnDisabledFeature::Error, OnDisabledFeature::Warn}) {
    EXPECT_EQ(code_of([&] { host::plan_request(*set, {}, mode, warnings); }, &message),
              ErrorCode::FeatureDisabled);
    EXPECT_NE(message.find("'sdxl'"), std::string::npos) << message;
    EXPECT_NE(message.find("plugins.enabled.sdxl"), std::string::npos) << message;
  }
}

// ---- run_plan over the real test plugins ----------------------------------------------------

class RunPlan : public ::testing::Test {
 protected:
  void SetUp() override {
    manager_ = std::make_unique<host::PluginManager>(
        host::PluginSettings{SDXLHOST_TEST_PLUGIN_DIR,
                             {{"test_bad_abi", false}, {"test_no_symbol", false}, {"test_throws_init", false}},
                             true, nlohmann::json::object()});
    manager_->load();
    request_ = std::make_shared<sdk::GenerationRequest>();
    request_->width = 24;
    request_->height = 16;
    request_->batch_size = 3;
    request_->hyperparameters.seed = 1234;
    request_->hyperparameters.num_inference_steps = 4;
    request_->data = {{"test", {{"step_ms", 1}}}};
  }

  /// Plans and runs; returns the images.
  std::vector<sdk::Image> run(sdk::ContextServices services = {}) {
    std::vector<std::string> warnings;
    auto plan = host::plan_request(*manager_->current(), *request_, OnDisabledFeature::Error, warnings);
    sdk::Context context(request_, std::move(services));
    host::run_plan(plan, context);
    auto images = context.get<std::vector<sdk::Image>>("images");
    context.erase("images");
    return images;
  }

  std::unique_ptr<host::PluginManager> manager_;
  std::shared_ptr<sdk::GenerationRequest> request_;
};

TEST_F(RunPlan, TestGenerateDrawsOneImagePerSeedWithProgress) {
  int progress_calls = 0;
  std::vector<std::string> started;  // run_plan reports each stage's start as (stage, 0, 0)
  sdk::ContextServices services;
  services.progress = [&](std::string_view stage, int step, int total) {
    if (step == 0 && total == 0) return started.push_back(std::string(stage));
    EXPECT_EQ(stage, "test_denoise");
    EXPECT_EQ(total, 4);
    EXPECT_EQ(step, ++progress_calls);
  };
  auto images = run(services);
  EXPECT_EQ(progress_calls, 4);
  EXPECT_EQ(started, (std::vector<std::string>{"test_prepare", "test_denoise"}));
  ASSERT_EQ(images.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    const auto& image = images[i];
    ASSERT_EQ(image.width, 24);
    ASSERT_EQ(image.height, 16);
    EXPECT_EQ(image.metadata["seed"], 1234 + i);
    EXPECT_EQ(image.pixels[(5 * 24 + 7) * 3 + 2], test_plugins::test_pixel(1234 + i, 7, 5, 2));
  }
  EXPECT_NE(images[0].pixels, images[1].pixels);
}

TEST_F(RunPlan, UpscaleStageJoinsThePlanWhenAsked) {
  request_->output.upscale = {{"scale", 2}};
  request_->batch_size = 1;
  std::vector<std::string> warnings;
  auto plan = host::plan_request(*manager_->current(), *request_, OnDisabledFeature::Error, warnings);
  EXPECT_EQ(plan.names(), (std::vector<std::string>{"test_prepare", "test_denoise", "test_upscale"}));
  auto images = run();
  EXPECT_EQ(images[0].width, 48);
  EXPECT_EQ(images[0].height, 32);
}

TEST_F(RunPlan, ExceptionsBecomeErrorsNamingTheStage) {
  std::string message;
  request_->data["test"]["throw"] = "error";
  EXPECT_EQ(code_of([&] { run(); }, &message), ErrorCode::PluginError);
  request_->data["test"]["throw"] = "std";
  EXPECT_EQ(code_of([&] { run(); }, &message), ErrorCode::InternalError);
  EXPECT_NE(message.find("test_denoise"), std::string::npos) << message;
  request_->data["test"]["throw"] = "int";
  EXPECT_EQ(code_of([&] { run(); }, &message), ErrorCode::InternalError);
  EXPECT_NE(message.find("test_denoise"), std::string::npos) << message;
}

TEST_F(RunPlan, CancellationStopsBetweenSteps) {
  request_->hyperparameters.num_inference_steps = 1000;
  std::vector<std::string> warnings;
  auto plan = host::plan_request(*manager_->current(), *request_, OnDisabledFeature::Error, warnings);
  sdk::ContextServices services;
  std::shared_ptr<sdk::CancellationToken> token = std::make_shared<sdk::CancellationToken>();
  services.progress = [&](std::string_view, int step, int) {
    if (step == 3) token->cancel();
  };
  sdk::Context context(request_, services, token);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(code_of([&] { host::run_plan(plan, context); }), ErrorCode::Cancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  EXPECT_FALSE(context.has("images"));
}
