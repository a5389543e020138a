// LoRA through patched copies (label `lora`): what the pipeline does for a job with LoRAs. An
// nn::WeightOverlay over a shared model's table plus `with_weights` gives the merged-weight
// goldens (atol 1e-6) and exactly the weights patching in place gives, shares every unchanged
// tensor and leaves the shared model as loaded; pipeline::PatchedSets keeps copies by key (LRU,
// one build per key under concurrency, failures not kept).
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/goldens.hpp"
#include "sdxlhost/nn/lora.hpp"
#include "sdxlhost/nn/patchable_weights.hpp"
#include "sdxlhost/pipeline/patched_sets.hpp"
#include "sdxlhost/pipeline/sdxl_models.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace {

using sdxlhost::nn::LoraNetwork;
using sdxlhost::nn::PatchableWeights;
using sdxlhost::nn::TensorMap;
using sdxlhost::nn::WeightOverlay;
using sdxlhost::pipeline::PatchedModels;
using sdxlhost::pipeline::PatchedSets;
using sdxlhost::pipeline::SdxlModels;
using ::sdxlhost::test_support::golden;
using ::sdxlhost::test_support::load_tensors;
using ::sdxlhost::test_support::max_abs_diff;

constexpr double kAtol = 1e-6;  // goldens/lora/README: merged weights in float32
const char* const kComponents[] = {"unet", "text_encoder", "text_encoder_2"};

std::shared_ptr<SdxlModels> tiny_pipeline() {
  return SdxlModels::load(golden("models/tiny_sdxl"), sdxlhost::pipeline::PipelineSettings{});
}

PatchableWeights& table(SdxlModels& models, const std::string& component) {
  if (component == "unet") return models.unet->patchable_weights();
  return component == "text_encoder" ? models.text_encoder->patchable_weights()
                                     : models.text_encoder_2->patchable_weights();
}

LoraNetwork parse(const std::string& file) {
  return sdxlhost::nn::parse_lora(load_tensors(golden("lora/" + file)), "data.lora.models[0].name");
}

/// Every weight of every component, as tensor handles (to check nothing was replaced).
std::map<std::string, at::Tensor> handles(SdxlModels& models) {
  std::map<std::string, at::Tensor> out;
  for (const char* c : kComponents)
    for (const auto& key : table(models, c).keys()) out[std::string(c) + "." + key] = table(models, c).weight(key);
  return out;
}

/// The patched copy of one component for `files` (name, weight), through an overlay.
struct Copies {
  std::shared_ptr<sdxlhost::nn::UNet2DConditionModel> unet;
  std::shared_ptr<sdxlhost::nn::ClipTextModel> text_encoder, text_encoder_2;
  std::map<std::string, std::map<std::string, at::Tensor>> changes;  // component -> key -> tensor

  const PatchableWeights& table(const std::string& c) const {
    if (c == "unet") return unet->patchable_weights();
    return c == "text_encoder" ? text_encoder->patchable_weights() : text_encoder_2->patchable_weights();
  }
};

Copies patched_copies(SdxlModels& models, const std::vector<std::pair<std::string, double>>& files) {
  Copies out;
  for (const char* c : kComponents) {
    WeightOverlay overlay(table(models, c));
    for (const auto& [file, weight] : files) {
      const auto result = sdxlhost::nn::apply_lora(parse(file), weight, overlay, "data.lora.models[0].name");
      EXPECT_EQ(result.matched, result.modules) << c;
    }
    out.changes[c] = overlay.changes();
    EXPECT_GT(overlay.bytes(), 0u) << c;
  }
  out.unet = models.unet->with_weights(out.changes["unet"]);
  out.text_encoder = models.text_encoder->with_weights(out.changes["text_encoder"]);
  out.text_encoder_2 = models.text_encoder_2->with_weights(out.changes["text_encoder_2"]);
  return out;
}

