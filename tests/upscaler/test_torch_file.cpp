// The .pth reader: golden files read like their .safetensors twins, and a hostile corpus refused
// with the right code and message, without anything being executed.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <random>

#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/nn/torch_file.hpp"
#include "torch_zip_writer.hpp"
#include "upscaler_test_util.hpp"

namespace sdxlhost::test_support {
namespace {

using sdxlhost::nn::parse_torch_file;
using sdxlhost::sdk::ErrorCode;
using namespace std::string_literals;
namespace fs = std::filesystem;

sdxlhost::nn::TensorMap parse(const std::string& bytes) {
  return parse_torch_file(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), "test.pth");
}

/// A torch.save-shaped archive: <name>/data.pkl, <name>/data/<key>..., <name>/version.
std::string archive(const std::string& pickle, const std::vector<std::pair<std::string, std::string>>& storages,
                    int method = 0) {
  std::vector<std::pair<std::string, std::string>> members{{"archive/data.pkl", pickle}};
  for (const auto& [key, bytes] : storages) members.push_back({"archive/data/" + key, bytes});
  members.push_back({"archive/version", "3\n"});
  return stored_zip(members, method);
}

/// One 2x3 float tensor "w" over storage "0".
PickledTensor small_tensor() { return {"w", "0", "FloatStorage", 6, 0, {2, 3}, {3, 1}}; }
const std::string kSixFloats = float_bytes({0, 1, 2, 3, 4, 5});

/// The .pth weight files of the golden folder, each with its .safetensors twin (same stem
/// without a `_params_ema` suffix).
std::vector<std::pair<fs::path, fs::path>> golden_pairs() {
  std::vector<std::pair<fs::path, fs::path>> pairs;
  for (const auto& entry : fs::directory_iterator(golden_dir())) {
    if (entry.path().extension() != ".pth") continue;
    std::string stem = entry.path().stem().string();
    const std::string ema = "_params_ema";
    if (stem.size() > ema.size() && stem.compare(stem.size() - ema.size(), ema.size(), ema) == 0)
      stem.resize(stem.size() - ema.size());
    pairs.push_back({entry.path(), golden_dir() / (stem + ".safetensors")});
  }
  return pairs;
}

TEST(TorchFile, GoldenPthFilesHoldTheSameTensorsAsTheirSafetensorsTwins) {
  const auto pairs = golden_pairs();
  ASSERT_FALSE(pairs.empty()) << "no .pth files in " << golden_dir();
  for (const auto& [pth, twin] : pairs) {
    SCOPED_TRACE(pth.filename().string());
    ASSERT_TRUE(fs::exists(twin)) << twin;
    const auto tensors = sdxlhost::nn::load_torch_file(pth);
    const auto reference = sdxlhost::nn::SafetensorsFile::open(twin)->tensors();
    ASSERT_EQ(tensors.names(), reference.names());
    for (const auto& [name, tensor] : reference) {
      ASSERT_EQ(tensors.at(name).sizes(), tensor.sizes()) << name;
      EXPECT_TRUE(at::equal(tensors.at(name), tensor)) << name;
    }
  }
}

TEST(TorchFile, ReadsWrappersViewsAndParameters) {
  auto plain = parse(archive(state_dict_pickle({small_tensor()}), {{"0", kSixFloats}}));
  EXPECT_TRUE(at::equal(plain.at("w"), at::arange(6, at::kFloat).view({2, 3})));
  for (const char* wrapper : {"params_ema", "params", "state_dict"}) {
    auto wrapped = parse(archive(state_dict_pickle({small_tensor()}, wrapper), {{"0", kSixFloats}}));
    EXPECT_EQ(wrapped.names(), std::vector<std::string>{"w"}) << wrapper;
  }
  // Two views of one storage (a transposed one with an offset) share the bytes.
  PickledTensor transposed{"t", "0", "FloatStorage", 6, 1, {2, 2}, {1, 3}};
  auto views = parse(archive(state_dict_pickle({small_tensor(), transposed}), {{"0", kSixFloats}}));
  EXPECT_TRUE(at::equal(views.at("t"), at::tensor({1.f, 4.f, 2.f, 5.f}).view({2, 2})));
}

/// Each hostile file: bytes, the code it must get, a fragment of the message.
struct Hostile {
  std::string name;
  std::string bytes;
  ErrorCode code;
  std::string message;
};

std::vector<Hostile> hostile_corpus(const fs::path& marker) {
  const std::string command = "touch " + marker.string();
  std::string length;
  put(length, command.size(), 4);
  // Exactly what CPython's pickle.dumps emits for an object whose __reduce__ returns
  // (os.system, (command,)): protocol 2 (GLOBAL) and protocol 4 (STACK_GLOBAL + FRAME).
  const std::string reduce_p2 = "\x80\x02" "cposix\nsystem\nq\x00X"s + length + command + "q\x01\x85q\x02Rq\x03.";
  std::string frame;
  const std::string body4 = std::string("\x8c\x05posix\x94\x8c\x06system\x94\x93\x94\x8c", 18) +
                            static_cast<char>(command.size()) + command + "\x94\x85\x94R\x94.";
  put(frame, body4.size(), 8);
  const std::string reduce_p4 = "\x80\x04\x95" + frame + body4;
  const std::string eval_in_dict =
      "\x80\x02}q\x00X\x01\x00\x00\x00wq\x01" "c__builtin__\neval\nq\x02X\x03\x00\x00\x00" "1+1q\x03\x85q\x04Rq\x05s."s;

  auto pickle_with = [](PickledTensor t) { return state_dict_pickle({t}); };
  PickledTensor past = small_tensor();
  past.storage_numel = 1000;  // claims more elements than its record holds
  PickledTensor big_view = small_tensor();
  big_view.sizes = {100, 100};  // a view larger than its storage
  big_view.strides = {100, 1};
  PickledTensor offset_view = small_tensor();
  offset_view.offset = 5;  // offset pushes the last element out
  PickledTensor missing = small_tensor();
  missing.storage_key = "7";  // no data/7 record
  PickledTensor negative = small_tensor();
  negative.sizes = {-2, 3};

  const std::string good = archive(state_dict_pickle({small_tensor()}), {{"0", kSixFloats}});
  std::vector<Hostile> corpus = {
      {"reduce to posix.system (protocol 2)", archive(reduce_p2, {}), ErrorCode::ValidationError, "posix.system"},
      {"reduce to posix.system (protocol 4)", archive(reduce_p4, {}), ErrorCode::ValidationError, "posix.system"},
      {"builtins eval inside a dict", archive(eval_in_dict, {}), ErrorCode::ValidationError, "__builtin__.eval"},
      {"unknown torch global", archive("\x80\x02" "ctorch\nload\n.", {}), ErrorCode::ValidationError, "torch.load"},
      {"numpy reconstruct", archive("\x80\x02" "cnumpy.core.multiarray\n_reconstruct\n.", {}), ErrorCode::ValidationError,
       "numpy.core.multiarray._reconstruct"},
      {"getattr", archive("\x80\x02" "cbuiltins\ngetattr\n.", {}), ErrorCode::ValidationError, "builtins.getattr"},
      {"storage past its record", archive(pickle_with(past), {{"0", kSixFloats}}), ErrorCode::ModelLoadError, "claims 1000 elements"},
      {"view larger than its storage", archive(pickle_with(big_view), {{"0", kSixFloats}}), ErrorCode::ModelLoadError, "reaches element"},
      {"offset past the storage", archive(pickle_with(offset_view), {{"0", kSixFloats}}), ErrorCode::ModelLoadError, "reaches element"},
      {"missing storage record", archive(pickle_with(missing), {{"0", kSixFloats}}), ErrorCode::ModelLoadError, "no record data/7"},
      {"negative size", archive(pickle_with(negative), {{"0", kSixFloats}}), ErrorCode::ModelLoadError, "out of range"},
      {"compressed members", archive(state_dict_pickle({small_tensor()}), {{"0", kSixFloats}}, 8), ErrorCode::ModelLoadError, "compressed"},
      {"legacy non-zip pickle", reduce_p2, ErrorCode::ModelLoadError, "legacy"},
      {"not a zip at all", "hello, this is text", ErrorCode::ModelLoadError, "zip"},
      {"zip without data.pkl", stored_zip({{"a/version", "3\n"}}), ErrorCode::ModelLoadError, "data.pkl"},
      {"pickle without STOP", archive("\x80\x02}", {}), ErrorCode::ModelLoadError, "STOP"},
      {"memo key never stored", archive("\x80\x02h\x05.", {}), ErrorCode::ModelLoadError, "memo"},
      {"pop from an empty stack", archive("\x80\x02s.", {}), ErrorCode::ModelLoadError, "empty"},
      {"INST naming posix.system", archive("\x80\x02(iposix\nsystem\n.", {}), ErrorCode::ValidationError, "posix.system"},
      {"INST naming an allowed global", archive("\x80\x02(icollections\nOrderedDict\n.", {}), ErrorCode::ModelLoadError, "INST"},
      {"unsupported opcode (PERSID)", archive("\x80\x02P1\n.", {}), ErrorCode::ModelLoadError, "opcode"},
      {"top level is a list", archive("\x80\x02].", {}), ErrorCode::ModelLoadError, "not a dict"},
      {"truncated archive", good.substr(0, good.size() - 30), ErrorCode::ModelLoadError, "zip archive"},
  };
  return corpus;
}

TEST(TorchFile, HostileCorpusIsRefusedAndNothingRuns) {
  const fs::path marker = fs::temp_directory_path() / ("sdxlhost-pwned-" + std::to_string(::getpid()));
  fs::remove(marker);
  for (const auto& file : hostile_corpus(marker)) {
    SCOPED_TRACE(file.name);
    const auto error = error_of([&] { parse(file.bytes); });
    EXPECT_EQ(error.code(), file.code) << error.what();
    EXPECT_NE(std::string(error.what()).find(file.message), std::string::npos) << error.what();
    if (file.code == ErrorCode::ValidationError)
      EXPECT_NE(std::string(error.what()).find("refused global"), std::string::npos) << error.what();
  }
  EXPECT_FALSE(fs::exists(marker)) << "a pickle ran a command";
}

TEST(TorchFile, EveryTruncationOfAGoldenFileIsAnErrorNotACrash) {
  const auto pairs = golden_pairs();
  ASSERT_FALSE(pairs.empty());
  const std::string bytes = read_bytes(pairs.front().first);
  for (std::size_t cut = 0; cut < bytes.size(); cut += 37) {
    const auto error = error_of([&] { parse(bytes.substr(0, cut)); });
    EXPECT_EQ(error.code(), ErrorCode::ModelLoadError) << "cut at " << cut << ": " << error.what();
  }
}

TEST(TorchFile, FlippedBytesGiveAnErrorOrTensorsNeverACrash) {
  const std::string bytes = read_bytes(golden_pairs().front().first);
  std::mt19937 random(13);
  for (int round = 0; round < 300; ++round) {
    std::string damaged = bytes;
    for (int flips = 0; flips < 4; ++flips)
      damaged[random() % std::min<std::size_t>(damaged.size(), 9000)] = static_cast<char>(random() & 0xFF);
    try {
      parse(damaged);
    } catch (const sdxlhost::sdk::Error&) {
      // refused: fine; anything else (a crash, another exception type) fails the test
    }
  }
}

}  // namespace
}  // namespace sdxlhost::test_support
