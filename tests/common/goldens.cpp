// Golden files and file helpers shared by every test area (see goldens.hpp).
#include "common/goldens.hpp"

#include <ATen/ATen.h>

#include <cstdlib>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "sdxlhost/nn/safetensors.hpp"

namespace sdxlhost::test_support {

std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("SDXLHOST_SHARED_DIR"); env != nullptr && *env != '\0') return env;
  return SDXLHOST_SHARED_DIR;
}

std::filesystem::path golden(const std::string& relative) { return shared_dir() / "goldens" / relative; }

std::string quote_python_specials(const std::string& text) {
  std::string out;
  out.reserve(text.size() + 64);
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size()) out += text[++i];
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') {
      in_string = true;
      out += c;
      continue;
    }
    bool replaced = false;
    for (const std::string token : {"-Infinity", "Infinity", "NaN"}) {
      if (text.compare(i, token.size(), token) != 0) continue;
      out += '"' + token + '"';
      i += token.size() - 1;
      replaced = true;
      break;
    }
    if (!replaced) out += c;
  }
  return out;
}

nlohmann::json read_json(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("missing " + file.string());
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(quote_python_specials(text.str()));
}

nlohmann::json read_golden_json(const std::string& relative) { return read_json(golden(relative)); }

nn::TensorMap load_tensors(const std::filesystem::path& file) { return nn::SafetensorsFile::open(file)->tensors(); }

nn::TensorMap meta_tensors(const nlohmann::json& shapes) {
  nn::TensorMap map;
  for (const auto& [key, shape] : shapes.items())
    map.set(key, at::empty(shape.get<std::vector<std::int64_t>>(),
                           at::TensorOptions().dtype(at::kFloat).device(at::kMeta)));
  return map;
}

nn::TensorMap meta_tensors(const std::filesystem::path& key_list) {
  nn::TensorMap map = meta_tensors(read_json(key_list));
  map.set_source(key_list.string());
  return map;
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  if (a.sizes() != b.sizes()) return std::numeric_limits<double>::infinity();
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

std::string read_bytes(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::filesystem::path& file, const std::string& bytes) {
  if (file.has_parent_path()) std::filesystem::create_directories(file.parent_path());
  std::ofstream(file, std::ios::binary) << bytes;
}

}  // namespace sdxlhost::test_support
