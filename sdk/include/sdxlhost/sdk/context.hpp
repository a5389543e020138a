#pragma once
/// @file context.hpp
/// The state one job's stages share: named, typed slots (conditioning, latents, images), the
/// request, progress reporting, cancellation, logging and model access.
/// Thread-safety: a Context belongs to one job and is used by one thread at a time (the job's
/// executor); `cancel()` and `cancelled()` alone may be called from other threads.

#include <any>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::sdk {

struct GenerationRequest;
class ModelAccess;
class Registries;

/// Log levels a stage may use (mapped onto spdlog's by the host).
enum class LogLevel { Trace, Debug, Info, Warn, Error };

/// What the host plugs into a Context. Any callback may be empty (then it does nothing).
struct ContextServices {
  /// Called with (stage, step, total_steps); the host rate-limits and forwards to the client.
  std::function<void(std::string_view stage, int step, int total_steps)> progress;
  /// Called for every log line of the job; the host adds the request id.
  std::function<void(LogLevel, std::string_view)> log;
  ModelAccess* models = nullptr;          ///< model resolver + cache; must be set to use models()
  const Registries* registries = nullptr; ///< schedulers, preprocessors, hooks of this job's plugin set
  /// Absolute deadline of the job (queue wait + run); time_point::max() when none.
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
};

/// A shared flag a job's owner sets to stop it; checked by stages between steps.
class CancellationToken {
 public:
  /// Asks the job to stop at its next check; may be called from any thread, any number of times.
  void cancel() noexcept { flag_.store(true, std::memory_order_relaxed); }
  /// True once cancel() was called.
  bool cancelled() const noexcept { return flag_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> flag_{false};
};

/// Per-job state passed to every Stage::run.
class SDXLHOST_API Context {
 public:
  /// A context for one job; `token` is shared with whoever may cancel the job.
  Context(std::shared_ptr<const GenerationRequest> request, ContextServices services,
          std::shared_ptr<CancellationToken> token = std::make_shared<CancellationToken>());

  /// The normalized request.
  const GenerationRequest& request() const { return *request_; }

  // ---- slots -------------------------------------------------------------------------------
  /// Stores `value` in `slot`, replacing what was there.
  template <class T>
  void set(const std::string& slot, T value) {
    slots_[slot] = std::make_shared<std::any>(std::move(value));
  }
  /// True when `slot` holds a value.
  bool has(const std::string& slot) const { return slots_.count(slot) != 0; }
  /// The value in `slot`. Throws Error(InternalError) naming the slot when it is missing or of
  /// another type: the planner guarantees reads are written earlier, so this is a plugin bug.
  template <class T>
  T& get(const std::string& slot) {
    auto it = slots_.find(slot);
    if (it == slots_.end()) missing_slot(slot);
    T* value = std::any_cast<T>(it->second.get());
    if (!value) wrong_type(slot, typeid(T), it->second->type());
    return *value;
  }
  template <class T>
  const T& get(const std::string& slot) const {
    return const_cast<Context*>(this)->get<T>(slot);
  }
  /// Removes a slot (frees its memory early).
  void erase(const std::string& slot) { slots_.erase(slot); }
  /// Names of the slots currently held.
  std::vector<std::string> slot_names() const;

  // ---- progress, cancellation, time ---------------------------------------------------------
  /// Reports progress of `stage`: step `step` of `total_steps` (1-based step).
  void report_progress(std::string_view stage, int step, int total_steps) const;
  /// True when the job was cancelled or its deadline has passed.
  bool cancelled() const;
  /// Throws Error(Cancelled) or Error(Timeout) when the job must stop. Call between steps.
  void throw_if_cancelled() const;
  /// The token the host cancels.
  const std::shared_ptr<CancellationToken>& token() const { return token_; }

  // ---- logging ------------------------------------------------------------------------------
  /// Logs one line for this job (the host adds the component and the request id).
  void log(LogLevel level, std::string_view message) const;

  // ---- warnings that go into the response ----------------------------------------------------
  /// Adds a line to the response's `warnings` (something the job did differently than asked).
  void add_warning(std::string warning) { warnings_.push_back(std::move(warning)); }
  /// Warnings added so far.
  const std::vector<std::string>& warnings() const { return warnings_; }

  // ---- services -----------------------------------------------------------------------------
  /// Model resolver and cache. Throws Error(InternalError) when the host gave none.
  ModelAccess& models() const;
  /// Registries of the plugin set this job runs with.
  const Registries& registries() const;

 private:
  [[noreturn]] void missing_slot(const std::string& slot) const;
  [[noreturn]] void wrong_type(const std::string& slot, const std::type_info& want,
                               const std::type_info& have) const;

  std::shared_ptr<const GenerationRequest> request_;
  ContextServices services_;
  std::shared_ptr<CancellationToken> token_;
  std::map<std::string, std::shared_ptr<std::any>> slots_;
  std::vector<std::string> warnings_;
};

}  // namespace sdxlhost::sdk
