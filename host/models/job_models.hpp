#pragma once
/// @file job_models.hpp
/// The model access of one job: the host's ModelStore, plus a pin on every object the job's
/// stages loaded, held from the first stage that loads it until the job ends. Without it a stage
/// holds a model only while it runs, so between two stages of one job (encode_prompt and denoise,
/// denoise and vae_decode) another job's load could evict it: the job would then load the
/// checkpoint again, and a pipeline's patched copies (weight patches) would go with it. The
/// store never evicts an object a job holds, so pinned models stay.
/// Thread-safety: every method may be called from any thread (a job's stages run on one).

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <typeinfo>
#include <vector>

#include "sdxlhost/sdk/models.hpp"

namespace sdxlhost::host {

/// One job's sdk::ModelAccess over the host's store (see the file comment).
class JobModels final : public sdk::ModelAccess {
 public:
  /// `store` must outlive this object.
  explicit JobModels(sdk::ModelAccess& store) : store_(store) {}
  /// Releases the pins: the models become evictable again (least recently used first).
  ~JobModels() override = default;
  JobModels(const JobModels&) = delete;
  JobModels& operator=(const JobModels&) = delete;

  /// The store's resolve.
  std::filesystem::path resolve(const std::string& kind, const std::string& name,
                                const std::string& field) const override {
    return store_.resolve(kind, name, field);
  }
  /// The store's load; the object stays pinned until this object is destroyed.
  std::shared_ptr<void> load(const std::string& kind, const std::string& name, const std::string& variant,
                             const std::string& field, const std::type_info& type,
                             const sdk::ModelLoadFn& load) override;
  /// Number of distinct objects pinned.
  std::size_t pinned() const;

 private:
  sdk::ModelAccess& store_;
  mutable std::mutex mutex_;
  std::vector<std::shared_ptr<void>> pins_;
};

}  // namespace sdxlhost::host
