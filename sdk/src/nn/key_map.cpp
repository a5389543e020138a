// KeyMap: diffusers <-> LDM/SGM weight names for SDXL's UNet, VAE and both text encoders.
#include "sdxlhost/nn/key_map.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <set>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::nn {
namespace {

using sdk::Error;
using sdk::ErrorCode;

std::string str(int i) { return std::to_string(i); }

/// Upper bound on levels / blocks per level read from untrusted key names (SDXL has 3-4 / 2-3).
constexpr int kMaxLevels = 32;

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && text.compare(0, prefix.size(), prefix) == 0;
}

/// The integers N for which some name starts with `prefix` + "N.".
std::set<int> indices_after(const std::vector<std::string>& names, const std::string& prefix) {
  std::set<int> out;
  for (const auto& name : names) {
    if (!starts_with(name, prefix)) continue;
    std::size_t pos = prefix.size(), end = pos;
    while (end < name.size() && name[end] >= '0' && name[end] <= '9') ++end;
    if (end == pos || end >= name.size() || name[end] != '.' || end - pos > 6) continue;
    out.insert(std::stoi(name.substr(pos, end - pos)));
  }
  return out;
}

bool any_starts_with(const std::vector<std::string>& names, const std::string& prefix) {
  return std::any_of(names.begin(), names.end(), [&](const auto& n) { return starts_with(n, prefix); });
}

/// Number of consecutive indices 0..k-1 present; throws when they are not 0-based and dense.
int dense_count(const std::set<int>& indices, const char* what) {
  int expected = 0;
  for (int i : indices)
    if (i != expected++)
      throw Error(ErrorCode::ModelLoadError, std::string("unrecognised ") + what + ": index " +
                                                 str(expected - 1) + " is missing");
  return static_cast<int>(indices.size());
}

/// Candidate rule names for `key`, longest first: the key itself, then each prefix ending in '.'.
template <class Fn>
void for_each_candidate(std::string_view key, Fn&& fn) {
  if (fn(std::string(key))) return;
  for (std::size_t pos = key.rfind('.'); pos != std::string_view::npos && pos > 0;
       pos = key.rfind('.', pos - 1)) {
    if (fn(std::string(key.substr(0, pos + 1)))) return;
  }
}

std::string apply(std::string_view key, const std::string& from, const std::string& to) {
  if (from.empty() || from.back() != '.') return to;  // whole-key rule
  return to + std::string(key.substr(from.size()));
}

/// LDM keys known to have no diffusers counterpart (ignored on load).
bool is_known_ldm_only(std::string_view key) {
  return key == "text_model.embeddings.position_ids" || key == "logit_scale";
}

}  // namespace

const char* component_folder(Component component) {
  switch (component) {
    case Component::Unet: return "unet";
    case Component::Vae: return "vae";
    case Component::TextEncoder: return "text_encoder";
    case Component::TextEncoder2: return "text_encoder_2";
  }
  return "?";
}

// ---- rule construction ------------------------------------------------------------------------

void KeyMap::add(KeyRule rule) {
  const std::size_t index = rules_.size();
  by_diffusers_[rule.diffusers].push_back(index);
  by_ldm_[rule.ldm].push_back(index);
  rules_.push_back(std::move(rule));
}

void KeyMap::add_prefix(const std::string& diffusers, const std::string& ldm) {
  add(KeyRule{diffusers, ldm, KeyOp::Rename, 0, 1});
}

