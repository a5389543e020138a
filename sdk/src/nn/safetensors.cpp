// Safetensors: header validation (untrusted input), memory-mapped reading, writing.
#include "sdxlhost/nn/safetensors.hpp"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>
#include <nlohmann/json.hpp>
#include <system_error>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::nn {
namespace {

using sdk::Error;
using sdk::ErrorCode;

static_assert(sizeof(void*) == 8, "64-bit platform required");

/// Throws a ModelLoadError naming the file (and the tensor when given).
[[noreturn]] void fail(const std::string& source, const std::string& tensor,
                       const std::string& what) {
  std::string message = "safetensors file '" + source + "'";
  if (!tensor.empty()) message += ", tensor '" + tensor + "'";
  throw Error(ErrorCode::ModelLoadError, message + ": " + what);
}

struct DtypeInfo {
  const char* name;
  at::ScalarType type;
  std::size_t bytes;
};

/// The safetensors dtypes that ATen 1.13 can hold. Others (U16/U32/U64/F8_*) are refused.
constexpr DtypeInfo kDtypes[] = {
    {"F64", at::kDouble, 8}, {"F32", at::kFloat, 4},  {"F16", at::kHalf, 2},
    {"BF16", at::kBFloat16, 2}, {"I64", at::kLong, 8}, {"I32", at::kInt, 4},
    {"I16", at::kShort, 2},  {"I8", at::kChar, 1},   {"U8", at::kByte, 1},
    {"BOOL", at::kBool, 1},
};

const DtypeInfo* dtype_by_name(std::string_view name) {
  for (const auto& info : kDtypes)
    if (name == info.name) return &info;
  return nullptr;
}

const DtypeInfo* dtype_by_type(at::ScalarType type) {
  for (const auto& info : kDtypes)
    if (type == info.type) return &info;
  return nullptr;
}

std::uint64_t read_u64_le(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

/// Parses JSON text, refusing nesting deeper than a header needs (defence against pathological
/// input even though nlohmann's parser is not recursive).
nlohmann::json parse_json_shallow(const char* first, const char* last, const std::string& source) {
  constexpr int kMaxDepth = 8;
  bool too_deep = false;
  std::string duplicate;
  std::set<std::string> top_level_keys;
  auto callback = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    if (depth > kMaxDepth) too_deep = true;
    // A repeated tensor name would silently replace the first entry: refuse it.
    if (event == nlohmann::json::parse_event_t::key && depth == 1 && parsed.is_string() &&
        !top_level_keys.insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return !too_deep;
  };
  nlohmann::json doc = nlohmann::json::parse(first, last, callback, /*allow_exceptions=*/false);
  if (too_deep) fail(source, "", "header JSON is nested too deeply");
  if (!duplicate.empty()) fail(source, duplicate, "the name appears twice in the header");
  if (doc.is_discarded()) fail(source, "", "header is not valid JSON");
  if (!doc.is_object()) fail(source, "", "header JSON is not an object");
  return doc;
}

std::uint64_t json_to_u64(const nlohmann::json& v, const std::string& source,
                          const std::string& tensor, const char* what) {
  if (!v.is_number_unsigned()) {
    if (v.is_number_integer()) fail(source, tensor, std::string(what) + " is negative");
    fail(source, tensor, std::string(what) + " is not a non-negative integer");
  }
  return v.get<std::uint64_t>();
}

SafetensorsEntry parse_entry(const std::string& name, const nlohmann::json& value,
                             std::uint64_t data_size, const std::string& source) {
  if (name.empty()) fail(source, name, "empty tensor name");
  if (!value.is_object()) fail(source, name, "entry is not an object");
  auto dtype_it = value.find("dtype");
  auto shape_it = value.find("shape");
  auto offsets_it = value.find("data_offsets");
  if (dtype_it == value.end() || !dtype_it->is_string()) fail(source, name, "missing string 'dtype'");
  if (shape_it == value.end() || !shape_it->is_array()) fail(source, name, "missing array 'shape'");
  if (offsets_it == value.end() || !offsets_it->is_array() || offsets_it->size() != 2)
    fail(source, name, "'data_offsets' must be an array of 2 integers");

  SafetensorsEntry entry;
  entry.name = name;
  entry.dtype_name = dtype_it->get<std::string>();
  const DtypeInfo* info = dtype_by_name(entry.dtype_name);
  if (info == nullptr) fail(source, name, "unsupported dtype '" + entry.dtype_name + "'");
  entry.dtype = info->type;

  constexpr std::uint64_t kMaxDims = 16;
  if (shape_it->size() > kMaxDims) fail(source, name, "shape has more than 16 dimensions");
  std::uint64_t numel = 1;
  bool overflow = false;
  for (const auto& dim_json : *shape_it) {
    std::uint64_t dim = json_to_u64(dim_json, source, name, "shape dimension");
    if (dim > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      fail(source, name, "shape dimension too large");
    entry.shape.push_back(static_cast<std::int64_t>(dim));
    if (dim != 0 && numel > std::numeric_limits<std::uint64_t>::max() / dim) overflow = true;
    numel *= dim;
  }
  entry.begin = json_to_u64((*offsets_it)[0], source, name, "data_offsets[0]");
  entry.end = json_to_u64((*offsets_it)[1], source, name, "data_offsets[1]");
  if (entry.begin > entry.end) fail(source, name, "data_offsets begin > end");
  if (entry.end > data_size)
    fail(source, name, "data_offsets end " + std::to_string(entry.end) +
                           " is past the data section (" + std::to_string(data_size) + " bytes)");
  if (overflow || numel > std::numeric_limits<std::uint64_t>::max() / info->bytes)
    fail(source, name, "shape is too large");
  if (numel * info->bytes != entry.end - entry.begin)
    fail(source, name, "shape x dtype size = " + std::to_string(numel * info->bytes) +
                           " bytes but data_offsets span " +
                           std::to_string(entry.end - entry.begin) + " bytes");
  return entry;
}

std::map<std::string, std::string> parse_metadata(const nlohmann::json& value,
                                                  const std::string& source) {
  if (!value.is_object()) fail(source, "", "'__metadata__' is not an object");
  std::map<std::string, std::string> out;
  for (const auto& [key, item] : value.items()) {
    if (!item.is_string()) fail(source, "", "'__metadata__' value of '" + key + "' is not a string");
    out[key] = item.get<std::string>();
  }
  return out;
}

/// Refuses entries whose byte ranges overlap (zero-size entries overlap nothing).
void check_no_overlap(const std::vector<SafetensorsEntry>& entries, const std::string& source) {
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : entries)
    if (e.end > e.begin) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto* a, const auto* b) { return a->begin < b->begin; });
  for (std::size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      fail(source, by_offset[i]->name, "data overlaps tensor '" + by_offset[i - 1]->name + "'");
}

std::string errno_text(int err) { return std::error_code(err, std::generic_category()).message(); }

}  // namespace

