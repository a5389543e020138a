#pragma once
/// @file stage.hpp
/// A stage is one step of the request flow (encode_prompt, denoise, vae_decode, ...). Plugins
/// provide stages; the host's planner picks those that apply to a request, orders them so that
/// every slot a stage reads is written by an earlier one, and runs them over one Context.
/// Thread-safety: a Stage object is shared by all jobs; `run` must not keep per-job state in it.

#include <string>
#include <vector>

namespace sdxlhost::sdk {

class Context;
struct GenerationRequest;

/// Well-known slot names (a plugin may define others). The SDXL pipeline's slots and their
/// types are SDK contracts listed in sdxlhost/pipeline/slots.hpp.
namespace slots {
/// prompt embeddings: pipeline::SdxlConditioning (sdxlhost/pipeline/conditioning.hpp)
inline constexpr const char* kConditioning = "conditioning";
inline constexpr const char* kLatents = "latents";            ///< at::Tensor (N,4,h/8,w/8)
inline constexpr const char* kImages = "images";              ///< std::vector<sdk::Image>
inline constexpr const char* kScheduler = "scheduler";        ///< std::shared_ptr<sdk::Scheduler>
inline constexpr const char* kInitImage = "init_image";       ///< sdk::Image (img2img source)
}  // namespace slots

/// One step of the flow.
class Stage {
 public:
  virtual ~Stage() = default;
  /// Unique name, reported in the plan ("encode_prompt").
  virtual std::string name() const = 0;
  /// Slots this stage needs written before it runs.
  virtual std::vector<std::string> reads() const = 0;
  /// Slots this stage writes.
  virtual std::vector<std::string> writes() const = 0;
  /// Ordering hint among stages whose slot dependencies allow either order (lower runs first).
  /// Conventional bands: 100 prompt, 200 latents, 300 denoise, 400 refine, 500 decode,
  /// 600 post-process (upscale).
  virtual int order() const = 0;
  /// The feature this stage belongs to, as named in `plugins.enabled` (e.g. "sdxl", "upscaler").
  virtual std::string feature() const = 0;
  /// Whether this stage takes part in `request` (e.g. the refiner stage only with models.refiner).
  virtual bool applies(const GenerationRequest& request) const = 0;
  /// Does the work. Throws sdk::Error; any other exception is reported as INTERNAL_ERROR.
  virtual void run(Context& context) const = 0;
};

}  // namespace sdxlhost::sdk
