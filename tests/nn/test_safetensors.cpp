// Safetensors reader/writer: round trip, zero-copy views, goldens, and the corruption corpus.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "nn_test_util.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/nn/unet_blocks.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace fs = std::filesystem;
using sdxlhost::nn::parse_safetensors_header;
using sdxlhost::nn::SafetensorsFile;
using sdxlhost::nn::serialize_safetensors;
using sdxlhost::nn::TensorMap;
using sdxlhost::sdk::Error;
using sdxlhost::sdk::ErrorCode;

namespace {

/// A file image: u64 LE length + header text + data bytes.
std::string make_file(const std::string& header, const std::string& data = std::string(64, '\0')) {
  std::string out;
  const std::uint64_t len = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((len >> (8 * i)) & 0xff));
  return out + header + data;
}

/// Parses `bytes`; returns the ModelLoadError message (fails the test when it parses).
std::string parse_error(const std::string& bytes) {
  try {
    parse_safetensors_header(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(),
                             "corpus.safetensors");
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ModelLoadError);
    EXPECT_NE(std::string(e.what()).find("corpus.safetensors"), std::string::npos) << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected a ModelLoadError";
  return {};
}

TensorMap sample_tensors() {
  TensorMap map;
  map.set("b.weight", at::arange(12, at::kFloat).reshape({3, 4}));
  map.set("a.half", at::arange(6, at::kFloat).to(at::kHalf));
  map.set("c.bf16", at::linspace(-1, 1, 5).to(at::kBFloat16));
  map.set("ids", at::arange(77, at::kLong).reshape({1, 77}));
  map.set("scalar", at::scalar_tensor(2.5, at::kFloat));
  map.set("mask", at::ones({4}, at::kBool));
  map.set("bytes", at::arange(7, at::kByte));
  map.set("empty", at::empty({0, 3}, at::kFloat));
  return map;
}

}  // namespace

TEST(Safetensors, RoundTripEveryDtypeThroughAFile) {
  sdxlhost::test_support::TempDir dir;
  const TensorMap written = sample_tensors();
  const fs::path path = dir.path() / "round.safetensors";
  sdxlhost::nn::write_safetensors(path, written, {{"format", "pt"}});
  auto file = SafetensorsFile::open(path);
  EXPECT_EQ(file->metadata().at("format"), "pt");
  EXPECT_EQ(file->names(), written.names());
  for (const auto& [name, tensor] : written) {
    at::Tensor read = file->tensor(name);
    EXPECT_EQ(read.scalar_type(), tensor.scalar_type()) << name;
    EXPECT_EQ(read.sizes(), tensor.sizes()) << name;
    EXPECT_TRUE(at::equal(read, tensor)) << name;
  }
  // Header padded to 8, data sorted by (element size desc, name): the first 8-byte tensor is "ids".
  EXPECT_EQ(file->header().data_offset % 8, 0u);
  EXPECT_EQ(file->header().find("ids")->begin, 0u);
}

TEST(Safetensors, ViewsAreZeroCopyAndOutliveTheFileObject) {
  sdxlhost::test_support::TempDir dir;
  const fs::path path = dir.path() / "views.safetensors";
  sdxlhost::nn::write_safetensors(path, sample_tensors());
  at::Tensor kept;
  {
    auto file = SafetensorsFile::open(path);
    at::Tensor first = file->tensor("b.weight");
    at::Tensor second = file->tensor("b.weight");
    EXPECT_EQ(first.data_ptr(), second.data_ptr());  // both views on the mapping, no copies
    kept = file->tensors("b.", /*strip_prefix=*/true).at("weight");
  }
  // The file object is gone; the view keeps the mapping alive.
  EXPECT_TRUE(at::equal(kept, at::arange(12, at::kFloat).reshape({3, 4})));
  // Writing into a view changes this process's private copy only, never the file.
  kept.fill_(7.0f);
  auto again = SafetensorsFile::open(path);
  EXPECT_TRUE(at::equal(again->tensor("b.weight"), at::arange(12, at::kFloat).reshape({3, 4})));
}

TEST(Safetensors, ReadsTheGoldenFilesOfTheReferenceWriter) {
  auto file = SafetensorsFile::open(sdxlhost::test_support::shared_dir() /
                                    "goldens/models/reference/text_encoder_io.safetensors");
  at::Tensor ids = file->tensor("input.input_ids");
  EXPECT_EQ(ids.scalar_type(), at::kLong);
  EXPECT_EQ(ids.sizes(), (at::IntArrayRef{2, 77}));
  EXPECT_EQ(file->tensor("output.hidden_states.0").sizes(), (at::IntArrayRef{2, 77, 32}));
  EXPECT_EQ(file->metadata().at("format"), "pt");
  EXPECT_EQ(file->tensors("output.").size(), 5u);
}

