// A1111 LoRA prompt tags (see lora_tags.hpp).
#include "sdxlhost/sdk/lora_tags.hpp"

#include <cmath>
#include <cstdlib>

#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::sdk {
namespace {

std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t");
  if (begin == std::string::npos) return {};
  const auto end = s.find_last_not_of(" \t");
  return s.substr(begin, end - begin + 1);
}

[[noreturn]] void bad_tag(const std::string& tag, const std::string& why, const std::string& field) {
  throw sdk::Error(sdk::ErrorCode::ValidationError, "LoRA tag '" + tag + "': " + why, field);
}

LoraTag parse_tag(const std::string& tag, const std::string& body, const std::string& field) {
  std::vector<std::string> parts;
  std::size_t from = 0;
  for (std::size_t colon; (colon = body.find(':', from)) != std::string::npos; from = colon + 1)
    parts.push_back(body.substr(from, colon - from));
  parts.push_back(body.substr(from));
  LoraTag out;
  out.name = trim(parts[0]);
  if (out.name.empty()) bad_tag(tag, "the LoRA name is empty", field);
  if (parts.size() > 2)
    bad_tag(tag, "separate text-encoder and UNet weights are not supported; give one weight (<lora:NAME:WEIGHT>)", field);
  if (parts.size() == 2) {
    const std::string text = trim(parts[1]);
    char* end = nullptr;
    out.weight = std::strtod(text.c_str(), &end);
    if (text.empty() || end != text.c_str() + text.size() || !std::isfinite(out.weight))
      bad_tag(tag, "the weight '" + text + "' is not a number", field);
  }
  return out;
}

}  // namespace

std::vector<LoraTag> extract_lora_tags(std::string& prompt, const std::string& field) {
  std::vector<LoraTag> tags;
  std::string rest;
  std::size_t pos = 0;
  while (pos < prompt.size()) {
    const std::size_t open = prompt.find('<', pos);
    if (open == std::string::npos) break;
    std::size_t prefix = 0;
    for (const char* p : {"<lora:", "<lyco:"})
      if (prompt.compare(open, 6, p) == 0) prefix = 6;
    const std::size_t close = prefix ? prompt.find('>', open) : std::string::npos;
    if (close == std::string::npos) {  // not a tag (or unterminated): kept as text
      rest.append(prompt, pos, open + 1 - pos);
      pos = open + 1;
      continue;
    }
    rest.append(prompt, pos, open - pos);
    tags.push_back(parse_tag(prompt.substr(open, close + 1 - open), prompt.substr(open + prefix, close - open - prefix), field));
    pos = close + 1;
  }
  if (pos < prompt.size()) rest.append(prompt, pos, std::string::npos);
  prompt = std::move(rest);
  return tags;
}

std::string lora_identity(const std::string& name) {
  const std::string ext = ".safetensors";
  if (name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0)
    return name.substr(0, name.size() - ext.size());
  return name;
}

}  // namespace sdxlhost::sdk
