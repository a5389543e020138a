#pragma once
/// @file patched_sets.hpp
/// The patched copies of one loaded pipeline, by the patches' cache keys (LRU): what lets jobs
/// with different LoRA sets run at the same time. A patched copy is an SdxlModels that shares
/// everything with the loaded pipeline except the networks a patch changed, and those share every
/// tensor the patch left alone (UNet2DConditionModel / ClipTextModel::with_weights): it costs
/// the bytes of the changed weights (`PatchedModels::bytes`) and nothing is ever written into the
/// shared pipeline, so jobs without patches use it as loaded, with no lock and no copy.
///
/// Memory: at most `limit` (plugins.config.<pipeline>.patched_sets) copies are kept; a copy a
/// running job holds lives until that job's stage ends even when the cache has let it go, so the
/// most that can exist at once is `limit` plus one per running job (queue.executors). The
/// pipeline's entry in the host's model cache counts the kept copies (SdxlModels::bytes_now), so
/// cache.max_bytes and cache.max_memory_fraction see them at the next load.
///
/// Thread-safety: every method may be called from any job's thread. Two jobs asking for the same
/// key while it is being built wait for one build; different keys build at the same time.

#include <cstdint>
#include <functional>
#include <future>
#include <list>
#include <memory>
#include <mutex>
#include <string>

#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::pipeline {

struct SdxlModels;

/// One patched copy of a pipeline and what it costs.
struct PatchedModels {
  std::shared_ptr<const SdxlModels> models;  ///< the copy a patched stage computes with
  std::uint64_t bytes = 0;                   ///< bytes of the weights the patches changed
};

/// A pipeline's cache of patched copies (see the file comment).
class SDXLHOST_API PatchedSets {
 public:
  /// Makes the copy for a key (computes the patches' deltas). Throws sdk::Error.
  using Build = std::function<PatchedModels()>;

  /// The copy for `key`: the cached one (marked most recently used; `*from_cache` = true), the
  /// one another job is building (waits for it), or made now with `build` and kept, dropping the
  /// least recently used copies beyond `limit`. With `limit` 0 nothing is kept: `build` runs for
  /// every call. A failed build is not kept; a job that waited for it builds the copy itself
  /// (the other job may have been cancelled), so a bad patch fails in each job with its error.
  PatchedModels get(const std::string& key, std::size_t limit, const Build& build, bool* from_cache = nullptr);

  /// Copies kept (built or being built).
  std::size_t size() const;
  /// Bytes of the kept copies' changed weights.
  std::uint64_t bytes() const;
  /// Forgets every kept copy (jobs holding one keep it until their stage ends).
  void clear();

 private:
  struct Entry {
    std::string key;
    std::shared_future<PatchedModels> ready;
    std::uint64_t bytes = 0;  ///< 0 until built
  };

  mutable std::mutex mutex_;
  std::list<Entry> entries_;  // front = most recently used
};

}  // namespace sdxlhost::pipeline
