// Parity with diffusers 0.36.0: reproduces every record of a scheduler goldens directory
// (default ${SDXLHOST_SHARED_DIR}/goldens/schedulers; SDXLHOST_SCHEDULER_GOLDENS overrides)
// through the built schedulers plugin: timesteps, sigmas, init_noise_sigma, every step's model
// input and sample, the final sample, txt2img and img2img, with recorded noise injected.
// Tolerance (README): |x - ref| <= 1e-5 * max(1, |ref|); integer timesteps exact, float32
// timesteps and sigmas within 1 float32 ulp of the reference (relative, whatever their size);
// init_noise_sigma within 2.4e-7 relative.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>

#include <unistd.h>

#include "common/goldens.hpp"
#include "common/plugin_loader.hpp"
#include "sdxlhost/nn/denoise_window.hpp"
#include "sdxlhost/nn/scheduler_defaults.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace sdxlhost;

namespace {

constexpr double kSampleTolerance = 1e-5;      // relative to max(1, |ref|)
constexpr double kScheduleTolerance = 2.4e-7;  // 1 float32 ulp, relative (init_noise_sigma)
constexpr int64_t kScheduleUlps = 1;           // float32 timesteps and sigmas

fs::path goldens_dir() {
  if (const char* dir = std::getenv("SDXLHOST_SCHEDULER_GOLDENS"); dir && *dir) return dir;
  const char* shared = std::getenv("SDXLHOST_SHARED_DIR");
  return fs::path(shared && *shared ? shared : SDXLHOST_SHARED_DIR) / "goldens" / "schedulers";
}

std::vector<int64_t> shape_of(const json& tensor) { return tensor.at("shape").get<std::vector<int64_t>>(); }

at::Tensor tensor_from(const json& flat, const std::vector<int64_t>& shape) {
  std::vector<float> values;
  values.reserve(flat.size());
  for (const auto& v : flat) values.push_back(v.get<float>());
  at::Tensor t = at::empty({static_cast<int64_t>(values.size())}, at::kFloat);
  std::copy(values.begin(), values.end(), t.data_ptr<float>());
  return t.reshape(shape);
}

at::Tensor tensor_from(const json& tensor) { return tensor_from(tensor.at("data"), shape_of(tensor)); }

/// max |x - ref| / max(1, |ref|).
double relative_error(const at::Tensor& x, const at::Tensor& ref) {
  if (x.sizes() != ref.sizes()) return INFINITY;
  const at::Tensor a = x.to(at::kDouble).reshape({-1}), b = ref.to(at::kDouble).reshape({-1});
  return ((a - b).abs() / b.abs().clamp_min(1.0)).max().item<double>();
}

/// Collects the failures and the worst error of one record.
struct Outcome {
  std::vector<std::string> failures;
  double worst = 0;
  void check(const std::string& what, double error, double tolerance) {
    worst = std::max(worst, error);
    if (!(error <= tolerance)) {
      std::ostringstream msg;
      msg << what << ": error " << error << " > " << tolerance;
      failures.push_back(msg.str());
    }
  }
  void fail(const std::string& what) { failures.push_back(what); }
};

/// Distance in float32 ulps between two float32 values (0 for equal, incl. +0/-0).
int64_t ulp_distance(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return INT64_MAX;
  const auto ordered = [](float f) {
    int32_t bits;
    std::memcpy(&bits, &f, sizeof bits);
    return bits < 0 ? -static_cast<int64_t>(bits & 0x7fffffff) : static_cast<int64_t>(bits);
  };
  return std::abs(ordered(a) - ordered(b));
}

/// A schedule value (float32 timestep or sigma) matches its reference: the port's value,
/// rounded to float32, lies within kScheduleUlps float32 ulps of the recorded float32 value.
bool schedule_value_matches(double got, double ref) {
  return ulp_distance(static_cast<float>(got), static_cast<float>(ref)) <= kScheduleUlps;
}

/// Checks a schedule tensor element by element against the record: integer dtype exactly,
/// floating dtype within kScheduleUlps; reports the first few mismatches.
void check_schedule_values(const std::string& what, const at::Tensor& mine, const json& ref_data, bool exact,
                           Outcome& out) {
  if (mine.numel() != static_cast<int64_t>(ref_data.size())) {
    out.fail(what + " length " + std::to_string(mine.numel()) + " != " + std::to_string(ref_data.size()));
    return;
  }
  const at::Tensor values = mine.to(at::kDouble).contiguous();
  const double* got = values.data_ptr<double>();
  int reported = 0;
  for (size_t i = 0; i < ref_data.size(); ++i) {
    const double ref = ref_data[i].get<double>();
    if (exact ? got[i] == ref : schedule_value_matches(got[i], ref)) continue;
    if (reported++ >= 3) continue;
    std::ostringstream msg;
    msg << std::setprecision(9) << what << "[" << i << "] = " << got[i] << " != " << ref;
    if (!exact) msg << " (" << ulp_distance(static_cast<float>(got[i]), static_cast<float>(ref)) << " ulp)";
    out.fail(msg.str());
  }
}

/// Feeds the recorded draws in order and checks each comes from the step that drew it.
class RecordedNoise final : public sdk::NoiseSource {
 public:
  explicit RecordedNoise(const json& draws) {
    for (const auto& d : draws) draws_.push_back(d);
  }
  at::Tensor randn(at::IntArrayRef shape) override {
    if (draws_.empty()) throw std::runtime_error("scheduler drew more noise than recorded (step " + std::to_string(step) + ")");
    const json draw = draws_.front();
    draws_.pop_front();
    if (draw.at("step").get<int>() != step)
      throw std::runtime_error("noise drawn at step " + std::to_string(step) + ", recorded at step " +
                               std::to_string(draw.at("step").get<int>()));
    at::Tensor t = tensor_from(draw.at("data"), draw.at("shape").get<std::vector<int64_t>>());
    if (t.sizes() != shape) throw std::runtime_error("noise shape differs from the record");
    return t;
  }
  size_t left() const { return draws_.size(); }
  int step = -1;

