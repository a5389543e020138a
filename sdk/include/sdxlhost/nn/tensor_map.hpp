#pragma once
/// @file tensor_map.hpp
/// `TensorMap`: named tensors (a state dict), ordered by name, with prefix filtering and lookups
/// that fail with a clear error naming the missing key and where it was expected.
///
/// Thread-safety: none for mutation; concurrent const access is safe.

#include <ATen/core/Tensor.h>

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::nn {

/// Name -> tensor, sorted by name.
class SDXLHOST_API TensorMap {
 public:
  /// The storage: ordered by name, heterogeneous lookup by string_view.
  using Map = std::map<std::string, at::Tensor, std::less<>>;

  TensorMap() = default;
  /// @param source where the tensors came from (a file name), used in error messages
  explicit TensorMap(std::string source) : source_(std::move(source)) {}

  /// Where the tensors came from (for messages); may be empty.
  const std::string& source() const { return source_; }
  /// Sets where the tensors came from.
  void set_source(std::string source) { source_ = std::move(source); }

  /// Adds or replaces `name`.
  void set(std::string name, at::Tensor tensor) { map_[std::move(name)] = std::move(tensor); }
  /// Removes `name`; returns whether it was present.
  bool erase(std::string_view name);
  /// True when `name` is present.
  bool contains(std::string_view name) const { return map_.find(name) != map_.end(); }
  /// The tensor `name`; throws sdk::Error(ModelLoadError) naming the key and the source when
  /// it is absent.
  const at::Tensor& at(std::string_view name) const;
  /// The tensor `name`, or nullptr when absent.
  const at::Tensor* find(std::string_view name) const;

  /// The entries whose name starts with `prefix`; with `strip_prefix` the prefix is removed
  /// from their names.
  TensorMap with_prefix(std::string_view prefix, bool strip_prefix = true) const;
  /// All names, sorted.
  std::vector<std::string> names() const;

  /// Number of tensors.
  std::size_t size() const { return map_.size(); }
  /// True when there are no tensors.
  bool empty() const { return map_.empty(); }
  /// Iteration over (name, tensor) in name order.
  Map::const_iterator begin() const { return map_.begin(); }
  /// End of iteration.
  Map::const_iterator end() const { return map_.end(); }
  /// The underlying map.
  const Map& map() const { return map_; }

 private:
  std::string source_;
  Map map_;
};

}  // namespace sdxlhost::nn
