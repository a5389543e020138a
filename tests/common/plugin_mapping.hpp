#pragma once
/// @file plugin_mapping.hpp
/// Whether a plugin is mapped in this process. The host never maps a file of plugins.dir: it
/// loads a private copy `<run_dir>/plugins-<pid>-<n>/<stem>-<24 hex digits>.so`
/// (host/plugins/plugin_file.hpp), so the check looks for a mapping of such a copy.

#include <filesystem>
#include <fstream>
#include <string>

namespace sdxlhost::test_support {

/// True when a private copy of the plugin file `file` (same stem) is mapped in this process.
inline bool is_plugin_mapped(const std::filesystem::path& file) {
  const std::string prefix = file.stem().string() + "-";
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) {
    const auto slash = line.rfind('/');
    if (slash == std::string::npos) continue;
    const std::string name = line.substr(slash + 1);
    if (name.size() == prefix.size() + 24 + 3 && name.compare(0, prefix.size(), prefix) == 0 &&
        name.compare(name.size() - 3, 3, ".so") == 0 &&
        name.find_first_not_of("0123456789abcdef", prefix.size()) == name.size() - 3)
      return true;
  }
  return false;
}

}  // namespace sdxlhost::test_support
