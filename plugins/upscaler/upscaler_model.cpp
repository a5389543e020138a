// Loading an upscaler: read the file, detect the architecture from its tensors.
#include "upscaler_model.hpp"

#include <algorithm>
#include <cctype>

#include "esrgan_keys.hpp"
#include "rrdbnet.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/nn/torch_file.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "srvgg_compact.hpp"

namespace sdxlhost::upscaler {

std::shared_ptr<UpscalerModel> model_from_weights(const nn::TensorMap& weights, const std::string& source) {
  if (is_esrgan_layout(weights)) return std::make_shared<RRDBNet>(to_basicsr_names(weights, source), source);
  if (SRVGGNetCompact::matches(weights)) return std::make_shared<SRVGGNetCompact>(weights, source);
  std::string keys;
  int shown = 0;
  for (const auto& [key, tensor] : weights)
    if (shown++ < 4) keys += (keys.empty() ? "" : ", ") + key;
  throw sdk::Error(sdk::ErrorCode::ModelLoadError,
                   "upscaler '" + source + "': the tensors match no supported architecture (RRDBNet/ESRGAN in "
                   "BasicSR, old model.N or BSRGAN names; SRVGGNetCompact); first keys: " + keys);
}

std::shared_ptr<UpscalerModel> load_upscaler_model(const std::filesystem::path& path) {
  const std::string source = path.filename().string();
  if (nn::is_torch_file_name(path)) return model_from_weights(nn::load_torch_file(path), source);
  auto file = nn::SafetensorsFile::open(path);
  return model_from_weights(file->tensors(), source);
}

}  // namespace sdxlhost::upscaler
