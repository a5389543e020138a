#pragma once
/// @file key_map.hpp
/// The one place where SDXL weight names are translated between the two layouts users have:
///
///  - **diffusers**: a folder per component (`unet/`, `vae/`, `text_encoder/`, `text_encoder_2/`)
///    with diffusers / transformers key names. This is the layout our modules are named after,
///    so loading is a name match.
///  - **LDM/SGM single file** (`sd_xl_base_1.0.safetensors`): every component in one file under
///    `model.diffusion_model.`, `first_stage_model.`, `conditioner.embedders.N.transformer.`
///    (CLIP-L, the HF model itself) and `conditioner.embedders.N.model.` (OpenCLIP bigG, with fused
///    `attn.in_proj_weight` and a transposed `text_projection`).
///
/// A `KeyMap` is a list of rules (diffusers name <-> LDM name, plus the tensor operation between
/// them) generated from the component's structure, which is read from the key names of either
/// layout. The same rules convert in both directions. Tensors may live on any device, including
/// `meta` (shape-only checks).
///
/// Thread-safety: KeyMap is immutable after construction; use it from any thread.

#include <ATen/core/Tensor.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "sdxlhost/nn/tensor_map.hpp"
#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::nn {

/// The weight-carrying components of an SDXL pipeline.
enum class Component { Unet, Vae, TextEncoder, TextEncoder2 };

/// The diffusers subfolder of a component: "unet", "vae", "text_encoder", "text_encoder_2".
SDXLHOST_API const char* component_folder(Component component);

/// The two key layouts.
enum class KeyLayout { Diffusers, Ldm };

/// How a tensor changes between layouts.
enum class KeyOp {
  Rename,     ///< same tensor
  Transpose,  ///< ldm = diffusers.T (OpenCLIP text_projection)
  Conv1x1,    ///< ldm = diffusers.reshape(o, i, 1, 1) (VAE mid attention Linear <-> 1x1 conv)
  FusedRows,  ///< ldm = cat(parts, dim 0); diffusers = rows [part*n, (part+1)*n) (OpenCLIP qkv)
};

/// One naming rule. A name ending in '.' is a prefix rule (the rest of the key is kept); any other
/// name matches one whole key. The longest matching rule wins.
struct KeyRule {
  std::string diffusers;  ///< diffusers key or key prefix
  std::string ldm;        ///< LDM key or key prefix
  KeyOp op = KeyOp::Rename;
  int part = 0;   ///< FusedRows: which part (0 = q, 1 = k, 2 = v)
  int parts = 1;  ///< FusedRows: how many parts the LDM tensor holds
};

/// UNet structure the key names depend on (diffusers UNet2DConditionModel / SGM UNetModel).
struct UnetKeyStructure {
  int levels = 0;                        ///< number of down (= up) blocks
  int layers_per_block = 0;              ///< resnets per down block (up blocks have one more)
  std::vector<bool> down_has_attention;  ///< per down block
  std::vector<bool> up_has_attention;    ///< per up block (diffusers order)
  bool mid_has_attention = true;         ///< UNetMidBlock2DCrossAttn
};

/// VAE structure the key names depend on (AutoencoderKL).
struct VaeKeyStructure {
  int levels = 0;            ///< number of encoder down (= decoder up) blocks
  int layers_per_block = 0;  ///< encoder resnets per block (decoder has one more)
};

/// Rules for one component; converts state dicts in both directions.
class SDXLHOST_API KeyMap {
 public:
  /// Rules for a UNet of this structure (keys relative to the component, no LDM prefix).
  static KeyMap unet(const UnetKeyStructure& structure);
  /// Rules for a VAE of this structure.
  static KeyMap vae(const VaeKeyStructure& structure);
  /// CLIP-L (HF CLIPTextModel): the names are the same in both layouts.
  static KeyMap clip_text();
  /// OpenCLIP text tower with `layers` residual blocks <-> CLIPTextModelWithProjection.
  static KeyMap open_clip_text(int layers);
  /// The map for `component`, its structure read from `names` (keys without any LDM prefix)
  /// written in `layout`. Throws sdk::Error(ModelLoadError) when the structure is not recognised.
  static KeyMap for_component(Component component, KeyLayout layout,
                              const std::vector<std::string>& names);

