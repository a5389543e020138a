// libFuzzer target: the safe .pth reader (stored zip + restricted unpickler) on untrusted bytes.
#include <cstdint>
#include <vector>

#include "sdxlhost/nn/torch_file.hpp"
#include "sdxlhost/sdk/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::uint8_t> bytes(data, data + size);
  try {
    (void)sdxlhost::nn::parse_torch_file(bytes.data(), bytes.size(), "fuzz.pth");
  } catch (const sdxlhost::sdk::Error&) {
  }
  return 0;
}
