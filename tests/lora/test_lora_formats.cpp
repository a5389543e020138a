// LoRA numerics (label `lora`): every file format of ../shared/goldens/lora applied to the tiny
// SDXL pipeline's UNet and text encoders against the merged-weight goldens (atol 1e-6), two
// adapters summed, exact revert, LoHa / LoKr against their published formulas, bad files.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "common/goldens.hpp"
#include "sdxlhost/pipeline/sdxl_models.hpp"
#include "sdxlhost/nn/lora.hpp"
#include "sdxlhost/nn/patchable_weights.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace {

namespace fs = std::filesystem;
using sdxlhost::nn::LoraNetwork;
using sdxlhost::nn::PatchableWeights;
using sdxlhost::nn::TensorMap;
using sdxlhost::sdk::Error;
using sdxlhost::sdk::ErrorCode;
using ::sdxlhost::test_support::golden;
using ::sdxlhost::test_support::load_tensors;
using ::sdxlhost::test_support::max_abs_diff;

constexpr double kAtol = 1e-6;  // goldens/lora/README: merged weights in float32

/// The tiny pipeline the LoRA goldens were made with; each model's own patch table, patched in
/// place (test_patched_copies.cpp checks the copies the pipeline makes give the same weights).
struct TinyPipeline {
  std::shared_ptr<sdxlhost::pipeline::SdxlModels> models =
      sdxlhost::pipeline::SdxlModels::load(golden("models/tiny_sdxl"), sdxlhost::pipeline::PipelineSettings{});
  PatchableWeights& target(const std::string& component) {
    if (component == "unet") return models->unet->patchable_weights();
    return component == "text_encoder" ? models->text_encoder->patchable_weights()
                                       : models->text_encoder_2->patchable_weights();
  }
  /// Applies `network` x `weight` to every component; checks every module found its layer.
  void apply(const LoraNetwork& network, double weight) {
    for (const char* c : {"unet", "text_encoder", "text_encoder_2"}) {
      const auto result = sdxlhost::nn::apply_lora(network, weight, target(c), "data.lora.models[0].name");
      EXPECT_EQ(result.matched, result.modules) << c << ": unmatched, first "
                                                << (result.unmatched.empty() ? "" : result.unmatched.front());
      EXPECT_EQ(result.modules, network.count(c));
    }
  }
  void restore() {
    for (const char* c : {"unet", "text_encoder", "text_encoder_2"}) target(c).restore();
  }
};

TinyPipeline& pipeline() {
  static TinyPipeline p;
  return p;
}

LoraNetwork parse(const std::string& file) {
  return sdxlhost::nn::parse_lora(load_tensors(golden("lora/" + file)), "data.lora.models[0].name");
}