KeyMap KeyMap::unet(const UnetKeyStructure& s) {
  KeyMap map;
  // SGM ResBlock parts <-> diffusers ResnetBlock2D parts.
  auto resnet = [&map](const std::string& d, const std::string& l) {
    map.add_prefix(d + "norm1.", l + "in_layers.0.");
    map.add_prefix(d + "conv1.", l + "in_layers.2.");
    map.add_prefix(d + "time_emb_proj.", l + "emb_layers.1.");
    map.add_prefix(d + "norm2.", l + "out_layers.0.");
    map.add_prefix(d + "conv2.", l + "out_layers.3.");
    map.add_prefix(d + "conv_shortcut.", l + "skip_connection.");
  };
  map.add_prefix("time_embedding.linear_1.", "time_embed.0.");
  map.add_prefix("time_embedding.linear_2.", "time_embed.2.");
  map.add_prefix("add_embedding.linear_1.", "label_emb.0.0.");
  map.add_prefix("add_embedding.linear_2.", "label_emb.0.2.");
  map.add_prefix("conv_in.", "input_blocks.0.0.");
  map.add_prefix("conv_norm_out.", "out.0.");
  map.add_prefix("conv_out.", "out.2.");
  const int per = s.layers_per_block + 1;  // SGM blocks per level (resnets + down/up sampler)
  for (int i = 0; i < s.levels; ++i) {
    const std::string down = "down_blocks." + str(i) + ".";
    for (int j = 0; j < s.layers_per_block; ++j) {
      const std::string block = "input_blocks." + str(i * per + j + 1) + ".";
      resnet(down + "resnets." + str(j) + ".", block + "0.");
      if (s.down_has_attention.at(i)) map.add_prefix(down + "attentions." + str(j) + ".", block + "1.");
    }
    if (i + 1 < s.levels)
      map.add_prefix(down + "downsamplers.0.conv.", "input_blocks." + str((i + 1) * per) + ".0.op.");
  }
  resnet("mid_block.resnets.0.", "middle_block.0.");
  if (s.mid_has_attention) map.add_prefix("mid_block.attentions.0.", "middle_block.1.");
  resnet("mid_block.resnets.1.",
                  s.mid_has_attention ? "middle_block.2." : "middle_block.1.");
  for (int i = 0; i < s.levels; ++i) {
    const std::string up = "up_blocks." + str(i) + ".";
    const bool attention = s.up_has_attention.at(i);
    for (int j = 0; j <= s.layers_per_block; ++j) {
      const std::string block = "output_blocks." + str(i * per + j) + ".";
      resnet(up + "resnets." + str(j) + ".", block + "0.");
      if (attention) map.add_prefix(up + "attentions." + str(j) + ".", block + "1.");
    }
    if (i + 1 < s.levels)
      map.add_prefix(up + "upsamplers.0.conv.", "output_blocks." + str(i * per + s.layers_per_block) +
                                                    (attention ? ".2.conv." : ".1.conv."));
  }
  return map;
}

