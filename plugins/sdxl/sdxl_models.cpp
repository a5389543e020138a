// Loading an SDXL pipeline (either layout) and the per-job model lookups.
#include "sdxl_models.hpp"

#include <ATen/ATen.h>

#include <fstream>

#include "sdxlhost/nn/checkpoint.hpp"
#include "sdxlhost/nn/model_config.hpp"
#include "sdxlhost/nn/scheduler_defaults.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/models.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::sdxl {
namespace {

namespace fs = std::filesystem;
using sdk::Error;
using sdk::ErrorCode;

[[noreturn]] void bad_setting(const std::string& key, const std::string& message) {
  throw Error(ErrorCode::ValidationError, message, "plugins.config.sdxl." + key);
}

/// The folder holding tokenizer/ and tokenizer_2/ for `path`.
fs::path tokenizer_root(const fs::path& path, const SdxlSettings& settings) {
  if (fs::is_directory(path)) return path;
  if (!settings.tokenizer_dir.empty()) return settings.tokenizer_dir;
  return path.parent_path() / "tokenizers";
}

std::shared_ptr<nn::ClipTokenizer> load_tokenizer(const fs::path& folder) {
  if (!fs::is_directory(folder)) {
    throw Error(ErrorCode::ModelLoadError,
                "no tokenizer folder '" + folder.string() +
                    "' (single-file checkpoints take their tokenizers from plugins.config.sdxl."
                    "tokenizer_dir or a 'tokenizers' folder beside the file)");
  }
  return std::make_shared<nn::ClipTokenizer>(nn::ClipTokenizer::load_folder(folder));
}

/// Runs `load`; an sdk::Error without a field (the nn readers do not know which request field
/// named the file) is rethrown naming `field`, so the client sees e.g. data.models.base.
template <class Load>
auto naming_field(const std::string& field, Load&& load) -> decltype(load()) {
  try {
    return load();
  } catch (const Error& e) {
    if (!e.field().empty()) throw;
    throw Error(e.code(), e.message(), field);
  }
}

bool read_force_zeros(const fs::path& path) {
  const fs::path index = path / "model_index.json";
  if (!fs::is_regular_file(index)) return true;  // SDXL base and refiner both use true
  std::ifstream in(index);
  const auto json = nlohmann::json::parse(in, nullptr, false);
  return json.is_object() ? json.value("force_zeros_for_empty_prompt", true) : true;
}

/// VAE tiles are cut on latent pixels: tile and overlap must be multiples of the VAE's downscale
/// factor. 8 (the SDXL VAE's, the largest in this family) divides by every smaller factor, so a
/// setting that passes here tiles any VAE the plugin loads.
constexpr int kTileMultiple = 8;

/// Checks the tiling settings at initialization, so a bad pair fails the plugin with the reason
/// instead of every request that tiles.
void check_tiling_settings(const SdxlSettings& s) {
  if (s.vae_tile_size <= 0) return;  // tiling off
  if (s.vae_tile_size % kTileMultiple != 0) {
    bad_setting("vae_tile_size", "vae_tile_size must be a multiple of " + std::to_string(kTileMultiple) +
                                     " (the VAE's downscale factor), got " + std::to_string(s.vae_tile_size));
  }
  if (s.vae_tile_overlap % kTileMultiple != 0) {
    bad_setting("vae_tile_overlap", "vae_tile_overlap must be a multiple of " +
                                        std::to_string(kTileMultiple) + " (the VAE's downscale factor), got " +
                                        std::to_string(s.vae_tile_overlap));
  }
  if (s.vae_tile_overlap * 2 > s.vae_tile_size) {
    bad_setting("vae_tile_overlap", "vae_tile_overlap must be at most half of vae_tile_size");
  }
}

}  // namespace

at::ScalarType SdxlSettings::scalar_type() const {
  if (dtype == "bf16") return at::kBFloat16;
  if (dtype == "fp16") return at::kHalf;
  return at::kFloat;
}

at::Device SdxlSettings::torch_device() const { return at::Device(device); }

