// KeyMap: every full-size SDXL key (goldens/keys) converted both ways on meta tensors, the
// reference mapping reproduced key by key, and real tensors round-tripped through both layouts.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "nn_test_util.hpp"
#include "sdxlhost/nn/key_map.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/sdk/error.hpp"

using namespace sdxlhost::nn;
using sdxlhost::test_support::meta_tensors;
using sdxlhost::test_support::read_golden_json;

namespace {

/// name -> shape of a state dict.
std::map<std::string, std::vector<int64_t>> shapes_of(const TensorMap& map) {
  std::map<std::string, std::vector<int64_t>> out;
  for (const auto& [key, tensor] : map) out[key] = tensor.sizes().vec();
  return out;
}

std::map<std::string, std::vector<int64_t>> shapes_of(const nlohmann::json& list) {
  std::map<std::string, std::vector<int64_t>> out;
  for (const auto& [key, shape] : list.items()) out[key] = shape.get<std::vector<int64_t>>();
  return out;
}

/// Reports the first differences between two key->shape lists.
void expect_same_keys(const std::map<std::string, std::vector<int64_t>>& got,
                      const std::map<std::string, std::vector<int64_t>>& want, const std::string& what) {
  int reported = 0;
  for (const auto& [key, shape] : want) {
    auto it = got.find(key);
    if (it == got.end()) {
      if (reported++ < 5) ADD_FAILURE() << what << ": missing " << key;
    } else if (it->second != shape) {
      if (reported++ < 5) ADD_FAILURE() << what << ": shape of " << key;
    }
  }
  for (const auto& [key, shape] : got)
    if (want.count(key) == 0 && reported++ < 5) ADD_FAILURE() << what << ": unexpected " << key;
  EXPECT_EQ(got.size(), want.size()) << what;
}

std::set<std::string> ldm_only_keys(const nlohmann::json& mapping) {
  std::set<std::string> out;
  for (const auto& item : mapping["ldm_only"]) out.insert(item["ldm"].get<std::string>());
  return out;
}

}  // namespace

TEST(KeyMap, FullSizeBaseSingleFileSplitsIntoExactlyTheDiffusersKeys) {
  const TensorMap ldm = meta_tensors(read_golden_json("keys/sdxl_base_ldm.json"));
  ASSERT_EQ(ldm.size(), 2515u);
  const SplitCheckpoint split = ldm_checkpoint_to_diffusers(ldm);
  ASSERT_EQ(split.components.size(), 4u);
  expect_same_keys(shapes_of(split.components.at(Component::Unet)),
                   shapes_of(read_golden_json("keys/sdxl_base_diffusers_unet.json")), "unet");
  expect_same_keys(shapes_of(split.components.at(Component::Vae)),
                   shapes_of(read_golden_json("keys/sdxl_base_diffusers_vae.json")), "vae");
  expect_same_keys(shapes_of(split.components.at(Component::TextEncoder)),
                   shapes_of(read_golden_json("keys/sdxl_base_diffusers_text_encoder.json")), "text_encoder");
  expect_same_keys(shapes_of(split.components.at(Component::TextEncoder2)),
                   shapes_of(read_golden_json("keys/sdxl_base_diffusers_text_encoder_2.json")), "text_encoder_2");
  const auto expected_ignored = ldm_only_keys(read_golden_json("keys/sdxl_base_mapping.json"));
  EXPECT_EQ(std::set<std::string>(split.ignored.begin(), split.ignored.end()), expected_ignored);
}

TEST(KeyMap, FullSizeRefinerSingleFileSplitsIntoExactlyTheDiffusersKeys) {
  const TensorMap ldm = meta_tensors(read_golden_json("keys/sdxl_refiner_ldm.json"));
  const SplitCheckpoint split = ldm_checkpoint_to_diffusers(ldm);
  ASSERT_EQ(split.components.size(), 3u);  // the refiner has no CLIP-L
  expect_same_keys(shapes_of(split.components.at(Component::Unet)),
                   shapes_of(read_golden_json("keys/sdxl_refiner_diffusers_unet.json")), "refiner unet");
  expect_same_keys(shapes_of(split.components.at(Component::Vae)),
                   shapes_of(read_golden_json("keys/sdxl_base_diffusers_vae.json")), "refiner vae");
  expect_same_keys(shapes_of(split.components.at(Component::TextEncoder2)),
                   shapes_of(read_golden_json("keys/sdxl_base_diffusers_text_encoder_2.json")), "refiner te2");
  const auto expected_ignored = ldm_only_keys(read_golden_json("keys/sdxl_refiner_mapping.json"));
  EXPECT_EQ(std::set<std::string>(split.ignored.begin(), split.ignored.end()), expected_ignored);
}

