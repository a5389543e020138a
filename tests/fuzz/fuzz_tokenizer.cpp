// libFuzzer target: the CLIP tokenizer (cleaning, NFC, lower-casing, BPE) on arbitrary bytes,
// with the real SDXL vocabulary from ../shared/goldens/tokenizer/clip_vocab.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "sdxlhost/nn/clip_tokenizer.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace {
const sdxlhost::nn::ClipTokenizer& tokenizer() {
  static const sdxlhost::nn::ClipTokenizer instance = [] {
    const char* dir = std::getenv("SDXLHOST_FUZZ_VOCAB");
    const std::string folder = dir ? dir : SDXLHOST_SHARED_DIR "/goldens/tokenizer/clip_vocab";
    return sdxlhost::nn::ClipTokenizer::load(folder + "/vocab.json", folder + "/merges.txt");
  }();
  return instance;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 4096) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  try {
    const auto padded = tokenizer().encode_padded(text);
    if (padded.input_ids.size() != 77 || padded.attention_mask.size() != 77) __builtin_trap();
    (void)tokenizer().encode(text);
  } catch (const sdxlhost::sdk::Error&) {
  }
  return 0;
}