KeyMap KeyMap::vae(const VaeKeyStructure& s) {
  KeyMap map;
  for (const std::string side : {"encoder.", "decoder."}) {
    map.add_prefix(side + "conv_in.", side + "conv_in.");
    map.add_prefix(side + "conv_out.", side + "conv_out.");
    map.add_prefix(side + "conv_norm_out.", side + "norm_out.");
    for (int r = 0; r < 2; ++r) {
      const std::string d = side + "mid_block.resnets." + str(r) + ".";
      const std::string l = side + "mid.block_" + str(r + 1) + ".";
      map.add_prefix(d, l);
      map.add_prefix(d + "conv_shortcut.", l + "nin_shortcut.");
    }
    const std::string attn_d = side + "mid_block.attentions.0.";
    const std::string attn_l = side + "mid.attn_1.";
    map.add_prefix(attn_d + "group_norm.", attn_l + "norm.");
    const std::pair<const char*, const char*> projections[] = {
        {"to_q.", "q."}, {"to_k.", "k."}, {"to_v.", "v."}, {"to_out.0.", "proj_out."}};
    for (const auto& [d, l] : projections) {
      map.add(KeyRule{attn_d + d + "weight", attn_l + l + "weight", KeyOp::Conv1x1, 0, 1});
      map.add(KeyRule{attn_d + d + "bias", attn_l + l + "bias", KeyOp::Rename, 0, 1});
    }
  }
  for (int i = 0; i < s.levels; ++i) {
    const std::string d = "encoder.down_blocks." + str(i) + ".";
    const std::string l = "encoder.down." + str(i) + ".";
    for (int j = 0; j < s.layers_per_block; ++j) {
      map.add_prefix(d + "resnets." + str(j) + ".", l + "block." + str(j) + ".");
      map.add_prefix(d + "resnets." + str(j) + ".conv_shortcut.", l + "block." + str(j) + ".nin_shortcut.");
    }
    if (i + 1 < s.levels) map.add_prefix(d + "downsamplers.0.conv.", l + "downsample.conv.");
  }
  for (int i = 0; i < s.levels; ++i) {
    const std::string d = "decoder.up_blocks." + str(i) + ".";
    const std::string l = "decoder.up." + str(s.levels - 1 - i) + ".";  // numbered in reverse
    for (int j = 0; j <= s.layers_per_block; ++j) {
      map.add_prefix(d + "resnets." + str(j) + ".", l + "block." + str(j) + ".");
      map.add_prefix(d + "resnets." + str(j) + ".conv_shortcut.", l + "block." + str(j) + ".nin_shortcut.");
    }
    if (i + 1 < s.levels) map.add_prefix(d + "upsamplers.0.conv.", l + "upsample.conv.");
  }
  map.add_prefix("quant_conv.", "quant_conv.");
  map.add_prefix("post_quant_conv.", "post_quant_conv.");
  return map;
}

KeyMap KeyMap::clip_text() {
  KeyMap map;
  map.add_prefix("text_model.", "text_model.");
  return map;
}

KeyMap KeyMap::open_clip_text(int layers) {
  KeyMap map;
  map.add(KeyRule{"text_model.embeddings.token_embedding.weight", "token_embedding.weight"});
  map.add(KeyRule{"text_model.embeddings.position_embedding.weight", "positional_embedding"});
  map.add_prefix("text_model.final_layer_norm.", "ln_final.");
  map.add(KeyRule{"text_projection.weight", "text_projection", KeyOp::Transpose, 0, 1});
  for (int k = 0; k < layers; ++k) {
    const std::string d = "text_model.encoder.layers." + str(k) + ".";
    const std::string l = "transformer.resblocks." + str(k) + ".";
    map.add_prefix(d + "layer_norm1.", l + "ln_1.");
    map.add_prefix(d + "layer_norm2.", l + "ln_2.");
    map.add_prefix(d + "self_attn.out_proj.", l + "attn.out_proj.");
    map.add_prefix(d + "mlp.fc1.", l + "mlp.c_fc.");
    map.add_prefix(d + "mlp.fc2.", l + "mlp.c_proj.");
    const char* qkv[] = {"q_proj.", "k_proj.", "v_proj."};
    for (int p = 0; p < 3; ++p) {
      map.add(KeyRule{d + "self_attn." + qkv[p] + "weight", l + "attn.in_proj_weight", KeyOp::FusedRows, p, 3});
      map.add(KeyRule{d + "self_attn." + qkv[p] + "bias", l + "attn.in_proj_bias", KeyOp::FusedRows, p, 3});
    }
  }
  return map;
}

// ---- structure from key names -----------------------------------------------------------------

