#pragma once
/// @file lora_info_stage.hpp
/// Stage `lora_info` (order 550, after vae_decode, before post-processing): names the job's
/// LoRAs in every image's metadata (`loras: [{name, weight, hash}]`) and in the A1111 infotext
/// (`Lora hashes: "name: hash, ..."`, written into the PNG `parameters` chunk by the host).
/// Thread-safety: stateless.

#include <memory>

#include "sdxlhost/sdk/stage.hpp"

namespace sdxlhost::lora {

/// The metadata stage.
std::shared_ptr<sdk::Stage> make_lora_info_stage();

}  // namespace sdxlhost::lora