TEST(KeyMap, FullSizeDiffusersFoldersJoinIntoExactlyTheSingleFileKeys) {
  std::map<Component, TensorMap> base = {
      {Component::Unet, meta_tensors(read_golden_json("keys/sdxl_base_diffusers_unet.json"))},
      {Component::Vae, meta_tensors(read_golden_json("keys/sdxl_base_diffusers_vae.json"))},
      {Component::TextEncoder, meta_tensors(read_golden_json("keys/sdxl_base_diffusers_text_encoder.json"))},
      {Component::TextEncoder2, meta_tensors(read_golden_json("keys/sdxl_base_diffusers_text_encoder_2.json"))}};
  auto want = shapes_of(read_golden_json("keys/sdxl_base_ldm.json"));
  for (const auto& key : ldm_only_keys(read_golden_json("keys/sdxl_base_mapping.json"))) want.erase(key);
  expect_same_keys(shapes_of(diffusers_to_ldm_checkpoint(base)), want, "base ldm");

  std::map<Component, TensorMap> refiner = {
      {Component::Unet, meta_tensors(read_golden_json("keys/sdxl_refiner_diffusers_unet.json"))},
      {Component::Vae, base.at(Component::Vae)},
      {Component::TextEncoder2, base.at(Component::TextEncoder2)}};
  auto want_refiner = shapes_of(read_golden_json("keys/sdxl_refiner_ldm.json"));
  for (const auto& key : ldm_only_keys(read_golden_json("keys/sdxl_refiner_mapping.json"))) want_refiner.erase(key);
  expect_same_keys(shapes_of(diffusers_to_ldm_checkpoint(refiner)), want_refiner, "refiner ldm");
}

TEST(KeyMap, EveryPairOfTheReferenceMappingIsReproduced) {
  for (const char* file : {"keys/sdxl_base_mapping.json", "keys/sdxl_refiner_mapping.json"}) {
    const nlohmann::json mapping = read_golden_json(file);
    const auto& prefixes = mapping["ldm_prefixes"];
    std::map<std::string, std::vector<std::string>> names_by_component;
    for (const auto& [qualified, ldm] : mapping["diffusers_to_ldm"].items()) {
      const auto slash = qualified.find('/');
      names_by_component[qualified.substr(0, slash)].push_back(qualified.substr(slash + 1));
    }
    const std::map<std::string, Component> components = {{"unet", Component::Unet},
                                                          {"vae", Component::Vae},
                                                          {"text_encoder", Component::TextEncoder},
                                                          {"text_encoder_2", Component::TextEncoder2}};
    std::map<std::string, KeyMap> maps;
    for (const auto& [folder, names] : names_by_component)
      maps.emplace(folder, KeyMap::for_component(components.at(folder), KeyLayout::Diffusers, names));
    int checked = 0;
    for (const auto& [qualified, ldm_json] : mapping["diffusers_to_ldm"].items()) {
      const auto slash = qualified.find('/');
      const std::string folder = qualified.substr(0, slash);
      const std::string key = qualified.substr(slash + 1);
      auto target = maps.at(folder).to_ldm_key(key);
      ASSERT_TRUE(target.has_value()) << qualified;
      std::string got = prefixes[folder].get<std::string>() + target->first;
      const KeyRule& rule = *target->second;
      if (rule.op == KeyOp::FusedRows) got += "[" + std::to_string(rule.part) + "/3]";
      std::string want = ldm_json.get<std::string>();
      if (auto bracket = want.find('['); bracket != std::string::npos) {
        // "<key>[a:b]": rows a..b of the fused tensor; part = a / (b - a).
        const int a = std::stoi(want.substr(bracket + 1));
        const int b = std::stoi(want.substr(want.find(':', bracket) + 1));
        want = want.substr(0, bracket) + "[" + std::to_string(a / (b - a)) + "/3]";
      }
      EXPECT_EQ(got, want) << file << " " << qualified;
      ++checked;
    }
    EXPECT_GT(checked, 1800) << file;
  }
}

TEST(KeyMap, StructureIsReadFromTheKeysOfEitherLayout) {
  auto names_of = [](const char* file, const std::string& prefix) {
    const TensorMap all = meta_tensors(read_golden_json(file));
    return prefix.empty() ? all.names() : all.with_prefix(prefix).names();
  };
  for (KeyLayout layout : {KeyLayout::Diffusers, KeyLayout::Ldm}) {
    const bool diffusers = layout == KeyLayout::Diffusers;
    UnetKeyStructure base = unet_key_structure(
        layout, diffusers ? names_of("keys/sdxl_base_diffusers_unet.json", "")
                          : names_of("keys/sdxl_base_ldm.json", "model.diffusion_model."));
    EXPECT_EQ(base.levels, 3);
    EXPECT_EQ(base.layers_per_block, 2);
    EXPECT_EQ(base.down_has_attention, (std::vector<bool>{false, true, true}));
    EXPECT_EQ(base.up_has_attention, (std::vector<bool>{true, true, false}));
    UnetKeyStructure refiner = unet_key_structure(
        layout, diffusers ? names_of("keys/sdxl_refiner_diffusers_unet.json", "")
                          : names_of("keys/sdxl_refiner_ldm.json", "model.diffusion_model."));
    EXPECT_EQ(refiner.levels, 4);
    EXPECT_EQ(refiner.down_has_attention, (std::vector<bool>{false, true, true, false}));
    EXPECT_EQ(refiner.up_has_attention, (std::vector<bool>{false, true, true, false}));
    VaeKeyStructure vae = vae_key_structure(
        layout, diffusers ? names_of("keys/sdxl_base_diffusers_vae.json", "")
                          : names_of("keys/sdxl_base_ldm.json", "first_stage_model."));
    EXPECT_EQ(vae.levels, 4);
    EXPECT_EQ(vae.layers_per_block, 2);
  }
}

