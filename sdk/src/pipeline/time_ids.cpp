// SDXL add_time_ids for base and refiner UNets (see time_ids.hpp).
#include "sdxlhost/pipeline/time_ids.hpp"

#include <algorithm>
#include <optional>
#include <string>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::pipeline {
namespace {

using sdk::Error;
using sdk::ErrorCode;

std::vector<int> size_pair(const std::optional<std::vector<int>>& value, std::vector<int> fallback,
                           const char* field, bool allow_zero) {
  if (!value) return fallback;
  const auto& v = *value;
  const bool ok = v.size() == 2 && std::all_of(v.begin(), v.end(), [&](int x) {
                    return allow_zero ? x >= 0 : x > 0;
                  });
  if (!ok) {
    throw Error(ErrorCode::ValidationError,
                std::string("must be two ") + (allow_zero ? "non-negative" : "positive") + " integers",
                field);
  }
  return v;
}

/// original_size + crops_coords_top_left (the 4 ids base and refiner share).
std::vector<float> size_and_crop(const sdk::GenerationRequest& r, int height, int width) {
  const auto& h = r.hyperparameters;
  const std::vector<int> original =
      size_pair(h.original_size, {height, width}, "data.hyperparameters.original_size", false);
  const std::vector<int> crops = size_pair(std::optional<std::vector<int>>(h.crops_coords_top_left),
                                           {0, 0}, "data.hyperparameters.crops_coords_top_left", true);
  std::vector<float> ids;
  for (const auto* pair : {&original, &crops}) {
    for (int v : *pair) ids.push_back(static_cast<float>(v));
  }
  return ids;
}

}  // namespace

std::vector<float> time_ids(const sdk::GenerationRequest& r, int height, int width) {
  std::vector<float> ids = size_and_crop(r, height, width);
  const std::vector<int> target =
      size_pair(r.hyperparameters.target_size, {height, width}, "data.hyperparameters.target_size", false);
  for (int v : target) ids.push_back(static_cast<float>(v));
  return ids;
}

AddTimeIds aesthetic_time_ids(const sdk::GenerationRequest& r, int height, int width) {
  AddTimeIds ids;
  ids.positive = size_and_crop(r, height, width);
  ids.negative = ids.positive;
  ids.positive.push_back(static_cast<float>(r.hyperparameters.aesthetic_score));
  ids.negative.push_back(static_cast<float>(r.hyperparameters.negative_aesthetic_score));
  return ids;
}

AddTimeIds add_time_ids(const sdk::GenerationRequest& r, int height, int width, int count) {
  if (count == 6) {
    const std::vector<float> ids = time_ids(r, height, width);
    return {ids, ids};
  }
  if (count == 5) return aesthetic_time_ids(r, height, width);
  throw Error(ErrorCode::ModelLoadError,
              "the UNet takes " + std::to_string(count) + " time ids; SDXL models take 6 (base) or 5 (refiner)");
}

}  // namespace sdxlhost::pipeline