void expect_merged(const std::vector<std::pair<std::string, double>>& files, const std::string& merged_file,
                   const std::string& suffix) {
  auto models = tiny_pipeline();
  const auto before = handles(*models);
  const Copies copies = patched_copies(*models, files);
  const TensorMap merged = load_tensors(golden("lora/" + merged_file));
  std::size_t compared = 0;
  for (const auto& [key, expected] : merged) {
    if (key.size() <= suffix.size() || key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    const std::string path = key.substr(0, key.size() - suffix.size());
    const auto dot = path.find('.');
    const std::string component = path.substr(0, dot), weight = path.substr(dot + 1) + ".weight";
    EXPECT_LE(max_abs_diff(copies.table(component).weight(weight), expected), kAtol) << path;
    ++compared;
  }
  EXPECT_GT(compared, 0u) << merged_file;
  // The shared model is as loaded: every weight is the very tensor it was.
  const auto after = handles(*models);
  for (const auto& [key, tensor] : before) EXPECT_TRUE(after.at(key).is_same(tensor)) << key;
  // The copies share every weight the LoRA left alone.
  for (const char* c : kComponents) {
    for (const auto& key : table(*models, c).keys()) {
      const bool changed = copies.changes.at(c).count(key) != 0;
      EXPECT_EQ(copies.table(c).weight(key).is_same(table(*models, c).weight(key)), !changed) << c << "." << key;
    }
  }
}

TEST(PatchedCopies, KohyaMatchesTheMergedGoldenAndTheSharedModelIsUntouched) {
  expect_merged({{"kohya_lora.safetensors", 0.8}}, "kohya_lora_merged_weights.safetensors", ".merged_w0.8");
}

TEST(PatchedCopies, DiffusersMatchesTheMergedGolden) {
  expect_merged({{"diffusers_lora.safetensors", 0.8}}, "diffusers_lora_merged_weights.safetensors", ".merged_w0.8");
}

TEST(PatchedCopies, TwoAdaptersAreSummedAsInPlace) {
  expect_merged({{"kohya_lora.safetensors", 0.5}, {"diffusers_lora.safetensors", 1.0}},
                "two_loras_merged_weights.safetensors", ".merged");
}

// The new lifecycle changes no number: a copy's weights are bit for bit what patching in place
// (the old lifecycle, PatchableWeights::add_delta) gave.
TEST(PatchedCopies, CopiesHoldExactlyTheWeightsPatchingInPlaceGives) {
  auto models = tiny_pipeline();
  const std::vector<std::pair<std::string, double>> files{{"kohya_lora.safetensors", 0.5},
                                                           {"diffusers_lora.safetensors", -1.3}};
  const Copies copies = patched_copies(*models, files);
  for (const char* c : kComponents) {
    for (const auto& [file, weight] : files) sdxlhost::nn::apply_lora(parse(file), weight, table(*models, c), "f");
    const auto patched = table(*models, c).patched_keys();
    ASSERT_EQ(patched.size(), copies.changes.at(c).size()) << c;
    for (const auto& key : patched)
      EXPECT_TRUE(at::equal(table(*models, c).weight(key), copies.table(c).weight(key))) << c << "." << key;
    table(*models, c).restore();
  }
}

TEST(PatchedCopies, WithWeightsRefusesUnknownKeysAndMisfitsAndCopiesForwardTheSame) {
  auto models = tiny_pipeline();
  const std::string key = models->unet->keys().front();
  const at::Tensor weight = models->unet->weight(key);
  EXPECT_THROW(models->unet->with_weights({{"nope.weight", weight}}), sdxlhost::sdk::Error);
  EXPECT_THROW(models->unet->with_weights({{key, at::zeros({3})}}), sdxlhost::sdk::Error);
  EXPECT_THROW(models->unet->with_weights({{key, weight.to(at::kDouble)}}), sdxlhost::sdk::Error);
  EXPECT_THROW(models->text_encoder->with_weights({{"nope.weight", weight}}), sdxlhost::sdk::Error);
  EXPECT_EQ(models->text_encoder->patchable_weights().component(), "text_encoder");
  EXPECT_EQ(models->text_encoder_2->patchable_weights().component(), "text_encoder_2");
  // A copy without changes computes exactly what the model does.
  const auto ids = at::randint(0, models->text_encoder_2->config().vocab_size, {1, 7}, at::kLong);
  const auto copy = models->text_encoder_2->with_weights({});
  EXPECT_TRUE(at::equal(copy->forward(ids).last_hidden_state, models->text_encoder_2->forward(ids).last_hidden_state));
}

// ---- PatchedSets: the pipeline's cache of copies --------------------------------------------

PatchedModels made(std::uint64_t bytes) { return {std::make_shared<SdxlModels>(), bytes}; }

TEST(PatchedSets, KeepsTheMostRecentlyUsedCopiesUpToTheLimit) {
  PatchedSets sets;
  int builds = 0;
  auto build = [&] { return ++builds, made(10); };
  bool from_cache = true;
  const auto a = sets.get("a", 2, build, &from_cache);
  EXPECT_FALSE(from_cache);
  EXPECT_EQ(sets.get("a", 2, build, &from_cache).models, a.models);
  EXPECT_TRUE(from_cache);
  sets.get("b", 2, build);
  sets.get("a", 2, build);  // a is the most recent again
  sets.get("c", 2, build);  // drops b
  EXPECT_EQ(builds, 3);
  EXPECT_EQ(sets.size(), 2u);
  EXPECT_EQ(sets.bytes(), 20u);
  sets.get("a", 2, build);
  EXPECT_EQ(builds, 3);
  sets.get("b", 2, build);
  EXPECT_EQ(builds, 4);
  // limit 0: nothing kept, every call builds
  PatchedSets none;
  none.get("a", 0, build);
  none.get("a", 0, build);
  EXPECT_EQ(builds, 6);
  EXPECT_EQ(none.size(), 0u);
  sets.clear();
  EXPECT_EQ(sets.bytes(), 0u);
}

TEST(PatchedSets, TwoJobsAskingForOneKeyBuildItOnceAndDifferentKeysBuildAtOnce) {
  PatchedSets sets;
  std::atomic<int> builds{0}, building{0}, most_at_once{0};
  auto slow_build = [&] {
    ++builds;
    const int now = ++building;
    int seen = most_at_once.load();
    while (now > seen && !most_at_once.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    --building;
    return made(1);
  };
  std::vector<PatchedModels> same(2);
  {
    std::thread first([&] { same[0] = sets.get("k", 4, slow_build); });
    std::thread second([&] { same[1] = sets.get("k", 4, slow_build); });
    first.join();
    second.join();
  }
  EXPECT_EQ(builds, 1);
  EXPECT_EQ(same[0].models, same[1].models);
  {
    std::thread first([&] { sets.get("x", 4, slow_build); });
    std::thread second([&] { sets.get("y", 4, slow_build); });
    first.join();
    second.join();
  }
  EXPECT_EQ(builds, 3);
  EXPECT_EQ(most_at_once, 2) << "copies of different keys were built one after the other";
}

TEST(PatchedSets, AFailedBuildIsNotKept) {
  PatchedSets sets;
  auto failing = []() -> PatchedModels {
    throw sdxlhost::sdk::Error(sdxlhost::sdk::ErrorCode::ValidationError, "bad LoRA", "data.lora.models[0].name");
  };
  EXPECT_THROW(sets.get("k", 2, failing), sdxlhost::sdk::Error);
  EXPECT_EQ(sets.size(), 0u);
  int builds = 0;
  sets.get("k", 2, [&] { return ++builds, made(1); });
  EXPECT_EQ(builds, 1);
  // A job waiting for a build that fails (its job cancelled) builds the copy itself.
  PatchedSets other;
  std::atomic<bool> started{false};
  std::thread cancelled([&] {
    EXPECT_THROW(other.get("k", 2,
                           [&]() -> PatchedModels {
                             started = true;
                             std::this_thread::sleep_for(std::chrono::milliseconds(100));
                             throw sdxlhost::sdk::Error(sdxlhost::sdk::ErrorCode::Cancelled, "cancelled");
                           }),
                 sdxlhost::sdk::Error);
  });
  while (!started) std::this_thread::yield();
  const auto got = other.get("k", 2, [&] { return ++builds, made(2); });
  cancelled.join();
  EXPECT_EQ(builds, 2);
  EXPECT_EQ(got.bytes, 2u);
}

}  // namespace