  /// Every rule.
  const std::vector<KeyRule>& rules() const { return rules_; }

  /// The LDM key for a diffusers key (nullopt when no rule matches), with its rule.
  std::optional<std::pair<std::string, const KeyRule*>> to_ldm_key(std::string_view diffusers_key) const;
  /// The diffusers keys for an LDM key (several for a fused tensor; empty when no rule matches).
  std::vector<std::pair<std::string, const KeyRule*>> to_diffusers_keys(std::string_view ldm_key) const;

  /// Converts an LDM state dict (no prefix) to diffusers names and tensor forms. Keys no rule
  /// matches are skipped and appended to `unmapped` when given.
  TensorMap to_diffusers(const TensorMap& ldm, std::vector<std::string>* unmapped = nullptr) const;
  /// Converts a diffusers state dict to LDM names and forms (fused parts are concatenated; a
  /// missing part throws sdk::Error(ModelLoadError)). Unmatched keys go to `unmapped`.
  TensorMap to_ldm(const TensorMap& diffusers, std::vector<std::string>* unmapped = nullptr) const;

 private:
  void add(KeyRule rule);
  void add_prefix(const std::string& diffusers, const std::string& ldm);

  std::vector<KeyRule> rules_;
  std::unordered_map<std::string, std::vector<std::size_t>> by_diffusers_;
  std::unordered_map<std::string, std::vector<std::size_t>> by_ldm_;
};

/// Reads the UNet structure from key names of either layout (no LDM prefix).
SDXLHOST_API UnetKeyStructure unet_key_structure(KeyLayout layout, const std::vector<std::string>& names);
/// Reads the VAE structure from key names of either layout (no LDM prefix).
SDXLHOST_API VaeKeyStructure vae_key_structure(KeyLayout layout, const std::vector<std::string>& names);

/// Where each component lives inside an LDM/SGM single file.
struct LdmPrefixes {
  std::map<Component, std::string> prefix;  ///< component -> key prefix; only those present
};

/// Finds the components of an LDM/SGM single file from its key names: `model.diffusion_model.`,
/// `first_stage_model.`, `conditioner.embedders.N.transformer.` (CLIP-L) and
/// `conditioner.embedders.N.model.` (OpenCLIP bigG; N = 1 in the base, 0 in the refiner).
SDXLHOST_API LdmPrefixes detect_ldm_prefixes(const std::vector<std::string>& names);

/// The SGM prefixes for a pipeline that has these components (base: both text encoders, CLIP-L
/// first; refiner: only the OpenCLIP encoder, at index 0).
SDXLHOST_API LdmPrefixes standard_ldm_prefixes(bool has_text_encoder, bool has_text_encoder_2);

/// Layout of a single-file checkpoint or a standalone component file (e.g. a VAE file with bare
/// `encoder.down.0...` keys): Ldm when it uses LDM names, Diffusers otherwise.
SDXLHOST_API KeyLayout detect_key_layout(const std::vector<std::string>& names);

/// A single file split into diffusers-named component state dicts.
struct SplitCheckpoint {
  std::map<Component, TensorMap> components;  ///< only the components present
  std::vector<std::string> ignored;           ///< keys no component used (EMA, position_ids, ...)
};

/// Splits an LDM/SGM single-file state dict into diffusers-named components.
SDXLHOST_API SplitCheckpoint ldm_checkpoint_to_diffusers(const TensorMap& checkpoint);
/// Joins diffusers-named components into one LDM/SGM state dict (standard prefixes).
SDXLHOST_API TensorMap diffusers_to_ldm_checkpoint(const std::map<Component, TensorMap>& components);

}  // namespace sdxlhost::nn
