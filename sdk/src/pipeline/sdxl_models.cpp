// Loading an SDXL pipeline (either layout) and the per-job model lookups.
#include "sdxlhost/pipeline/sdxl_models.hpp"

#include <ATen/ATen.h>

#include <fstream>

#include "sdxlhost/nn/checkpoint.hpp"
#include "sdxlhost/nn/model_config.hpp"
#include "sdxlhost/nn/scheduler_defaults.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/models.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::pipeline {
namespace {

namespace fs = std::filesystem;
using sdk::Error;
using sdk::ErrorCode;

/// The folder holding tokenizer/ and tokenizer_2/ for `path`.
fs::path tokenizer_root(const fs::path& path, const PipelineSettings& settings) {
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
  // vocab.json + merges.txt alone load, but then the padding token is CLIP's default
  // <|endoftext|>, while SDXL's second tokenizer pads with "!" (only these files say so): images
  // would silently differ from the reference. So one of them is required.
  if (!fs::is_regular_file(folder / "special_tokens_map.json") && !fs::is_regular_file(folder / "tokenizer_config.json")) {
    throw Error(ErrorCode::ModelLoadError,
                "tokenizer folder '" + folder.string() +
                    "' has neither special_tokens_map.json nor tokenizer_config.json: they name the padding "
                    "token (SDXL's tokenizer_2 pads with '!'; without them it would pad with <|endoftext|> and "
                    "images would differ from the reference). Copy them with vocab.json and merges.txt from "
                    "the model's tokenizer folders");
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

/// model_index.json's force_zeros_for_empty_prompt, `fallback` when it does not say.
bool read_force_zeros(const fs::path& path, bool fallback) {
  const fs::path index = path / "model_index.json";
  if (!fs::is_regular_file(index)) return fallback;
  std::ifstream in(index);
  const auto json = nlohmann::json::parse(in, nullptr, false);
  if (!json.is_object() || !json.contains("force_zeros_for_empty_prompt") ||
      !json["force_zeros_for_empty_prompt"].is_boolean())
    return fallback;
  return json["force_zeros_for_empty_prompt"].get<bool>();
}

}  // namespace

std::uint64_t SdxlModels::bytes_now() const { return bytes + (patched_sets ? patched_sets->bytes() : 0); }

bool SdxlModels::is_refiner() const { return !text_encoder && time_id_count() == 5; }

int SdxlModels::time_id_count() const {
  const nn::UNetConfig& c = unet->config();
  const std::int64_t pooled = text_encoder_2->config().projection_dim;
  if (c.addition_time_embed_dim <= 0) return 0;
  return static_cast<int>((c.projection_class_embeddings_input_dim - pooled) / c.addition_time_embed_dim);
}

std::shared_ptr<SdxlModels> SdxlModels::bind(const nn::CheckpointWeights& weights, at::ScalarType dtype,
                                             at::Device device, const std::string& source) {
  auto require = [&](nn::Component c) -> const nn::TensorMap& {
    auto it = weights.components.find(c);
    if (it == weights.components.end()) {
      throw Error(ErrorCode::ModelLoadError, "'" + source + "' has no " + nn::component_folder(c) + " weights");
    }
    return it->second;
  };
  auto models = std::make_shared<SdxlModels>();
  if (weights.components.count(nn::Component::TextEncoder)) {
    models->text_encoder = nn::ClipTextModel::load(
        require(nn::Component::TextEncoder),
        nn::ClipTextConfig::from_json(weights.configs.at(nn::Component::TextEncoder)), dtype, device);
  }
  models->text_encoder_2 = nn::ClipTextModel::load(
      require(nn::Component::TextEncoder2),
      nn::ClipTextConfig::from_json(weights.configs.at(nn::Component::TextEncoder2)), dtype, device);
  // config.json, the file's metadata copy, or inferred by open_checkpoint (UNetConfig::infer)
  const nn::TensorMap& unet_weights = require(nn::Component::Unet);
  models->unet = nn::UNet2DConditionModel::load(
      nn::UNetConfig::from_json(weights.configs.at(nn::Component::Unet)), unet_weights, dtype, device);
  models->vae = nn::AutoencoderKL::load(nn::VaeConfig::from_json(weights.configs.at(nn::Component::Vae)),
                                        require(nn::Component::Vae), dtype, device);
  models->bytes = models->unet->parameter_bytes() + models->vae->parameter_bytes();
  for (const auto& te : {models->text_encoder, models->text_encoder_2}) {
    if (!te) continue;
    for (const auto& [name, tensor] : te->named_parameters()) models->bytes += tensor->nbytes();
  }
  return models;
}

std::shared_ptr<SdxlModels> SdxlModels::load(const fs::path& path, const PipelineSettings& settings) {
  const nn::CheckpointWeights weights = nn::open_checkpoint(path);
  auto models = bind(weights, settings.scalar_type(), settings.torch_device(), path.string());
  if (settings.channels_last) models->unet->use_channels_last();
  const fs::path tokenizers = tokenizer_root(path, settings);
  if (models->text_encoder) models->tokenizer = load_tokenizer(tokenizers / "tokenizer");
  models->tokenizer_2 = load_tokenizer(tokenizers / "tokenizer_2");
  models->scheduler_config = nn::model_scheduler_config(fs::is_directory(path) ? path : fs::path());
  // model_index.json says; a single file carries none: SDXL base true, refiner-1.0 false
  models->force_zeros_for_empty_prompt = fs::is_directory(path) ? read_force_zeros(path, !models->is_refiner())
                                                                 : !models->is_refiner();
  return models;
}

std::string pipeline_variant(const PipelineSettings& settings) {
  return "sdxl-pipeline:" + settings.device + ":" + settings.dtype + (settings.channels_last ? ":channels-last" : "");
}

std::shared_ptr<SdxlModels> load_pipeline(sdk::ModelAccess& models, const std::string& name,
                                          const PipelineSettings& settings, const std::string& field) {
  auto object = models.load(sdk::kCheckpoints, name, pipeline_variant(settings), field, typeid(SdxlModels),
                            [&](const fs::path& file) {
                              auto loaded = naming_field(field, [&] { return SdxlModels::load(file, settings); });
                              sdk::CachedModel cached{loaded, loaded->bytes};
                              // the patched copies it keeps count too (patched_sets.hpp)
                              cached.extra_bytes = [sets = loaded->patched_sets] { return sets->bytes(); };
                              return cached;
                            });
  return std::static_pointer_cast<SdxlModels>(object);
}

std::shared_ptr<SdxlModels> base_models(sdk::Context& context, const PipelineSettings& settings) {
  const std::string& name = context.request().models.base;
  if (name.empty()) {
    throw Error(ErrorCode::ValidationError, "no base model given", "data.models.base");
  }
  return load_pipeline(context.models(), name, settings, "data.models.base");
}

std::shared_ptr<nn::AutoencoderKL> job_vae(sdk::Context& context, const PipelineSettings& settings) {
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

}  // namespace sdxlhost::pipeline
