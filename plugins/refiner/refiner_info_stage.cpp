// Stage refiner_info: the refiner in each image's metadata and A1111 infotext.
#include <charconv>
#include <string>

#include "refiner_models.hpp"
#include "sdxlhost/sdk/context.hpp"
#include "sdxlhost/sdk/image.hpp"
#include "sdxlhost/sdk/image_metadata.hpp"
#include "refiner_stages.hpp"

namespace sdxlhost::refiner {
namespace {

/// The shortest text that reads back as `value` ("0.8"), as Python's repr of a float.
std::string shortest(double value) {
  char buffer[32];
  const auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  std::string text(buffer, result.ptr);
  if (text.find_first_of(".en") == std::string::npos) text += ".0";
  return text;
}

/// Adds "Refiner: NAME, Refiner switch at: F" (as A1111 writes them) to the infotext,
/// metadata.refiner {name, switch_at}, and model_info.refiner_model where the generating stage
/// recorded no model_info of its own (the sdxl plugin's vae_decode records it).
class RefinerInfoStage final : public sdk::Stage {
 public:
  std::string name() const override { return "refiner_info"; }
  std::string feature() const override { return kFeature; }
  bool applies(const sdk::GenerationRequest& r) const override { return !r.models.refiner.empty(); }
  std::vector<std::string> reads() const override { return {sdk::slots::kImages}; }
  std::vector<std::string> writes() const override { return {sdk::slots::kImages}; }
  int order() const override { return 550; }

  void run(sdk::Context& context) const override {
    const auto& r = context.request();
    const double at = switch_at(r);
    for (auto& image : context.get<std::vector<sdk::Image>>(sdk::slots::kImages)) {
      if (!image.metadata.is_object()) image.metadata = nlohmann::json::object();
      image.metadata["refiner"] = {{"name", r.models.refiner}, {"switch_at", at}};
      sdk::add_infotext(image.metadata, "Refiner", r.models.refiner);
      sdk::add_infotext(image.metadata, "Refiner switch at", shortest(at));
      auto& model_info = image.metadata["model_info"];
      if (!model_info.is_object()) model_info = nlohmann::json::object();
      if (!model_info.contains("refiner_model")) model_info["refiner_model"] = r.models.refiner;
    }
  }
};

}  // namespace

std::shared_ptr<sdk::Stage> make_refiner_info_stage() { return std::make_shared<RefinerInfoStage>(); }

}  // namespace sdxlhost::refiner
