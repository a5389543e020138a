#include "host/runtime/generation.hpp"

#include <fstream>
#include <sstream>

#include "host/common/logging.hpp"
#include "host/graph/plan_runner.hpp"
#include "host/metrics/metrics.hpp"
#include "host/models/job_models.hpp"
#include "host/runtime/progress_throttle.hpp"
#include "sdxlhost/nn/device_runtime.hpp"
#include "sdxlhost/nn/image_decode.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/image.hpp"
#include "sdxlhost/sdk/registries.hpp"
#include "sdxlhost/sdk/request_features.hpp"
#include "sdxlhost/sdk/request_parser.hpp"
#include "sdxlhost/sdk/stage.hpp"

namespace sdxlhost::host::runtime {
namespace {

using nlohmann::json;

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

spdlog::level::level_enum to_spdlog(sdk::LogLevel level) {
  switch (level) {
    case sdk::LogLevel::Trace: return spdlog::level::trace;
    case sdk::LogLevel::Debug: return spdlog::level::debug;
    case sdk::LogLevel::Info: return spdlog::level::info;
    case sdk::LogLevel::Warn: return spdlog::level::warn;
    default: return spdlog::level::err;
  }
}

/// Progress inside a step (sdk::report_detail): recorded for `status` and reported as a progress
/// event (the stage's last step with a detail), rate-limited like the steps.
class DetailForwarder {
 public:
  DetailForwarder(Job& job, std::shared_ptr<ProgressThrottle> throttle) : job_(job), throttle_(std::move(throttle)) {
    sink_ = [this](std::string_view part, int index, int count) { forward(part, index, count); };
  }
  const sdk::DetailSink* sink() const { return &sink_; }

 private:
  void forward(std::string_view part, int index, int count) {
    job_.set_detail(std::string(part), index, count);
    const json described = job_.describe();
    const std::string stage = described.value("stage", std::string());
    if (!throttle_->should_send_detail() || !job_.sink()) return;
    const double elapsed = seconds_between(job_.started_at(), Clock::now());
    job_.sink()->progress(ProgressEvent{job_.request_id(), stage, described.value("step", 0),
                                        described.value("total_steps", 0), elapsed,
                                        ProgressDetail{std::string(part), index, count}});
    job_.mark_progress_sent();
  }

  Job& job_;
  std::shared_ptr<ProgressThrottle> throttle_;
  sdk::DetailSink sink_;
};

/// Progress callback of a job: records it for `status` and forwards throttled events.
/// `models`: the job's pins over the host's store (job_models.hpp), alive until the job ends.
sdk::ContextServices make_services(Job& job, const GenerationEnvironment& environment,
                                   std::shared_ptr<ProgressThrottle> throttle, JobModels& models) {
  sdk::ContextServices services;
  // The time between two consecutive steps the denoise stage reports is one denoising step.
  struct LastStep {
    int step = -1;
    Clock::time_point at;
  };
  auto last = std::make_shared<LastStep>();
  services.progress = [&job, throttle, last](std::string_view stage, int step, int total_steps) {
    job.set_progress(std::string(stage), step, total_steps);
    if (stage == "denoise") {
      const auto now = Clock::now();
      if (step == last->step + 1 && last->step >= 0)
        metrics::Registry::global().observe_denoise_step(seconds_between(last->at, now));
      *last = {step, now};
    }
    if (!throttle->should_send(stage, step, total_steps) || !job.sink()) return;
    double elapsed = seconds_between(job.started_at(), Clock::now());
    job.sink()->progress(ProgressEvent{job.request_id(), std::string(stage), step, total_steps, elapsed, std::nullopt});
    job.mark_progress_sent();
  };
  services.log = [id = job.request_id()](sdk::LogLevel level, std::string_view message) {
    component_logger("job")->log(to_spdlog(level), "[{}] {}", id, message);
  };
  services.models = &models;
  services.registries = &environment.plugins->registries();
  services.deadline = job.deadline();
  return services;
}

/// A finished job's response data: its images, the plan that ran and processing_metrics (one
/// shape for a generation and an image message).
json job_result(const Job& job, json generated, const Plan& plan, Clock::time_point run_start,
                Clock::time_point run_end, const GenerationEnvironment& environment) {
  const json memory = process_memory();
  const json device = device_memory(environment.device);
  // device_*: the device's own memory (CUDA allocator) where there is one; on a CPU the device's
  // memory is the host's (RSS). host_* are always the host's.
  const json& device_used = device.is_null() ? memory["rss_bytes"] : device["allocated_bytes"];
  const json& device_peak = device.is_null() ? memory["peak_rss_bytes"] : device["peak_allocated_bytes"];
  return {{"request_id", job.request_id()},
          {"generated_images", std::move(generated)},
          {"stages", plan.names()},
          {"processing_metrics",
           {{"total_time", seconds_between(job.enqueued_at(), Clock::now())},
            {"queue_time", seconds_between(job.enqueued_at(), job.started_at())},
            {"inference_time", seconds_between(run_start, run_end)},
            {"output_time", seconds_between(run_end, Clock::now())},
            {"device_name", environment.device},
            {"device_memory_used", device_used},
            {"peak_memory_bytes", device_peak},
            {"host_memory_used", memory["rss_bytes"]},
            {"host_peak_memory_bytes", memory["peak_rss_bytes"]}}}};
}

/// The feature whose request field is `field` (request_features.hpp); `field` itself when none
/// declares it, so the error names what is missing.
std::string feature_of_field(const PluginSet& plugins, const std::string& field) {
  for (const auto& feature : plugins.request_features())
    if (feature.field == field) return feature.name;
  return field;
}

std::string read_status_field(const std::string& key) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind(key + ":", 0) == 0) return line.substr(key.size() + 1);
  return {};
}

