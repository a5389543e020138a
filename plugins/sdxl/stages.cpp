// The sdxl plugin's stage list (see stages.hpp).
#include "stages.hpp"

#include "sdxl_stage.hpp"

namespace sdxlhost::sdxl {

std::vector<std::shared_ptr<sdk::Stage>> make_stages(std::shared_ptr<const pipeline::PipelineSettings> settings) {
  return {make_encode_prompt_stage(settings), make_prepare_latents_stage(settings), make_denoise_stage(settings),
          make_vae_decode_stage(settings)};
}

}  // namespace sdxlhost::sdxl
