#include "host/metrics/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>

namespace sdxlhost::host::metrics {
namespace {

// Seconds: a tiny CPU step is milliseconds, a 1024x1024 CPU job many minutes.
const std::vector<double> kJobBounds = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800};
const std::vector<double> kStageBounds = {0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
const std::vector<double> kStepBounds = {0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 90};

/// A label value as the text format wants it: backslash, quote and newline escaped.
std::string label(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string number(double value) {
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char text[64];
  std::snprintf(text, sizeof text, "%.17g", value);
  return text;
}

void header(std::ostringstream& out, const char* name, const char* type, const char* help) {
  out << "# HELP " << name << ' ' << help << "\n# TYPE " << name << ' ' << type << '\n';
}

/// A metric with one unlabelled sample: its HELP/TYPE lines and `name value`.
/// (Byte counts stay exact: they are far below 2^53.)
void single(std::ostringstream& out, const char* name, const char* type, const char* help, double value) {
  header(out, name, type, help);
  out << name << ' ' << number(value) << '\n';
}

/// `name`_bucket / _sum / _count lines of one histogram with `labels` ("" or `a="b",`).
void histogram_lines(std::ostringstream& out, const std::string& name, const std::string& labels,
                     const Histogram& h) {
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < h.bounds().size(); ++i) {
    cumulative += h.counts()[i];
    out << name << "_bucket{" << labels << "le=\"" << number(h.bounds()[i]) << "\"} " << cumulative << '\n';
  }
  out << name << "_bucket{" << labels << "le=\"+Inf\"} " << h.count() << '\n';
  const std::string plain = labels.empty() ? "" : "{" + labels.substr(0, labels.size() - 1) + "}";
  out << name << "_sum" << plain << ' ' << number(h.sum()) << '\n';
  out << name << "_count" << plain << ' ' << h.count() << '\n';
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  const auto at = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  ++counts_[static_cast<std::size_t>(at)];
  ++count_;
  sum_ += value;
}

Registry::Registry() : denoise_steps_(kStepBounds) {}

Registry& Registry::global() {
  static Registry registry;
  return registry;
}

Histogram& Registry::histogram(std::map<std::string, Histogram>& family, const std::string& key,
                               const std::vector<double>& bounds) {
  auto it = family.find(key);
  if (it == family.end()) it = family.emplace(key, Histogram(bounds)).first;
  return it->second;
}

void Registry::count_response(const std::string& kind, const std::string& code) {
  std::lock_guard<std::mutex> lock(mutex_);
  ++responses_[{kind, code}];
}

void Registry::observe_job(const std::string& kind, const std::string& outcome, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = jobs_.find({kind, outcome});
  if (it == jobs_.end()) it = jobs_.emplace(std::make_pair(kind, outcome), Histogram(kJobBounds)).first;
  it->second.observe(seconds);
}

void Registry::observe_stage(const std::string& stage, double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  histogram(stages_, stage, kStageBounds).observe(seconds);
}

void Registry::observe_denoise_step(double seconds) {
  std::lock_guard<std::mutex> lock(mutex_);
  denoise_steps_.observe(seconds);
}

void Registry::reset() {
  std::lock_guard<std::mutex> lock(mutex_);
  responses_.clear();
  jobs_.clear();
  stages_.clear();
  denoise_steps_ = Histogram(kStepBounds);
}

std::string Registry::render(const LiveState& live) const {
  std::ostringstream out;
  std::lock_guard<std::mutex> lock(mutex_);

  header(out, "sdxlhost_responses_total", "counter",
         "Responses sent, by message type (immediate) or job kind (queued) and result code.");
  for (const auto& [key, count] : responses_)
    out << "sdxlhost_responses_total{kind=\"" << label(key.first) << "\",code=\"" << label(key.second) << "\"} "
        << count << '\n';

  header(out, "sdxlhost_job_duration_seconds", "histogram", "Queued jobs from start to answer, by kind and outcome.");
  for (const auto& [key, h] : jobs_)
    histogram_lines(out, "sdxlhost_job_duration_seconds",
                    "kind=\"" + label(key.first) + "\",outcome=\"" + label(key.second) + "\",", h);

  header(out, "sdxlhost_stage_duration_seconds", "histogram", "Stage run time, by stage.");
  for (const auto& [stage, h] : stages_)
    histogram_lines(out, "sdxlhost_stage_duration_seconds", "stage=\"" + label(stage) + "\",", h);

  header(out, "sdxlhost_denoise_step_seconds", "histogram", "One denoising step (UNet and its hooks).");
  histogram_lines(out, "sdxlhost_denoise_step_seconds", "", denoise_steps_);

  single(out, "sdxlhost_queue_depth", "gauge", "Jobs waiting in the queue.", live.queue_depth);
  single(out, "sdxlhost_running_jobs", "gauge", "Jobs running on an executor.", live.running_jobs);
  single(out, "sdxlhost_clients", "gauge", "Connected clients.", live.clients);

  single(out, "sdxlhost_model_cache_models", "gauge", "Models resident in the model cache.", live.cache_models);
  single(out, "sdxlhost_model_cache_bytes", "gauge", "Bytes of the models resident in the model cache.", live.cache_bytes);
  single(out, "sdxlhost_model_cache_max_bytes", "gauge", "cache.max_bytes (0 = no byte limit).", live.cache_max_bytes);
  single(out, "sdxlhost_model_cache_hits_total", "counter", "Model loads served from the cache.", live.cache_hits);
  single(out, "sdxlhost_model_cache_misses_total", "counter", "Model loads that read files.", live.cache_misses);
  single(out, "sdxlhost_model_cache_evictions_total", "counter", "Models evicted from the cache.", live.cache_evictions);

  header(out, "sdxlhost_plugin_state", "gauge", "1 for each plugin in its current state (loaded, failed, disabled).");
  for (const auto& [name, state] : live.plugins)
    out << "sdxlhost_plugin_state{plugin=\"" << label(name) << "\",state=\"" << label(state) << "\"} 1\n";

  single(out, "sdxlhost_resident_memory_bytes", "gauge", "Host process resident memory (RSS).", live.resident_bytes);
  single(out, "sdxlhost_peak_resident_memory_bytes", "gauge", "Host process peak resident memory.", live.peak_resident_bytes);
  if (live.device_memory_bytes >= 0)
    single(out, "sdxlhost_device_memory_bytes", "gauge", "Bytes allocated on the compute device.", live.device_memory_bytes);
  single(out, "sdxlhost_uptime_seconds", "gauge", "Seconds since the host started.", live.uptime_s);
  single(out, "sdxlhost_ready", "gauge", "1 when the host can serve a generation (see /readyz).", live.ready ? 1.0 : 0.0);
  return out.str();
}

}  // namespace sdxlhost::host::metrics
