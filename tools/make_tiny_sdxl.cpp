// make_tiny_sdxl: writes a random-weight SDXL-architecture model in both layouts under a
// models_root: checkpoints/<name>/ (diffusers folder) and checkpoints/<name>-single.safetensors
// (single file, original key names) with checkpoints/tokenizers/ (the tokenizers single files
// lack). Its images are noise; it exists for tests and the demo.
#include <exception>
#include <filesystem>
#include <iostream>
#include <string>

#include "sdxlhost/sdk/error.hpp"
#include "tiny_sdxl_model.hpp"

namespace {

void usage() {
  std::cerr << "usage: make_tiny_sdxl --models-root DIR [--name tiny-sdxl] [--preset tiny|sdxl-width|sdxl]\n"
               "                      [--seed N] [--dtype f32|f16|bf16] [--tokenizer-from DIR | --shared DIR]\n"
               "                      [--layouts both|diffusers]\n"
               "Writes DIR/checkpoints/NAME/ (diffusers folder), DIR/checkpoints/NAME-single.safetensors\n"
               "and DIR/checkpoints/tokenizers/ (the tokenizers for single files); --layouts diffusers\n"
               "writes the folder only (half the disk and time at full size).\n"
               "Tokenizers: by default a small built-in CLIP BPE tokenizer (the text encoders get its\n"
               "vocabulary size); --tokenizer-from copies DIR/tokenizer and DIR/tokenizer_2 instead (the text\n"
               "encoders then have 1000 tokens, the goldens' tiny tokenizer); --shared DIR is\n"
               "--tokenizer-from DIR/goldens/models/tiny_sdxl.\n";
}

}  // namespace

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  fs::path root;
  std::string name = "tiny-sdxl", preset = "tiny", dtype_name = "f32", layouts = "both";
  std::uint64_t seed = 0;
  fs::path tokenizer_source;  // empty: the built-in tokenizer
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (i + 1 >= argc) {
      usage();
      return 2;
    }
    const std::string value = argv[++i];
    if (arg == "--models-root") root = value;
    else if (arg == "--name") name = value;
    else if (arg == "--preset") preset = value;
    else if (arg == "--seed") seed = std::stoull(value);
    else if (arg == "--dtype") dtype_name = value;
    else if (arg == "--shared") tokenizer_source = fs::path(value) / "goldens" / "models" / "tiny_sdxl";
    else if (arg == "--tokenizer-from") tokenizer_source = value;
    else if (arg == "--layouts") layouts = value;
    else {
      usage();
      return 2;
    }
  }
  if (root.empty() || (preset != "tiny" && preset != "sdxl-width" && preset != "sdxl") ||
      (dtype_name != "f32" && dtype_name != "f16" && dtype_name != "bf16") || (layouts != "both" && layouts != "diffusers")) {
    usage();
    return 2;
  }
  try {
    using namespace sdxlhost::tools;
    SdxlSpec spec = preset == "tiny" ? tiny_spec() : preset == "sdxl-width" ? sdxl_width_spec() : sdxl_base_spec();
    if (tokenizer_source.empty()) set_text_vocab_size(spec, builtin_tokenizer_vocab_size());
    const at::ScalarType dtype = dtype_name == "f16"    ? at::kHalf
                                 : dtype_name == "bf16" ? at::kBFloat16
                                                        : at::kFloat;
    const SdxlWeights weights = make_weights(spec, seed, dtype);
    const fs::path checkpoints = root / "checkpoints";
    write_diffusers_folder(checkpoints / name, spec, weights, tokenizer_source);
    if (layouts == "diffusers") {
      std::cout << "wrote " << (checkpoints / name).string() << "/ (" << spec.name << ", seed " << seed << ")\n";
      return 0;
    }
    write_single_file(checkpoints / (name + "-single.safetensors"), weights);
    // single files carry no tokenizer: the sdxl plugin looks in a tokenizers/ folder beside them
    for (const char* tokenizer : {"tokenizer", "tokenizer_2"}) {
      fs::create_directories(checkpoints / "tokenizers" / tokenizer);
      for (const auto& entry : fs::directory_iterator(checkpoints / name / tokenizer)) {
        fs::copy_file(entry.path(), checkpoints / "tokenizers" / tokenizer / entry.path().filename(),
                      fs::copy_options::overwrite_existing);
      }
    }
    std::cout << "wrote " << (checkpoints / name).string() << "/ and "
              << (checkpoints / (name + "-single.safetensors")).string() << " (" << spec.name
              << ", seed " << seed << ")\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "make_tiny_sdxl: " << e.what() << "\n";
    return 1;
  }
}
