// libFuzzer target: the A1111 prompt-weighting parser ((a:1.2), [b], \( escapes, BREAK).
#include <cmath>
#include <cstdint>
#include <string_view>

#include "sdxlhost/nn/prompt_weighting.hpp"
#include "sdxlhost/sdk/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 8192) return 0;
  const std::string_view prompt(reinterpret_cast<const char*>(data), size);
  try {
    for (const auto& part : sdxlhost::nn::parse_prompt_weights(prompt))
      if (std::isnan(part.weight)) __builtin_trap();
  } catch (const sdxlhost::sdk::Error&) {
  }
  return 0;
}
