// libFuzzer target: the LoRA key parser (parse_lora): kohya/A1111 and diffusers/PEFT key names,
// one per input line, each bound to a small tensor whose shape comes from the line's length (so
// ranks and sizes disagree as often as they agree). Only sdk::Error may come out.
#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "sdxlhost/nn/lora.hpp"
#include "sdxlhost/sdk/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 4096) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  sdxlhost::nn::TensorMap tensors("fuzz.safetensors");
  std::size_t start = 0;
  for (int n = 0; start <= text.size() && n < 64; ++n) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string key(text.substr(start, end - start));
    const std::int64_t a = 1 + static_cast<std::int64_t>(key.size() % 3);
    const std::int64_t b = 1 + static_cast<std::int64_t>(key.size() % 5);
    if (key.size() >= 6 && key.compare(key.size() - 6, 6, ".alpha") == 0) tensors.set(key, at::scalar_tensor(static_cast<double>(a)));
    else tensors.set(key, at::zeros({a, b}));
    start = end + 1;
  }
  try {
    (void)sdxlhost::nn::parse_lora(tensors, "data.lora.models[0].name");
  } catch (const sdxlhost::sdk::Error&) {
  }
  return 0;
}