std::uint64_t kib_field_bytes(const std::string& key) {
  std::istringstream value(read_status_field(key));
  std::uint64_t kib = 0;
  value >> kib;
  return kib * 1024;
}

}  // namespace

OnDisabledFeature planner_policy(DisabledFeaturePolicy policy) {
  return policy == DisabledFeaturePolicy::Warn ? OnDisabledFeature::Warn : OnDisabledFeature::Error;
}

void check_init_image(const sdk::GenerationRequest& request, const Limits& limits) {
  if (request.init_image.empty()) return;
  const std::string field = "data.init_image";
  // Read from the header: an image over limits.max_image_pixels is refused here, undecoded.
  const nn::ImageSize size = nn::read_image_size(nn::decode_base64(request.init_image, field), field);
  // With data.dimensions the image is resized to them (already checked against the limits).
  if (request.dimensions_given) return;
  const int width = size.width - size.width % 8, height = size.height - size.height % 8;
  if (width < limits.min_width || width > limits.max_width || height < limits.min_height ||
      height > limits.max_height)
    throw sdk::Error(sdk::ErrorCode::ValidationError,
                     "without data.dimensions image-to-image runs at the init image's own size, " +
                         std::to_string(size.width) + "x" + std::to_string(size.height) +
                         ", which is outside limits.min_width..max_width (" + std::to_string(limits.min_width) +
                         ".." + std::to_string(limits.max_width) + ") x limits.min_height..max_height (" +
                         std::to_string(limits.min_height) + ".." + std::to_string(limits.max_height) +
                         "); give data.dimensions to resize it",
                     field);
}

void check_model_names(const sdk::GenerationRequest& request, const ModelStore& models) {
  for (const auto& model : sdk::model_references(request)) models.resolve(model.kind, model.name, model.field);
}

json dry_run_data(const sdk::GenerationRequest& request, const PluginSet& plugins,
                  OnDisabledFeature on_disabled, std::vector<std::string>& warnings) {
  Plan plan = plan_request(plugins, request, on_disabled, warnings);
  json stages = json::array();
  for (const auto& stage : plan.stages)
    stages.push_back({{"name", stage->name()},
                      {"feature", stage->feature()},
                      {"plugin", plugins.registries().stage_owner(stage->name())},
                      {"order", stage->order()},
                      {"reads", stage->reads()},
                      {"writes", stage->writes()}});
  return {{"dry_run", true},
          {"request_id", request.request_id},
          {"stages", plan.names()},
          {"plan", stages},
          {"features", required_features(plugins, request)},
          {"normalized_request", request.data}};
}

