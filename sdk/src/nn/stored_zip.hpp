#pragma once
/// @file stored_zip.hpp
/// (internal to sdxlhost_nn) The index of a zip archive held in memory, as `torch.save` writes
/// it: every member stored (method 0), local headers with zeroed sizes (flag bit 3), ZIP64
/// records when the archive is large. Only the central directory is trusted for sizes; every
/// offset and size is checked against the buffer. Nothing is decompressed: a compressed member
/// is refused. Thread-safety: pure functions.

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace sdxlhost::nn::detail {

/// One stored member: where its bytes are inside the archive buffer.
struct ZipMember {
  std::uint64_t offset = 0;  ///< first byte of the member's data in the buffer
  std::uint64_t size = 0;    ///< its length in bytes
};

/// Reads the central directory of the zip archive in [bytes, bytes + size). Throws
/// sdk::Error(ModelLoadError) naming `source` when it is not a zip, is truncated, has a member
/// outside the buffer, a compressed member, or a name twice.
std::map<std::string, ZipMember> read_stored_zip(const std::uint8_t* bytes, std::size_t size,
                                                 const std::string& source);

}  // namespace sdxlhost::nn::detail
