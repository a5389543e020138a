#include "guidance_window.hpp"

namespace sdxlhost::controlnet {

double controlnet_keep(int step, int total_steps, double guidance_start, double guidance_end) {
  // Same float arithmetic as diffusers: i / len(timesteps) and (i + 1) / len(timesteps) in double.
  const double n = static_cast<double>(total_steps);
  const bool outside = static_cast<double>(step) / n < guidance_start ||
                       static_cast<double>(step + 1) / n > guidance_end;
  return outside ? 0.0 : 1.0;
}

}  // namespace sdxlhost::controlnet
