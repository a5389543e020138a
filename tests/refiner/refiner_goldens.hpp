#pragma once
// What the refiner tests read from ../shared/goldens/refiner: each golden's tensors and the
// request its metadata records (prompt, seed, size, guidance, steps, split, strength, aesthetic
// scores), so the tests work on any golden folder of the same shape.
#include <map>
#include <string>

#include "sdxlhost/nn/tensor_map.hpp"

namespace sdxlhost::test_support {

/// One golden file: tensors and the `__metadata__` strings.
struct Golden {
  sdxlhost::nn::TensorMap tensors;
  std::map<std::string, std::string> meta;
  /// The metadata value as a number / text; throws std::runtime_error naming a missing key.
  double number(const std::string& key) const;
  const std::string& text(const std::string& key) const;
  /// The scheduler class the golden used (first word of its "scheduler" metadata).
  std::string scheduler() const;
};

/// goldens/refiner/<file>.
Golden load_golden(const std::string& file);

}  // namespace sdxlhost::test_support
