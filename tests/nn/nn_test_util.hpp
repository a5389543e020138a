#pragma once
// Small helpers shared by the nn tests: the shared/ folder, golden JSON, meta tensors of a key
// list and a self-removing temp folder.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

#include "common/temp_dir.hpp"
#include "sdxlhost/nn/tensor_map.hpp"

namespace sdxlhost::test {

/// The shared/ folder with the goldens (env SDXLHOST_SHARED_DIR, else the compile-time define).
inline std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("SDXLHOST_SHARED_DIR"); env != nullptr && *env != '\0') return env;
  return SDXLHOST_SHARED_DIR;
}

/// shared/goldens/<relative> parsed as JSON; throws std::runtime_error naming a missing file.
inline nlohmann::json read_golden_json(const std::string& relative) {
  std::ifstream in(shared_dir() / "goldens" / relative);
  if (!in) throw std::runtime_error("missing golden " + relative);
  return nlohmann::json::parse(in);
}

/// A state dict of meta tensors with the shapes of a `{key: shape}` list (nothing allocated).
inline sdxlhost::nn::TensorMap meta_tensors(const nlohmann::json& list) {
  sdxlhost::nn::TensorMap out;
  for (const auto& [key, shape] : list.items())
    out.set(key, at::empty(shape.get<std::vector<int64_t>>(), at::TensorOptions().device(at::kMeta)));
  return out;
}

/// The shared temp-folder helper (tests/common/temp_dir.hpp).
using sdxlhost::test_support::TempDir;

}  // namespace sdxlhost::test
