#include "sdxlhost/sdk/preprocessor.hpp"

#include <algorithm>
#include <cmath>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::sdk {
namespace {

using nlohmann::json;

[[noreturn]] void invalid(const std::string& key, const std::string& why) {
  throw Error(ErrorCode::ValidationError, why, key);
}

std::string range_text(const PreprocessorOption& option) {
  auto number = [](double v) {
    json j = v;
    if (std::floor(v) == v) j = static_cast<long long>(v);
    return j.dump();
  };
  if (option.minimum && option.maximum) return " in [" + number(*option.minimum) + ", " + number(*option.maximum) + "]";
  if (option.minimum) return " >= " + number(*option.minimum);
  if (option.maximum) return " <= " + number(*option.maximum);
  return "";
}

/// Checks one value against its declaration (type, range, choices).
void check_value(const PreprocessorOption& option, const json& value) {
  const std::string& key = option.name;
  if (option.type == "boolean") {
    if (!value.is_boolean()) invalid(key, "must be true or false");
    return;
  }
  if (option.type == "string") {
    if (!value.is_string()) invalid(key, "must be a string");
    const auto text = value.get<std::string>();
    if (!option.choices.empty() && std::find(option.choices.begin(), option.choices.end(), text) == option.choices.end()) {
      std::string list;
      for (const auto& choice : option.choices) list += (list.empty() ? "" : ", ") + choice;
      invalid(key, "must be one of: " + list);
    }
    return;
  }
  const bool integer = option.type == "integer";
  if (!value.is_number() || (integer && !value.is_number_integer() &&
                             std::floor(value.get<double>()) != value.get<double>()))
    invalid(key, std::string("must be ") + (integer ? "an integer" : "a number") + range_text(option));
  const double v = value.get<double>();
  if (!std::isfinite(v) || (option.minimum && v < *option.minimum) || (option.maximum && v > *option.maximum))
    invalid(key, std::string("must be ") + (integer ? "an integer" : "a number") + range_text(option));
}

}  // namespace

json Preprocessor::resolve_options(const json& options, const std::vector<std::string>& ignored) const {
  if (!options.is_null() && !options.is_object()) invalid("", "the options must be an object");
  json given = options.is_null() ? json::object() : options;
  for (const auto& key : ignored) given.erase(key);
  const auto declared = this->options();
  if (declared.empty()) return given;
  json resolved = json::object();
  for (const auto& [key, value] : given.items()) {
    const auto it = std::find_if(declared.begin(), declared.end(),
                                 [&](const PreprocessorOption& o) { return o.name == key; });
    if (it == declared.end()) {
      std::string known;
      for (const auto& option : declared) known += (known.empty() ? "" : ", ") + option.name;
      invalid(key, "is not an option of preprocessor '" + name() + "' (options: " + known + ")");
    }
    check_value(*it, value);
    resolved[key] = value;
  }
  for (const auto& option : declared)
    if (!resolved.contains(option.name)) resolved[option.name] = option.default_value;
  return resolved;
}

Image Preprocessor::apply(const Image& input, const json& options, const std::string& field,
                          const std::vector<std::string>& ignored) const {
  Image output;
  try {
    output = run(input, resolve_options(options, ignored));
  } catch (const Error& e) {
    const std::string inner = e.field().empty() ? field : field + "." + e.field();
    throw Error(e.code(), e.message(), inner);
  } catch (const std::exception& e) {
    throw Error(ErrorCode::PluginError, "preprocessor '" + name() + "' failed: " + e.what(), field);
  }
  const bool channels_ok = output.channels == 1 || output.channels == 3 || output.channels == 4;
  if (output.width <= 0 || output.height <= 0 || !channels_ok ||
      output.pixels.size() != static_cast<std::size_t>(output.width) * output.height * output.channels)
    throw Error(ErrorCode::PluginError,
                "preprocessor '" + name() + "' returned an image whose pixels do not match its size and channels",
                field);
  return output;
}

json Preprocessor::describe() const {
  json options_json = json::array();
  for (const auto& option : options()) {
    json entry = {{"name", option.name}, {"type", option.type}, {"default", option.default_value},
                  {"description", option.description}};
    if (option.minimum) entry["minimum"] = *option.minimum;
    if (option.maximum) entry["maximum"] = *option.maximum;
    if (!option.choices.empty()) entry["choices"] = option.choices;
    options_json.push_back(std::move(entry));
  }
  return {{"name", name()}, {"description", description()}, {"options", options_json}};
}

}  // namespace sdxlhost::sdk