TEST(KeyMap, TinyModelValuesSurviveBothDirections) {
  // Real tensors (the tiny diffusers folder): diffusers -> LDM -> diffusers is the identity,
  // and the fused / transposed / reshaped tensors hold the right values in LDM form.
  const auto root = sdxlhost::test_support::shared_dir() / "goldens/models/tiny_sdxl";
  std::map<Component, TensorMap> components;
  std::map<Component, std::shared_ptr<const SafetensorsFile>> files;
  const std::pair<Component, const char*> parts[] = {
      {Component::Unet, "unet/diffusion_pytorch_model.safetensors"},
      {Component::Vae, "vae/diffusion_pytorch_model.safetensors"},
      {Component::TextEncoder, "text_encoder/model.safetensors"},
      {Component::TextEncoder2, "text_encoder_2/model.safetensors"}};
  for (const auto& [component, file] : parts) {
    files[component] = SafetensorsFile::open(root / file);
    components[component] = files[component]->tensors();
  }
  const TensorMap ldm = diffusers_to_ldm_checkpoint(components);
  const auto& te2 = components.at(Component::TextEncoder2);
  EXPECT_TRUE(at::equal(ldm.at("conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight"),
                        at::cat({te2.at("text_model.encoder.layers.1.self_attn.q_proj.weight"),
                                 te2.at("text_model.encoder.layers.1.self_attn.k_proj.weight"),
                                 te2.at("text_model.encoder.layers.1.self_attn.v_proj.weight")})));
  EXPECT_TRUE(at::equal(ldm.at("conditioner.embedders.1.model.text_projection"),
                        te2.at("text_projection.weight").t()));
  EXPECT_EQ(ldm.at("first_stage_model.decoder.mid.attn_1.q.weight").dim(), 4);

  const SplitCheckpoint back = ldm_checkpoint_to_diffusers(ldm);
  EXPECT_TRUE(back.ignored.empty());
  for (const auto& [component, original] : components) {
    const TensorMap& round = back.components.at(component);
    ASSERT_EQ(round.names(), original.names()) << component_folder(component);
    for (const auto& [key, tensor] : original)
      EXPECT_TRUE(at::equal(round.at(key), tensor)) << component_folder(component) << " " << key;
  }
}

TEST(KeyMap, LayoutDetectionAndUnknownKeys) {
  EXPECT_EQ(detect_key_layout({"encoder.down.0.block.0.conv1.weight"}), KeyLayout::Ldm);
  EXPECT_EQ(detect_key_layout({"encoder.down_blocks.0.resnets.0.conv1.weight"}), KeyLayout::Diffusers);
  EXPECT_EQ(detect_key_layout({"model.diffusion_model.out.2.weight"}), KeyLayout::Ldm);
  // Hostile structure: an absurd block index is refused, not turned into millions of rules.
  EXPECT_THROW(unet_key_structure(KeyLayout::Ldm, {"input_blocks.3.0.op.weight", "input_blocks.999999.0.x"}),
               sdxlhost::sdk::Error);
  TensorMap junk;
  junk.set("something.else", at::zeros({1}));
  EXPECT_THROW(ldm_checkpoint_to_diffusers(junk), sdxlhost::sdk::Error);
  // Unknown keys next to a real component are reported, not fatal (EMA copies, sigmas, ...).
  TensorMap with_extra = meta_tensors(read_golden_json("keys/sdxl_base_ldm.json"));
  with_extra.set("model_ema.decay", at::zeros({}));
  with_extra.set("model.diffusion_model.unknown.weight", at::zeros({1}));
  const SplitCheckpoint split = ldm_checkpoint_to_diffusers(with_extra);
  std::set<std::string> ignored(split.ignored.begin(), split.ignored.end());
  EXPECT_TRUE(ignored.count("model_ema.decay"));
  EXPECT_TRUE(ignored.count("model.diffusion_model.unknown.weight"));
}
