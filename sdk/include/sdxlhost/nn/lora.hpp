#pragma once
/// @file lora.hpp
/// LoRA files as users download them, read from their key names (never from the file name), and
/// the weight change each module makes:
///
/// | format     | keys (per module `M`)                                                     |
/// |------------|---------------------------------------------------------------------------|
/// | kohya      | `lora_unet_M.lora_down.weight`, `.lora_up.weight`, `.alpha`; `lora_te1_`, `lora_te2_` (`lora_te_`: SD 1.x); `M` with `_` for `.`, in diffusers or SGM/LDM module paths; LoCon convs (3x3 down, 1x1 up) |
/// | LyCORIS    | the kohya names with `.hada_w1_a/_b`, `.hada_w2_a/_b` [`.hada_t1/_t2`] (LoHa) or `.lokr_w1` / `.lokr_w1_a/_b`, `.lokr_w2` / `.lokr_w2_a/_b` [`.lokr_t2`] (LoKr) |
/// | diffusers  | `unet.M.lora.down.weight` / `.lora.up.weight`, `text_encoder(_2).M.lora_linear_layer.down/up.weight`, old `M.processor.to_q_lora.down.weight` |
/// | PEFT       | `[base_model.model.][unet.|text_encoder.|text_encoder_2.]M.lora_A[.ADAPTER].weight` / `lora_B` |
///
/// Scaling (`alpha / rank`, alpha = rank when the file stores none) follows each format:
/// LoRA and LoHa divide by the rank (rows of `down` / `hada_w1_b`); LoKr divides by the rank of
/// its factorised matrix and uses 1 when neither w1 nor w2 is factorised (LyCORIS' rule).
///
/// Thread-safety: all types are values; functions are pure except apply_lora, which changes the
/// target it is given.

#include <ATen/core/Tensor.h>

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "sdxlhost/nn/tensor_map.hpp"
#include "sdxlhost/sdk/export.hpp"
#include "sdxlhost/sdk/hooks.hpp"

namespace sdxlhost::nn {

/// The naming convention a file was written in.
enum class LoraFormat { Kohya, Diffusers, Peft };
/// "kohya", "diffusers" or "peft".
SDXLHOST_API const char* lora_format_name(LoraFormat format);

/// How one module stores its weight change.
enum class LoraKind { LoRA, LoHa, LoKr };
/// "lora", "loha" or "lokr".
SDXLHOST_API const char* lora_kind_name(LoraKind kind);

/// One module's change: its tensors by role ("down", "up", "hada_w1_a", "lokr_w2", ...).
struct SDXLHOST_API LoraModule {
  std::string component;  ///< "unet", "text_encoder" or "text_encoder_2"
  std::string name;       ///< module path as written, without the component prefix
  LoraKind kind = LoraKind::LoRA;
  std::map<std::string, at::Tensor> tensors;  ///< role -> tensor, as stored (any float dtype)
  std::optional<double> alpha;                ///< the file's alpha, if it stores one

  /// The rank the alpha is divided by (0 when the format uses no rank, e.g. unfactorised LoKr).
  std::int64_t rank() const;
  /// alpha / rank as the format defines it (1 when there is no alpha or no rank).
  double scale() const;
  /// The change of the weight, `multiplier x scale() x (the format's product)`, in float32,
  /// reshaped to `weight_shape`. The factor is applied to the smallest operand (one pass over
  /// the weight-sized result less). Throws sdk::Error(ValidationError) naming the module when
  /// the tensors do not make a weight of that shape.
  at::Tensor delta(at::IntArrayRef weight_shape, double multiplier = 1.0) const;
};

/// A parsed LoRA file.
struct SDXLHOST_API LoraNetwork {
  LoraFormat format = LoraFormat::Kohya;
  std::vector<LoraModule> modules;   ///< in key order
  std::vector<std::string> ignored;  ///< keys that are not LoRA tensors (kept out, reported)
  /// Number of modules of `component`.
  std::size_t count(const std::string& component) const;
};

/// Reads the modules of a LoRA state dict. Throws sdk::Error(ValidationError, field) when no key
/// is a LoRA tensor, or a module is incomplete (an up without a down, ...) or mixes kinds.
SDXLHOST_API LoraNetwork parse_lora(const TensorMap& tensors, const std::string& field);

/// Finds the weight a LoRA module changes in one component: module names are compared with `.`
/// and `_` treated alike, against the component's diffusers / transformers module paths and, for
/// the UNet, their SGM/LDM names (`input_blocks.4.1...`) from the one key map.
class SDXLHOST_API LoraTargetIndex {
 public:
  /// Indexes every `.weight` key of `target`.
  explicit LoraTargetIndex(const sdk::WeightTarget& target);
  /// The weight key module `name` changes, or "" when the component has none.
  std::string find(const std::string& name) const;

 private:
  std::map<std::string, std::string> by_flat_name_;
};

/// What apply_lora did for one component.
struct LoraApplyResult {
  std::size_t modules = 0;   ///< modules of the network for this component
  std::size_t matched = 0;   ///< of those, found in the model (and applied)
  std::vector<std::string> unmatched;  ///< module names the model does not have
};

/// Adds `multiplier x delta` of every module of `network` for `target.component()` to the
/// target. All or nothing: every matched module's delta is computed and checked against its
/// weight's shape before the first weight changes; a shape that does not fit throws
/// sdk::Error(ValidationError, field) saying which module, the shapes, and how many modules
/// matched (a LoRA made for another base model). A multiplier of 0 changes nothing.
SDXLHOST_API LoraApplyResult apply_lora(const LoraNetwork& network, double multiplier, sdk::WeightTarget& target,
                                        const std::string& field);

}  // namespace sdxlhost::nn
