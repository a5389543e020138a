#pragma once
// The nn tests' helpers are the shared ones: shared_dir(), read_golden_json(), meta_tensors()
// (common/goldens.hpp) and TempDir (common/temp_dir.hpp).
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include "common/goldens.hpp"
#include "common/temp_dir.hpp"
#include "sdxlhost/nn/tensor_map.hpp"