std::optional<nn::VaeTiling> SdxlSettings::tiling_for(std::int64_t height, std::int64_t width) const {
  if (vae_tile_size <= 0 || (height <= vae_tile_size && width <= vae_tile_size)) return std::nullopt;
  return nn::VaeTiling{vae_tile_size, vae_tile_overlap};
}

SdxlSettings SdxlSettings::from_json(const nlohmann::json& config) {
  SdxlSettings s;
  if (config.is_null()) return s;
  if (!config.is_object()) bad_setting("", "plugins.config.sdxl must be an object");
  auto text = [&](const char* key, std::string& out) {
    if (!config.contains(key)) return;
    if (!config[key].is_string()) bad_setting(key, std::string(key) + " must be a string");
    out = config[key].get<std::string>();
  };
  text("device", s.device);
  text("dtype", s.dtype);
  text("tokenizer_dir", s.tokenizer_dir);
  auto number = [&](const char* key, int& out) {
    if (!config.contains(key)) return;
    if (!config[key].is_number_integer() || config[key].get<int>() < 0) {
      bad_setting(key, std::string(key) + " must be a non-negative integer");
    }
    out = config[key].get<int>();
  };
  number("vae_tile_size", s.vae_tile_size);
  number("vae_tile_overlap", s.vae_tile_overlap);
  number("patched_sets", s.patched_sets);
  check_tiling_settings(s);
  if (s.dtype != "fp32" && s.dtype != "bf16" && s.dtype != "fp16") {
    bad_setting("dtype", "dtype must be fp32, bf16 or fp16");
  }
  try {
    const at::Device device(s.device);
    if (!device.is_cpu() && !device.is_cuda()) bad_setting("device", "device must be cpu or cuda:N");
  } catch (const c10::Error&) {
    bad_setting("device", "device must be cpu or cuda:N, not '" + s.device + "'");
  }
  if (s.dtype == "fp16" && s.device == "cpu") {
    bad_setting("dtype", "fp16 is not implemented on the CPU by this libtorch; use fp32 or bf16");
  }
  return s;
}

std::uint64_t PatchedSet::bytes() const {
  std::uint64_t total = 0;
  for (const auto& w : weights) total += w.value.nbytes();
  return total;
}

const PatchedSet* SdxlModels::find_patched_set(const std::string& key) {
  for (auto it = patched_sets.begin(); it != patched_sets.end(); ++it) {
    if (it->key != key) continue;
    patched_sets.splice(patched_sets.begin(), patched_sets, it);
    return &patched_sets.front();
  }
  return nullptr;
}

void SdxlModels::store_patched_set(PatchedSet set, std::size_t limit) {
  patched_sets.push_front(std::move(set));
  while (patched_sets.size() > limit) patched_sets.pop_back();
}

std::uint64_t SdxlModels::patched_set_bytes() const {
  std::uint64_t total = 0;
  for (const auto& set : patched_sets) total += set.bytes();
  return total;
}