/// `<component>.<module>.<suffix>` keys of a merged-weights golden, split.
struct MergedKey {
  std::string component, module;
};
std::vector<std::pair<MergedKey, at::Tensor>> merged_entries(const TensorMap& merged, const std::string& suffix) {
  std::vector<std::pair<MergedKey, at::Tensor>> out;
  for (const auto& [key, tensor] : merged) {
    if (key.size() <= suffix.size() || key.compare(key.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    const std::string path = key.substr(0, key.size() - suffix.size());
    const auto dot = path.find('.');
    out.push_back({{path.substr(0, dot), path.substr(dot + 1)}, tensor});
  }
  return out;
}

/// Applies `files` (name, weight) and compares every `suffix` entry of `merged_file`.
void expect_merged(const std::vector<std::pair<std::string, double>>& files, const std::string& merged_file,
                   const std::string& suffix) {
  auto& p = pipeline();
  for (const auto& [file, weight] : files) p.apply(parse(file), weight);
  const TensorMap merged = load_tensors(golden("lora/" + merged_file));
  const auto entries = merged_entries(merged, suffix);
  ASSERT_FALSE(entries.empty()) << merged_file << " has no '" << suffix << "' entries";
  for (const auto& [key, expected] : entries) {
    const at::Tensor got = p.target(key.component).weight(key.module + ".weight");
    EXPECT_LE(max_abs_diff(got, expected), kAtol) << key.component << "." << key.module;
    const std::string orig = key.component + "." + key.module + ".weight_orig";
    if (merged.contains(orig))
      EXPECT_EQ(max_abs_diff(p.target(key.component).original(key.module + ".weight"), merged.at(orig)), 0.0);
  }
  p.restore();
}

TEST(LoraFormats, KohyaWithDiffusersNamesMatchesTheMergedGolden) {
  const auto network = parse("kohya_lora.safetensors");
  EXPECT_EQ(network.format, sdxlhost::nn::LoraFormat::Kohya);
  expect_merged({{"kohya_lora.safetensors", 0.8}}, "kohya_lora_merged_weights.safetensors", ".merged_w0.8");
}

TEST(LoraFormats, KohyaWithSgmNamesMatchesTheMergedGolden) {
  expect_merged({{"kohya_lora_sgm_names.safetensors", 0.8}}, "kohya_lora_merged_weights.safetensors", ".merged_w0.8");
}

TEST(LoraFormats, DiffusersLoraLinearLayerMatchesTheMergedGolden) {
  EXPECT_EQ(parse("diffusers_lora.safetensors").format, sdxlhost::nn::LoraFormat::Diffusers);
  expect_merged({{"diffusers_lora.safetensors", 0.8}}, "diffusers_lora_merged_weights.safetensors", ".merged_w0.8");
}

TEST(LoraFormats, PeftLoraABMatchesTheMergedGolden) {
  EXPECT_EQ(parse("diffusers_lora_peft_keys.safetensors").format, sdxlhost::nn::LoraFormat::Peft);
  expect_merged({{"diffusers_lora_peft_keys.safetensors", 0.8}}, "diffusers_lora_merged_weights.safetensors",
                ".merged_w0.8");
}

TEST(LoraFormats, TwoAdaptersAreSummedWithTheirWeights) {
  expect_merged({{"kohya_lora.safetensors", 0.5}, {"diffusers_lora.safetensors", 1.0}},
                "two_loras_merged_weights.safetensors", ".merged");
}

TEST(LoraFormats, SgmAndDiffusersModuleNamesGiveBitIdenticalWeights) {
  auto& p = pipeline();
  auto snapshot = [&](const std::string& file) {
    p.apply(parse(file), 0.8);
    std::map<std::string, at::Tensor> out;
    for (const char* c : {"unet", "text_encoder", "text_encoder_2"})
      for (const auto& key : p.target(c).patched_keys()) out[std::string(c) + "." + key] = p.target(c).weight(key);
    p.restore();
    return out;
  };
  const auto a = snapshot("kohya_lora.safetensors");
  const auto b = snapshot("kohya_lora_sgm_names.safetensors");
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(a.size(), parse("kohya_lora.safetensors").modules.size());
  for (const auto& [key, tensor] : a) EXPECT_TRUE(at::equal(tensor, b.at(key))) << key;
}

TEST(LoraFormats, RevertGivesEveryWeightBackByteForByteFromTheMappedFile) {
  auto& p = pipeline();
  p.apply(parse("kohya_lora.safetensors"), 0.8);
  p.apply(parse("diffusers_lora.safetensors"), -1.3);
  EXPECT_GT(p.target("unet").patched_keys().size(), 0u);
  p.restore();
  // the untouched originals: the diffusers folder's files, mapped afresh
  const std::map<std::string, std::string> files{
      {"unet", "unet/diffusion_pytorch_model.safetensors"},
      {"text_encoder", "text_encoder/model.safetensors"},
      {"text_encoder_2", "text_encoder_2/model.safetensors"}};
  for (const auto& [component, file] : files) {
    const TensorMap original = load_tensors(golden("models/tiny_sdxl/" + file));
    std::size_t compared = 0;
    for (const auto& key : p.target(component).keys()) {
      if (!original.contains(key)) continue;
      const at::Tensor now = p.target(component).weight(key).contiguous();
      const at::Tensor was = original.at(key).to(now.scalar_type()).contiguous();
      ASSERT_EQ(now.nbytes(), was.nbytes()) << key;
      EXPECT_EQ(std::memcmp(now.data_ptr(), was.data_ptr(), now.nbytes()), 0) << component << "." << key;
      ++compared;
    }
    EXPECT_GT(compared, 10u) << component;
    EXPECT_TRUE(p.target(component).patched_keys().empty());
  }
}

TEST(LoraFormats, WeightZeroChangesNothing) {
  auto& p = pipeline();
  p.apply(parse("kohya_lora.safetensors"), 0.0);
  for (const char* c : {"unet", "text_encoder", "text_encoder_2"}) EXPECT_TRUE(p.target(c).patched_keys().empty());
}

// ---- LyCORIS forms against their published formulas, on small random tensors ----------------

/// A one-component target over tensors the test owns.
struct SmallTarget {
  std::map<std::string, at::Tensor> weights;
  std::unique_ptr<PatchableWeights> table;
  explicit SmallTarget(std::map<std::string, at::Tensor> w) : weights(std::move(w)) {
    std::map<std::string, at::Tensor*> slots;
    for (auto& [k, t] : weights) slots[k] = &t;
    table = std::make_unique<PatchableWeights>("unet", slots);
  }
};

/// Kronecker product by its definition, element by element (2-D a, 2-D or 4-D b).
at::Tensor kron_by_loops(const at::Tensor& a, const at::Tensor& b) {
  const auto a_acc = a.accessor<float, 2>();
  std::vector<std::int64_t> shape{a.size(0) * b.size(0), a.size(1) * b.size(1)};
  for (std::int64_t d = 2; d < b.dim(); ++d) shape.push_back(b.size(d));
  at::Tensor out = at::zeros(shape);
  for (std::int64_t i = 0; i < a.size(0); ++i)
    for (std::int64_t j = 0; j < a.size(1); ++j)
      out.slice(0, i * b.size(0), (i + 1) * b.size(0)).slice(1, j * b.size(1), (j + 1) * b.size(1)).copy_(b * a_acc[i][j]);
  return out;
}

/// Tucker core expanded by its definition: sum_ij t[i,j,k,l] a[i,p] b[j,r] -> (p, r, k, l).
at::Tensor tucker_by_loops(const at::Tensor& t, const at::Tensor& a, const at::Tensor& b) {
  at::Tensor out = at::zeros({a.size(1), b.size(1), t.size(2), t.size(3)});
  for (std::int64_t i = 0; i < t.size(0); ++i)
    for (std::int64_t j = 0; j < t.size(1); ++j)
      out += a.select(0, i).view({-1, 1, 1, 1}) * b.select(0, j).view({1, -1, 1, 1}) * t[i][j].unsqueeze(0).unsqueeze(0);
  return out;
}

LoraNetwork network_of(const std::map<std::string, at::Tensor>& tensors) {
  TensorMap map("test");
  for (const auto& [k, t] : tensors) map.set(k, t);
  return sdxlhost::nn::parse_lora(map, "data.lora.models[0].name");
}

TEST(LoraFormulas, LoHaIsTheHadamardProductOfTwoLowRankMatricesTimesAlphaOverRank) {
  at::manual_seed(1);
  const at::Tensor w = at::randn({6, 8});
  SmallTarget target({{"mid_block.ff.weight", w.clone()}});
  const std::int64_t r = 3;
  const at::Tensor w1a = at::randn({6, r}), w1b = at::randn({r, 8}), w2a = at::randn({6, r}), w2b = at::randn({r, 8});
  const auto net = network_of({{"lora_unet_mid_block_ff.hada_w1_a", w1a}, {"lora_unet_mid_block_ff.hada_w1_b", w1b},
                               {"lora_unet_mid_block_ff.hada_w2_a", w2a}, {"lora_unet_mid_block_ff.hada_w2_b", w2b},
                               {"lora_unet_mid_block_ff.alpha", at::scalar_tensor(1.5)}});
  EXPECT_EQ(net.modules.at(0).kind, sdxlhost::nn::LoraKind::LoHa);
  sdxlhost::nn::apply_lora(net, 0.7, *target.table, "f");
  at::Tensor expected = at::zeros({6, 8});
  for (int o = 0; o < 6; ++o)
    for (int i = 0; i < 8; ++i) {
      double m1 = 0, m2 = 0;
      for (int k = 0; k < r; ++k) {
        m1 += w1a[o][k].item<double>() * w1b[k][i].item<double>();
        m2 += w2a[o][k].item<double>() * w2b[k][i].item<double>();
      }
      expected[o][i] = w[o][i].item<double>() + 0.7 * (1.5 / r) * m1 * m2;
    }
  EXPECT_LE(max_abs_diff(target.table->weight("mid_block.ff.weight"), expected), 1e-5);
}

TEST(LoraFormulas, LoHaWithTuckerCoresOnAConv) {
  at::manual_seed(2);
  const at::Tensor w = at::randn({5, 4, 3, 3});
  SmallTarget target({{"conv_in.weight", w.clone()}});
  const std::int64_t r = 2;
  // LyCORIS' tucker layout: w_a (rank, out), w_b (rank, in), t (rank, rank, k, k)
  const at::Tensor t1 = at::randn({r, r, 3, 3}), a1 = at::randn({r, 5}), b1 = at::randn({r, 4});
  const at::Tensor t2 = at::randn({r, r, 3, 3}), a2 = at::randn({r, 5}), b2 = at::randn({r, 4});
  const auto net = network_of({{"lora_unet_conv_in.hada_t1", t1}, {"lora_unet_conv_in.hada_w1_a", a1},
                               {"lora_unet_conv_in.hada_w1_b", b1}, {"lora_unet_conv_in.hada_t2", t2},
                               {"lora_unet_conv_in.hada_w2_a", a2}, {"lora_unet_conv_in.hada_w2_b", b2}});
  sdxlhost::nn::apply_lora(net, 1.0, *target.table, "f");  // no alpha: scale 1
  const at::Tensor expected = w + tucker_by_loops(t1, a1, b1) * tucker_by_loops(t2, a2, b2);
  EXPECT_LE(max_abs_diff(target.table->weight("conv_in.weight"), expected), 1e-4);
}

TEST(LoraFormulas, LoKrIsAKroneckerProductScaledByAlphaOverTheFactorisedRank) {
  at::manual_seed(3);
  const at::Tensor w = at::randn({6, 8});
  SmallTarget target({{"time_embedding.linear_1.weight", w.clone()}});
  const at::Tensor w1 = at::randn({2, 2}), w2a = at::randn({3, 2}), w2b = at::randn({2, 4});
  const auto net = network_of({{"lora_unet_time_embedding_linear_1.lokr_w1", w1},
                               {"lora_unet_time_embedding_linear_1.lokr_w2_a", w2a},
                               {"lora_unet_time_embedding_linear_1.lokr_w2_b", w2b},
                               {"lora_unet_time_embedding_linear_1.alpha", at::scalar_tensor(4.0)}});
  EXPECT_EQ(net.modules.at(0).kind, sdxlhost::nn::LoraKind::LoKr);
  EXPECT_EQ(net.modules.at(0).rank(), 2);
  sdxlhost::nn::apply_lora(net, 0.5, *target.table, "f");
  const at::Tensor expected = w + 0.5 * (4.0 / 2) * kron_by_loops(w1, at::matmul(w2a, w2b));
  EXPECT_LE(max_abs_diff(target.table->weight("time_embedding.linear_1.weight"), expected), 1e-5);
}

TEST(LoraFormulas, LoKrWithBothFactorsFullIgnoresAlphaAndWorksOnConvs) {
  at::manual_seed(4);
  const at::Tensor w = at::randn({6, 4, 3, 3});
  SmallTarget target({{"conv_out.weight", w.clone()}});
  const at::Tensor w1 = at::randn({2, 2}), w2 = at::randn({3, 2, 3, 3});
  const auto net = network_of({{"lora_unet_conv_out.lokr_w1", w1}, {"lora_unet_conv_out.lokr_w2", w2},
                               {"lora_unet_conv_out.alpha", at::scalar_tensor(8.0)}});
  EXPECT_EQ(net.modules.at(0).scale(), 1.0);
  sdxlhost::nn::apply_lora(net, 1.0, *target.table, "f");
  EXPECT_LE(max_abs_diff(target.table->weight("conv_out.weight"), w + kron_by_loops(w1, w2)), 1e-5);
}

TEST(LoraFormulas, LoConThreeByThreeDownAndOneByOneUp) {
  at::manual_seed(5);
  const at::Tensor w = at::randn({5, 4, 3, 3});
  SmallTarget target({{"conv_in.weight", w.clone()}});
  const at::Tensor down = at::randn({2, 4, 3, 3}), up = at::randn({5, 2, 1, 1});
  const auto net = network_of({{"lora_unet_conv_in.lora_down.weight", down},
                               {"lora_unet_conv_in.lora_up.weight", up},
                               {"lora_unet_conv_in.alpha", at::scalar_tensor(1.0)}});
  sdxlhost::nn::apply_lora(net, 2.0, *target.table, "f");
  const at::Tensor expected = w + 2.0 * 0.5 * at::einsum("or,rikl->oikl", {up.flatten(1), down});
  EXPECT_LE(max_abs_diff(target.table->weight("conv_in.weight"), expected), 1e-5);
}

// ---- bad files ---------------------------------------------------------------------------------

ErrorCode code_of(const std::function<void()>& f, std::string* message = nullptr, std::string* field = nullptr) {
  try {
    f();
  } catch (const Error& e) {
    if (message) *message = e.what();
    if (field) *field = e.field();
    return e.code();
  }
  return ErrorCode::InternalError;  // "did not throw"
}

TEST(LoraBadFiles, ShapesOfAnotherBaseModelAreRefusedWithTheCountAndChangeNothing) {
  const at::Tensor w = at::randn({6, 8}), v = at::randn({6, 8});
  SmallTarget target({{"a.to_q.weight", w.clone()}, {"a.to_k.weight", v.clone()}});
  // to_q fits; to_k's down is 12 wide (another model's cross-attention width)
  const auto net = network_of({{"lora_unet_a_to_q.lora_down.weight", at::randn({2, 8})},
                               {"lora_unet_a_to_q.lora_up.weight", at::randn({6, 2})},
                               {"lora_unet_a_to_k.lora_down.weight", at::randn({2, 12})},
                               {"lora_unet_a_to_k.lora_up.weight", at::randn({6, 2})}});
  std::string message, field;
  EXPECT_EQ(code_of([&] { sdxlhost::nn::apply_lora(net, 1.0, *target.table, "data.lora.models[1].name"); }, &message,
                    &field),
            ErrorCode::ValidationError);
  EXPECT_EQ(field, "data.lora.models[1].name");
  EXPECT_NE(message.find("a_to_k"), std::string::npos) << message;
  EXPECT_NE(message.find("matched"), std::string::npos) << message;
  EXPECT_TRUE(target.table->patched_keys().empty());  // to_q was not applied either
  EXPECT_TRUE(at::equal(target.table->weight("a.to_q.weight"), w));
}

TEST(LoraBadFiles, FilesWithoutLoraTensorsIncompleteModulesAndUnsupportedFormsAreRefused) {
  std::string message;
  TensorMap checkpoint("ckpt");
  checkpoint.set("model.diffusion_model.conv_in.weight", at::zeros({4, 4, 3, 3}));
  EXPECT_EQ(code_of([&] { sdxlhost::nn::parse_lora(checkpoint, "f"); }, &message), ErrorCode::ValidationError);
  EXPECT_NE(message.find("no LoRA tensors"), std::string::npos) << message;
  EXPECT_EQ(code_of([&] { network_of({{"lora_unet_x.lora_up.weight", at::zeros({4, 2})}}); }, &message),
            ErrorCode::ValidationError);
  EXPECT_NE(message.find("'down'"), std::string::npos) << message;
  EXPECT_EQ(code_of([&] {
              network_of({{"lora_unet_x.lora_down.weight", at::zeros({2, 4})},
                          {"lora_unet_x.lora_up.weight", at::zeros({4, 2})},
                          {"lora_unet_x.dora_scale", at::zeros({4, 1})}});
            }, &message),
            ErrorCode::ValidationError);
  EXPECT_NE(message.find("dora_scale"), std::string::npos) << message;
  EXPECT_EQ(code_of([&] {
              network_of({{"lora_unet_x.lora_down.weight", at::zeros({2, 4})}, {"lora_unet_x.hada_w1_a", at::zeros({4, 2})}});
            }),
            ErrorCode::ValidationError);
}

TEST(LoraBadFiles, ModulesTheModelLacksAreCountedNotApplied) {
  SmallTarget target({{"a.to_q.weight", at::randn({6, 8})}});
  const auto net = network_of({{"lora_unet_b_to_q.lora_down.weight", at::randn({2, 8})},
                               {"lora_unet_b_to_q.lora_up.weight", at::randn({6, 2})}});
  const auto result = sdxlhost::nn::apply_lora(net, 1.0, *target.table, "f");
  EXPECT_EQ(result.modules, 1u);
  EXPECT_EQ(result.matched, 0u);
  EXPECT_EQ(result.unmatched, std::vector<std::string>{"b_to_q"});
}

}  // namespace
