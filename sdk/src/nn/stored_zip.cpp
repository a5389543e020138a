// The central directory of a stored (uncompressed) zip archive: the container of `torch.save`.
#include "stored_zip.hpp"

#include <algorithm>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::nn::detail {
namespace {

using sdk::Error;
using sdk::ErrorCode;

constexpr std::uint32_t kEndOfDirectory = 0x06054b50;
constexpr std::uint32_t kZip64EndLocator = 0x07064b50;
constexpr std::uint32_t kZip64EndOfDirectory = 0x06064b50;
constexpr std::uint32_t kDirectoryHeader = 0x02014b50;
constexpr std::uint32_t kLocalHeader = 0x04034b50;
constexpr std::size_t kEndOfDirectoryBytes = 22;
constexpr std::size_t kDirectoryHeaderBytes = 46;
constexpr std::size_t kLocalHeaderBytes = 30;

/// Bounds-checked little-endian reads over the archive buffer.
class Reader {
 public:
  Reader(const std::uint8_t* bytes, std::size_t size, const std::string& source)
      : bytes_(bytes), size_(size), source_(source) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorCode::ModelLoadError, "zip archive '" + source_ + "': " + what);
  }
  void need(std::uint64_t offset, std::uint64_t length, const char* what) const {
    if (offset > size_ || length > size_ - offset) fail(std::string(what) + " lies past the end of the file (truncated?)");
  }
  std::uint64_t le(std::uint64_t offset, int width) const {
    need(offset, static_cast<std::uint64_t>(width), "a header field");
    std::uint64_t value = 0;
    for (int i = width - 1; i >= 0; --i) value = (value << 8) | bytes_[offset + static_cast<std::uint64_t>(i)];
    return value;
  }
  std::size_t size() const { return size_; }
  const std::uint8_t* at(std::uint64_t offset) const { return bytes_ + offset; }

 private:
  const std::uint8_t* bytes_;
  std::size_t size_;
  const std::string& source_;
};

/// Offset of the end-of-central-directory record: the last signature within comment range.
std::uint64_t find_end_of_directory(const Reader& in) {
  if (in.size() < kEndOfDirectoryBytes) in.fail("too short to be a zip archive");
  const std::uint64_t last = in.size() - kEndOfDirectoryBytes;
  const std::uint64_t first = last > 0xFFFF ? last - 0xFFFF : 0;
  for (std::uint64_t at = last + 1; at-- > first;)
    if (in.le(at, 4) == kEndOfDirectory && at + kEndOfDirectoryBytes + in.le(at + 20, 2) == in.size()) return at;
  in.fail("no end-of-central-directory record (not a zip archive, or truncated)");
}

struct Directory {
  std::uint64_t entries = 0;
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
};

Directory read_directory_location(const Reader& in, std::uint64_t end) {
  Directory dir{in.le(end + 10, 2), in.le(end + 16, 4), in.le(end + 12, 4)};
  const bool zip64 = dir.entries == 0xFFFF || dir.offset == 0xFFFFFFFF || dir.size == 0xFFFFFFFF;
  if (!zip64) return dir;
  if (end < 20 || in.le(end - 20, 4) != kZip64EndLocator) in.fail("ZIP64 sizes without a ZIP64 locator");
  const std::uint64_t record = in.le(end - 20 + 8, 8);
  if (in.le(record, 4) != kZip64EndOfDirectory) in.fail("the ZIP64 locator points at no ZIP64 record");
  return Directory{in.le(record + 32, 8), in.le(record + 48, 8), in.le(record + 40, 8)};
}

/// Sizes and offset of one member, with ZIP64 extra-field values where the 32-bit ones overflow.
struct MemberFields {
  std::uint64_t compressed = 0;
  std::uint64_t uncompressed = 0;
  std::uint64_t local_offset = 0;
};

void apply_zip64_extra(const Reader& in, std::uint64_t extra, std::uint64_t extra_end, MemberFields& f) {
  while (extra + 4 <= extra_end) {
    const std::uint64_t id = in.le(extra, 2), length = in.le(extra + 2, 2);
    if (extra + 4 + length > extra_end) in.fail("an extra field runs past its header");
    if (id == 0x0001) {
      std::uint64_t at = extra + 4, stop = at + length;
      for (std::uint64_t* field : {&f.uncompressed, &f.compressed, &f.local_offset}) {
        if (*field != 0xFFFFFFFF) continue;
        if (at + 8 > stop) in.fail("a ZIP64 extra field is too short");
        *field = in.le(at, 8);
        at += 8;
      }
    }
    extra += 4 + length;
  }
}

}  // namespace

std::map<std::string, ZipMember> read_stored_zip(const std::uint8_t* bytes, std::size_t size,
                                                 const std::string& source) {
  Reader in(bytes, size, source);
  const Directory dir = read_directory_location(in, find_end_of_directory(in));
  in.need(dir.offset, dir.size, "the central directory");
  std::map<std::string, ZipMember> members;
  std::uint64_t at = dir.offset;
  for (std::uint64_t i = 0; i < dir.entries; ++i) {
    if (in.le(at, 4) != kDirectoryHeader) in.fail("central directory entry " + std::to_string(i) + " is corrupt");
    in.need(at, kDirectoryHeaderBytes, "a central directory entry");
    const std::uint64_t method = in.le(at + 10, 2);
    MemberFields f{in.le(at + 20, 4), in.le(at + 24, 4), in.le(at + 42, 4)};
    const std::uint64_t name_length = in.le(at + 28, 2), extra_length = in.le(at + 30, 2),
                        comment_length = in.le(at + 32, 2);
    const std::uint64_t name_at = at + kDirectoryHeaderBytes;
    in.need(name_at, name_length + extra_length + comment_length, "a member name");
    std::string name(reinterpret_cast<const char*>(in.at(name_at)), name_length);
    apply_zip64_extra(in, name_at + name_length, name_at + name_length + extra_length, f);
    if (method != 0) in.fail("member '" + name + "' is compressed (method " + std::to_string(method) + "); torch.save stores members uncompressed");
    if (f.compressed != f.uncompressed) in.fail("member '" + name + "' has inconsistent sizes");
    if (in.le(f.local_offset, 4) != kLocalHeader) in.fail("member '" + name + "' has no local header");
    in.need(f.local_offset, kLocalHeaderBytes, "a local header");
    const std::uint64_t data = f.local_offset + kLocalHeaderBytes + in.le(f.local_offset + 26, 2) +
                               in.le(f.local_offset + 28, 2);
    in.need(data, f.uncompressed, ("the data of member '" + name + "'").c_str());
    if (!members.emplace(name, ZipMember{data, f.uncompressed}).second) in.fail("member '" + name + "' appears twice");
    at = name_at + name_length + extra_length + comment_length;
  }
  return members;
}

}  // namespace sdxlhost::nn::detail
