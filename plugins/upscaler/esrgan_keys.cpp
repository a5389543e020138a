// ESRGAN key names: old `model.N` and BSRGAN/RealSR spellings -> BasicSR's.
#include "esrgan_keys.hpp"

#include <map>
#include <regex>
#include <set>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::upscaler {
namespace {

using sdk::Error;
using sdk::ErrorCode;

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw Error(ErrorCode::ModelLoadError, "upscaler '" + source + "': " + what);
}

bool starts_with(const std::string& s, const std::string& prefix) { return s.compare(0, prefix.size(), prefix) == 0; }

/// "weight" / "bias" after the last dot, with the module path before it.
bool split_param(const std::string& key, std::string& module, std::string& param) {
  auto dot = key.rfind('.');
  if (dot == std::string::npos) return false;
  module = key.substr(0, dot);
  param = key.substr(dot + 1);
  return true;
}

/// BSRGAN / RealSR aliases, applied to the module path.
std::string rename_alias(const std::string& module) {
  static const std::regex trunk(R"(^RRDB_trunk\.(\d+)\.RDB(\d)\.conv(\d)$)");
  static const std::regex upconv(R"(^upconv(\d+)$)");
  std::smatch m;
  if (std::regex_match(module, m, trunk)) return "body." + m[1].str() + ".rdb" + m[2].str() + ".conv" + m[3].str();
  if (std::regex_match(module, m, upconv)) return "conv_up" + m[1].str();
  if (module == "trunk_conv") return "conv_body";
  if (module == "HRconv") return "conv_hr";
  return module;
}

/// The old Sequential: indices of top-level convs decide the number of 2x steps.
nn::TensorMap from_sequential(const nn::TensorMap& weights, const std::string& source) {
  static const std::regex top(R"(^model\.(\d+)$)");
  static const std::regex rdb(R"(^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0$)");
  static const std::regex sub(R"(^model\.1\.sub\.(\d+)$)");
  std::set<int> convs;
  std::set<int> subs;
  for (const auto& [key, tensor] : weights) {
    std::string module, param;
    split_param(key, module, param);
    std::smatch m;
    if (std::regex_match(module, m, top)) convs.insert(std::stoi(m[1].str()));
    else if (std::regex_match(module, m, sub)) subs.insert(std::stoi(m[1].str()));
  }
  if (convs.empty() || *convs.begin() != 0) fail(source, "old ESRGAN layout without model.0 (conv_first)");
  const int last = *convs.rbegin();
  if (last < 4 || (last - 4) % 3 != 0) fail(source, "old ESRGAN layout whose last conv is model." + std::to_string(last));
  const int steps = (last - 4) / 3;
  std::map<int, std::string> names{{0, "conv_first"}, {3 * steps + 2, "conv_hr"}, {last, "conv_last"}};
  for (int u = 1; u <= steps; ++u) names[3 * u] = "conv_up" + std::to_string(u);
  if (subs.size() != 1) fail(source, "old ESRGAN layout needs exactly one model.1.sub.N conv (the trunk conv)");
  const int trunk = *subs.begin();

  nn::TensorMap out(weights.source());
  for (const auto& [key, tensor] : weights) {
    std::string module, param;
    split_param(key, module, param);
    std::smatch m;
    if (std::regex_match(module, m, rdb)) {
      if (std::stoi(m[1].str()) >= trunk) fail(source, "RRDB block " + m[1].str() + " after the trunk conv");
      out.set("body." + m[1].str() + ".rdb" + m[2].str() + ".conv" + m[3].str() + "." + param, tensor);
    } else if (std::regex_match(module, m, sub)) {
      out.set("conv_body." + param, tensor);
    } else if (std::regex_match(module, m, top)) {
      auto name = names.find(std::stoi(m[1].str()));
      if (name == names.end()) fail(source, "unexpected conv " + key + " in an old ESRGAN layout with " + std::to_string(steps) + " upsampling steps");
      out.set(name->second + "." + param, tensor);
    } else {
      fail(source, "unexpected key '" + key + "' in an old ESRGAN layout");
    }
  }
  return out;
}

}  // namespace

bool is_esrgan_layout(const nn::TensorMap& weights) {
  const bool basicsr = weights.contains("conv_first.weight") &&
                       (weights.contains("body.0.rdb1.conv1.weight") || weights.contains("RRDB_trunk.0.RDB1.conv1.weight"));
  return basicsr || (weights.contains("model.0.weight") && weights.contains("model.1.sub.0.RDB1.conv1.0.weight"));
}

nn::TensorMap to_basicsr_names(const nn::TensorMap& weights, const std::string& source) {
  if (weights.contains("model.0.weight")) return from_sequential(weights, source);
  nn::TensorMap out(weights.source());
  for (const auto& [key, tensor] : weights) {
    std::string module, param;
    if (!split_param(key, module, param)) fail(source, "unexpected key '" + key + "'");
    out.set(rename_alias(module) + "." + param, tensor);
  }
  return out;
}

}  // namespace sdxlhost::upscaler