TEST(Safetensors, MissingTensorAndMissingFileNameTheFileAndTensor) {
  sdxlhost::test_support::TempDir dir;
  const fs::path path = dir.path() / "names.safetensors";
  sdxlhost::nn::write_safetensors(path, sample_tensors());
  auto file = SafetensorsFile::open(path);
  try {
    file->tensor("nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ModelLoadError);
    EXPECT_NE(std::string(e.what()).find("nope"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("names.safetensors"), std::string::npos);
  }
  EXPECT_THROW(SafetensorsFile::open(dir.path() / "absent.safetensors"), Error);
  EXPECT_THROW(SafetensorsFile::open(dir.path()), Error);  // a folder
}

// ---- corruption corpus ------------------------------------------------------------------------

TEST(SafetensorsCorpus, Truncated) {
  const std::string good = serialize_safetensors(sample_tensors());
  EXPECT_NE(parse_error(good.substr(0, 4)).find("shorter"), std::string::npos);
  EXPECT_NE(parse_error(good.substr(0, 20)).find("past the end"), std::string::npos);
  // Cut into the data section: some tensor now ends past the data.
  EXPECT_NE(parse_error(good.substr(0, good.size() - 3)).find("past the data section"), std::string::npos);
  EXPECT_NE(parse_error("").find("shorter"), std::string::npos);
}

TEST(SafetensorsCorpus, Overlapping) {
  const std::string msg = parse_error(make_file(
      R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})"));
  EXPECT_NE(msg.find("overlaps"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'b'"), std::string::npos) << msg;
}

TEST(SafetensorsCorpus, LyingShapes) {
  std::string msg = parse_error(
      make_file(R"({"w":{"dtype":"F32","shape":[3,3],"data_offsets":[0,16]}})"));
  EXPECT_NE(msg.find("tensor 'w'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("36 bytes"), std::string::npos) << msg;
  // Overflowing products, negative and non-integer dims, begin > end, negative offsets.
  parse_error(make_file(
      R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}})"));
  parse_error(make_file(R"({"w":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})"));
  parse_error(make_file(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,16]}})"));
  parse_error(make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})"));
  parse_error(make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})"));
  parse_error(make_file(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0]}})"));
  parse_error(make_file(R"({"w":{"dtype":"F32","shape":"2","data_offsets":[0,8]}})"));
  parse_error(make_file(R"({"w":{"dtype":"F32","data_offsets":[0,8]}})"));
  parse_error(make_file(R"({"w":[1,2]})"));
}

TEST(SafetensorsCorpus, HugeHeader) {
  std::string bytes = make_file("{}");
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>(0xff);
  EXPECT_NE(parse_error(bytes).find("100 MB"), std::string::npos);
  bytes = make_file("{}");
  const std::uint64_t just_over = sdxlhost::nn::kMaxSafetensorsHeaderBytes + 1;
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((just_over >> (8 * i)) & 0xff);
  parse_error(bytes);
}

TEST(SafetensorsCorpus, BadJson) {
  EXPECT_NE(parse_error(make_file("{not json")).find("not valid JSON"), std::string::npos);
  parse_error(make_file("[1,2,3]   "));
  parse_error(make_file("{} trailing"));
  parse_error(make_file(R"({"__metadata__":{"k":1}})"));
  parse_error(make_file(R"({"__metadata__":[]})"));
  parse_error(make_file(std::string(1, '{') + std::string(5000, '[') + std::string(5000, ']') + "}"));
  parse_error(make_file(R"({"":{"dtype":"F32","shape":[],"data_offsets":[0,4]}})"));
}

TEST(SafetensorsCorpus, DuplicateNames) {
  const std::string msg = parse_error(make_file(
      R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})"));
  EXPECT_NE(msg.find("tensor 'w'"), std::string::npos) << msg;
}

