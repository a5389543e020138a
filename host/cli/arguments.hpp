#pragma once
/// @file arguments.hpp
/// A tiny command-line parser: `--name value` options, `--flag` switches, positional words.

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace sdxlhost::host::cli {

/// Parsed command line of one sub-command.
struct Arguments {
  std::map<std::string, std::string> options;  ///< "--config" -> "host.json"
  std::set<std::string> flags;                  ///< "--stdio"
  std::vector<std::string> positional;

  /// The option's value, or nullopt.
  std::optional<std::string> get(const std::string& name) const;
  bool has_flag(const std::string& name) const { return flags.count(name) != 0; }
};

/// Parses argv[first..]. Options listed in `with_value` take the next word; other `--x` words
/// are flags. Throws std::invalid_argument when a value is missing.
Arguments parse_arguments(int argc, char** argv, int first, const std::set<std::string>& with_value);

}  // namespace sdxlhost::host::cli