std::shared_ptr<SdxlModels> SdxlModels::load(const fs::path& path, const SdxlSettings& settings) {
  const nn::CheckpointWeights weights = nn::open_checkpoint(path);
  auto require = [&](nn::Component c) -> const nn::TensorMap& {
    auto it = weights.components.find(c);
    if (it == weights.components.end()) {
      throw Error(ErrorCode::ModelLoadError, "'" + path.string() + "' has no " +
                                                 nn::component_folder(c) + " weights");
    }
    return it->second;
  };
  const at::ScalarType dtype = settings.scalar_type();
  const at::Device device = settings.torch_device();
  auto models = std::make_shared<SdxlModels>();
  const fs::path tokenizers = tokenizer_root(path, settings);
  if (weights.components.count(nn::Component::TextEncoder)) {
    models->text_encoder = nn::ClipTextModel::load(
        require(nn::Component::TextEncoder),
        nn::ClipTextConfig::from_json(weights.configs.at(nn::Component::TextEncoder)), dtype, device);
    models->tokenizer = load_tokenizer(tokenizers / "tokenizer");
  }
  models->text_encoder_2 = nn::ClipTextModel::load(
      require(nn::Component::TextEncoder2),
      nn::ClipTextConfig::from_json(weights.configs.at(nn::Component::TextEncoder2)), dtype, device);
  models->tokenizer_2 = load_tokenizer(tokenizers / "tokenizer_2");
  // config.json, the file's metadata copy, or inferred by open_checkpoint (UNetConfig::infer)
  const nn::TensorMap& unet_weights = require(nn::Component::Unet);
  models->unet = nn::UNet2DConditionModel::load(
      nn::UNetConfig::from_json(weights.configs.at(nn::Component::Unet)), unet_weights, dtype, device);
  models->vae = nn::AutoencoderKL::load(nn::VaeConfig::from_json(weights.configs.at(nn::Component::Vae)),
                                        require(nn::Component::Vae), dtype, device);
  models->scheduler_config = nn::model_scheduler_config(fs::is_directory(path) ? path : fs::path());
  models->force_zeros_for_empty_prompt = fs::is_directory(path) ? read_force_zeros(path) : true;
  models->bytes = models->unet->parameter_bytes() + models->vae->parameter_bytes();
  for (const auto& te : {models->text_encoder, models->text_encoder_2}) {
    if (!te) continue;
    for (const auto& [name, tensor] : te->named_parameters()) models->bytes += tensor->nbytes();
  }
  return models;
}

std::string pipeline_variant(const SdxlSettings& settings) {
  return "sdxl-pipeline:" + settings.device + ":" + settings.dtype;
}

std::shared_ptr<SdxlModels> load_pipeline(sdk::ModelAccess& models, const std::string& name,
                                          const SdxlSettings& settings, const std::string& field) {
  return models.load_as<SdxlModels>(sdk::kCheckpoints, name, pipeline_variant(settings), field,
                                    [&](const fs::path& file) {
                                      auto loaded = naming_field(field, [&] { return SdxlModels::load(file, settings); });
                                      return std::make_pair(loaded, loaded->bytes);
                                    });
}

std::shared_ptr<SdxlModels> base_models(sdk::Context& context, const SdxlSettings& settings) {
  const std::string& name = context.request().models.base;
  if (name.empty()) {
    throw Error(ErrorCode::ValidationError, "no base model given", "data.models.base");
  }
  return load_pipeline(context.models(), name, settings, "data.models.base");
}

std::shared_ptr<nn::AutoencoderKL> job_vae(sdk::Context& context, const SdxlSettings& settings) {
  const std::string& name = context.request().models.vae;
  if (name.empty()) return base_models(context, settings)->vae;
  const std::string field = "data.models.vae";
  return context.models().load_as<nn::AutoencoderKL>(
      sdk::kVae, name, "vae:" + settings.device + ":" + settings.dtype, field, [&](const fs::path& file) {
        auto vae = naming_field(field, [&] {
          const nn::CheckpointWeights weights = nn::open_component(nn::Component::Vae, file);
          return nn::AutoencoderKL::load(nn::VaeConfig::from_json(weights.configs.at(nn::Component::Vae)),
                                         weights.components.at(nn::Component::Vae), settings.scalar_type(),
                                         settings.torch_device());
        });
        return std::make_pair(vae, vae->parameter_bytes());
      });
}

at::Tensor BatchNoise::randn(at::IntArrayRef shape) {
  if (shape.empty() || shape[0] != static_cast<std::int64_t>(generators_.size())) {
    throw Error(ErrorCode::InternalError, "noise for a batch of " + std::to_string(shape.empty() ? 0 : shape[0]) +
                                              " asked of " + std::to_string(generators_.size()) + " generators");
  }
  std::vector<std::int64_t> one(shape.begin(), shape.end());
  one[0] = 1;
  std::vector<at::Tensor> rows;
  for (auto& generator : generators_) rows.push_back(generator->randn(one));
  return at::cat(rows, 0).to(device_);
}

}  // namespace sdxlhost::sdxl
