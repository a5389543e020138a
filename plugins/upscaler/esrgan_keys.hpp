#pragma once
/// @file esrgan_keys.hpp
/// The one place where ESRGAN-family key names are renamed. Three spellings exist in the files
/// users have; all are mapped onto BasicSR's (`conv_first`, `body.{i}.rdb{j}.conv{k}`,
/// `conv_body`, `conv_up{n}`, `conv_hr`, `conv_last`):
///  - BasicSR / Real-ESRGAN: unchanged;
///  - old xinntao/ESRGAN `model.N` (a Sequential): `model.0` = conv_first,
///    `model.1.sub.{i}.RDB{j}.conv{k}.0` = body, `model.1.sub.{num_block}` = conv_body, then per
///    2x upsampling step an Upsample, a conv and a LeakyReLU (`model.3`, `model.6`, ...), then
///    HR conv, LeakyReLU, last conv (`model.{3n+2}`, `model.{3n+4}` for n steps);
///  - BSRGAN / RealSR aliases: `RRDB_trunk.{i}.RDB{j}.conv{k}`, `trunk_conv`, `upconv{n}`, `HRconv`.
/// Thread-safety: pure functions.

#include <string>

#include "sdxlhost/nn/tensor_map.hpp"

namespace sdxlhost::upscaler {

/// True when `weights` look like an ESRGAN-family RRDBNet in any of the three spellings.
bool is_esrgan_layout(const nn::TensorMap& weights);

/// The same tensors under BasicSR names. Throws sdk::Error(ModelLoadError) naming `source` when
/// an old `model.N` layout does not have the Sequential's shape (missing or extra indices).
nn::TensorMap to_basicsr_names(const nn::TensorMap& weights, const std::string& source);

}  // namespace sdxlhost::upscaler
