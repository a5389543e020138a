// The wire's request schema, read (see request_parser.hpp).
#include "sdxlhost/sdk/request_parser.hpp"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <limits>
#include <random>
#include <set>

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/field_reader.hpp"
#include "sdxlhost/sdk/lora_tags.hpp"
#include "sdxlhost/sdk/relative_path.hpp"
#include "sdxlhost/sdk/request_features.hpp"

namespace sdxlhost::sdk {
namespace {

using nlohmann::json;

constexpr long long kMaxSeed = std::numeric_limits<std::int64_t>::max();

[[noreturn]] void invalid(const std::string& field, const std::string& why) {
  throw Error(ErrorCode::ValidationError, why, field);
}

/// Moves top-level `legacy` into data[section][nested] unless the nested form is present.
void fold(json& data, const std::string& legacy, const std::string& section, const std::string& nested,
          std::vector<std::string>& warnings) {
  auto it = data.find(legacy);
  if (it == data.end()) return;
  json value = std::move(*it);
  data.erase(it);
  if (!data.contains(section) || data[section].is_null()) data[section] = json::object();
  if (!data[section].is_object()) {
    warnings.push_back("legacy field 'data." + legacy + "' ignored: 'data." + section + "' is not an object");
    return;
  }
  if (data[section].contains(nested) && !data[section][nested].is_null()) {
    // The seed's C# transformer sends model_name next to models.base, equal: nothing to say then.
    if (data[section][nested] != value)
      warnings.push_back("legacy field 'data." + legacy + "' (" + value.dump() + ") ignored: 'data." + section +
                         "." + nested + "' (" + data[section][nested].dump() + ") given too and differs");
    return;
  }
  data[section][nested] = std::move(value);
}

/// Deep merge: objects merge key by key, anything else in `patch` replaces what `target` had.
void merge_into(json& target, const json& patch) {
  for (const auto& [key, value] : patch.items()) {
    auto it = target.find(key);
    if (it != target.end() && it->is_object() && value.is_object()) merge_into(*it, value);
    else target[key] = value;
  }
}

std::int64_t random_seed() {
  static thread_local std::mt19937_64 engine{std::random_device{}()};
  return static_cast<std::int64_t>(engine() & 0xffffffffULL);
}

void read_models(FieldReader& data, ModelSelection& models, std::vector<std::string>& warnings) {
  auto reader = data.child("models");
  if (!reader) return;
  reader->read_string("base", models.base);
  reader->read_string("refiner", models.refiner);
  reader->read_string("vae", models.vae);
  reader->warn_unknown(warnings);
}

void read_hyperparameters(FieldReader& data, const RequestLimits& limits, Hyperparameters& h,
                          bool& seed_given, std::vector<std::string>& warnings) {
  auto reader = data.child("hyperparameters");
  if (!reader) return;
  reader->read_int("num_inference_steps", h.num_inference_steps, 1, limits.max_steps);
  reader->read_number("guidance_scale", h.guidance_scale, limits.min_guidance, limits.max_guidance);
  std::int64_t seed = -1;
  reader->read_int("seed", seed, -1, kMaxSeed);
  if (seed >= 0) {
    h.seed = seed;
    seed_given = true;
  }
  reader->read_number("strength", h.strength, 0.0, 1.0, /*exclusive_min=*/true);
  reader->read_number("guidance_rescale", h.guidance_rescale, 0.0, 1.0);
  reader->read_int("clip_skip", h.clip_skip, 0, 10);
  double end = 0.0;
  if (reader->find("denoising_end")) {
    reader->read_number("denoising_end", end, 0.0, 1.0, true);
    if (end >= 1.0) invalid(reader->path_of("denoising_end"), "must be in (0, 1)");
    h.denoising_end = end;
  }
  std::vector<int> size;
  if (reader->find("original_size")) {
    reader->read_int_array("original_size", size, 2, 1, 65536);
    h.original_size = size;
  }
  if (reader->find("target_size")) {
    reader->read_int_array("target_size", size, 2, 1, 65536);
    h.target_size = size;
  }
  reader->read_int_array("crops_coords_top_left", h.crops_coords_top_left, 2, 0, 65536);
  reader->read_number("aesthetic_score", h.aesthetic_score, 0.0, 10.0);
  reader->read_number("negative_aesthetic_score", h.negative_aesthetic_score, 0.0, 10.0);
  reader->warn_unknown(warnings);
}

/// Defaults a request did not override must still fit a config with narrower limits.
void check_defaults_fit(const Hyperparameters& h, const RequestLimits& limits) {
  if (h.num_inference_steps > limits.max_steps)
    invalid("data.hyperparameters.num_inference_steps",
            "must be in [1, " + std::to_string(limits.max_steps) + "] (the default " +
                std::to_string(h.num_inference_steps) + " exceeds limits.max_steps; give it explicitly)");
  if (h.guidance_scale < limits.min_guidance || h.guidance_scale > limits.max_guidance)
    invalid("data.hyperparameters.guidance_scale",
            "the default " + std::to_string(h.guidance_scale) + " is outside limits.min_guidance..max_guidance; give it explicitly");
}

void check_size(int value, int min, int max, const std::string& field) {
  if (value % 8 != 0) invalid(field, "must be a multiple of 8 (got " + std::to_string(value) + ")");
  if (value < min || value > max)
    invalid(field, "must be in [" + std::to_string(min) + ", " + std::to_string(max) + "] (got " +
                       std::to_string(value) + ")");
}

void read_dimensions(FieldReader& data, const RequestLimits& limits, GenerationRequest& request,
                     std::vector<std::string>& warnings) {
  if (auto reader = data.child("dimensions")) {
    request.dimensions_given = true;
    // The configured range in the message (limits.min_width..max_width), not a wider one.
    reader->read_int("width", request.width, limits.min_width, limits.max_width);
    reader->read_int("height", request.height, limits.min_height, limits.max_height);
    reader->warn_unknown(warnings);
  }
  // Checked even when absent: the default size must fit this config's limits too.
  check_size(request.width, limits.min_width, limits.max_width, "data.dimensions.width");
  check_size(request.height, limits.min_height, limits.max_height, "data.dimensions.height");
}

void read_lora(FieldReader& data, GenerationRequest& request, std::vector<std::string>& warnings) {
  auto reader = data.child("lora");
  if (!reader) return;
  bool enabled_given = reader->find("enabled") != nullptr;
  reader->read_bool("enabled", request.lora_enabled);
  if (const json* models = reader->find("models")) {
    if (!models->is_array()) invalid(reader->path_of("models"), "must be an array of {name, weight}");
    for (std::size_t i = 0; i < models->size(); ++i) {
      FieldReader item((*models)[i], reader->path_of("models") + "[" + std::to_string(i) + "]");
      LoraSelection lora;
      item.read_string("name", lora.name, /*required=*/true);
      if (lora.name.empty()) invalid(item.path_of("name"), "must not be empty");
      // 0 = not applied; |weight| > 10 is refused as a typo (an image at 50x a LoRA is noise)
      item.read_number("weight", lora.weight, -10.0, 10.0);
      item.read_string("apply_to", lora.apply_to);
      if (lora.apply_to != "base" && lora.apply_to != "refiner" && lora.apply_to != "both")
        invalid(item.path_of("apply_to"), "must be \"base\", \"refiner\" or \"both\" (got \"" + lora.apply_to + "\")");
      item.warn_unknown(warnings);
      for (std::size_t j = 0; j < request.loras.size(); ++j)
        if (lora_identity(request.loras[j].name) == lora_identity(lora.name))
          invalid(item.path_of("name"), "names the same LoRA as data.lora.models[" + std::to_string(j) +
                                            "]; give each LoRA once with its weight");
      request.loras.push_back(lora);
    }
  }
  if (!enabled_given) request.lora_enabled = !request.loras.empty();
  if (request.lora_enabled && request.loras.empty())
    invalid(reader->path_of("models"), "must name at least one LoRA when lora.enabled is true");
  if (!request.lora_enabled) request.loras.clear();
  reader->warn_unknown(warnings);
}

/// A1111 `<lora:NAME:WEIGHT>` tags in prompt / prompt_2: removed from the text and appended to
/// data.lora.models (they enable LoRA unless lora.enabled is explicitly false, then they are
/// dropped with a warning). A tag naming a LoRA that data.lora.models also names is refused.
void fold_lora_tags(const json& data, GenerationRequest& request, std::vector<std::string>& warnings) {
  const std::size_t listed = request.loras.size();
  for (auto [text, field] : {std::pair<std::string*, const char*>{&request.prompt, "data.prompt"},
                             {&request.prompt_2, "data.prompt_2"}}) {
    for (const auto& tag : extract_lora_tags(*text, field)) {
      if (tag.weight < -10.0 || tag.weight > 10.0)
        invalid(field, "the tag <lora:" + tag.name + "> has weight " + std::to_string(tag.weight) +
                           "; must be in [-10, 10]");
      for (std::size_t j = 0; j < request.loras.size(); ++j) {
        if (lora_identity(request.loras[j].name) != lora_identity(tag.name)) continue;
        invalid(field, "the tag <lora:" + tag.name + "> names the same LoRA as " +
                           (j < listed ? "data.lora.models[" + std::to_string(j) + "]" : std::string("another tag")) +
                           "; give each LoRA once");
      }
      request.loras.push_back({tag.name, tag.weight});
    }
  }
  if (request.loras.size() == listed) return;
  const auto lora = data.find("lora");
  const bool disabled = lora != data.end() && lora->is_object() && lora->contains("enabled") &&
                        (*lora)["enabled"].is_boolean() && !(*lora)["enabled"].get<bool>();
  if (disabled) {
    warnings.push_back("data.lora.enabled is false: the <lora:...> tags in the prompt were removed and not applied");
    request.loras.resize(listed);
    return;
  }
  request.lora_enabled = true;
}

/// Options objects whose "enabled": false (or empty/false value) means "not asked for" -> null.
json optional_feature(const json* value, const std::string& field, bool allow_array) {
  if (!value || (value->is_boolean() && !value->get<bool>())) return nullptr;
  if (value->is_boolean()) return json{{"enabled", true}};
  if (value->is_array() && allow_array) return value->empty() ? json(nullptr) : *value;
  if (!value->is_object()) invalid(field, allow_array ? "must be an object or an array" : "must be an object");
  auto enabled = value->find("enabled");
  if (enabled != value->end() && !enabled->is_boolean()) invalid(field + ".enabled", "must be true or false");
  // "enabled": false -> not asked for, read as the planner reads it; {} is kept for the plugin to
  // say what is missing
  if (!value->empty() && !option_requested(*value)) return nullptr;
  return *value;
}

void read_output(FieldReader& data, OutputOptions& output, std::vector<std::string>& warnings) {
  auto reader = data.child("output");
  if (!reader) return;
  reader->read_string("format", output.format);
  std::transform(output.format.begin(), output.format.end(), output.format.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (output.format == "jpg") output.format = "jpeg";
  if (output.format != "png" && output.format != "jpeg" && output.format != "webp")
    invalid(reader->path_of("format"), "must be one of: png, jpeg, webp");
  reader->read_int("quality", output.quality, 1, 100);
  reader->read_string("save_path", output.save_path);
  check_save_path(output.save_path, reader->path_of("save_path"));
  reader->read_bool("return_base64", output.return_base64);
  output.upscale = optional_feature(reader->find("upscale"), reader->path_of("upscale"), false);
  reader->warn_unknown(warnings);
}

void read_batch(FieldReader& data, const RequestLimits& limits, int& batch_size, std::vector<std::string>& warnings) {
  auto reader = data.child("batch");
  if (!reader) return;
  reader->read_int("size", batch_size, 1, limits.max_batch);
  reader->accept("parallel");
  reader->warn_unknown(warnings);
}

void read_metadata(FieldReader& data, const RequestLimits& limits, RequestMetadata& metadata,
                   std::vector<std::string>& warnings) {
  auto reader = data.child("metadata");
  if (!reader) return;
  reader->read_string("priority", metadata.priority);
  if (metadata.priority != "high" && metadata.priority != "normal" && metadata.priority != "low")
    invalid(reader->path_of("priority"), "must be one of: high, normal, low");
  reader->read_number("timeout", metadata.timeout_s, 0.0, limits.max_timeout_s, /*exclusive_min=*/true);
  reader->read_string_array("tags", metadata.tags);
  reader->accept("request_id");
  reader->warn_unknown(warnings);
}

/// The fields of `data` the host reads; the rest are passed to plugins with a warning.
GenerationRequest read_request(const json& data, const RequestLimits& limits, double default_timeout_s,
                                    const std::set<std::string>& plugin_sections, bool& seed_given,
                                    std::vector<std::string>& warnings) {
  GenerationRequest request;
  request.metadata.timeout_s = default_timeout_s;
  FieldReader reader(data, "data");
  reader.read_string("prompt", request.prompt, /*required=*/true);
  reader.read_string("prompt_2", request.prompt_2);
  reader.read_string("negative_prompt", request.negative_prompt);
  reader.read_string("negative_prompt_2", request.negative_prompt_2);
  reader.read_bool("long_prompt", request.long_prompt);
  read_models(reader, request.models, warnings);
  read_hyperparameters(reader, limits, request.hyperparameters, seed_given, warnings);
  check_defaults_fit(request.hyperparameters, limits);
  read_dimensions(reader, limits, request, warnings);
  reader.read_string("scheduler", request.scheduler);
  if (request.scheduler.empty()) invalid("data.scheduler", "must not be empty");
  if (const json* options = reader.find("scheduler_options")) {
    if (!options->is_object()) invalid("data.scheduler_options", "must be an object");
    request.scheduler_options = *options;
  }
  read_lora(reader, request, warnings);
  fold_lora_tags(data, request, warnings);
  request.controlnet = optional_feature(reader.find("controlnet"), "data.controlnet", true);
  reader.read_string("init_image", request.init_image);
  read_output(reader, request.output, warnings);
  read_batch(reader, limits, request.batch_size, warnings);
  read_metadata(reader, limits, request.metadata, warnings);
  reader.read_bool("dry_run", request.dry_run);
  reader.accept("worker_type");
  for (const auto& section : plugin_sections) reader.accept(section);
  reader.warn_unknown(warnings);
  return request;
}

/// Strength only shapes image-to-image; a request that sets it without an init image gets told.
/// The default (0.8, what the seed's C# transformer sends on every request) is not worth a
/// warning: only a value that would have meant something is.
void warn_strength_without_init_image(const json& normalized, const GenerationRequest& request,
                                      std::vector<std::string>& warnings) {
  if (!request.init_image.empty()) return;
  const auto hyperparameters = normalized.find("hyperparameters");
  if (hyperparameters == normalized.end() || !hyperparameters->is_object() ||
      !hyperparameters->contains("strength"))
    return;
  if (request.hyperparameters.strength == Hyperparameters{}.strength) return;
  warnings.push_back("data.hyperparameters.strength (" + std::to_string(request.hyperparameters.strength) +
                     ") ignored: it applies only with data.init_image (image-to-image)");
}

/// worker_type routed the Python workers; the host serves every request itself. Values the seed
/// sent are accepted quietly, anything else is most likely a typo worth telling.
void warn_unknown_worker_type(const json& data, std::vector<std::string>& warnings) {
  static const std::set<std::string> kKnown = {"sdxl_worker", "enhanced_sdxl_worker", "lora_worker",
                                               "controlnet_worker", "upscaler_worker", "scheduler_manager"};
  const auto it = data.find("worker_type");
  if (it == data.end() || it->is_null()) return;
  if (!it->is_string() || !kKnown.count(it->get<std::string>()))
    warnings.push_back("data.worker_type " + it->dump() +
                       " is not a known worker type (sdxl_worker, enhanced_sdxl_worker, ...); ignored: the host "
                       "routes requests by their features");
}

/// metadata.request_id is accepted for the seed's clients; the envelope's request_id is the one
/// the host uses, so a different value is worth telling.
void warn_metadata_request_id(const json& data, const std::string& request_id, std::vector<std::string>& warnings) {
  const auto metadata = data.find("metadata");
  if (metadata == data.end() || !metadata->is_object()) return;
  const auto id = metadata->find("request_id");
  if (id == metadata->end() || id->is_null()) return;
  if (!id->is_string() || id->get<std::string>() != request_id)
    warnings.push_back("data.metadata.request_id " + id->dump() + " differs from the message's request_id \"" +
                       request_id + "\"; the message's is used");
}

/// A save_path whose extension does not fit output.format is saved with the format's extension.
void warn_save_path_extension(const OutputOptions& output, std::vector<std::string>& warnings) {
  const std::string& path = output.save_path;
  if (path.empty() || path.back() == '/') return;
  const std::filesystem::path file(path);
  const std::string extension = file.extension().string();
  if (extension.empty()) return;  // a folder
  std::string lower = extension;
  for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const bool fits = output.format == "jpeg" ? (lower == ".jpg" || lower == ".jpeg") : lower == "." + output.format;
  if (!fits)
    warnings.push_back("data.output.save_path: '" + extension + "' does not fit output.format '" + output.format +
                       "'; the file is saved as " + file.stem().string() +
                       (output.format == "jpeg" ? ".jpg" : "." + output.format));
}

json size_or_null(const std::optional<std::vector<int>>& size) {
  return size ? json(*size) : json(nullptr);
}

}  // namespace

json normalize_legacy_fields(const json& data, std::vector<std::string>& warnings) {
  json out = data;
  fold(out, "model_name", "models", "base", warnings);
  fold(out, "guidance_scale", "hyperparameters", "guidance_scale", warnings);
  fold(out, "num_inference_steps", "hyperparameters", "num_inference_steps", warnings);
  fold(out, "seed", "hyperparameters", "seed", warnings);
  fold(out, "strength", "hyperparameters", "strength", warnings);
  fold(out, "width", "dimensions", "width", warnings);
  fold(out, "height", "dimensions", "height", warnings);
  fold(out, "batch_size", "batch", "size", warnings);
  return out;
}

GenerationRequest parse_generation_request(const json& data, const std::string& request_id,
                                                const RequestLimits& limits, double default_timeout_s,
                                                std::vector<std::string>& warnings,
                                                const std::set<std::string>& plugin_sections) {
  if (!data.is_object()) invalid("data", "must be an object");
  json normalized = normalize_legacy_fields(data, warnings);
  bool seed_given = false;
  GenerationRequest request = read_request(normalized, limits, default_timeout_s, plugin_sections, seed_given, warnings);
  request.request_id = request_id;
  warn_strength_without_init_image(normalized, request, warnings);
  warn_unknown_worker_type(normalized, warnings);
  warn_metadata_request_id(normalized, request_id, warnings);
  warn_save_path_extension(request.output, warnings);
  for (std::size_t i = 0; i < request.loras.size(); ++i)
    if (request.loras[i].apply_to == "refiner" && request.models.refiner.empty())
      warnings.push_back("data.lora.models[" + std::to_string(i) +
                         "].apply_to is \"refiner\" but data.models.refiner is not set: that LoRA is not applied");
  if (!seed_given) request.hyperparameters.seed = random_seed();
  merge_into(normalized, request_to_json(request));
  request.data = std::move(normalized);
  return request;
}

ImageMessageRequest parse_upscale_request(const json& data, const std::string& request_id, const RequestLimits& limits,
                                     double default_timeout_s, std::vector<std::string>& warnings) {
  ImageMessageRequest out;
  GenerationRequest& request = out.request;
  request.request_id = request_id;
  request.metadata.timeout_s = default_timeout_s;
  FieldReader reader(data, "data");
  reader.read_string("image", out.image, /*required=*/true);
  if (out.image.empty()) invalid("data.image", "must be a base64 PNG or JPEG");
  read_output(reader, request.output, warnings);
  request.output.upscale = optional_feature(reader.find("upscale"), "data.upscale", false);
  if (request.output.upscale.is_null()) invalid("data.upscale", "is required and must be enabled (the upscale options)");
  read_metadata(reader, limits, request.metadata, warnings);
  reader.warn_unknown(warnings);
  const auto& o = request.output;
  request.data = {{"image", {{"base64_chars", out.image.size()}}},
                  {"upscale", o.upscale},
                  {"output", {{"format", o.format}, {"quality", o.quality}, {"save_path", o.save_path},
                              {"return_base64", o.return_base64}}},
                  {"metadata", {{"priority", request.metadata.priority}, {"timeout", request.metadata.timeout_s},
                                {"tags", request.metadata.tags}}}};
  return out;
}

const std::vector<ImageMessage>& image_messages() {
  static const std::vector<ImageMessage> kMessages = {
      {"upscale", "data.upscale", "data.output.upscale", &parse_upscale_request}};
  return kMessages;
}

json request_to_json(const GenerationRequest& r) {
  const auto& h = r.hyperparameters;
  json loras = json::array();
  for (const auto& lora : r.loras)
    loras.push_back({{"name", lora.name}, {"weight", lora.weight}, {"apply_to", lora.apply_to}});
  return {
      {"prompt", r.prompt},
      {"prompt_2", r.prompt_2},
      {"negative_prompt", r.negative_prompt},
      {"negative_prompt_2", r.negative_prompt_2},
      {"long_prompt", r.long_prompt},
      {"models", {{"base", r.models.base}, {"refiner", r.models.refiner}, {"vae", r.models.vae}}},
      {"hyperparameters",
       {{"num_inference_steps", h.num_inference_steps},
        {"guidance_scale", h.guidance_scale},
        {"seed", h.seed},
        {"strength", h.strength},
        {"guidance_rescale", h.guidance_rescale},
        {"clip_skip", h.clip_skip},
        {"denoising_end", h.denoising_end ? json(*h.denoising_end) : json(nullptr)},
        {"original_size", size_or_null(h.original_size)},
        {"crops_coords_top_left", h.crops_coords_top_left},
        {"target_size", size_or_null(h.target_size)},
        {"aesthetic_score", h.aesthetic_score},
        {"negative_aesthetic_score", h.negative_aesthetic_score}}},
      {"dimensions", {{"width", r.width}, {"height", r.height}}},
      {"scheduler", r.scheduler},
      {"scheduler_options", r.scheduler_options},
      {"lora", {{"enabled", r.lora_enabled}, {"models", loras}}},
      {"controlnet", r.controlnet},
      {"init_image", r.init_image},
      {"output",
       {{"format", r.output.format},
        {"quality", r.output.quality},
        {"save_path", r.output.save_path},
        {"return_base64", r.output.return_base64},
        {"upscale", r.output.upscale}}},
      {"batch", {{"size", r.batch_size}}},
      {"metadata", {{"priority", r.metadata.priority}, {"timeout", r.metadata.timeout_s}, {"tags", r.metadata.tags}}},
      {"dry_run", r.dry_run},
  };
}

}  // namespace sdxlhost::sdk
