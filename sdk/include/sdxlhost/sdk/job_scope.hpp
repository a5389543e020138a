#pragma once
/// @file job_scope.hpp
/// Cancellation and progress inside long computations that have no Context at hand: model
/// forwards (between UNet/ControlNet/VAE blocks), tilers, model loading. The host binds the job
/// running on a thread to that thread (JobScope) around each stage; numeric code calls
/// check_cancelled() between blocks and report_detail() to say how far it is, so a cancelled or
/// timed-out job frees its executor within about one block, and `status` / progress events show
/// where a long stage is. Without a scope on the thread both are no-ops (tests, tools).
/// Thread-safety: everything here acts on the calling thread only.

#include <functional>
#include <string_view>

#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::sdk {

class Context;

/// Receives report_detail() calls: (part, index, count).
using DetailSink = std::function<void(std::string_view part, int index, int count)>;

/// Binds `context` (its token and deadline) and `details` (may be empty) to the current thread
/// for this object's lifetime; nests (the previous binding comes back). `context` and `details`
/// must outlive the scope.
class SDXLHOST_API JobScope {
 public:
  explicit JobScope(const Context& context, const DetailSink* details = nullptr);
  ~JobScope();
  JobScope(const JobScope&) = delete;
  JobScope& operator=(const JobScope&) = delete;

 private:
  const Context* previous_context_;
  const DetailSink* previous_details_;
};

/// The context bound to this thread, or nullptr.
SDXLHOST_API const Context* current_job() noexcept;

/// Throws Error(Cancelled) or Error(Timeout) when the job bound to this thread must stop; does
/// nothing without one. Cheap (an atomic load and a clock read): call it between blocks.
SDXLHOST_API void check_cancelled();

/// Reports how far a long part of the current stage is: `part` (e.g. "unet", "vae_decode",
/// "tile") at `index` of `count` (1-based). The host forwards it to `status` and, rate-limited,
/// as a progress event. No-op without a job on this thread.
SDXLHOST_API void report_detail(std::string_view part, int index, int count);

}  // namespace sdxlhost::sdk
