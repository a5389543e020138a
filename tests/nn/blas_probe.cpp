// blas_probe: the process test_cpu_runtime starts with different environments. It selects the
// BLAS kernels as sdxl-host's main does (unless --no-select), runs one forward of the tiny UNet
// (random weights from a fixed seed; GEMM-bound, so it exercises the BLAS core) and prints
// "<core> <selected> <threads> <GOMP_SPINCOUNT> <OpenBLAS threading>" then writes the output as raw float32 to argv's file.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>

#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <string>

#include "sdxlhost/nn/cpu_runtime.hpp"
#include "sdxlhost/nn/unet.hpp"
#include "tiny_sdxl_model.hpp"

int main(int argc, char** argv) {
  using namespace sdxlhost;
  if (argc < 2) return 2;
  const bool select = !(argc > 2 && std::string(argv[2]) == "--no-select");
  if (select) nn::select_blas_kernels(argv);
  nn::apply_threads(0);
  const tools::SdxlSpec spec = tools::tiny_spec();
  at::Generator generator = at::make_generator<at::CPUGeneratorImpl>(7);
  auto init = [&](const std::string& key, const std::vector<std::int64_t>& shape) {
    const bool is_bias = key.size() > 5 && key.compare(key.size() - 5, 5, ".bias") == 0;
    if (shape.size() == 1 && !is_bias) return at::ones(shape);
    std::int64_t fan_in = 1;
    for (std::size_t i = 1; i < shape.size(); ++i) fan_in *= shape[i];
    if (shape.size() == 1) fan_in = shape[0];
    return at::rand(shape, generator) * (2.0 / std::sqrt(double(fan_in))) - 1.0 / std::sqrt(double(fan_in));
  };
  auto unet = nn::UNet2DConditionModel::create(spec.unet, init);
  const std::int64_t pooled = spec.unet.projection_class_embeddings_input_dim - 6 * spec.unet.addition_time_embed_dim;
  const at::Tensor sample = at::randn({2, 4, 16, 16}, generator);
  const at::Tensor context = at::randn({2, 77, spec.unet.cross_attention_dim}, generator);
  const at::Tensor pooled_embeds = at::randn({2, pooled}, generator);
  const at::Tensor time_ids = at::tensor({128.f, 128.f, 0.f, 0.f, 128.f, 128.f}).repeat({2, 1});
  c10::InferenceMode inference;
  const at::Tensor out = unet->forward(sample, at::tensor(500.f), context, pooled_embeds, time_ids).contiguous();
  std::ofstream(argv[1], std::ios::binary)
      .write(reinterpret_cast<const char*>(out.data_ptr<float>()), static_cast<std::streamsize>(out.numel() * 4));
  const nn::BlasChoice choice = nn::blas_choice();
  const char* spin = std::getenv("GOMP_SPINCOUNT");
  std::printf("%s %s %d %s %s\n", choice.core.c_str(), choice.selected.c_str(), at::get_num_threads(),
              spin && *spin ? spin : "unset", choice.threading.empty() ? "-" : choice.threading.c_str());
  return 0;
}
