// Stage lora_info (see lora_info_stage.hpp).
#include "lora_info_stage.hpp"

#include "lora_files.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/image.hpp"
#include "sdxlhost/sdk/image_metadata.hpp"
#include "sdxlhost/sdk/request.hpp"

namespace sdxlhost::lora {
namespace {

class LoraInfoStage final : public sdk::Stage {
 public:
  std::string name() const override { return "lora_info"; }
  std::string feature() const override { return "lora"; }
  bool applies(const sdk::GenerationRequest& r) const override { return r.lora_enabled && !r.loras.empty(); }
  std::vector<std::string> reads() const override { return {sdk::slots::kImages}; }
  std::vector<std::string> writes() const override { return {sdk::slots::kImages}; }
  int order() const override { return 550; }

  void run(sdk::Context& context) const override {
    const auto& loras = context.request().loras;
    nlohmann::json list = nlohmann::json::array();
    std::string hashes;
    for (std::size_t i = 0; i < loras.size(); ++i) {
      const auto file = load_lora(context.models(), loras[i].name, lora_field(i));
      list.push_back({{"name", loras[i].name}, {"weight", loras[i].weight}, {"hash", file->short_hash()}});
      hashes += (hashes.empty() ? "" : ", ") + loras[i].name + ": " + file->short_hash();
    }
    auto& images = context.get<std::vector<sdk::Image>>(sdk::slots::kImages);
    for (auto& image : images) {
      if (!image.metadata.is_object()) image.metadata = nlohmann::json::object();
      image.metadata["loras"] = list;
      sdk::add_infotext(image.metadata, "Lora hashes", "\"" + hashes + "\"");
    }
  }
};

}  // namespace

std::shared_ptr<sdk::Stage> make_lora_info_stage() { return std::make_shared<LoraInfoStage>(); }

}  // namespace sdxlhost::lora