UnetKeyStructure unet_key_structure(KeyLayout layout, const std::vector<std::string>& names) {
  UnetKeyStructure s;
  if (layout == KeyLayout::Diffusers) {
    s.levels = dense_count(indices_after(names, "down_blocks."), "UNet down_blocks");
    if (s.levels == 0) throw Error(ErrorCode::ModelLoadError, "UNet weights have no down_blocks");
    s.layers_per_block = dense_count(indices_after(names, "down_blocks.0.resnets."), "UNet resnets");
    for (int i = 0; i < s.levels; ++i) {
      s.down_has_attention.push_back(any_starts_with(names, "down_blocks." + str(i) + ".attentions."));
      s.up_has_attention.push_back(any_starts_with(names, "up_blocks." + str(i) + ".attentions."));
    }
    s.mid_has_attention = any_starts_with(names, "mid_block.attentions.");
    return s;
  }
  const std::set<int> inputs = indices_after(names, "input_blocks.");
  int first_downsampler = 0;
  for (int n : inputs)
    if (n > 0 && any_starts_with(names, "input_blocks." + str(n) + ".0.op.")) {
      first_downsampler = n;
      break;
    }
  if (inputs.empty() || first_downsampler < 2)
    throw Error(ErrorCode::ModelLoadError, "UNet weights: cannot find the input_blocks structure");
  const int per = first_downsampler;
  s.layers_per_block = per - 1;
  s.levels = *inputs.rbegin() / per + 1;
  if (s.levels > kMaxLevels || s.layers_per_block > kMaxLevels)
    throw Error(ErrorCode::ModelLoadError, "UNet weights: implausible input_blocks structure (" +
                                               str(s.levels) + " levels of " + str(per) + " blocks)");
  for (int i = 0; i < s.levels; ++i) {
    s.down_has_attention.push_back(any_starts_with(names, "input_blocks." + str(i * per + 1) + ".1."));
    // An up block's first SGM block holds [resnet, attention] when it has attentions.
    const std::string first = "output_blocks." + str(i * per) + ".1.";
    s.up_has_attention.push_back(any_starts_with(names, first) && !any_starts_with(names, first + "conv."));
  }
  s.mid_has_attention = any_starts_with(names, "middle_block.2.");
  return s;
}

VaeKeyStructure vae_key_structure(KeyLayout layout, const std::vector<std::string>& names) {
  VaeKeyStructure s;
  const bool diffusers = layout == KeyLayout::Diffusers;
  s.levels = dense_count(indices_after(names, diffusers ? "encoder.down_blocks." : "encoder.down."),
                         "VAE encoder blocks");
  if (s.levels == 0) throw Error(ErrorCode::ModelLoadError, "VAE weights have no encoder blocks");
  s.layers_per_block = dense_count(
      indices_after(names, diffusers ? "encoder.down_blocks.0.resnets." : "encoder.down.0.block."),
      "VAE resnets");
  return s;
}

KeyMap KeyMap::for_component(Component component, KeyLayout layout,
                             const std::vector<std::string>& names) {
  switch (component) {
    case Component::Unet: return unet(unet_key_structure(layout, names));
    case Component::Vae: return vae(vae_key_structure(layout, names));
    case Component::TextEncoder: return clip_text();
    case Component::TextEncoder2: {
      const bool diffusers = layout == KeyLayout::Diffusers;
      return open_clip_text(dense_count(
          indices_after(names, diffusers ? "text_model.encoder.layers." : "transformer.resblocks."),
          "text encoder layers"));
    }
  }
  throw Error(ErrorCode::InternalError, "unknown component");
}

// ---- key conversion ---------------------------------------------------------------------------

std::optional<std::pair<std::string, const KeyRule*>> KeyMap::to_ldm_key(std::string_view key) const {
  std::optional<std::pair<std::string, const KeyRule*>> out;
  for_each_candidate(key, [&](const std::string& candidate) {
    auto it = by_diffusers_.find(candidate);
    if (it == by_diffusers_.end()) return false;
    const KeyRule& rule = rules_[it->second.front()];
    out.emplace(apply(key, rule.diffusers, rule.ldm), &rule);
    return true;
  });
  return out;
}

std::vector<std::pair<std::string, const KeyRule*>> KeyMap::to_diffusers_keys(std::string_view key) const {
  std::vector<std::pair<std::string, const KeyRule*>> out;
  for_each_candidate(key, [&](const std::string& candidate) {
    auto it = by_ldm_.find(candidate);
    if (it == by_ldm_.end()) return false;
    for (std::size_t index : it->second) {
      const KeyRule& rule = rules_[index];
      out.emplace_back(apply(key, rule.ldm, rule.diffusers), &rule);
    }
    return true;
  });
  return out;
}

