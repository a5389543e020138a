#pragma once
/// @file temp_dir.hpp
/// File helpers of the host_infra tests; TempDir itself is shared (tests/common/temp_dir.hpp).

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/temp_dir.hpp"

namespace sdxlhost::test_support {

/// Writes `text` to `file`, creating parent folders.
inline void write_file(const std::filesystem::path& file, const std::string& text) {
  std::filesystem::create_directories(file.parent_path());
  std::ofstream(file, std::ios::binary) << text;
}

/// The bytes of `file`.
inline std::vector<unsigned char> read_bytes(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace sdxlhost::test_support
