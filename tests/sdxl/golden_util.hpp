#pragma once
// Helpers shared by the sdxl tests: where the goldens are, and tensor comparison.
#include <ATen/core/Tensor.h>

#include <filesystem>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "sdxlhost/nn/tensor_map.hpp"

namespace sdxl_test {

/// ../shared (from SDXLHOST_SHARED_DIR, env or compile definition).
std::filesystem::path shared_dir();
/// ../shared/goldens/<relative>.
std::filesystem::path golden(const std::string& relative);
/// All tensors of a safetensors file (views on the mapping).
sdxlhost::nn::TensorMap load_tensors(const std::filesystem::path& file);
/// Tensors whose shapes come from a goldens/keys/*.json list, allocated on the meta device.
sdxlhost::nn::TensorMap meta_tensors(const std::filesystem::path& key_list);
/// A JSON file (throws std::runtime_error naming it when it is missing).
nlohmann::json read_json(const std::filesystem::path& file);
/// max |a - b| (as double); +inf when the shapes differ.
double max_abs_diff(const at::Tensor& a, const at::Tensor& b);

}  // namespace sdxl_test
