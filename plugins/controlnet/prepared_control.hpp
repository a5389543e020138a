#pragma once
/// @file prepared_control.hpp
/// What the controlnet_prepare stage hands the denoise hook in one job's Context (slot
/// kPreparedSlot): per unit the loaded ControlNet, its control image and its schedule.
/// Thread-safety: per job; used by the job's thread only.

#include <ATen/core/Tensor.h>

#include <memory>
#include <vector>

#include "sdxlhost/nn/controlnet.hpp"
#include "sdxlhost/sdk/image.hpp"

namespace sdxlhost::controlnet {

/// Slot holding the job's PreparedControl.
inline constexpr const char* kPreparedSlot = "controlnet.prepared";

/// One unit, ready for the denoising loop.
struct PreparedUnit {
  std::shared_ptr<nn::ControlNetModel> model;  ///< from the host's model cache
  sdk::Image control;                          ///< RGB control image, preprocessed, at its own size
  double conditioning_scale = 1.0;
  double guidance_start = 0.0;
  double guidance_end = 1.0;
  at::Tensor cond;  ///< control as (1,3,H,W) in [0,1] at the size the loop needs (made on first use)
};

/// Every unit of a job, in request order, and the job's guess_mode.
struct PreparedControl {
  std::vector<PreparedUnit> units;
  bool guess_mode = false;
};

}  // namespace sdxlhost::controlnet
