#pragma once
/// @file metrics.hpp
/// The host's Prometheus metrics: counters and histograms the runtime records as things happen,
/// rendered with the live gauges (queue, models, plugins, memory) in the Prometheus text format
/// (version 0.0.4) for `/metrics` (metrics_http.hpp) and the `metrics` message.
/// Process-wide, like a Prometheus client's default registry. Thread-safe.

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace sdxlhost::host::metrics {

/// Cumulative histogram with fixed upper bounds (seconds).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  const std::vector<double>& bounds() const { return bounds_; }
  const std::vector<std::uint64_t>& counts() const { return counts_; }  ///< per bucket, not cumulative
  std::uint64_t count() const { return count_; }
  double sum() const { return sum_; }

 private:
  std::vector<double> bounds_;
  std::vector<std::uint64_t> counts_;  // one per bound, plus +Inf
  std::uint64_t count_ = 0;
  double sum_ = 0;
};

/// What only the host knows at render time.
struct LiveState {
  std::size_t queue_depth = 0;
  std::size_t running_jobs = 0;
  std::size_t clients = 0;
  std::uint64_t cache_models = 0;
  std::uint64_t cache_bytes = 0;
  std::uint64_t cache_max_bytes = 0;
  std::uint64_t cache_hits = 0;
  std::uint64_t cache_misses = 0;
  std::uint64_t cache_evictions = 0;
  std::vector<std::pair<std::string, std::string>> plugins;  ///< (name, state)
  std::uint64_t resident_bytes = 0;                          ///< host RSS
  std::uint64_t peak_resident_bytes = 0;
  std::int64_t device_memory_bytes = -1;  ///< allocator bytes on a CUDA device; -1 = none (CPU)
  double uptime_s = 0;
  bool ready = false;
};

class Registry {
 public:
  /// The process's registry.
  static Registry& global();

  /// A response sent: `kind` is the message type for immediate answers and the job kind
  /// (generation, an image message's type, preprocess, load_model) for queued work; `code` "OK" or an error code.
  void count_response(const std::string& kind, const std::string& code);
  /// A job that ended (outcome "ok", "error", "cancelled", "timeout"), from start to answer.
  void observe_job(const std::string& kind, const std::string& outcome, double seconds);
  /// One stage of a plan ran for `seconds`.
  void observe_stage(const std::string& stage, double seconds);
  /// One denoising step (UNet and hooks) took `seconds`.
  void observe_denoise_step(double seconds);

  /// Everything in the Prometheus text format.
  std::string render(const LiveState& live) const;

  /// Forgets what was recorded (tests).
  void reset();

 private:
  Histogram& histogram(std::map<std::string, Histogram>& family, const std::string& label,
                       const std::vector<double>& bounds);

  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> responses_;
  std::map<std::pair<std::string, std::string>, Histogram> jobs_;
  std::map<std::string, Histogram> stages_;
  Histogram denoise_steps_;
  Registry();
};

/// The content type of render()'s text.
inline constexpr const char* kContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace sdxlhost::host::metrics
