#include "scheduler_options.hpp"

#include <cmath>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::schedulers {

OptionReader::OptionReader(const nlohmann::json& input, std::string class_name)
    : input_(input.is_object() ? input : nlohmann::json::object()), class_name_(std::move(class_name)) {}

sdk::FieldReader OptionReader::fields(bool key_in_message) const {
  sdk::FieldErrors errors;
  errors.prefix = class_name_ + ": ";
  errors.key_in_message = key_in_message;
  errors.range_as_between = true;
  return sdk::FieldReader(input_, "data.scheduler_options", errors);
}

const nlohmann::json* OptionReader::find(const std::string& key) const {
  auto it = input_.find(key);
  return it == input_.end() ? nullptr : &*it;
}

void OptionReader::fail(const std::string& key, const std::string& message) const {
  fields(/*key_in_message=*/false).fail(key, message);
}

std::string OptionReader::choice(const std::string& key, const std::string& fallback,
                                 const std::vector<std::string>& allowed) {
  std::string value = fallback;
  if (const auto* raw = find(key)) {
    auto reader = fields();
    if (raw->is_null()) reader.fail(key, "must be a string, one of the allowed values (got null)");
    reader.read_choice(key, value, allowed);
  }
  effective_[key] = value;
  return value;
}

bool OptionReader::flag(const std::string& key, bool fallback) {
  bool value = fallback;
  if (const auto* raw = find(key)) {
    if (raw->is_null()) value = false;  // diffusers' Optional[bool] = None behaves as False
    else fields().read_bool(key, value);
  }
  effective_[key] = value;
  return value;
}

void OptionReader::unsupported_flag(const std::string& key) {
  if (flag(key, false))
    fail(key, "'" + key + "' = true is not implemented by sdxl-host; allowed: false");
}

int OptionReader::integer(const std::string& key, int fallback, int min_value, int max_value) {
  int value = fallback;
  if (const auto* raw = find(key)) {
    auto reader = fields();
    if (raw->is_null()) reader.fail(key, "must be an integer (got null)");
    reader.read_int(key, value, min_value, max_value);
  }
  effective_[key] = value;
  return value;
}

double OptionReader::number(const std::string& key, double fallback, double min_value,
                            double max_value) {
  double value = fallback;
  if (const auto* raw = find(key)) {
    auto reader = fields();
    if (raw->is_null() && !std::isinf(fallback)) reader.fail(key, "must be a number (got null)");
    reader.read_number(key, value, min_value, max_value);  // null with an infinite default: -inf stored as null
  }
  effective_[key] = std::isinf(value) ? nlohmann::json(nullptr) : nlohmann::json(value);
  return value;
}

nlohmann::json OptionReader::optional_number(const std::string& key) {
  nlohmann::json value = nullptr;
  if (const auto* raw = find(key)) {
    if (!raw->is_null() && !raw->is_number()) fail(key, "'" + key + "' must be a number or null");
    if (raw->is_number() && !(raw->get<double>() > 0)) fail(key, "'" + key + "' must be > 0");
    value = *raw;
  }
  effective_[key] = value;
  return value;
}

nlohmann::json OptionReader::trained_betas() {
  const std::string key = "trained_betas";
  nlohmann::json value = nullptr;
  if (const auto* raw = find(key)) {
    if (!raw->is_null()) {
      if (!raw->is_array() || raw->empty()) fail(key, "'trained_betas' must be null or a list of numbers");
      for (const auto& b : *raw)
        if (!b.is_number() || !(b.get<double>() > 0 && b.get<double>() < 1))
          fail(key, "'trained_betas' entries must be numbers in (0, 1)");
      value = *raw;
    }
  }
  effective_[key] = value;
  return value;
}

std::vector<int> OptionReader::integer_list(const std::string& key) {
  std::vector<int> values;
  if (const auto* raw = find(key)) {
    if (!raw->is_null()) {
      if (!raw->is_array()) fail(key, "'" + key + "' must be a list of integers");
      for (const auto& v : *raw) {
        if (!v.is_number_integer()) fail(key, "'" + key + "' must be a list of integers");
        values.push_back(v.get<int>());
      }
    }
  }
  effective_[key] = values;
  return values;
}

void OptionReader::fixed(const std::string& key, const nlohmann::json& only) {
  if (const auto* raw = find(key)) {
    if (*raw != only)
      fail(key, "'" + key + "' = " + raw->dump() + " is not implemented by sdxl-host; allowed: " +
                    only.dump());
  }
  effective_[key] = only;
}

}  // namespace sdxlhost::schedulers
