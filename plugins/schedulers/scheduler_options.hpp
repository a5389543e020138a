#pragma once
/// @file scheduler_options.hpp
/// Reads a scheduler config the way diffusers' `from_config` does: every key the class knows
/// is taken (validated), every other key is ignored, missing keys get the class default. The
/// result is the effective config (`Scheduler::config()`). A bad value throws
/// sdk::Error(ValidationError) with field `data.scheduler_options.<key>` and the allowed values.
/// Types and ranges are checked by the SDK's field reader (sdxlhost/sdk/field_reader.hpp),
/// worded as diffusers users read them ("EulerDiscreteScheduler: 'eta' must be between 0 and 1").

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdxlhost/sdk/field_reader.hpp"

namespace sdxlhost::schedulers {

/// Validating reader of one scheduler class' options; collects the effective config.
class OptionReader {
 public:
  /// @param input      the merged config (model/SDXL defaults + alias + request overrides)
  /// @param class_name diffusers class name, used in error messages
  OptionReader(const nlohmann::json& input, std::string class_name);

  /// A string option restricted to `allowed`.
  std::string choice(const std::string& key, const std::string& fallback,
                     const std::vector<std::string>& allowed);
  /// A boolean option.
  bool flag(const std::string& key, bool fallback);
  /// A boolean option of which only `false` is implemented (refuses `true` clearly).
  void unsupported_flag(const std::string& key);
  /// An integer option within [min_value, max_value].
  int integer(const std::string& key, int fallback, int min_value, int max_value);
  /// A number option within [min_value, max_value].
  double number(const std::string& key, double fallback, double min_value, double max_value);
  /// A number or null (null keeps the default meaning, e.g. sigma_min = None).
  nlohmann::json optional_number(const std::string& key);
  /// `trained_betas`: null or a list of numbers in (0, 1).
  nlohmann::json trained_betas();
  /// A list of integers (UniPC's `disable_corrector`).
  std::vector<int> integer_list(const std::string& key);
  /// Records a key whose only accepted value is `only` (e.g. solver_p = null).
  void fixed(const std::string& key, const nlohmann::json& only);

  /// Overwrites a key of the effective config (diffusers' `register_to_config`).
  void set(const std::string& key, const nlohmann::json& value) { effective_[key] = value; }
  /// The effective config so far.
  const nlohmann::json& effective() const { return effective_; }

  /// Throws the ValidationError for `key` with `message` (which names the key itself).
  [[noreturn]] void fail(const std::string& key, const std::string& message) const;

 private:
  /// A reader of the options; `key_in_message`: its errors start with the key in quotes.
  sdk::FieldReader fields(bool key_in_message = true) const;
  /// The option's value even when null; nullptr when absent.
  const nlohmann::json* find(const std::string& key) const;

  nlohmann::json input_;
  std::string class_name_;
  nlohmann::json effective_ = nlohmann::json::object();
};

}  // namespace sdxlhost::schedulers
