#pragma once
/// @file torch_zip_writer.hpp
/// Test-side writers for the files the `.pth` reader must handle or refuse: a stored zip archive
/// (what torch.save writes: local headers, central directory, end record) and the protocol-2
/// pickle of a state dict as torch.save emits it (`_rebuild_tensor_v2` over persistent-id
/// storages). Small and explicit so each hostile variant is one changed field.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace sdxlhost::test_support {

/// CRC-32 (IEEE) of `data`, for honest zip headers.
inline std::uint32_t crc32(const std::string& data) {
  std::uint32_t crc = 0xFFFFFFFFu;
  for (unsigned char byte : data) {
    crc ^= byte;
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

inline void put(std::string& out, std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((value >> (8 * i)) & 0xFF);
}

/// A zip archive of stored members (method as given; 0 = stored, what torch writes).
inline std::string stored_zip(const std::vector<std::pair<std::string, std::string>>& members, int method = 0) {
  std::string out, directory;
  for (const auto& [name, data] : members) {
    const std::size_t offset = out.size();
    put(out, 0x04034b50, 4); put(out, 20, 2); put(out, 0, 2); put(out, static_cast<std::uint64_t>(method), 2);
    put(out, 0, 4); put(out, crc32(data), 4); put(out, data.size(), 4); put(out, data.size(), 4);
    put(out, name.size(), 2); put(out, 0, 2);
    out += name + data;
    put(directory, 0x02014b50, 4); put(directory, 20, 2); put(directory, 20, 2); put(directory, 0, 2);
    put(directory, static_cast<std::uint64_t>(method), 2); put(directory, 0, 4); put(directory, crc32(data), 4);
    put(directory, data.size(), 4); put(directory, data.size(), 4); put(directory, name.size(), 2);
    put(directory, 0, 2); put(directory, 0, 2); put(directory, 0, 2); put(directory, 0, 2); put(directory, 0, 4);
    put(directory, offset, 4);
    directory += name;
  }
  const std::size_t directory_offset = out.size();
  out += directory;
  put(out, 0x06054b50, 4); put(out, 0, 2); put(out, 0, 2); put(out, members.size(), 2); put(out, members.size(), 2);
  put(out, directory.size(), 4); put(out, directory_offset, 4); put(out, 0, 2);
  return out;
}

/// One tensor of a state-dict pickle.
struct PickledTensor {
  std::string name;                  ///< state-dict key
  std::string storage_key;           ///< record data/<key>
  std::string storage_type = "FloatStorage";
  std::int64_t storage_numel = 0;    ///< what the persistent id claims
  std::int64_t offset = 0;
  std::vector<std::int64_t> sizes;
  std::vector<std::int64_t> strides;
};

inline void pickle_string(std::string& out, const std::string& s) { out += 'X'; put(out, s.size(), 4); out += s; }
inline void pickle_int(std::string& out, std::int64_t v) { out += 'J'; put(out, static_cast<std::uint64_t>(v), 4); }
inline void pickle_tuple(std::string& out, const std::vector<std::int64_t>& values) {
  out += '(';
  for (auto v : values) pickle_int(out, v);
  out += 't';
}

/// `torch.save(state_dict)`'s pickle (protocol 2), optionally under a wrapper key.
inline std::string state_dict_pickle(const std::vector<PickledTensor>& tensors, const std::string& wrapper = {}) {
  std::string out = "\x80\x02}";
  if (!wrapper.empty()) { pickle_string(out, wrapper); out += '}'; }
  out += '(';
  for (const auto& t : tensors) {
    pickle_string(out, t.name);
    out += "ctorch._utils\n_rebuild_tensor_v2\n(";
    out += '(';
    pickle_string(out, "storage");
    out += "ctorch\n" + t.storage_type + "\n";
    pickle_string(out, t.storage_key);
    pickle_string(out, "cpu");
    pickle_int(out, t.storage_numel);
    out += "tQ";
    pickle_int(out, t.offset);
    pickle_tuple(out, t.sizes);
    pickle_tuple(out, t.strides);
    out += "\x89" "ccollections\nOrderedDict\n)R";
    out += "tR";
  }
  out += 'u';
  if (!wrapper.empty()) out += 's';
  out += '.';
  return out;
}

/// Float32 little-endian bytes of `values`.
inline std::string float_bytes(const std::vector<float>& values) {
  return std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(float));
}

}  // namespace sdxlhost::test_support