 private:
  std::deque<json> draws_;
};

void check_schedule(const json& rec, sdk::Scheduler& s, Outcome& out) {
  const at::Tensor ts = s.timesteps();
  const json& ref_ts = rec.at("timesteps");
  const std::string dtype = ref_ts.at("dtype").get<std::string>();
  const std::map<std::string, at::ScalarType> dtypes = {{"int64", at::kLong}, {"float32", at::kFloat}, {"float64", at::kDouble}};
  if (!dtypes.count(dtype) || ts.scalar_type() != dtypes.at(dtype)) out.fail("timesteps dtype differs from " + dtype);
  check_schedule_values("timesteps", ts, ref_ts.at("data"), dtype == "int64", out);
  const at::Tensor sig = s.sigmas();
  if (rec.contains("sigmas")) {
    if (!sig.defined()) out.fail("no sigmas, record has some");
    else check_schedule_values("sigmas", sig, rec.at("sigmas").at("data"), false, out);
  } else if (sig.defined()) {
    out.fail("sigmas present, record has none");
  }
  const double ins = rec.at("init_noise_sigma").get<double>();
  out.check("init_noise_sigma", std::abs(s.init_noise_sigma() - ins) / std::abs(ins), kScheduleTolerance);
  if (s.order() != rec.at("order").get<int>()) out.fail("order differs");
}

/// The keys both configs have agree (numbers to 1e-12 relative; -inf stored as null here).
/// diffusers also keeps the keys a class ignores in its config, so only shared keys count.
void check_effective_config(const json& rec, const sdk::Scheduler& s, Outcome& out) {
  const json& ref = rec.at("effective_config");
  const json& mine = s.config();
  for (const auto& [key, value] : ref.items()) {
    if (key.rfind('_', 0) == 0) continue;
    if (!mine.contains(key)) continue;
    const json& m = mine.at(key);
    bool same = m == value;
    if (value.is_number() && m.is_number())
      same = std::abs(m.get<double>() - value.get<double>()) <= 1e-12 * std::max(1.0, std::abs(value.get<double>()));
    if (value.is_string() && value.get<std::string>() == "-Infinity") same = m.is_null();
    if (!same) out.fail("effective_config." + key + ": " + m.dump() + " != " + value.dump());
  }
}

/// The record's own effective config as a base (for record sets without an index.json): every
/// key the class knows, with Python's -Infinity (lambda_min_clipped) as null = default.
json config_of_record(const json& rec) {
  json config = rec.at("effective_config");
  for (auto& [key, value] : config.items())
    if (value.is_string() && (value == "-Infinity" || value == "Infinity" || value == "NaN")) value = nullptr;
  return config;
}

Outcome run_record(const json& rec, const json* base_config, const sdk::Registries& registries) {
  Outcome out;
  const std::string name = rec.at("name").get<std::string>();
  auto scheduler = registries.create_scheduler(name, base_config ? *base_config : config_of_record(rec),
                                               rec.value("overrides", json::object()));
  const int n = rec.at("num_inference_steps").get<int>();
  scheduler->set_timesteps(n);
  check_effective_config(rec, *scheduler, out);
  check_schedule(rec, *scheduler, out);
  if (!out.failures.empty()) return out;

  const json& fake = rec.at("fake_model");
  const double input_scale = fake.at("input_scale").get<double>();
  const double t_coef = fake.at("t_coef").get<double>();
  at::Tensor timesteps = scheduler->timesteps();
  at::Tensor sample;
  if (rec.contains("img2img")) {
    const json& i2i = rec.at("img2img");
    const nn::DenoiseWindow window = nn::strength_window(*scheduler, n, i2i.at("strength").get<double>());
    if (window.begin_index != i2i.at("begin_index").get<int>() ||
        window.begin_index != i2i.at("t_start").get<int>() * scheduler->order())
      out.fail("img2img t_start/begin_index differ from the record");
    timesteps = window.timesteps;
    const at::Tensor latent_timestep = timesteps.slice(0, 0, 1);
    if (latent_timestep.to(at::kDouble).item<double>() != i2i.at("latent_timestep")[0].get<double>())
      out.fail("latent timestep differs");
    sample = scheduler->add_noise(tensor_from(i2i.at("init_latents")), tensor_from(i2i.at("noise")), latent_timestep);
    out.check("add_noise", relative_error(sample, tensor_from(i2i.at("add_noise_output"))), kSampleTolerance);
  } else {
    sample = tensor_from(rec.at("x0")) * scheduler->init_noise_sigma();
    out.check("initial_sample", relative_error(sample, tensor_from(rec.at("initial_sample"))), kSampleTolerance);
  }
  const auto shape = sample.sizes().vec();
  const json& steps = rec.at("steps");
  if (static_cast<int64_t>(steps.size()) != timesteps.numel())
    out.fail("record has " + std::to_string(steps.size()) + " steps, schedule " + std::to_string(timesteps.numel()));
  RecordedNoise noise(rec.value("noise_draws", json::array()));
  for (int64_t k = 0; k < timesteps.numel() && k < static_cast<int64_t>(steps.size()); ++k) {
    const at::Tensor t = timesteps[k];
    const double t_value = t.to(at::kDouble).item<double>();
    const double t_ref = steps[k].at("t").get<double>();
    const bool integer_t = !at::isFloatingType(t.scalar_type());
    if (integer_t ? t_value != t_ref : !schedule_value_matches(t_value, t_ref))
      out.fail("step " + std::to_string(k) + " timestep " + std::to_string(t_value) + " != " + std::to_string(t_ref));
    const at::Tensor model_input = scheduler->scale_model_input(sample, t);
    out.check("step " + std::to_string(k) + " model_input",
              relative_error(model_input, tensor_from(steps[k].at("model_input"), shape)), kSampleTolerance);
    const at::Tensor model_output =
        at::add(at::mul(model_input, input_scale), static_cast<double>(static_cast<float>(t_coef * t_value / 1000.0)));
    noise.step = static_cast<int>(k);
    sample = scheduler->step(model_output, t, sample, noise);
    out.check("step " + std::to_string(k) + " sample_after",
              relative_error(sample, tensor_from(steps[k].at("sample_after"), shape)), kSampleTolerance);
  }
  if (noise.left() != 0) out.fail(std::to_string(noise.left()) + " recorded noise draws were not used");
  out.check("final_sample", relative_error(sample, tensor_from(rec.at("final_sample"))), kSampleTolerance);
  return out;
}

std::vector<fs::path> record_files(const fs::path& dir) {
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (entry.path().extension() == ".json" && name != "index.json" && name != "precision_study.json")
      files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

/// Base config: the index's (as the records were made: SDXL's config + each variant's
/// overrides), SDXL's defaults if the index has none.
json base_config_of(const fs::path& dir) {
  json base_config = nn::sdxl_scheduler_config();
  if (fs::exists(dir / "index.json")) {
    const json index = test_support::read_json(dir / "index.json");
    if (index.contains("sdxl_scheduler_config")) base_config = index.at("sdxl_scheduler_config");
  }
  return base_config;
}

/// Writes `rec` to a fresh temp dir, reads it back as the parity test reads records and runs it.
Outcome run_written_copy(const json& rec, const json& base_config, const sdk::Registries& registries) {
  const fs::path dir = fs::temp_directory_path() / ("sdxlhost_parity_selftest_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path file = dir / rec.at("file").get<std::string>();
  std::ofstream(file) << rec.dump();
  const json copy = test_support::read_json(file);
  fs::remove_all(dir);
  return run_record(copy, &base_config, registries);
}

/// The float32 value `ulps` float32 ulps above `value`.
double ulps_above(double value, int ulps) {
  float f = static_cast<float>(value);
  for (int i = 0; i < ulps; ++i) f = std::nextafter(f, INFINITY);
  return f;
}

/// True when some failure message starts with `prefix`.
bool has_failure(const Outcome& out, const std::string& prefix) {
  return std::any_of(out.failures.begin(), out.failures.end(),
                     [&](const std::string& f) { return f.rfind(prefix, 0) == 0; });
}

std::string failures_of(const Outcome& out) {
  std::string all;
  for (const auto& f : out.failures) all += "\n  " + f;
  return all;
}

}  // namespace

// The checks can fail: a copy of a record with one value moved just past the README tolerance
// (a sigma below 1 and a fractional timestep by 2 float32 ulps, one element of a step's sample
// and of the final sample by 2e-5 relative) is refused, while the unmodified copy passes.
TEST(SchedulerParity, PerturbedRecordFails) {
  const fs::path dir = goldens_dir();
  const fs::path file = dir / "EulerDiscreteScheduler__karras__8.json";
  ASSERT_TRUE(fs::exists(file)) << "record missing: " << file;
  at::set_num_threads(1);
  test_support::LoadedPlugin loaded(test_support::built_plugin("schedulers"));
  const json base_config = base_config_of(dir);
  const json rec = test_support::read_json(file);
  const Outcome control = run_written_copy(rec, base_config, loaded.registries());
  ASSERT_TRUE(control.failures.empty()) << "unmodified copy fails:" << failures_of(control);

  const auto perturbed = [&](const std::function<void(json&)>& change) {
    json copy = rec;
    change(copy);
    return run_written_copy(copy, base_config, loaded.registries());
  };
  const auto raise_relative = [](json& value) {
    const double x = value.get<double>();
    value = x + 2e-5 * std::max(1.0, std::abs(x));
  };
  const size_t low_sigma = rec.at("sigmas").at("data").size() - 2;  // last nonzero sigma, < 1
  ASSERT_LT(rec.at("sigmas").at("data")[low_sigma].get<double>(), 1.0);
  const Outcome sigma = perturbed([&](json& r) {
    json& v = r["sigmas"]["data"][low_sigma];
    v = ulps_above(v.get<double>(), 2);
  });
  EXPECT_TRUE(has_failure(sigma, "sigmas[" + std::to_string(low_sigma) + "]")) << failures_of(sigma);

  const Outcome timestep = perturbed([](json& r) {
    json& v = r["timesteps"]["data"][5];
    v = ulps_above(v.get<double>(), 2);
  });
  EXPECT_TRUE(has_failure(timestep, "timesteps[5]")) << failures_of(timestep);

  const Outcome step = perturbed([&](json& r) { raise_relative(r["steps"][3]["sample_after"][17]); });
  EXPECT_TRUE(has_failure(step, "step 3 sample_after")) << failures_of(step);
  EXPECT_EQ(step.failures.size(), 1u) << failures_of(step);

  const Outcome final_sample = perturbed([&](json& r) { raise_relative(r["final_sample"]["data"][40]); });
  EXPECT_TRUE(has_failure(final_sample, "final_sample")) << failures_of(final_sample);
  EXPECT_EQ(final_sample.failures.size(), 1u) << failures_of(final_sample);
}

TEST(SchedulerParity, EveryRecordWithinTolerance) {
  const fs::path dir = goldens_dir();
  ASSERT_TRUE(fs::is_directory(dir)) << "goldens directory missing: " << dir;
  at::set_num_threads(1);
  test_support::LoadedPlugin loaded(test_support::built_plugin("schedulers"));
  const bool has_index = fs::exists(dir / "index.json");
  const json base_config = base_config_of(dir);
  if (has_index) {
    const json index = test_support::read_json(dir / "index.json");
    for (const auto& f : index.value("files", json::array()))
      EXPECT_TRUE(fs::exists(dir / f.at("file").get<std::string>())) << "index lists a missing record " << f.at("file");
  }
  const std::vector<fs::path> files = record_files(dir);
  ASSERT_FALSE(files.empty()) << "no records in " << dir;
  std::map<std::string, std::pair<double, int>> worst;  // scheduler -> (worst error, records)
  int passed = 0;
  for (const fs::path& file : files) {
    Outcome out;
    std::string name = "?";
    try {
      const json rec = test_support::read_json(file);
      name = rec.at("name").get<std::string>();
      out = run_record(rec, has_index ? &base_config : nullptr, loaded.registries());
    } catch (const std::exception& e) {
      out.fail(std::string("could not run the record: ") + e.what());
    }
    auto& w = worst[name];
    w.first = std::max(w.first, out.worst);
    ++w.second;
    if (out.failures.empty()) ++passed;
    std::string detail;
    for (size_t i = 0; i < out.failures.size() && i < 5; ++i) detail += "\n    " + out.failures[i];
    EXPECT_TRUE(out.failures.empty()) << file.filename().string() << ":" << detail;
  }
  std::cout << "\nscheduler parity: " << passed << "/" << files.size() << " records pass (" << dir.string() << ")\n"
            << std::left << std::setw(36) << "scheduler" << std::setw(9) << "records" << "worst |x-ref|/max(1,|ref|)\n";
  for (const auto& [name, w] : worst)
    std::cout << std::setw(36) << name << std::setw(9) << w.second << std::scientific << std::setprecision(2) << w.first
              << std::defaultfloat << "\n";
}
