#pragma once
/// @file canny_goldens.hpp
/// The records of goldens/canny/report.json as test cases: which PNG is the input, the options
/// that reproduce the record with the `canny` preprocessor, and the key of the expected edges.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sdxlhost::test_support {

/// One cv2.Canny golden.
struct CannyRecord {
  std::string image;         ///< input name; its PNG is goldens/canny/<image>.png
  std::string key;           ///< expected HxW edges in canny.safetensors
  nlohmann::json options;    ///< the canny preprocessor's options for this record
};

/// Every record of report.json (none named specially), with its options.
std::vector<CannyRecord> canny_records();

}  // namespace sdxlhost::test_support
