#pragma once
/// @file upscaler_model.hpp
/// The interface every upscaler network implements (RRDBNet, SRVGGNetCompact), and the loader
/// that reads a weights file (`.safetensors`, `.pth`, `.pt`) and picks the architecture from the
/// tensor names and shapes alone: no config file, no guessing from the file name.
/// Thread-safety: a loaded model is immutable; `forward` may run on several threads at once.

#include <ATen/core/Tensor.h>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "sdxlhost/nn/tensor_map.hpp"

namespace sdxlhost::upscaler {

/// Intermediate activations by name, filled by `forward` when a test asks for them.
using Trace = std::map<std::string, at::Tensor>;

/// Called between blocks of a forward; throws to stop (cancel / timeout).
using CheckCancel = std::function<void()>;

/// One upscaling network with its weights.
class UpscalerModel {
 public:
  virtual ~UpscalerModel() = default;
  /// Architecture name as reported in metadata ("RRDBNet", "SRVGGNetCompact").
  virtual std::string architecture() const = 0;
  /// Integer factor from input to output side (read from the weights).
  virtual int scale() const = 0;
  /// Input sides must be multiples of this (pixel-unshuffle factor; 1 for most models).
  virtual int input_multiple() const { return 1; }
  /// One-line description of the detected configuration, for logs and metadata.
  virtual std::string describe() const = 0;
  /// Bytes held by the weights (for the model cache budget).
  virtual std::uint64_t bytes() const = 0;
  /// (N,3,H,W) float in [0,1] -> (N,3,H*scale,W*scale), not clamped. `check` runs between
  /// blocks; `trace` (optional) receives named intermediates.
  virtual at::Tensor forward(const at::Tensor& x, const CheckCancel& check = {}, Trace* trace = nullptr) const = 0;
  /// Converts the weights to `dtype` and the memory format convolutions prefer (channels-last);
  /// forward then expects input in the same dtype.
  virtual void convert(at::ScalarType dtype, bool channels_last) = 0;
};

/// Builds the model the weights describe. Throws sdk::Error(ModelLoadError) naming `source` when
/// they match no supported architecture or are inconsistent (missing keys, shapes).
std::shared_ptr<UpscalerModel> model_from_weights(const nn::TensorMap& weights, const std::string& source);

/// Reads `path` (`.safetensors`, or `.pth`/`.pt`/`.ckpt` through the safe unpickler) and calls
/// model_from_weights. Throws sdk::Error (ModelLoadError; ValidationError for refused pickles).
std::shared_ptr<UpscalerModel> load_upscaler_model(const std::filesystem::path& path);

}  // namespace sdxlhost::upscaler
