#pragma once
/// @file time_ids.hpp
/// SDXL's micro-conditioning ("add_time_ids", diffusers' `_get_add_time_ids`): base models take 6
/// ids (original_size, crops_coords_top_left, target_size); refiner models take 5
/// (original_size, crops_coords_top_left, aesthetic_score), with `negative_aesthetic_score` in
/// the negative (unconditional) half. Which one a UNet takes is read from its add-embedding width.
/// Thread-safety: pure functions.

#include <vector>

#include "sdxlhost/sdk/export.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::pipeline {

/// The time ids of the two classifier-free-guidance halves (equal for a base model).
struct AddTimeIds {
  std::vector<float> positive;  ///< with the prompt
  std::vector<float> negative;  ///< with the negative prompt
};

/// The base UNet's 6 time ids for an image of `height` x `width` pixels: original_size +
/// crops_coords_top_left + target_size, defaults (height, width) and (0, 0) as diffusers. Throws
/// sdk::Error(ValidationError) naming the hyperparameter when a pair is not two positive (crops:
/// non-negative) integers.
SDXLHOST_API std::vector<float> time_ids(const sdk::GenerationRequest& request, int height, int width);

/// The refiner UNet's 5 time ids: original_size + crops_coords_top_left + aesthetic_score
/// (positive half) / negative_aesthetic_score (negative half). Same validation as time_ids.
SDXLHOST_API AddTimeIds aesthetic_time_ids(const sdk::GenerationRequest& request, int height, int width);

/// The ids for a UNet that takes `count` of them (6: time_ids for both halves, 5:
/// aesthetic_time_ids). Throws sdk::Error(ModelLoadError) for any other count.
SDXLHOST_API AddTimeIds add_time_ids(const sdk::GenerationRequest& request, int height, int width, int count);

}  // namespace sdxlhost::pipeline
