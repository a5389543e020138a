#pragma once
/// @file guidance_window.hpp
/// Which denoising steps a ControlNet unit acts on (diffusers' `controlnet_keep`): step i of N is
/// kept unless i/N < control_guidance_start or (i+1)/N > control_guidance_end.
/// Thread-safety: pure functions.

namespace sdxlhost::controlnet {

/// 1.0 when the unit acts on step `step` (0-based) of `total_steps`, else 0.0 (diffusers' keep_i;
/// the unit's scale on that step is conditioning_scale x keep).
double controlnet_keep(int step, int total_steps, double guidance_start, double guidance_end);

}  // namespace sdxlhost::controlnet
