#include "refiner_goldens.hpp"

#include <stdexcept>

#include "common/goldens.hpp"
#include "sdxlhost/nn/safetensors.hpp"

namespace sdxlhost::test_support {

Golden load_golden(const std::string& file) {
  const auto opened = sdxlhost::nn::SafetensorsFile::open(sdxlhost::test_support::golden("refiner/" + file));
  return {opened->tensors(), opened->metadata()};
}

const std::string& Golden::text(const std::string& key) const {
  auto it = meta.find(key);
  if (it == meta.end()) throw std::runtime_error("golden metadata has no '" + key + "'");
  return it->second;
}

double Golden::number(const std::string& key) const { return std::stod(text(key)); }

std::string Golden::scheduler() const {
  const std::string& s = text("scheduler");
  return s.substr(0, s.find(' '));
}

}  // namespace sdxlhost::test_support
