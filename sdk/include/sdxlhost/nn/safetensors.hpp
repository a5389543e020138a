#pragma once
/// @file safetensors.hpp
/// Reading and writing `.safetensors` files (https://github.com/huggingface/safetensors format:
/// u64 little-endian header length N, N bytes of JSON header, then the raw tensor bytes).
///
/// Reading memory-maps the file; `SafetensorsFile::tensor()` returns a tensor that is a view on
/// the mapping (no copy) and keeps the mapping alive for as long as any such tensor exists. The
/// mapping is private copy-on-write: writing into a returned tensor (e.g. an in-place LoRA patch)
/// changes only this process's copy, never the file. Opening only parses the header, so a 7 GB
/// checkpoint opens instantly; pages are read when a tensor is first touched.
///
/// The header is untrusted input. `parse_safetensors_header` checks every field (header length,
/// JSON syntax, entry shapes, dtypes, offsets inside the data section, no overlaps,
/// `numel x element size == byte length`) and throws `sdk::Error(ModelLoadError)` naming the
/// file and the tensor. It works on plain bytes so it can be fuzzed.
///
/// Only safetensors is read: PyTorch `.pth`/`.ckpt` pickles are not (unpickling arbitrary files
/// is not safe; see docs/nn.md).
///
/// Thread-safety: a `SafetensorsFile` is immutable after `open`; all const methods may be called
/// from several threads at once.

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sdxlhost/nn/tensor_map.hpp"
#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::nn {

/// Largest header accepted (the reference implementation's limit is 100 MB too).
inline constexpr std::uint64_t kMaxSafetensorsHeaderBytes = 100ull * 1024 * 1024;

/// One tensor entry of a safetensors header.
struct SafetensorsEntry {
  std::string name;            ///< the tensor's key
  std::string dtype_name;      ///< the file's spelling ("F32", "BF16", ...)
  at::ScalarType dtype;        ///< the matching ATen type
  std::vector<std::int64_t> shape;  ///< dimensions; empty = 0-dim scalar
  std::uint64_t begin = 0;     ///< first byte, relative to the start of the data section
  std::uint64_t end = 0;       ///< one past the last byte, relative to the data section
};

/// A validated safetensors header.
struct SafetensorsHeader {
  std::vector<SafetensorsEntry> entries;        ///< sorted by name
  std::map<std::string, std::string> metadata;  ///< the `__metadata__` object (strings only)
  std::uint64_t data_offset = 0;                ///< file offset of the data section (8 + N)

  /// The entry called `name`, or nullptr.
  const SafetensorsEntry* find(std::string_view name) const;
};

/// Parses and validates the header of a complete safetensors file held in `bytes`
/// (`size` = the whole file's size, so offsets can be checked). Never reads outside
/// [bytes, bytes + size). Throws sdk::Error(ModelLoadError) naming `source` (a file name for
/// messages) and, where one is at fault, the tensor.
SDXLHOST_API SafetensorsHeader parse_safetensors_header(const std::uint8_t* bytes,
                                                        std::size_t size,
                                                        const std::string& source);

/// The safetensors spelling of an ATen dtype ("F32"); throws sdk::Error(ModelLoadError) for a
/// dtype the format has no name for.
SDXLHOST_API std::string safetensors_dtype_name(at::ScalarType dtype);

/// An opened, memory-mapped safetensors file.
class SDXLHOST_API SafetensorsFile {
 public:
  /// Maps `path` and validates its header. Throws sdk::Error(ModelLoadError) when the file is
  /// missing, unreadable or invalid; the message names the file (and the tensor at fault).
  static std::shared_ptr<const SafetensorsFile> open(const std::filesystem::path& path);

  /// The file this was opened from.
  const std::filesystem::path& path() const { return path_; }
  /// The validated header.
  const SafetensorsHeader& header() const { return header_; }
  /// Tensor names, sorted.
  std::vector<std::string> names() const;
  /// True when the file has a tensor called `name`.
  bool contains(std::string_view name) const { return header_.find(name) != nullptr; }
  /// `__metadata__` of the file (may be empty).
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }

  /// The tensor `name` as a CPU view on the mapping (zero copy when the bytes are aligned for
  /// the dtype, else a copy). The view keeps the mapping alive. Throws sdk::Error(ModelLoadError)
  /// when there is no such tensor.
  at::Tensor tensor(std::string_view name) const;

  /// Every tensor whose name starts with `prefix`, as views, keyed by the name with the prefix
  /// removed when `strip_prefix` is true.
  TensorMap tensors(std::string_view prefix = {}, bool strip_prefix = false) const;

  /// Opaque owner of the mapping (shared by every view). Public so that the factory can use it.
  struct Mapping;

 private:
  SafetensorsFile() = default;

  std::filesystem::path path_;
  std::shared_ptr<Mapping> mapping_;
  SafetensorsHeader header_;
};

/// Serializes `tensors` (any device, any contiguous or strided layout; written as contiguous
/// little-endian bytes) into safetensors bytes: entries sorted by (element size desc, name),
/// header padded with spaces to a multiple of 8. Throws sdk::Error(ModelLoadError) for a dtype
/// the format cannot hold.
SDXLHOST_API std::string serialize_safetensors(const TensorMap& tensors,
                                               const std::map<std::string, std::string>& metadata = {});

/// Writes `serialize_safetensors(tensors, metadata)` to `path` (via a temporary file in the same
/// folder, renamed into place). Throws sdk::Error(OutputError) when the file cannot be written.
SDXLHOST_API void write_safetensors(const std::filesystem::path& path, const TensorMap& tensors,
                                    const std::map<std::string, std::string>& metadata = {});

}  // namespace sdxlhost::nn
