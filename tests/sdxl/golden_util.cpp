#include "golden_util.hpp"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <limits>

#include "sdxlhost/nn/safetensors.hpp"

namespace sdxl_test {

std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("SDXLHOST_SHARED_DIR")) return env;
  return SDXLHOST_SHARED_DIR;
}

std::filesystem::path golden(const std::string& relative) { return shared_dir() / "goldens" / relative; }

sdxlhost::nn::TensorMap load_tensors(const std::filesystem::path& file) {
  return sdxlhost::nn::SafetensorsFile::open(file)->tensors();
}

sdxlhost::nn::TensorMap meta_tensors(const std::filesystem::path& key_list) {
  std::ifstream in(key_list);
  if (!in) throw std::runtime_error("missing golden " + key_list.string());
  const auto shapes = nlohmann::json::parse(in);
  sdxlhost::nn::TensorMap map(key_list.string());
  for (const auto& [key, shape] : shapes.items()) {
    map.set(key, at::empty(shape.get<std::vector<std::int64_t>>(),
                           at::TensorOptions().dtype(at::kFloat).device(at::kMeta)));
  }
  return map;
}

nlohmann::json read_json(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in) throw std::runtime_error("missing " + file.string());
  return nlohmann::json::parse(in);
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes()) return std::numeric_limits<double>::infinity();
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

}  // namespace sdxl_test
