#include "host/protocol/field_reader.hpp"

#include <cmath>
#include <sstream>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::host::protocol {
namespace {

using nlohmann::json;

[[noreturn]] void invalid(const std::string& field, const std::string& why) {
  throw sdk::Error(sdk::ErrorCode::ValidationError, why, field);
}

std::string range_text(double min, double max, bool exclusive_min) {
  std::ostringstream text;
  text << "must be in " << (exclusive_min ? "(" : "[") << min << ", " << max << "]";
  return text.str();
}

/// The JSON type of `value` in words, for "must be X (got Y)" messages.
std::string type_words(const json& value) {
  switch (value.type()) {
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_float: return "a number with a fraction";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::null: return "null";
    default: return "another type";
  }
}

std::string int_range(long long min, long long max) {
  return "must be in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
}

/// An integer value, or invalid() when the JSON value is not an integral number in range. A
/// whole number outside [min, max] (however large: 2^64 arrives as a float) is a range error.
long long integer_value(const json& value, const std::string& field, long long min, long long max) {
  if (!value.is_number()) invalid(field, "must be an integer (got " + type_words(value) + ")");
  if (value.is_number_float()) {
    const double v = value.get<double>();
    if (!std::isfinite(v) || std::floor(v) != v)
      invalid(field, "must be an integer (got " + value.dump() + ")");
    if (v < static_cast<double>(min) || v > static_cast<double>(max))
      invalid(field, int_range(min, max) + " (got " + value.dump() + ")");
    return static_cast<long long>(v);
  }
  if (value.is_number_unsigned() && value.get<unsigned long long>() > static_cast<unsigned long long>(max))
    invalid(field, int_range(min, max) + " (got " + value.dump() + ")");
  const long long v = value.get<long long>();
  if (v < min || v > max) invalid(field, int_range(min, max) + " (got " + std::to_string(v) + ")");
  return v;
}

}  // namespace

FieldReader::FieldReader(const json& object, std::string path) : object_(object), path_(std::move(path)) {
  if (!object_.is_object()) invalid(path_, "must be an object");
}

std::string FieldReader::path_of(const std::string& name) const { return path_ + "." + name; }

const json* FieldReader::find(const std::string& name) {
  known_.insert(name);
  auto it = object_.find(name);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

void FieldReader::read_string(const std::string& name, std::string& out, bool required) {
  const json* value = find(name);
  if (!value) {
    if (required) invalid(path_of(name), "is required");
    return;
  }
  if (!value->is_string()) invalid(path_of(name), "must be a string (got " + type_words(*value) + ")");
  out = value->get<std::string>();
}

void FieldReader::read_bool(const std::string& name, bool& out) {
  if (const json* value = find(name)) {
    if (!value->is_boolean()) invalid(path_of(name), "must be true or false (got " + type_words(*value) + ")");
    out = value->get<bool>();
  }
}

void FieldReader::read_int(const std::string& name, int& out, long long min, long long max) {
  if (const json* value = find(name)) out = static_cast<int>(integer_value(*value, path_of(name), min, max));
}

void FieldReader::read_int64(const std::string& name, std::int64_t& out, long long min, long long max) {
  if (const json* value = find(name)) out = integer_value(*value, path_of(name), min, max);
}

void FieldReader::read_number(const std::string& name, double& out, double min, double max,
                              bool exclusive_min) {
  const json* value = find(name);
  if (!value) return;
  if (!value->is_number()) invalid(path_of(name), "must be a number (got " + type_words(*value) + ")");
  double v = value->get<double>();
  bool below = exclusive_min ? !(v > min) : !(v >= min);
  if (!std::isfinite(v) || below || v > max)
    invalid(path_of(name), range_text(min, max, exclusive_min) + " (got " + value->dump() + ")");
  out = v;
}

void FieldReader::read_int_array(const std::string& name, std::vector<int>& out, std::size_t count,
                                 int min, int max) {
  const json* value = find(name);
  if (!value) return;
  if (!value->is_array() || value->size() != count)
    invalid(path_of(name), "must be an array of " + std::to_string(count) + " integers");
  std::vector<int> result;
  for (std::size_t i = 0; i < count; ++i)
    result.push_back(static_cast<int>(
        integer_value((*value)[i], path_of(name) + "[" + std::to_string(i) + "]", min, max)));
  out = std::move(result);
}

void FieldReader::read_string_array(const std::string& name, std::vector<std::string>& out) {
  const json* value = find(name);
  if (!value) return;
  if (!value->is_array()) invalid(path_of(name), "must be an array of strings");
  std::vector<std::string> result;
  for (std::size_t i = 0; i < value->size(); ++i) {
    if (!(*value)[i].is_string()) invalid(path_of(name) + "[" + std::to_string(i) + "]", "must be a string");
    result.push_back((*value)[i].get<std::string>());
  }
  out = std::move(result);
}

std::optional<FieldReader> FieldReader::child(const std::string& name) {
  const json* value = find(name);
  if (!value) return std::nullopt;
  return FieldReader(*value, path_of(name));
}

void FieldReader::warn_unknown(std::vector<std::string>& warnings) const {
  for (const auto& [name, value] : object_.items())
    if (!known_.count(name)) warnings.push_back("unknown field '" + path_of(name) + "': not used by the host (passed to plugins as is)");
}

}  // namespace sdxlhost::host::protocol
