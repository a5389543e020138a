// Reading LoRA files into the model cache (see lora_files.hpp).
#include "lora_files.hpp"

#include <openssl/evp.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <vector>

#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::lora {

using sdk::Error;
using sdk::ErrorCode;

std::string lora_field(std::size_t i) { return "data.lora.models[" + std::to_string(i) + "].name"; }

std::string safetensors_data_sha256(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::array<unsigned char, 8> length_bytes{};
  if (!in.read(reinterpret_cast<char*>(length_bytes.data()), 8))
    throw Error(ErrorCode::ModelLoadError, "cannot read '" + path.filename().string() + "'");
  std::uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = (header << 8) | length_bytes[static_cast<std::size_t>(i)];
  in.seekg(static_cast<std::streamoff>(8 + header));
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buffer(1 << 20);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    EVP_DigestUpdate(ctx.get(), buffer.data(), static_cast<std::size_t>(in.gcount()));
  }
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int size = 0;
  EVP_DigestFinal_ex(ctx.get(), digest.data(), &size);
  std::string hex;
  char part[3];
  for (unsigned int i = 0; i < size; ++i) {
    std::snprintf(part, sizeof part, "%02x", digest[i]);
    hex += part;
  }
  return hex;
}

std::shared_ptr<LoadedLora> read_lora_file(const std::filesystem::path& path, const std::string& field) {
  std::shared_ptr<const nn::SafetensorsFile> file;
  try {
    file = nn::SafetensorsFile::open(path);
  } catch (const Error& e) {
    throw Error(ErrorCode::ModelLoadError, e.what(), field);
  }
  auto lora = std::make_shared<LoadedLora>();
  lora->network = nn::parse_lora(file->tensors(), field);
  lora->sha256 = safetensors_data_sha256(path);
  lora->bytes = std::filesystem::file_size(path);
  return lora;
}

std::shared_ptr<LoadedLora> load_lora(sdk::ModelAccess& models, const std::string& name, const std::string& field) {
  return models.load_as<LoadedLora>(sdk::kLoras, name, "lora", field, [&](const std::filesystem::path& path) {
    auto lora = read_lora_file(path, field);
    return std::make_pair(lora, lora->bytes);
  });
}

}  // namespace sdxlhost::lora
