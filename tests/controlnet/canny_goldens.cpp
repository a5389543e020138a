#include "canny_goldens.hpp"

#include "common/goldens.hpp"

namespace sdxlhost::test_support {

std::vector<CannyRecord> canny_records() {
  const nlohmann::json report = sdxlhost::test_support::read_json(sdxlhost::test_support::golden("canny/report.json"));
  std::vector<CannyRecord> records;
  for (const auto& r : report.at("records")) {
    CannyRecord record;
    record.image = r.at("image").get<std::string>();
    record.key = r.at("key").get<std::string>();
    record.options = {{"name", "canny"},
                      {"low_threshold", r.at("low")},
                      {"high_threshold", r.at("high")},
                      {"gray", r.value("input", "direct") == "gray"},
                      {"l2_gradient", r.value("L2gradient", false)}};
    records.push_back(std::move(record));
  }
  return records;
}

}  // namespace sdxlhost::test_support
