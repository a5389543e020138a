#pragma once
/// @file job_sink.hpp
/// Where a job (and every other answer of the host) reports: typed events, no wire format. Each
/// transport brings its own sink and encodes for its own wire: the pipe and stdio connections
/// write NDJSON lines (protocol/wire_sink.hpp), a cluster worker publishes to the gateway's reply
/// queue (cluster/worker.cpp), `sdxl-host generate` keeps the result in memory
/// (cli/generate_command.cpp).
///
/// Per request the events are: started (once an executor takes a queued job; never for messages
/// answered at once), progress (zero or more), then exactly one of result / error. Cancellation
/// and timeouts are errors with the codes CANCELLED and TIMEOUT, as on the wire. There are no
/// preview events: no stage produces previews today.
/// Thread-safety: events of one request come from one thread at a time, but different requests
/// (and the runtime's watchdog) call a shared sink from several threads; implementations lock.

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::host::runtime {

/// Where the current step is inside a model (sdk::report_detail): block `index` of `count`.
struct ProgressDetail {
  std::string part;  ///< what the stage reports on: "unet", "vae_decode", ...
  int index = 0;
  int count = 0;
};

/// One progress report of a running job.
struct ProgressEvent {
  std::string request_id;
  std::string stage;        ///< the stage reporting ("denoise", ...)
  int step = 0;
  int total_steps = 0;
  double elapsed_s = 0;     ///< since an executor took the job
  std::optional<ProgressDetail> detail;  ///< set for a report from inside a step
};

/// Receives the events of the requests of one client (or of one job, for a worker's job).
class JobSink {
 public:
  virtual ~JobSink() = default;
  /// An executor took job `request_id` of kind `kind` ("generation", an image message's type, ...).
  virtual void started(const std::string& request_id, const std::string& kind) {
    (void)request_id;
    (void)kind;
  }
  /// A progress report (already rate-limited by the runtime).
  virtual void progress(const ProgressEvent& event) = 0;
  /// The request succeeded: `data` is the answer's body (the shape its message type documents
  /// in docs/protocol.md), `warnings` what the client should read.
  virtual void result(const std::string& request_id, nlohmann::json data, const std::vector<std::string>& warnings) = 0;
  /// The request failed (refused, cancelled, timed out, or the job threw). `request_id` is empty
  /// when the line that failed had none that could be read.
  virtual void error(const std::string& request_id, const sdk::Error& error,
                     const std::vector<std::string>& warnings) = 0;
};

}  // namespace sdxlhost::host::runtime