const SafetensorsEntry* SafetensorsHeader::find(std::string_view name) const {
  auto it = std::lower_bound(entries.begin(), entries.end(), name,
                             [](const SafetensorsEntry& e, std::string_view n) { return e.name < n; });
  return (it != entries.end() && it->name == name) ? &*it : nullptr;
}

SafetensorsHeader parse_safetensors_header(const std::uint8_t* bytes, std::size_t size,
                                           const std::string& source) {
  if (bytes == nullptr || size < 8) fail(source, "", "file is shorter than the 8-byte header length");
  const std::uint64_t header_len = read_u64_le(bytes);
  if (header_len > kMaxSafetensorsHeaderBytes)
    fail(source, "", "header length " + std::to_string(header_len) + " exceeds the 100 MB limit");
  if (header_len > size - 8)
    fail(source, "", "header length " + std::to_string(header_len) + " is past the end of the file (" +
                         std::to_string(size) + " bytes): truncated?");
  if (header_len < 2) fail(source, "", "header is too short to be a JSON object");
  const char* text = reinterpret_cast<const char*>(bytes + 8);
  if (text[0] != '{') fail(source, "", "header does not start with '{'");

  SafetensorsHeader header;
  header.data_offset = 8 + header_len;
  const std::uint64_t data_size = size - header.data_offset;
  nlohmann::json doc = parse_json_shallow(text, text + header_len, source);
  for (const auto& [key, value] : doc.items()) {
    if (key == "__metadata__") {
      header.metadata = parse_metadata(value, source);
    } else {
      header.entries.push_back(parse_entry(key, value, data_size, source));
    }
  }
  std::sort(header.entries.begin(), header.entries.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  check_no_overlap(header.entries, source);
  return header;
}

std::string safetensors_dtype_name(at::ScalarType dtype) {
  const DtypeInfo* info = dtype_by_type(dtype);
  if (info == nullptr)
    throw Error(ErrorCode::ModelLoadError,
                std::string("safetensors cannot hold dtype ") + c10::toString(dtype));
  return info->name;
}

// ---------------------------------------------------------------------------------------------
// Reading

/// A read-only file mapped privately (copy-on-write), unmapped when the last user goes away.
struct SafetensorsFile::Mapping {
  void* address = nullptr;
  std::size_t size = 0;
  ~Mapping() {
    if (address != nullptr) ::munmap(address, size);
  }
};

namespace {

std::shared_ptr<SafetensorsFile::Mapping> map_file(const std::filesystem::path& path) {
  const std::string source = path.string();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(source, "", "cannot open: " + errno_text(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail(source, "", "cannot stat: " + errno_text(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(source, "", "not a regular file");
  }
  auto mapping = std::make_shared<SafetensorsFile::Mapping>();
  mapping->size = static_cast<std::size_t>(st.st_size);
  if (mapping->size < 8) {
    ::close(fd);
    fail(source, "", "file is shorter than the 8-byte header length");
  }
  // PROT_WRITE + MAP_PRIVATE: in-place edits of a view touch a private copy, never the file.
  // MAP_NORESERVE: no commit charge for the whole file (a 10 GB checkpoint on a smaller machine);
  // only pages actually written take memory.
  void* address =
      ::mmap(nullptr, mapping->size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
  int err = errno;
  ::close(fd);
  if (address == MAP_FAILED) fail(source, "", "cannot memory-map: " + errno_text(err));
  mapping->address = address;
  return mapping;
}

}  // namespace

std::shared_ptr<const SafetensorsFile> SafetensorsFile::open(const std::filesystem::path& path) {
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->mapping_ = map_file(path);
  file->header_ = parse_safetensors_header(static_cast<const std::uint8_t*>(file->mapping_->address),
                                           file->mapping_->size, path.string());
  return file;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  out.reserve(header_.entries.size());
  for (const auto& e : header_.entries) out.push_back(e.name);
  return out;
}

at::Tensor SafetensorsFile::tensor(std::string_view name) const {
  const SafetensorsEntry* entry = header_.find(name);
  if (entry == nullptr) fail(path_.string(), std::string(name), "no such tensor in the file");
  auto options = at::TensorOptions().dtype(entry->dtype).device(at::kCPU);
  if (entry->end == entry->begin) return at::empty(entry->shape, options);
  auto* data = static_cast<std::uint8_t*>(mapping_->address) + header_.data_offset + entry->begin;
  const std::size_t element_size = c10::elementSize(entry->dtype);
  std::shared_ptr<Mapping> keep_alive = mapping_;
  at::Tensor view = at::from_blob(
      data, entry->shape, [keep_alive](void*) mutable { keep_alive.reset(); }, options);
  // Misaligned data (legal in the format, never written by the reference writer): copy.
  if (reinterpret_cast<std::uintptr_t>(data) % element_size != 0) return view.clone();
  return view;
}

TensorMap SafetensorsFile::tensors(std::string_view prefix, bool strip_prefix) const {
  TensorMap out(path_.string());
  for (const auto& e : header_.entries) {
    if (e.name.compare(0, prefix.size(), prefix) != 0) continue;
    out.set(strip_prefix ? e.name.substr(prefix.size()) : e.name, tensor(e.name));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Writing

std::string serialize_safetensors(const TensorMap& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  struct Item {
    const std::string* name;
    at::Tensor cpu;  // contiguous CPU copy (or the tensor itself when already so)
    const DtypeInfo* info;
  };
  std::vector<Item> items;
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined()) throw Error(ErrorCode::ModelLoadError, "cannot write undefined tensor '" + name + "'");
    const DtypeInfo* info = dtype_by_type(tensor.scalar_type());
    if (info == nullptr)
      throw Error(ErrorCode::ModelLoadError, "tensor '" + name + "': safetensors cannot hold dtype " +
                                                 c10::toString(tensor.scalar_type()));
    items.push_back({&name, tensor.to(at::kCPU).contiguous(), info});
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    if (a.info->bytes != b.info->bytes) return a.info->bytes > b.info->bytes;
    return *a.name < *b.name;
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const auto& item : items) {
    const std::uint64_t bytes = item.cpu.numel() * item.info->bytes;
    header[*item.name] = {{"dtype", item.info->name},
                          {"shape", item.cpu.sizes().vec()},
                          {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');

  std::string out;
  out.reserve(8 + text.size() + offset);
  const std::uint64_t len = text.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  out += text;
  for (const auto& item : items)
    out.append(static_cast<const char*>(item.cpu.data_ptr()), item.cpu.numel() * item.info->bytes);
  return out;
}

void write_safetensors(const std::filesystem::path& path, const TensorMap& tensors,
                       const std::map<std::string, std::string>& metadata) {
  const std::string bytes = serialize_safetensors(tensors, metadata);
  std::filesystem::path temp = path;
  temp += ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(temp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out.good())
      throw Error(ErrorCode::OutputError, "cannot write safetensors file '" + temp.string() + "'");
  }
  std::error_code ec;
  std::filesystem::rename(temp, path, ec);
  if (ec) {
    std::filesystem::remove(temp, ec);
    throw Error(ErrorCode::OutputError,
                "cannot rename into place safetensors file '" + path.string() + "': " + ec.message());
  }
}

}  // namespace sdxlhost::nn
