#pragma once
/// @file lora_files.hpp
/// A LoRA file as the plugin keeps it in the host's model cache: the parsed network (tensors
/// stay views on the memory-mapped file) and the file's A1111 short hash.
/// Thread-safety: a LoadedLora is immutable once loaded and shared by concurrent jobs.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "sdxlhost/nn/lora.hpp"
#include "sdxlhost/sdk/models.hpp"

namespace sdxlhost::lora {

/// One parsed LoRA file.
struct LoadedLora {
  nn::LoraNetwork network;
  std::string sha256;  ///< hex SHA-256 of the tensor data (A1111 / AutoV3: the bytes after the header)
  std::uint64_t bytes = 0;  ///< the file's size
  /// The first 12 hex digits of sha256, as A1111 writes in "Lora hashes".
  std::string short_hash() const { return sha256.substr(0, 12); }
};

/// Parses the safetensors file at `path`. Throws sdk::Error(ModelLoadError / ValidationError)
/// naming `field` when it is unreadable or holds no LoRA.
std::shared_ptr<LoadedLora> read_lora_file(const std::filesystem::path& path, const std::string& field);

/// The LoRA `name` (models_root/loras/NAME[.safetensors]) from the host's model cache.
std::shared_ptr<LoadedLora> load_lora(sdk::ModelAccess& models, const std::string& name, const std::string& field);

/// Hex SHA-256 of the bytes of `path` after the safetensors header (8-byte length + header).
std::string safetensors_data_sha256(const std::filesystem::path& path);

/// The request field of LoRA i ("data.lora.models[i].name").
std::string lora_field(std::size_t i);

}  // namespace sdxlhost::lora
