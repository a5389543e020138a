// LoRA / LoHa / LoKr files: parsing from key names, target lookup and weight deltas (lora.hpp).
#include "sdxlhost/nn/lora.hpp"

#include <ATen/ATen.h>

#include <algorithm>
#include <sstream>

#include "sdxlhost/nn/key_map.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::nn {
namespace {

using sdk::Error;
using sdk::ErrorCode;

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, const std::string& p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

std::string flat(std::string name) {
  std::replace(name.begin(), name.end(), '.', '_');
  return name;
}

/// A tensor-name suffix and the role its tensor plays in the module.
struct Suffix {
  const char* text;
  const char* role;
};

// kohya / LyCORIS, diffusers and PEFT spellings of the same roles. Checked in order.
constexpr Suffix kSuffixes[] = {
    {".lora_down.weight", "down"},          {".lora_up.weight", "up"},
    {".lora.down.weight", "down"},          {".lora.up.weight", "up"},
    {".lora_linear_layer.down.weight", "down"}, {".lora_linear_layer.up.weight", "up"},
    {".lora_A.weight", "down"},             {".lora_B.weight", "up"},
    {".hada_w1_a", "hada_w1_a"},            {".hada_w1_b", "hada_w1_b"},
    {".hada_w2_a", "hada_w2_a"},            {".hada_w2_b", "hada_w2_b"},
    {".hada_t1", "hada_t1"},                {".hada_t2", "hada_t2"},
    {".lokr_w1_a", "lokr_w1_a"},            {".lokr_w1_b", "lokr_w1_b"},
    {".lokr_w1", "lokr_w1"},                {".lokr_w2_a", "lokr_w2_a"},
    {".lokr_w2_b", "lokr_w2_b"},            {".lokr_w2", "lokr_w2"},
    {".lokr_t2", "lokr_t2"},                {".alpha", "alpha"},
};

// Forms we recognise but do not implement: refused with their name rather than half-applied.
constexpr const char* kUnsupported[] = {".lora_mid.weight", ".dora_scale"};

/// (module path, role) of a key, or nullopt when it is no LoRA tensor.
std::optional<std::pair<std::string, std::string>> split_key(const std::string& key) {
  for (const auto& s : kSuffixes) {
    if (ends_with(key, s.text)) return std::make_pair(key.substr(0, key.size() - std::string(s.text).size()), std::string(s.role));
  }
  // PEFT with an adapter name: M.lora_A.<adapter>.weight
  for (const char* ab : {".lora_A.", ".lora_B."}) {
    const auto at = key.rfind(ab);
    if (at != std::string::npos && ends_with(key, ".weight")) {
      const std::string adapter = key.substr(at + 8, key.size() - at - 8 - 7);
      if (!adapter.empty() && adapter.find('.') == std::string::npos)
        return std::make_pair(key.substr(0, at), std::string(ab[6] == 'A' ? "down" : "up"));
    }
  }
  // diffusers' old attention-processor form: M.processor.to_q_lora.down.weight
  const auto processor = key.find(".processor.");
  if (processor != std::string::npos) {
    for (const char* role : {"down", "up"}) {
      const std::string tail = std::string("_lora.") + role + ".weight";
      if (!ends_with(key, tail)) continue;
      const std::size_t from = processor + 11;
      std::string projection = key.substr(from, key.size() - tail.size() - from);
      if (projection == "to_out") projection = "to_out.0";
      return std::make_pair(key.substr(0, processor) + "." + projection, std::string(role));
    }
  }
  return std::nullopt;
}

/// Splits a module path into (component, name inside it, format).
struct ModulePath {
  std::string component;
  std::string name;
  LoraFormat format;
};

ModulePath split_module(std::string path, bool peft_role) {
  const std::string peft_prefix = "base_model.model.";
  if (starts_with(path, peft_prefix)) path = path.substr(peft_prefix.size());
  static const std::pair<const char*, const char*> kKohya[] = {
      {"lora_unet_", "unet"}, {"lora_te1_", "text_encoder"}, {"lora_te2_", "text_encoder_2"},
      {"lora_te_", "text_encoder"}};
  for (const auto& [prefix, component] : kKohya)
    if (starts_with(path, prefix)) return {component, path.substr(std::string(prefix).size()), LoraFormat::Kohya};
  const LoraFormat format = peft_role ? LoraFormat::Peft : LoraFormat::Diffusers;
  static const std::pair<const char*, const char*> kDiffusers[] = {
      {"unet.", "unet"}, {"text_encoder_2.", "text_encoder_2"}, {"text_encoder.", "text_encoder"}};
  for (const auto& [prefix, component] : kDiffusers) {
    if (!starts_with(path, prefix)) continue;
    std::string name = path.substr(std::string(prefix).size());
    if (starts_with(name, peft_prefix)) name = name.substr(peft_prefix.size());
    return {component, name, format};
  }
  return {"unet", path, format};  // PEFT state dict of a bare UNet (get_peft_model_state_dict(unet))
}

LoraKind kind_of_role(const std::string& role) {
  if (starts_with(role, "hada_")) return LoraKind::LoHa;
  if (starts_with(role, "lokr_")) return LoraKind::LoKr;
  return LoraKind::LoRA;
}

std::string shape_text(at::IntArrayRef shape) {
  std::ostringstream out;
  out << "(";
  for (std::size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ")";
  return out.str();
}

double alpha_value(const at::Tensor& t, const std::string& key, const std::string& field) {
  if (t.numel() != 1) throw Error(ErrorCode::ValidationError, "LoRA tensor '" + key + "' (alpha) must hold one number", field);
  return t.to(at::kDouble).reshape({}).item<double>();
}

void require_roles(const LoraModule& m, std::initializer_list<const char*> roles, const std::string& field) {
  for (const char* role : roles)
    if (!m.tensors.count(role))
      throw Error(ErrorCode::ValidationError,
                  "LoRA module '" + m.name + "' (" + m.component + ", " + lora_kind_name(m.kind) + ") has no '" +
                      role + "' tensor",
                  field);
}

void check_complete(const LoraModule& m, const std::string& field) {
  switch (m.kind) {
    case LoraKind::LoRA: require_roles(m, {"down", "up"}, field); break;
    case LoraKind::LoHa: require_roles(m, {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"}, field); break;
    case LoraKind::LoKr:
      if (!m.tensors.count("lokr_w1")) require_roles(m, {"lokr_w1_a", "lokr_w1_b"}, field);
      if (!m.tensors.count("lokr_w2")) require_roles(m, {"lokr_w2_a", "lokr_w2_b"}, field);
      break;
  }
  for (const auto& [role, t] : m.tensors)
    if (!at::isFloatingType(t.scalar_type()))
      throw Error(ErrorCode::ValidationError, "LoRA module '" + m.name + "': tensor '" + role + "' is not floating point", field);
}

at::Tensor f32(const LoraModule& m, const char* role) { return m.tensors.at(role).to(at::kFloat); }

/// Tucker-decomposed factor (LyCORIS): t (r, r, k, k), a (r, out), b (r, in) -> (out, in, k, k).
at::Tensor tucker(const at::Tensor& t, const at::Tensor& a, const at::Tensor& b) {
  return at::einsum("ijkl,jr,ip->prkl", {t, b, a});
}

[[noreturn]] void does_not_fit(const LoraModule& m, at::IntArrayRef got, at::IntArrayRef weight) {
  throw Error(ErrorCode::ValidationError, "LoRA module '" + m.name + "' (" + m.component + ") makes a change of shape " +
                                              shape_text(got) + " but the model's weight is " + shape_text(weight));
}

at::Tensor fit(const LoraModule& m, const at::Tensor& product, at::IntArrayRef weight_shape) {
  std::int64_t numel = 1;
  for (auto d : weight_shape) numel *= d;
  if (product.numel() != numel || weight_shape.empty() || product.size(0) != weight_shape[0])
    does_not_fit(m, product.sizes(), weight_shape);
  return product.reshape(weight_shape);
}

at::Tensor lora_product(const LoraModule& m, at::IntArrayRef weight_shape, double factor) {
  const at::Tensor down = f32(m, "down");
  const at::Tensor up = f32(m, "up") * factor;
  const std::int64_t rank = down.size(0);
  if (down.dim() < 2 || up.dim() < 2 || up.size(1) != rank || up.numel() != up.size(0) * rank)
    throw Error(ErrorCode::ValidationError, "LoRA module '" + m.name + "': down " + shape_text(down.sizes()) +
                                                " and up " + shape_text(up.sizes()) + " do not multiply");
  // A conv down (rank, in, k, k) only fits a conv weight with the same (in, k, k).
  if (down.dim() == 4 && (weight_shape.size() != 4 || down.sizes().slice(1) != weight_shape.slice(1)))
    does_not_fit(m, {up.size(0), down.size(1), down.size(2), down.size(3)}, weight_shape);
  return fit(m, at::matmul(up.reshape({up.size(0), rank}), down.reshape({rank, -1})), weight_shape);
}

at::Tensor loha_product(const LoraModule& m, at::IntArrayRef weight_shape, double factor) {
  at::Tensor m1, m2;
  if (m.tensors.count("hada_t1") && m.tensors.count("hada_t2")) {
    m1 = tucker(f32(m, "hada_t1"), f32(m, "hada_w1_a"), f32(m, "hada_w1_b"));
    m2 = tucker(f32(m, "hada_t2"), f32(m, "hada_w2_a"), f32(m, "hada_w2_b"));
  } else {
    m1 = at::matmul(f32(m, "hada_w1_a"), f32(m, "hada_w1_b").flatten(1));
    m2 = at::matmul(f32(m, "hada_w2_a"), f32(m, "hada_w2_b").flatten(1));
  }
  if (m1.sizes() != m2.sizes()) does_not_fit(m, m2.sizes(), m1.sizes());
  return fit(m, m1.mul_(factor).mul_(m2), weight_shape);
}

at::Tensor lokr_product(const LoraModule& m, at::IntArrayRef weight_shape, double factor) {
  at::Tensor w1 = m.tensors.count("lokr_w1") ? f32(m, "lokr_w1")
                                             : at::matmul(f32(m, "lokr_w1_a"), f32(m, "lokr_w1_b"));
  at::Tensor w2;
  if (m.tensors.count("lokr_w2")) {
    w2 = f32(m, "lokr_w2");
  } else if (m.tensors.count("lokr_t2")) {
    w2 = tucker(f32(m, "lokr_t2"), f32(m, "lokr_w2_a"), f32(m, "lokr_w2_b"));
  } else {
    // a conv's factorised w2 is (out2, in2 x k x k): kron then reshape lays it out as the weight
    w2 = at::matmul(f32(m, "lokr_w2_a"), f32(m, "lokr_w2_b").flatten(1));
  }
  w1 = w1 * factor;  // the small factor
  if (w2.dim() == 4 && w1.dim() == 2) w1 = w1.unsqueeze(2).unsqueeze(3);
  return fit(m, at::kron(w1, w2), weight_shape);
}

}  // namespace

const char* lora_format_name(LoraFormat format) {
  switch (format) {
    case LoraFormat::Kohya: return "kohya";
    case LoraFormat::Diffusers: return "diffusers";
    case LoraFormat::Peft: return "peft";
  }
  return "?";
}

const char* lora_kind_name(LoraKind kind) {
  switch (kind) {
    case LoraKind::LoRA: return "lora";
    case LoraKind::LoHa: return "loha";
    case LoraKind::LoKr: return "lokr";
  }
  return "?";
}

std::int64_t LoraModule::rank() const {
  switch (kind) {
    case LoraKind::LoRA: return tensors.at("down").size(0);
    case LoraKind::LoHa: return tensors.at("hada_w1_b").size(0);
    case LoraKind::LoKr:
      if (!tensors.count("lokr_w1")) return tensors.at("lokr_w1_b").size(0);
      if (!tensors.count("lokr_w2")) return tensors.at("lokr_w2_b").size(0);
      return 0;  // both factors full: LyCORIS ignores alpha
  }
  return 0;
}

double LoraModule::scale() const {
  const std::int64_t r = rank();
  return alpha && r > 0 ? *alpha / static_cast<double>(r) : 1.0;
}

at::Tensor LoraModule::delta(at::IntArrayRef weight_shape, double multiplier) const {
  const double factor = multiplier * scale();
  switch (kind) {
    case LoraKind::LoRA: return lora_product(*this, weight_shape, factor);
    case LoraKind::LoHa: return loha_product(*this, weight_shape, factor);
    case LoraKind::LoKr: return lokr_product(*this, weight_shape, factor);
  }
  return {};
}

std::size_t LoraNetwork::count(const std::string& component) const {
  return static_cast<std::size_t>(std::count_if(modules.begin(), modules.end(),
                                                [&](const LoraModule& m) { return m.component == component; }));
}

LoraNetwork parse_lora(const TensorMap& tensors, const std::string& field) {
  LoraNetwork network;
  std::map<std::string, std::size_t> index;  // component + '\n' + name -> modules[i]
  std::map<LoraFormat, std::size_t> formats;
  for (const auto& [key, tensor] : tensors) {
    for (const char* unsupported : kUnsupported)
      if (ends_with(key, unsupported))
        throw Error(ErrorCode::ValidationError,
                    "LoRA tensor '" + key + "' uses a form this host does not apply (" + std::string(unsupported + 1) + ")",
                    field);
    const auto split = split_key(key);
    if (!split) {
      network.ignored.push_back(key);
      continue;
    }
    const auto& [path, role] = *split;
    const bool peft = key.find(".lora_A") != std::string::npos || key.find(".lora_B") != std::string::npos;
    const ModulePath where = split_module(path, peft);
    ++formats[where.format];
    const std::string id = where.component + "\n" + where.name;
    auto [it, added] = index.emplace(id, network.modules.size());
    if (added) {
      LoraModule module;
      module.component = where.component;
      module.name = where.name;
      network.modules.push_back(std::move(module));
    }
    LoraModule& module = network.modules[it->second];
    if (role == "alpha") {
      module.alpha = alpha_value(tensor, key, field);
      continue;
    }
    const LoraKind kind = kind_of_role(role);
    const bool first_tensor = module.tensors.empty();
    if (!first_tensor && module.kind != kind)
      throw Error(ErrorCode::ValidationError, "LoRA module '" + module.name + "' mixes " + lora_kind_name(module.kind) +
                                                  " and " + lora_kind_name(kind) + " tensors",
                  field);
    module.kind = kind;
    if (!module.tensors.emplace(role, tensor).second)
      throw Error(ErrorCode::ValidationError, "LoRA module '" + module.name + "' has two '" + role + "' tensors (" + key + ")", field);
  }
  // An alpha alone is no module.
  network.modules.erase(std::remove_if(network.modules.begin(), network.modules.end(),
                                       [](const LoraModule& m) { return m.tensors.empty(); }),
                        network.modules.end());
  if (network.modules.empty()) {
    std::string first = tensors.empty() ? "none" : "'" + tensors.names().front() + "'";
    throw Error(ErrorCode::ValidationError,
                "no LoRA tensors in this file (no key in a kohya, LyCORIS, diffusers or PEFT LoRA form; first key: " +
                    first + ")",
                field);
  }
  for (const auto& module : network.modules) check_complete(module, field);
  network.format = std::max_element(formats.begin(), formats.end(), [](const auto& a, const auto& b) {
                     return a.second < b.second;
                   })->first;
  return network;
}

LoraTargetIndex::LoraTargetIndex(const sdk::WeightTarget& target) {
  const std::vector<std::string> keys = target.keys();
  const std::string weight = ".weight";
  for (const auto& key : keys) {
    if (!ends_with(key, weight)) continue;
    const std::string module = key.substr(0, key.size() - weight.size());
    by_flat_name_[flat(module)] = key;
    // some text-encoder LoRAs name modules without transformers' "text_model." prefix
    if (starts_with(module, "text_model.")) by_flat_name_.emplace(flat(module.substr(11)), key);
  }
  if (target.component() != "unet") return;
  // kohya files written from SGM checkpoints name UNet modules in the LDM layout.
  try {
    const KeyMap map = KeyMap::unet(unet_key_structure(KeyLayout::Diffusers, keys));
    for (const auto& key : keys) {
      if (!ends_with(key, weight)) continue;
      const auto ldm = map.to_ldm_key(key);
      if (!ldm || ldm->second->op != KeyOp::Rename || !ends_with(ldm->first, weight)) continue;
      by_flat_name_.emplace(flat(ldm->first.substr(0, ldm->first.size() - weight.size())), key);
    }
  } catch (const sdk::Error&) {
    // not an SDXL-shaped UNet: diffusers names only
  }
}

std::string LoraTargetIndex::find(const std::string& name) const {
  auto it = by_flat_name_.find(flat(name));
  return it == by_flat_name_.end() ? std::string() : it->second;
}

LoraApplyResult apply_lora(const LoraNetwork& network, double multiplier, sdk::WeightTarget& target,
                           const std::string& field) {
  LoraApplyResult result;
  const std::string component = target.component();
  const LoraTargetIndex index(target);
  std::vector<std::pair<std::string, at::Tensor>> changes;
  for (const auto& module : network.modules) {
    if (module.component != component) continue;
    ++result.modules;
    const std::string key = index.find(module.name);
    if (key.empty()) {
      result.unmatched.push_back(module.name);
      continue;
    }
    ++result.matched;
    if (multiplier == 0.0) continue;
    const at::Tensor weight = target.weight(key);
    try {
      changes.emplace_back(key, module.delta(weight.sizes(), multiplier));
    } catch (const Error& e) {
      throw Error(ErrorCode::ValidationError,
                  std::string(e.what()) + " (" + std::to_string(result.matched - 1) + " of its " +
                      std::to_string(network.count(component)) + " " + component +
                      " modules matched before this one; a LoRA for another base model?)",
                  field);
    }
  }
  for (const auto& [key, delta] : changes) target.add_delta(key, delta);
  return result;
}

}  // namespace sdxlhost::nn
