#include "scheduler_options.hpp"

#include <cmath>
#include <limits>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::schedulers {
namespace {

std::string join_quoted(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "'" : ", '") + item + "'";
  return out;
}

std::string number_text(double value) {
  if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
  nlohmann::json j = value;
  return j.dump();
}

}  // namespace

OptionReader::OptionReader(const nlohmann::json& input, std::string class_name)
    : input_(input.is_object() ? input : nlohmann::json::object()), class_name_(std::move(class_name)) {}

const nlohmann::json* OptionReader::find(const std::string& key) const {
  auto it = input_.find(key);
  return it == input_.end() ? nullptr : &*it;
}

void OptionReader::fail(const std::string& key, const std::string& message) const {
  throw sdk::Error(sdk::ErrorCode::ValidationError, class_name_ + ": " + message,
                   "data.scheduler_options." + key);
}

std::string OptionReader::choice(const std::string& key, const std::string& fallback,
                                 const std::vector<std::string>& allowed) {
  std::string value = fallback;
  if (const auto* raw = find(key)) {
    if (!raw->is_string()) fail(key, "'" + key + "' must be a string, one of " + join_quoted(allowed));
    value = raw->get<std::string>();
    bool known = false;
    for (const auto& a : allowed) known = known || a == value;
    if (!known)
      fail(key, "unknown " + key + " '" + value + "'; allowed: " + join_quoted(allowed));
  }
  effective_[key] = value;
  return value;
}

bool OptionReader::flag(const std::string& key, bool fallback) {
  bool value = fallback;
  if (const auto* raw = find(key)) {
    if (raw->is_null()) {
      value = false;  // diffusers' Optional[bool] = None behaves as False
    } else if (!raw->is_boolean()) {
      fail(key, "'" + key + "' must be true or false");
    } else {
      value = raw->get<bool>();
    }
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
    const bool integral = raw->is_number_integer() ||
                          (raw->is_number_float() && std::floor(raw->get<double>()) == raw->get<double>());
    if (!integral) fail(key, "'" + key + "' must be an integer");
    const double v = raw->get<double>();
    if (v < min_value || v > max_value)
      fail(key, "'" + key + "' must be between " + std::to_string(min_value) + " and " +
                    std::to_string(max_value) + " (got " + number_text(v) + ")");
    value = static_cast<int>(v);
  }
  effective_[key] = value;
  return value;
}

double OptionReader::number(const std::string& key, double fallback, double min_value,
                            double max_value) {
  double value = fallback;
  if (const auto* raw = find(key)) {
    if (raw->is_null() && std::isinf(fallback)) {
      value = fallback;  // a config that stored -inf as null
    } else if (!raw->is_number()) {
      fail(key, "'" + key + "' must be a number");
    } else {
      value = raw->get<double>();
      if (!(value >= min_value && value <= max_value))
        fail(key, "'" + key + "' must be between " + number_text(min_value) + " and " +
                      number_text(max_value) + " (got " + number_text(value) + ")");
    }
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