TEST(Safetensors, MisalignedTensorsAreCopiedNotViewed) {
  // Legal but unusual: an F32 tensor at an odd offset. The reader copies it (aligned) and the
  // values are right.
  sdxlhost::test_support::TempDir dir;
  std::string data(2, '\0');
  const float values[3] = {1.5f, -2.0f, 3.25f};
  data.append(reinterpret_cast<const char*>(values), sizeof(values));
  data.append(2, '\0');
  const std::string header = R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                             R"("w":{"dtype":"F32","shape":[3],"data_offsets":[2,14]}})";
  std::string padded = header;
  padded.append((8 - (8 + padded.size()) % 8) % 8, ' ');
  const fs::path path = dir.path() / "odd.safetensors";
  std::ofstream(path, std::ios::binary) << make_file(padded, data);
  auto file = SafetensorsFile::open(path);
  const at::Tensor w = file->tensor("w");
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(w.data_ptr()) % 4, 0u);
  EXPECT_FLOAT_EQ(w[0].item<float>(), 1.5f);
  EXPECT_FLOAT_EQ(w[2].item<float>(), 3.25f);
}

TEST(SafetensorsCorpus, BadDtype) {
  std::string msg = parse_error(make_file(R"({"w":{"dtype":"F9","shape":[2],"data_offsets":[0,8]}})"));
  EXPECT_NE(msg.find("unsupported dtype 'F9'"), std::string::npos) << msg;
  parse_error(make_file(R"({"w":{"dtype":"U32","shape":[2],"data_offsets":[0,8]}})"));
  parse_error(make_file(R"({"w":{"dtype":7,"shape":[2],"data_offsets":[0,8]}})"));
}

TEST(SafetensorsCorpus, CorruptFileOnDiskGivesAnErrorNamingTheFile) {
  sdxlhost::test_support::TempDir dir;
  const fs::path path = dir.path() / "broken.safetensors";
  std::string bytes = serialize_safetensors(sample_tensors());
  std::ofstream(path, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  try {
    SafetensorsFile::open(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::ModelLoadError);
    EXPECT_NE(std::string(e.what()).find("broken.safetensors"), std::string::npos);
  }
}

TEST(SafetensorsCorpus, RandomMutationsNeverCrash) {
  const std::string good = serialize_safetensors(sample_tensors());
  std::mt19937 rng(1234);
  int parsed = 0, refused = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string bytes = good;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < flips; ++i) bytes[rng() % bytes.size()] = static_cast<char>(rng() & 0xff);
    if (rng() % 4 == 0) bytes.resize(rng() % bytes.size());
    try {
      auto header = parse_safetensors_header(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                             bytes.size(), "fuzz");
      for (const auto& e : header.entries) ASSERT_LE(header.data_offset + e.end, bytes.size());
      ++parsed;
    } catch (const Error& e) {
      ASSERT_EQ(e.code(), ErrorCode::ModelLoadError);
      ++refused;
    }
  }
  EXPECT_GT(refused, 0);
  EXPECT_GT(parsed, 0);
}

namespace {

/// The fraction of `tensor`'s pages that are in memory (mincore), 0 when it cannot tell.
double resident_fraction(const at::Tensor& tensor) {
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<std::uintptr_t>(tensor.data_ptr()) / page * page;
  const auto end = reinterpret_cast<std::uintptr_t>(tensor.data_ptr()) + tensor.nbytes();
  std::vector<unsigned char> pages((end - begin + page - 1) / page);
  if (::mincore(reinterpret_cast<void*>(begin), end - begin, pages.data()) != 0) return 0;
  std::size_t in = 0;
  for (unsigned char p : pages) in += p & 1u;
  return static_cast<double>(in) / static_cast<double>(pages.size());
}

}  // namespace

// A weight served in the file's own dtype is a view of the mapping; the load reads its pages
// (the model is ready when the load returns), instead of the first step faulting them in.
TEST(Safetensors, WeightsBoundWithoutACopyAreReadDuringTheLoad) {
  sdxlhost::test_support::TempDir dir;
  const fs::path path = dir.path() / "big.safetensors";
  TensorMap map;
  map.set("w", at::arange(8 << 20, at::kFloat));  // 32 MiB
  sdxlhost::nn::write_safetensors(path, map);
  const int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  ::fdatasync(fd);
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);

  auto file = SafetensorsFile::open(path);
  const TensorMap weights = file->tensors();
  const double before = resident_fraction(weights.at("w"));
  at::Tensor slot;
  sdxlhost::nn::WeightBinder binder(weights, at::kFloat, at::kCPU, "test");
  binder.bind("w", slot, {8 << 20});
  EXPECT_EQ(slot.data_ptr(), weights.at("w").data_ptr());  // no copy
  EXPECT_EQ(resident_fraction(slot), 1.0) << "resident before the bind: " << before;
}