namespace {

[[noreturn]] void shape_error(const std::string& key, const at::Tensor& t, const char* expected) {
  throw Error(ErrorCode::ModelLoadError, "tensor '" + key + "' has shape " + c10::str(t.sizes()) +
                                             ", expected " + expected);
}

at::Tensor ldm_to_diffusers_tensor(const std::string& key, const at::Tensor& t, const KeyRule& rule) {
  switch (rule.op) {
    case KeyOp::Rename: return t;
    case KeyOp::Transpose:
      if (t.dim() != 2) shape_error(key, t, "2 dimensions");
      return t.t().contiguous();
    case KeyOp::Conv1x1:
      if (t.dim() == 2) return t;  // already linear (some converters store it so)
      if (t.dim() != 4 || t.size(2) != 1 || t.size(3) != 1) shape_error(key, t, "[out, in, 1, 1]");
      return t.reshape({t.size(0), t.size(1)});
    case KeyOp::FusedRows: {
      if (t.dim() < 1 || t.size(0) % rule.parts != 0) shape_error(key, t, "rows divisible by 3");
      const int64_t rows = t.size(0) / rule.parts;
      return t.narrow(0, rule.part * rows, rows);
    }
  }
  return t;
}

at::Tensor diffusers_to_ldm_tensor(const std::string& key, const at::Tensor& t, const KeyRule& rule) {
  switch (rule.op) {
    case KeyOp::Rename:
    case KeyOp::FusedRows: return t;
    case KeyOp::Transpose:
      if (t.dim() != 2) shape_error(key, t, "2 dimensions");
      return t.t().contiguous();
    case KeyOp::Conv1x1:
      if (t.dim() != 2) shape_error(key, t, "[out, in]");
      return t.reshape({t.size(0), t.size(1), 1, 1});
  }
  return t;
}

}  // namespace

TensorMap KeyMap::to_diffusers(const TensorMap& ldm, std::vector<std::string>* unmapped) const {
  TensorMap out(ldm.source());
  for (const auto& [key, tensor] : ldm) {
    auto targets = is_known_ldm_only(key) ? decltype(to_diffusers_keys(key)){} : to_diffusers_keys(key);
    if (targets.empty() && unmapped != nullptr) unmapped->push_back(key);
    for (const auto& [name, rule] : targets) out.set(name, ldm_to_diffusers_tensor(key, tensor, *rule));
  }
  return out;
}

