#pragma once
/// @file field_reader.hpp
/// Reads the fields of one JSON object of a request, checking type and range, and naming the
/// field by its dotted path ("data.hyperparameters.seed") in every sdk::Error it throws.
/// Remembers which keys were read so the others can be reported as unknown.

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sdxlhost::host::protocol {

/// Typed, range-checked access to one object's fields. Absent and null fields leave `out` as is.
class FieldReader {
 public:
  /// `object` must outlive the reader; `path` is the object's own path ("data.output").
  /// Throws Error(ValidationError, path) when `object` is not an object.
  FieldReader(const nlohmann::json& object, std::string path);

  /// The dotted path of field `name`.
  std::string path_of(const std::string& name) const;
  /// The field's value, or nullptr when absent or null. Marks it as known.
  const nlohmann::json* find(const std::string& name);
  /// Marks a field as known without reading it (accepted, ignored).
  void accept(const std::string& name) { known_.insert(name); }

  /// Reads a string; `required` makes absence an error ("is required").
  void read_string(const std::string& name, std::string& out, bool required = false);
  /// Reads true/false.
  void read_bool(const std::string& name, bool& out);
  /// Reads an integer in [min, max] (a float with no fraction is accepted).
  void read_int(const std::string& name, int& out, long long min, long long max);
  /// Reads a 64-bit integer in [min, max].
  void read_int64(const std::string& name, std::int64_t& out, long long min, long long max);
  /// Reads a finite number in [min, max] (or (min, max] when `exclusive_min`).
  void read_number(const std::string& name, double& out, double min, double max,
                   bool exclusive_min = false);
  /// Reads an array of exactly `count` integers, each in [min, max].
  void read_int_array(const std::string& name, std::vector<int>& out, std::size_t count, int min, int max);
  /// Reads an array of strings.
  void read_string_array(const std::string& name, std::vector<std::string>& out);

  /// A reader for a nested object field, or nullopt when absent or null.
  std::optional<FieldReader> child(const std::string& name);

  /// Appends "unknown field 'PATH' ..." for every key not read or accepted.
  void warn_unknown(std::vector<std::string>& warnings) const;

 private:
  const nlohmann::json& object_;
  std::string path_;
  std::set<std::string> known_;
};

}  // namespace sdxlhost::host::protocol
