#pragma once
/// @file field_reader.hpp
/// The one reader of JSON fields in sdxl-host: the host's request parser, the configuration file,
/// the schedulers' options, the plugins' request sections (ControlNet units, upscale options) and
/// settings, and model config.json files all read through it. It checks type and range and names the field by its dotted path
/// ("data.hyperparameters.seed", "limits.max_steps", "data.scheduler_options.solver_order") in
/// every sdk::Error it throws, and remembers which keys were read so the others can be reported
/// as unknown.
///
/// Typical plugin use (a plugin's own request section, `data.my_feature`):
///
///     sdk::FieldReader data(request.data, "data");
///     if (auto mine = data.child("my_feature")) {
///       mine->read_number("strength", options.strength, 0.0, 1.0);   // "must be in [0, 1] (got 2)"
///       mine->read_choice("mode", options.mode, {"fast", "exact"});
///       mine->warn_unknown(warnings, "ignored by my_feature");
///     }
///
/// Thread-safety: one reader belongs to one thread; the JSON it reads must outlive it and stay
/// unchanged while it reads.

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/export.hpp"

namespace sdxlhost::sdk {

/// How a reader words and reports its errors. The default is the wire's request wording:
/// VALIDATION_ERROR, field = the dotted path, "must be in [1, 3] (got 4)".
struct FieldErrors {
  ErrorCode code = ErrorCode::ValidationError;
  /// Put before every message ("EulerDiscreteScheduler: ", "unet config: ").
  std::string prefix;
  /// Start the message with the key in quotes ("'solver_order' must be ..."): for readers whose
  /// error has no field of its own to name it (model config files) or that mirror diffusers.
  bool key_in_message = false;
  /// Ranges as "between 1 and 3" (diffusers' wording of scheduler options) instead of "in [1, 3]".
  bool range_as_between = false;
  /// Whether the thrown Error carries the field path. Off for files whose keys are no request
  /// field (a model's config.json): the host then names the request field that chose the model.
  bool field_in_error = true;
};

/// Typed, range-checked access to one JSON object's fields. Absent and null fields leave `out`
/// as it is (defaults stay), except where a method says otherwise.
class SDXLHOST_API FieldReader {
 public:
  /// `object` must outlive the reader; `path` is the object's own dotted path ("data.output"; ""
  /// for a root whose keys are paths themselves, as in the config file). Throws (per `errors`)
  /// "must be an object" when `object` is not one.
  FieldReader(const nlohmann::json& object, std::string path, FieldErrors errors = {});

  /// The object's own path.
  const std::string& path() const { return path_; }
  /// The dotted path of field `name` (`name` alone when the reader's path is empty).
  std::string path_of(const std::string& name) const;
  /// How this reader words its errors (children inherit it).
  const FieldErrors& errors() const { return errors_; }

  /// The field's value, or nullptr when absent or null. Marks it as known.
  const nlohmann::json* find(const std::string& name);
  /// The field's value even when it is null, or nullptr when absent. Marks it as known.
  const nlohmann::json* find_raw(const std::string& name);
  /// Marks a field as known without reading it (accepted, ignored).
  void accept(const std::string& name) { known_.insert(name); }

  /// Reads a string; `required` makes absence an error ("is required").
  void read_string(const std::string& name, std::string& out, bool required = false);
  /// Reads a string that must be one of `allowed` ("must be one of: 'a', 'b' (got 'c')").
  void read_choice(const std::string& name, std::string& out, const std::vector<std::string>& allowed);
  /// Reads true/false.
  void read_bool(const std::string& name, bool& out);
  /// Reads an integer in [min, max] into any integral type (a number with no fraction, 3.0, is
  /// accepted; a whole number outside the range, however large, is a range error).
  template <class Int, class = std::enable_if_t<std::is_integral_v<Int> && !std::is_same_v<Int, bool>>>
  void read_int(const std::string& name, Int& out, long long min, long long max) {
    if (const nlohmann::json* value = find(name)) out = static_cast<Int>(integer_value(name, *value, min, max));
  }
  /// Reads a finite number in [min, max] (or (min, max] when `exclusive_min`).
  void read_number(const std::string& name, double& out, double min, double max, bool exclusive_min = false);
  /// Reads an array of exactly `count` integers, each in [min, max].
  void read_int_array(const std::string& name, std::vector<int>& out, std::size_t count, int min, int max);
  /// Reads an array of strings.
  void read_string_array(const std::string& name, std::vector<std::string>& out);
  /// The field converted to T (any type nlohmann::json converts to), or `fallback` when absent
  /// or null; "has the wrong type: <value>" when it does not convert.
  template <class T>
  T value_or(const std::string& name, T fallback) {
    const nlohmann::json* value = find(name);
    if (!value) return fallback;
    try {
      return value->get<T>();
    } catch (const nlohmann::json::exception&) {
      fail(name, "has the wrong type: " + value->dump());
    }
  }

  /// A reader for a nested object field (same wording), or nullopt when absent or null.
  std::optional<FieldReader> child(const std::string& name);
  /// A reader for item `index` of the array field `name` (path "name[index]").
  FieldReader item(const std::string& name, const nlohmann::json& item, std::size_t index) const;

  /// Checks that `value` (already read from field `name`) is one of `allowed`.
  void require_choice(const std::string& name, const std::string& value,
                      const std::vector<std::string>& allowed) const;
  /// Throws the error of field `name` with `why` (worded as this reader words errors).
  [[noreturn]] void fail(const std::string& name, const std::string& why) const;
  /// Throws the error of this reader's own object (a rule across several of its fields).
  [[noreturn]] void fail_here(const std::string& why) const;

  /// The paths of the keys no read, find or accept asked for, in the object's key order.
  std::vector<std::string> unknown_fields() const;
  /// Appends "unknown field 'PATH': <consequence>" for each of unknown_fields().
  void warn_unknown(std::vector<std::string>& warnings,
                    const std::string& consequence = "not used by the host (passed to plugins as is)") const;

 private:
  long long integer_value(const std::string& name, const nlohmann::json& value, long long min, long long max) const;
  [[noreturn]] void fail_at(const std::string& name, const std::string& path, const std::string& why) const;

  const nlohmann::json& object_;
  std::string path_;
  FieldErrors errors_;
  std::set<std::string> known_;
};

/// "must be in [min, max]" / "(min, max]" / "between min and max", as `errors` words ranges.
SDXLHOST_API std::string range_words(double min, double max, bool exclusive_min, const FieldErrors& errors);

/// The JSON type of `value` in words ("a string", "an integer", "null"), for "(got ...)".
SDXLHOST_API std::string json_type_words(const nlohmann::json& value);

}  // namespace sdxlhost::sdk