TensorMap KeyMap::to_ldm(const TensorMap& diffusers, std::vector<std::string>* unmapped) const {
  TensorMap out(diffusers.source());
  std::map<std::string, std::vector<std::pair<int, at::Tensor>>> fused;
  for (const auto& [key, tensor] : diffusers) {
    auto target = to_ldm_key(key);
    if (!target) {
      if (unmapped != nullptr) unmapped->push_back(key);
      continue;
    }
    const auto& [name, rule] = *target;
    if (rule->op == KeyOp::FusedRows) {
      fused[name].emplace_back(rule->part, tensor);
    } else {
      out.set(name, diffusers_to_ldm_tensor(key, tensor, *rule));
    }
  }
  for (auto& [name, parts] : fused) {
    std::sort(parts.begin(), parts.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
    if (parts.size() != 3 || parts[0].first != 0 || parts[1].first != 1 || parts[2].first != 2)
      throw Error(ErrorCode::ModelLoadError, "cannot build fused '" + name + "': q, k and v are not all present");
    out.set(name, at::cat({parts[0].second, parts[1].second, parts[2].second}, 0));
  }
  return out;
}

// ---- whole checkpoints ------------------------------------------------------------------------

LdmPrefixes detect_ldm_prefixes(const std::vector<std::string>& names) {
  LdmPrefixes out;
  if (any_starts_with(names, "model.diffusion_model.")) out.prefix[Component::Unet] = "model.diffusion_model.";
  if (any_starts_with(names, "first_stage_model.")) out.prefix[Component::Vae] = "first_stage_model.";
  for (int n : indices_after(names, "conditioner.embedders.")) {
    const std::string base = "conditioner.embedders." + str(n) + ".";
    if (any_starts_with(names, base + "transformer.text_model."))
      out.prefix[Component::TextEncoder] = base + "transformer.";
    else if (any_starts_with(names, base + "model.transformer.resblocks."))
      out.prefix[Component::TextEncoder2] = base + "model.";
  }
  return out;
}

LdmPrefixes standard_ldm_prefixes(bool has_text_encoder, bool has_text_encoder_2) {
  LdmPrefixes out;
  out.prefix[Component::Unet] = "model.diffusion_model.";
  out.prefix[Component::Vae] = "first_stage_model.";
  if (has_text_encoder) out.prefix[Component::TextEncoder] = "conditioner.embedders.0.transformer.";
  if (has_text_encoder_2)
    out.prefix[Component::TextEncoder2] =
        std::string("conditioner.embedders.") + (has_text_encoder ? "1" : "0") + ".model.";
  return out;
}

KeyLayout detect_key_layout(const std::vector<std::string>& names) {
  static const char* kLdmMarkers[] = {"model.diffusion_model.", "first_stage_model.", "conditioner.embedders.",
                                      "input_blocks.", "middle_block.", "encoder.down.", "decoder.up.",
                                      "transformer.resblocks."};
  for (const auto& name : names)
    for (const char* marker : kLdmMarkers)
      if (starts_with(name, marker)) return KeyLayout::Ldm;
  return KeyLayout::Diffusers;
}

SplitCheckpoint ldm_checkpoint_to_diffusers(const TensorMap& checkpoint) {
  const std::vector<std::string> names = checkpoint.names();
  const LdmPrefixes prefixes = detect_ldm_prefixes(names);
  if (prefixes.prefix.empty())
    throw Error(ErrorCode::ModelLoadError,
                "'" + checkpoint.source() + "' has no SDXL single-file component (no model.diffusion_model., "
                "first_stage_model. or conditioner.embedders. keys)");
  SplitCheckpoint out;
  std::set<std::string> used;
  for (const auto& [component, prefix] : prefixes.prefix) {
    const TensorMap part = checkpoint.with_prefix(prefix);
    const KeyMap map = KeyMap::for_component(component, KeyLayout::Ldm, part.names());
    std::vector<std::string> unmapped;
    out.components[component] = map.to_diffusers(part, &unmapped);
    for (const auto& [key, tensor] : part) used.insert(prefix + key);
    for (const auto& key : unmapped) used.erase(prefix + key);
  }
  for (const auto& name : names)
    if (used.count(name) == 0) out.ignored.push_back(name);
  return out;
}

TensorMap diffusers_to_ldm_checkpoint(const std::map<Component, TensorMap>& components) {
  const LdmPrefixes prefixes = standard_ldm_prefixes(components.count(Component::TextEncoder) > 0,
                                                     components.count(Component::TextEncoder2) > 0);
  TensorMap out;
  for (const auto& [component, state] : components) {
    const KeyMap map = KeyMap::for_component(component, KeyLayout::Diffusers, state.names());
    std::vector<std::string> unmapped;
    const TensorMap converted = map.to_ldm(state, &unmapped);
    if (!unmapped.empty())
      throw Error(ErrorCode::ModelLoadError, std::string("no LDM name for ") + component_folder(component) +
                                                 " key '" + unmapped.front() + "'");
    const std::string& prefix = prefixes.prefix.at(component);
    for (const auto& [key, tensor] : converted) out.set(prefix + key, tensor);
  }
  return out;
}

}  // namespace sdxlhost::nn
