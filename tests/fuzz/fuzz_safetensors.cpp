// libFuzzer target: the safetensors header and tensor table of an untrusted file
// (parse_safetensors_header): only sdk::Error(ModelLoadError), never a read outside the input.
#include <cstdint>
#include <vector>

#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/sdk/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // A copy of exactly `size` bytes: ASan reports any read past it.
  std::vector<std::uint8_t> bytes(data, data + size);
  try {
    (void)sdxlhost::nn::parse_safetensors_header(bytes.data(), bytes.size(), "fuzz.safetensors");
  } catch (const sdxlhost::sdk::Error& e) {
    if (e.code() != sdxlhost::sdk::ErrorCode::ModelLoadError) __builtin_trap();
  }
  return 0;
}