json run_generation(Job& job, const std::shared_ptr<const sdk::GenerationRequest>& request,
                    const GenerationEnvironment& environment) {
  if (!environment.plugins) throw sdk::Error(sdk::ErrorCode::InternalError, "no plugin set");
  if (!environment.models) throw sdk::Error(sdk::ErrorCode::InternalError, "no model store");
  const std::size_t warnings_before = job.warnings.size();
  Plan plan = plan_request(*environment.plugins, *request, environment.on_disabled, job.warnings);
  auto throttle = std::make_shared<ProgressThrottle>(std::chrono::milliseconds(environment.progress_interval_ms));
  JobModels models(*environment.models);  // every model a stage loads stays until the job ends
  sdk::Context context(request, make_services(job, environment, throttle, models), job.token());
  DetailForwarder details(job, throttle);
  auto log = component_logger("job");
  // on_disabled_feature "warn": each feature skipped is logged, not only told to the client.
  for (std::size_t i = warnings_before; i < job.warnings.size(); ++i)
    log->warn("[{}] {}", job.request_id(), job.warnings[i]);
  std::string names;
  for (const auto& name : plan.names()) names += (names.empty() ? "" : " -> ") + name;
  log->info("[{}] plan: {}", job.request_id(), names);

  Clock::time_point run_start = Clock::now();
  run_plan(plan, context, details.sink());
  Clock::time_point run_end = Clock::now();
  context.throw_if_cancelled();
  if (!context.has(sdk::slots::kImages))
    throw sdk::Error(sdk::ErrorCode::PluginError, "the plan finished without writing the \"images\" slot");
  const auto& images = context.get<std::vector<sdk::Image>>(sdk::slots::kImages);
  json generated = write_images(images, *request, environment.output);
  for (const auto& warning : context.warnings()) job.warnings.push_back(warning);

  return job_result(job, std::move(generated), plan, run_start, run_end, environment);
}

sdk::Error as_image_message_error(const sdk::Error& error, const sdk::ImageMessage& message) {
  const std::string& from = message.request_field;
  const std::string& field = error.field();
  if (field.compare(0, from.size(), from) != 0 || (field.size() > from.size() && field[from.size()] != '.'))
    return error;
  return sdk::Error(error.code(), error.message(), message.options_field + field.substr(from.size()));
}

namespace {

/// The stages' warnings name the generation field (request_field.X); the image message's own
/// field is its options_field.X.
std::string as_image_message_text(std::string text, const sdk::ImageMessage& message) {
  const std::string& from = message.request_field;
  for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + 1))
    text.replace(at, from.size(), message.options_field);
  return text;
}

}  // namespace

Plan plan_image_message(const PluginSet& plugins, const sdk::GenerationRequest& request,
                        const sdk::ImageMessage& message) {
  try {
    return plan_postprocess(plugins, request, feature_of_field(plugins, message.request_field),
                            message.options_field);
  } catch (const sdk::Error& error) {
    throw as_image_message_error(error, message);
  }
}

json run_image_message(Job& job, const std::shared_ptr<const sdk::GenerationRequest>& request, const std::string& image,
                       const sdk::ImageMessage& message, const GenerationEnvironment& environment) {
  if (!environment.plugins) throw sdk::Error(sdk::ErrorCode::InternalError, "no plugin set");
  if (!environment.models) throw sdk::Error(sdk::ErrorCode::InternalError, "no model store");
  try {
    Plan plan = plan_image_message(*environment.plugins, *request, message);
    auto throttle = std::make_shared<ProgressThrottle>(std::chrono::milliseconds(environment.progress_interval_ms));
    JobModels models(*environment.models);
    sdk::Context context(request, make_services(job, environment, throttle, models), job.token());
    DetailForwarder details(job, throttle);
    context.set(sdk::slots::kImages, std::vector<sdk::Image>{nn::decode_base64_image(image, "data.image")});
    Clock::time_point run_start = Clock::now();
    run_plan(plan, context, details.sink());
    Clock::time_point run_end = Clock::now();
    context.throw_if_cancelled();
    OutputSettings output = environment.output;
    output.generation = false;
    json generated = write_images(context.get<std::vector<sdk::Image>>(sdk::slots::kImages), *request, output);
    for (const auto& warning : context.warnings()) job.warnings.push_back(as_image_message_text(warning, message));
    return job_result(job, std::move(generated), plan, run_start, run_end, environment);
  } catch (const sdk::Error& error) {
    throw as_image_message_error(error, message);
  }
}

json process_memory() {
  return {{"rss_bytes", kib_field_bytes("VmRSS")}, {"peak_rss_bytes", kib_field_bytes("VmHWM")}};
}

json device_memory(const std::string& device) {
  if (device == "cpu") return nullptr;
  const auto memory = nn::device_memory(c10::Device(device));
  if (!memory) return nullptr;
  return {{"allocated_bytes", memory->allocated},
          {"peak_allocated_bytes", memory->peak_allocated},
          {"reserved_bytes", memory->reserved},
          {"free_bytes", memory->free},
          {"total_bytes", memory->total}};
}

}  // namespace sdxlhost::host::runtime
