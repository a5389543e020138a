#pragma once
/// @file generation.hpp
/// What an executor does with an inference_request: take the plugin snapshot, plan, build the
/// sdk::Context (progress, request-id logging, model store, registries, deadline), run the
/// stages, write the images, and build the response data {generated_images, processing_metrics,
/// stages}. Also the dry-run answer (plan + normalized request, nothing run).

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "host/config/host_config.hpp"
#include "host/graph/planner.hpp"
#include "host/models/model_store.hpp"
#include "host/output/image_writer.hpp"
#include "host/plugins/plugin_manager.hpp"
#include "host/runtime/job.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::sdk {
struct ImageMessage;  // sdxlhost/sdk/request_parser.hpp
}

namespace sdxlhost::host::runtime {

/// What a generation needs from the host, captured when the job starts.
struct GenerationEnvironment {
  std::shared_ptr<const PluginSet> plugins;  ///< the snapshot the job runs with
  ModelStore* models = nullptr;  ///< the host's model store (outlives every job)
  OutputSettings output;         ///< output_root
  OnDisabledFeature on_disabled = OnDisabledFeature::Error;  ///< on_disabled_feature
  std::string device = "cpu";    ///< reported in processing_metrics.device_name
  int progress_interval_ms = 250;  ///< queue.progress_interval_ms
};

/// The planner's policy for a config value.
OnDisabledFeature planner_policy(DisabledFeaturePolicy policy);

/// Reads the init image's size from its header (no pixel decoded) and refuses it, as
/// VALIDATION_ERROR on data.init_image, when image-to-image would run outside the configured
/// size limits (img2img uses the image's own size, as diffusers' SDXL img2img pipeline does)
/// or when it is over limits.max_image_pixels.
void check_init_image(const sdk::GenerationRequest& request, const Limits& limits);

/// Checks that every model the request names resolves under models_root (MODEL_NOT_FOUND, or
/// VALIDATION_ERROR for names escaping their folder), before the job is queued.
void check_model_names(const sdk::GenerationRequest& request, const ModelStore& models);

/// {dry_run: true, stages, features, normalized_request}: the plan without running it.
nlohmann::json dry_run_data(const sdk::GenerationRequest& request, const PluginSet& plugins,
                            OnDisabledFeature on_disabled, std::vector<std::string>& warnings);

/// Runs one generation job; returns the success response's data. Appends plan and stage
/// warnings to job.warnings. Throws sdk::Error (CANCELLED, TIMEOUT, FEATURE_DISABLED, ...).
nlohmann::json run_generation(Job& job, const std::shared_ptr<const sdk::GenerationRequest>& request,
                              const GenerationEnvironment& environment);

/// `error` with a field under message.request_field renamed to message.options_field (what the
/// client of the image message sent); other errors unchanged.
sdk::Error as_image_message_error(const sdk::Error& error, const sdk::ImageMessage& message);

/// The plan of an image message: the stages of the feature that serves message.request_field
/// (FEATURE_DISABLED naming message.options_field and plugins.enabled.<name> when none is
/// enabled). Errors renamed as above.
Plan plan_image_message(const PluginSet& plugins, const sdk::GenerationRequest& request,
                        const sdk::ImageMessage& message);

/// Runs an image message's job: decodes `image` (VALIDATION_ERROR data.image when it is not a
/// PNG/JPEG), runs the planned stages over it, writes the result as run_generation does and
/// answers the same shape {generated_images, stages, processing_metrics}.
nlohmann::json run_image_message(Job& job, const std::shared_ptr<const sdk::GenerationRequest>& request,
                                 const std::string& image, const sdk::ImageMessage& message,
                                 const GenerationEnvironment& environment);

/// Resident and peak memory of this process: {rss_bytes, peak_rss_bytes} (0 when unknown).
nlohmann::json process_memory();

/// Memory of the compute device `device` ("cuda", "cuda:N") from the CUDA caching allocator and
/// the driver: {allocated_bytes, peak_allocated_bytes, reserved_bytes, free_bytes, total_bytes};
/// null for "cpu" and in a CPU-only build (the CPU's memory is process_memory()).
nlohmann::json device_memory(const std::string& device);

}  // namespace sdxlhost::host::runtime
