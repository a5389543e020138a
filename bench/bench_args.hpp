#pragma once
// Command-line helpers shared by the bench programs.
#include <sstream>
#include <string>
#include <vector>

namespace sdxlhost::bench {

/// "a,b,,c" -> {"a", "b", "c"} (empty items dropped).
inline std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace sdxlhost::bench
