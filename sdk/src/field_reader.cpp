// The SDK's JSON field reader (see field_reader.hpp).
#include "sdxlhost/sdk/field_reader.hpp"

#include <cmath>
#include <sstream>

namespace sdxlhost::sdk {
namespace {

using nlohmann::json;

std::string number_words(double value) {
  std::ostringstream text;
  text << value;
  return text.str();
}

std::string quoted_list(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "'" : ", '") + item + "'";
  return out;
}

}  // namespace

std::string range_words(double min, double max, bool exclusive_min, const FieldErrors& errors) {
  if (errors.range_as_between) return "must be between " + number_words(min) + " and " + number_words(max);
  return "must be in " + std::string(exclusive_min ? "(" : "[") + number_words(min) + ", " + number_words(max) + "]";
}

std::string json_type_words(const json& value) {
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

FieldReader::FieldReader(const json& object, std::string path, FieldErrors errors)
    : object_(object), path_(std::move(path)), errors_(std::move(errors)) {
  if (!object_.is_object()) fail_at("", path_.empty() ? "<root>" : path_, "must be an object");
}

std::string FieldReader::path_of(const std::string& name) const {
  return path_.empty() ? name : path_ + "." + name;
}

const json* FieldReader::find(const std::string& name) {
  const json* value = find_raw(name);
  return value && !value->is_null() ? value : nullptr;
}

const json* FieldReader::find_raw(const std::string& name) {
  known_.insert(name);
  auto it = object_.find(name);
  return it == object_.end() ? nullptr : &*it;
}

void FieldReader::fail_at(const std::string& name, const std::string& path, const std::string& why) const {
  const std::string key = errors_.key_in_message && !name.empty() ? "'" + name + "' " : std::string();
  throw Error(errors_.code, errors_.prefix + key + why, errors_.field_in_error ? path : std::string());
}

void FieldReader::fail(const std::string& name, const std::string& why) const { fail_at(name, path_of(name), why); }

void FieldReader::fail_here(const std::string& why) const { fail_at("", path_, why); }

void FieldReader::read_string(const std::string& name, std::string& out, bool required) {
  const json* value = find(name);
  if (!value) {
    if (required) fail(name, "is required");
    return;
  }
  if (!value->is_string()) fail(name, "must be a string (got " + json_type_words(*value) + ")");
  out = value->get<std::string>();
}

void FieldReader::require_choice(const std::string& name, const std::string& value,
                                 const std::vector<std::string>& allowed) const {
  for (const auto& choice : allowed)
    if (choice == value) return;
  fail(name, "must be one of: " + quoted_list(allowed) + " (got '" + value + "')");
}

void FieldReader::read_choice(const std::string& name, std::string& out, const std::vector<std::string>& allowed) {
  if (const json* value = find(name); value && !value->is_string())
    fail(name, "must be one of: " + quoted_list(allowed) + " (got " + json_type_words(*value) + ")");
  read_string(name, out);
  require_choice(name, out, allowed);
}

void FieldReader::read_bool(const std::string& name, bool& out) {
  if (const json* value = find(name)) {
    if (!value->is_boolean()) fail(name, "must be true or false (got " + json_type_words(*value) + ")");
    out = value->get<bool>();
  }
}

long long FieldReader::integer_value(const std::string& name, const json& value, long long min, long long max) const {
  const auto out_of_range = [&](const std::string& got) {
    std::string range = errors_.range_as_between
                            ? "must be between " + std::to_string(min) + " and " + std::to_string(max)
                            : "must be in [" + std::to_string(min) + ", " + std::to_string(max) + "]";
    fail(name, range + " (got " + got + ")");
  };
  if (!value.is_number()) fail(name, "must be an integer (got " + json_type_words(value) + ")");
  if (value.is_number_float()) {
    const double v = value.get<double>();
    if (!std::isfinite(v) || std::floor(v) != v) fail(name, "must be an integer (got " + value.dump() + ")");
    if (v < static_cast<double>(min) || v > static_cast<double>(max)) out_of_range(value.dump());
    return static_cast<long long>(v);
  }
  if (value.is_number_unsigned() && value.get<unsigned long long>() > static_cast<unsigned long long>(max))
    out_of_range(value.dump());
  const long long v = value.get<long long>();
  if (v < min || v > max) out_of_range(std::to_string(v));
  return v;
}

void FieldReader::read_number(const std::string& name, double& out, double min, double max, bool exclusive_min) {
  const json* value = find(name);
  if (!value) return;
  if (!value->is_number()) fail(name, "must be a number (got " + json_type_words(*value) + ")");
  const double v = value->get<double>();
  const bool below = exclusive_min ? !(v > min) : !(v >= min);
  if (!std::isfinite(v) || below || v > max)
    fail(name, range_words(min, max, exclusive_min, errors_) + " (got " + value->dump() + ")");
  out = v;
}

void FieldReader::read_int_array(const std::string& name, std::vector<int>& out, std::size_t count, int min,
                                 int max) {
  const json* value = find(name);
  if (!value) return;
  if (!value->is_array() || value->size() != count)
    fail(name, "must be an array of " + std::to_string(count) + " integers");
  std::vector<int> result;
  for (std::size_t i = 0; i < count; ++i) {
    const std::string element = name + "[" + std::to_string(i) + "]";
    result.push_back(static_cast<int>(integer_value(element, (*value)[i], min, max)));
  }
  out = std::move(result);
}

void FieldReader::read_string_array(const std::string& name, std::vector<std::string>& out) {
  const json* value = find(name);
  if (!value) return;
  if (!value->is_array()) fail(name, "must be an array of strings");
  std::vector<std::string> result;
  for (std::size_t i = 0; i < value->size(); ++i) {
    if (!(*value)[i].is_string()) fail(name + "[" + std::to_string(i) + "]", "must be a string");
    result.push_back((*value)[i].get<std::string>());
  }
  out = std::move(result);
}

std::optional<FieldReader> FieldReader::child(const std::string& name) {
  const json* value = find(name);
  if (!value) return std::nullopt;
  return FieldReader(*value, path_of(name), errors_);
}

FieldReader FieldReader::item(const std::string& name, const json& item, std::size_t index) const {
  return FieldReader(item, path_of(name) + "[" + std::to_string(index) + "]", errors_);
}

std::vector<std::string> FieldReader::unknown_fields() const {
  std::vector<std::string> out;
  for (const auto& [name, value] : object_.items())
    if (!known_.count(name)) out.push_back(path_of(name));
  return out;
}

void FieldReader::warn_unknown(std::vector<std::string>& warnings, const std::string& consequence) const {
  for (const auto& path : unknown_fields()) warnings.push_back("unknown field '" + path + "': " + consequence);
}

}  // namespace sdxlhost::sdk
