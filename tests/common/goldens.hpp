#pragma once
/// @file goldens.hpp
/// Shared by every test area (library sdxlhost_test_support): where ../shared and its goldens
/// are, reading golden JSON (also the bare NaN / Infinity tokens Python writes), golden tensors,
/// files, and comparing tensors.

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "sdxlhost/nn/tensor_map.hpp"

namespace sdxlhost::test_support {

/// ../shared (SDXLHOST_SHARED_DIR from the environment, else the build's definition).
std::filesystem::path shared_dir();
/// ../shared/goldens/<relative>.
std::filesystem::path golden(const std::string& relative);

/// A JSON file; bare NaN / Infinity / -Infinity (Python's json.dump) become the strings "NaN",
/// "Infinity", "-Infinity". Throws std::runtime_error naming a missing file.
nlohmann::json read_json(const std::filesystem::path& file);
/// read_json(golden(relative)).
nlohmann::json read_golden_json(const std::string& relative);
/// `text` with Python's bare NaN / Infinity / -Infinity tokens quoted (strings left alone).
std::string quote_python_specials(const std::string& text);

/// All tensors of a safetensors file (views on the mapping).
nn::TensorMap load_tensors(const std::filesystem::path& file);
/// Meta-device tensors (nothing allocated) with the shapes of a `{key: shape}` list.
nn::TensorMap meta_tensors(const nlohmann::json& shapes);
/// meta_tensors of a goldens/keys/*.json file.
nn::TensorMap meta_tensors(const std::filesystem::path& key_list);
/// max |a - b| (as double); +inf when the shapes differ.
double max_abs_diff(const at::Tensor& a, const at::Tensor& b);

/// The bytes of a file ("" when it cannot be read).
std::string read_bytes(const std::filesystem::path& file);
/// Writes `bytes` to `file`, creating parent folders.
void write_bytes(const std::filesystem::path& file, const std::string& bytes);

}  // namespace sdxlhost::test_support
