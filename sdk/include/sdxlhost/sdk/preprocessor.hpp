#pragma once
/// @file preprocessor.hpp
/// A control-image preprocessor (canny, ...): image in, image out, options from the request.
/// A preprocessor describes its options (name, type, default, range) so `capabilities` can list
/// them and the host can check a request's options before `run` sees them.
/// Thread-safety: `run` is called concurrently by different jobs; keep no per-call state.

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sdxlhost/sdk/export.hpp"
#include "sdxlhost/sdk/image.hpp"

namespace sdxlhost::sdk {

/// One option a preprocessor accepts, as `capabilities` lists it.
struct PreprocessorOption {
  std::string name;                  ///< key in the options object ("low_threshold")
  std::string type;                  ///< "integer", "number", "boolean" or "string"
  nlohmann::json default_value;      ///< used when the request leaves the option out
  std::optional<double> minimum;     ///< inclusive lower bound (integer and number options)
  std::optional<double> maximum;     ///< inclusive upper bound (integer and number options)
  std::vector<std::string> choices;  ///< allowed values of a string option (empty: any)
  std::string description;           ///< one line for people
};

/// One preprocessor, registered under name() and looked up by the request's preprocessor name.
class SDXLHOST_API Preprocessor {
 public:
  virtual ~Preprocessor() = default;
  /// Name a request uses ("canny").
  virtual std::string name() const = 0;
  /// Transforms `input` (8-bit RGB from the request). `options` is the request's options object
  /// after resolve_options (every declared option present). Throws Error(ValidationError) whose
  /// field is the option's key ("low_threshold"); callers prefix the request path.
  virtual Image run(const Image& input, const nlohmann::json& options) const = 0;
  /// The options it accepts. The default (none declared) accepts any options object unchecked.
  virtual std::vector<PreprocessorOption> options() const { return {}; }
  /// One line for `capabilities` (empty by default).
  virtual std::string description() const { return {}; }

  /// The request's `options` checked against options() and completed with their defaults: an
  /// unknown key, a value of another type, out of range or not among the choices is an
  /// Error(ValidationError) whose field is the key. `ignored` keys (e.g. "name") are dropped.
  /// With no options declared, `options` is returned as given (minus `ignored`).
  nlohmann::json resolve_options(const nlohmann::json& options,
                                 const std::vector<std::string>& ignored = {}) const;
  /// What a caller runs: resolve_options, then run, with errors named under `field` (the path of
  /// the request's options object, e.g. "data.preprocessor"): an option's error becomes
  /// "<field>.<key>"; anything but sdk::Error thrown by run becomes Error(PluginError) naming the
  /// preprocessor, as does an output whose pixels do not match its size or channel count.
  Image apply(const Image& input, const nlohmann::json& options, const std::string& field,
              const std::vector<std::string>& ignored = {"name", "type"}) const;
  /// {"name", "description", "options": [{"name", "type", "default", "minimum", "maximum",
  /// "choices", "description"}]}: how `capabilities` shows it.
  nlohmann::json describe() const;
};

}  // namespace sdxlhost::sdk
