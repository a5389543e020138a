// Noise: the seeded CPU generator reproduces PyTorch's draws stored in the goldens, bit for bit.
#include <gtest/gtest.h>

#include <ATen/ATen.h>

#include "nn_test_util.hpp"
#include "sdxlhost/nn/noise.hpp"
#include "sdxlhost/nn/safetensors.hpp"

using namespace sdxlhost::nn;

namespace {
std::shared_ptr<const SafetensorsFile> golden(const char* name) {
  return SafetensorsFile::open(sdxlhost::test_support::shared_dir() / "goldens/models/reference" / name);
}
}  // namespace

TEST(Noise, InitialNoiseOfThePipelineGoldens) {
  for (const char* name : {"pipeline_2steps.safetensors", "pipeline_3steps.safetensors"}) {
    auto file = golden(name);
    CpuNoiseGenerator noise(0);
    const at::Tensor expected = file->tensor("initial_noise_randn");
    EXPECT_TRUE(at::equal(noise.randn(expected.sizes()), expected)) << name;
  }
}

TEST(Noise, DrawOrderOfTheUnetAndVaeGoldens) {
  // unet_io: seed 0, then sample, encoder_hidden_states, text_embeds in this order.
  auto unet = golden("unet_io.safetensors");
  CpuNoiseGenerator g0(0);
  for (const char* key : {"input.sample", "input.encoder_hidden_states", "input.text_embeds"}) {
    const at::Tensor expected = unet->tensor(key);
    EXPECT_TRUE(at::equal(g0.randn(expected.sizes()), expected)) << key;
  }
  // vae_io: seed 1, image = rand * 2 - 1, then latents = randn.
  auto vae = golden("vae_io.safetensors");
  CpuNoiseGenerator g1(1);
  const at::Tensor image = vae->tensor("input.image");
  EXPECT_TRUE(at::equal(g1.rand(image.sizes()) * 2 - 1, image));
  const at::Tensor latents = vae->tensor("input.latents");
  EXPECT_TRUE(at::equal(g1.randn(latents.sizes()), latents));
}

TEST(Noise, SameSeedSameValuesDifferentSeedDifferentValues) {
  CpuNoiseGenerator a(42), b(42), c(43);
  const at::Tensor x = a.randn({3, 5});
  EXPECT_TRUE(at::equal(x, b.randn({3, 5})));
  EXPECT_FALSE(at::equal(x, c.randn({3, 5})));
  EXPECT_FALSE(at::equal(x, a.randn({3, 5})));  // the stream moves on
  sdxlhost::sdk::NoiseSource& source = a;
  EXPECT_EQ(source.randn({2, 2}).scalar_type(), at::kFloat);
  EXPECT_EQ(CpuNoiseGenerator(UINT64_MAX).randn({4}).numel(), 4);
}
