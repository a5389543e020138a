#include "host/cli/arguments.hpp"

#include <stdexcept>

namespace sdxlhost::host::cli {

std::optional<std::string> Arguments::get(const std::string& name) const {
  auto it = options.find(name);
  if (it == options.end()) return std::nullopt;
  return it->second;
}

Arguments parse_arguments(int argc, char** argv, int first, const std::set<std::string>& with_value) {
  Arguments args;
  for (int i = first; i < argc; ++i) {
    std::string word = argv[i];
    if (word.rfind("--", 0) != 0 || word == "--") {
      args.positional.push_back(word);
      continue;
    }
    auto equals = word.find('=');
    if (equals != std::string::npos) {
      args.options[word.substr(0, equals)] = word.substr(equals + 1);
    } else if (with_value.count(word)) {
      if (i + 1 >= argc) throw std::invalid_argument(word + " needs a value");
      args.options[word] = argv[++i];
    } else {
      args.flags.insert(word);
    }
  }
  return args;
}

}  // namespace sdxlhost::host::cli
