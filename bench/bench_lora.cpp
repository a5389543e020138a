// bench_lora: what a LoRA costs on an SDXL-size UNet (random weights, memory-mapped from a
// safetensors file as a served checkpoint is) with a random rank-32 kohya LoRA on every
// attention and feed-forward Linear: parse, first apply (deltas computed), revert, re-apply of
// the cached patched set, revert, and a one-step job with vs without the LoRA. It also shows
// that changing LoRAs never reads the checkpoint: bytes read (read syscalls and storage) and
// major page faults of this process during each swap. Then the patch lifecycle side by side on
// the same model: the old one (the shared UNet patched in place under an exclusive lock, a cached
// set swapped in, the originals put back) and the new one (a patched copy per LoRA set, built
// from a WeightOverlay with with_weights and kept in pipeline::PatchedSets; unpatched jobs use
// the shared UNet unlocked): per-job time and overhead over a plain job, the peak resident memory
// each job adds, and two jobs with different LoRA sets on two threads. Not a test. See
// docs/lora.md.
//
//   bench_lora [--config tiny|sdxl|sdxl-width] [--dtype bf16|f32] [--rank 32] [--pixels 256]
//              [--threads N] [--steps 1] [--repeat 5] [--dir /tmp/bench_lora]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <list>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>
#include <vector>

#include "sdxlhost/nn/lora.hpp"
#include "sdxlhost/nn/patchable_weights.hpp"
#include "sdxlhost/nn/safetensors.hpp"
#include "sdxlhost/nn/unet.hpp"
#include "sdxlhost/pipeline/patched_sets.hpp"
#include "sdxlhost/pipeline/sdxl_models.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace sdxlhost;

struct Options {
  std::string config = "sdxl";
  std::string dtype = "bf16";
  std::int64_t rank = 32;
  std::int64_t pixels = 256;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int steps = 1;   ///< UNet steps per job in the lifecycle table
  int repeat = 5;  ///< jobs per lifecycle row (the median is printed)
  fs::path dir = fs::temp_directory_path() / "bench_lora";
};

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

/// This process's I/O so far: bytes asked of read syscalls, bytes fetched from storage, major faults.
struct Io {
  long long rchar = 0, read_bytes = 0, majflt = 0;
  static Io now() {
    Io io;
    std::ifstream in("/proc/self/io");
    std::string key;
    long long value = 0;
    while (in >> key >> value) {
      if (key == "rchar:") io.rchar = value;
      if (key == "read_bytes:") io.read_bytes = value;
    }
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    io.majflt = usage.ru_majflt;
    return io;
  }
  Io operator-(const Io& o) const { return {rchar - o.rchar, read_bytes - o.read_bytes, majflt - o.majflt}; }
};

/// What reading /proc/self/io itself adds to rchar (subtracted from every row).
long long io_probe_bytes() {
  const Io a = Io::now();
  return (Io::now() - a).rchar;
}

/// I/O since `start`, less the probe's own read.
Io io_since(const Io& start) {
  static const long long probe = io_probe_bytes();
  Io d = Io::now() - start;
  d.rchar -= probe;
  return d;
}

nn::UNetConfig unet_config(const std::string& name) {
  nn::UNetConfig u;
  u.block_out_channels = {320, 640, 1280};
  u.down_attention = {false, true, true};
  u.up_attention = {true, true, false};
  u.attention_heads = {5, 10, 20};
  u.cross_attention_dim = 2048;
  if (name == "sdxl") {  // stabilityai/stable-diffusion-xl-base-1.0's unet/config.json
    u.transformer_depth = {1, 2, 10};
    u.up_transformer_depth = {10, 2, 1};
    u.mid_transformer_depth = 10;
  } else if (name == "sdxl-width") {  // SDXL widths, one transformer block per attention
    u.transformer_depth = {1, 1, 1};
    u.up_transformer_depth = {1, 1, 1};
    u.mid_transformer_depth = 1;
  } else if (name == "tiny") {  // the tests' tiny_sdxl (goldens/models/tiny_sdxl/unet/config.json)
    u.block_out_channels = {32, 64};
    u.down_attention = {false, true};
    u.up_attention = {true, false};
    u.attention_heads = {2, 4};
    u.cross_attention_dim = 64;
    u.transformer_depth = {1, 2};
    u.up_transformer_depth = {2, 1};
    u.mid_transformer_depth = 2;
    u.addition_time_embed_dim = 8;
    u.projection_class_embeddings_input_dim = 80;
  } else {
    throw std::runtime_error("--config must be tiny, sdxl or sdxl-width");
  }
  return u;
}

bool is_lora_target(const std::string& key) {
  for (const char* tail : {"attn1.to_q.weight", "attn1.to_k.weight", "attn1.to_v.weight", "attn1.to_out.0.weight",
                           "attn2.to_q.weight", "attn2.to_k.weight", "attn2.to_v.weight", "attn2.to_out.0.weight",
                           "ff.net.0.proj.weight", "ff.net.2.weight"}) {
    const std::string t(tail);
    if (key.size() > t.size() && key.compare(key.size() - t.size(), t.size(), t) == 0) return true;
  }
  return false;
}

/// Writes the random UNet checkpoint and the random kohya LoRA; returns the LoRA's module count.
std::size_t write_files(const Options& o, at::ScalarType dtype, const fs::path& unet_file, const fs::path& lora_file) {
  at::manual_seed(0);
  auto init = [&](const std::string&, const std::vector<std::int64_t>& shape) {
    return (at::randn(shape) * 0.02).to(dtype);
  };
  const auto model = nn::UNet2DConditionModel::create(unet_config(o.config), init, dtype);
  const nn::TensorMap weights = model->state_dict();
  nn::write_safetensors(unet_file, weights);
  nn::TensorMap lora("lora");
  std::size_t modules = 0;
  for (const auto& [key, w] : weights) {
    if (!is_lora_target(key)) continue;
    std::string name = "lora_unet_" + key.substr(0, key.size() - 7);
    for (char& c : name) c = c == '.' ? '_' : c;
    lora.set(name + ".lora_down.weight", (at::randn({o.rank, w.size(1)}) * 0.01).to(at::kHalf));
    lora.set(name + ".lora_up.weight", (at::randn({w.size(0), o.rank}) * 0.01).to(at::kHalf));
    lora.set(name + ".alpha", at::scalar_tensor(static_cast<double>(o.rank) / 2).to(at::kHalf));
    ++modules;
  }
  nn::write_safetensors(lora_file, lora);
  return modules;
}

double unet_step(const nn::UNet2DConditionModel& unet, std::int64_t latent) {
  at::manual_seed(1);
  const auto& c = unet.config();
  const auto dtype = unet.dtype();
  const at::Tensor sample = at::randn({2, c.in_channels, latent, latent}).to(dtype);
  const at::Tensor text = at::randn({2, 77, c.cross_attention_dim}).to(dtype);
  const std::int64_t pooled_dim = c.projection_class_embeddings_input_dim - 6 * c.addition_time_embed_dim;
  const at::Tensor pooled = at::randn({2, pooled_dim}).to(dtype);
  const at::Tensor ids = at::tensor(std::vector<float>{256, 256, 0, 0, 256, 256}).view({1, 6}).repeat({2, 1}).to(dtype);
  const auto start = Clock::now();
  at::NoGradGuard no_grad;
  unet.forward(sample, at::scalar_tensor(500.0), text, pooled, ids);
  return seconds_since(start);
}

void row(const std::string& what, double seconds, const Io& io, const std::string& note = "") {
  std::printf("| %-44s | %9.3f | %10lld | %10lld | %6lld | %s\n", what.c_str(), seconds, io.rchar, io.read_bytes,
              io.majflt, note.c_str());
}

// ---- the patch lifecycle, old vs new ---------------------------------------------------------

/// A kB field of /proc/self/status in bytes.
long long status_bytes(const char* key) {
  std::ifstream in("/proc/self/status");
  const std::string prefix = std::string(key) + ":";
  for (std::string line; std::getline(in, line);)
    if (line.rfind(prefix, 0) == 0) return std::stoll(line.substr(prefix.size())) * 1024;
  return 0;
}

/// Peak resident memory above the start of a measurement (VmHWM reset through clear_refs).
class PeakMemory {
 public:
  PeakMemory() {
    std::ofstream("/proc/self/clear_refs") << "5";  // VmHWM := VmRSS
    start_ = status_bytes("VmRSS");
  }
  double added_mib() const { return static_cast<double>(status_bytes("VmHWM") - start_) / (1 << 20); }

 private:
  long long start_ = 0;
};

/// One LoRA set a job asks for.
struct LoraSet {
  std::string key;  ///< what PatchScope's cache key would be
  double weight = 0;
};

/// The old lifecycle (before issue 9 item 4): the shared UNet patched in place under an exclusive
/// lock for the job's denoise (a cached set swapped in, else the deltas computed and the set kept,
/// at most `limit`, LRU), the originals put back after; plain jobs hold the lock shared.
struct OldLifecycle {
  using Set = std::pair<std::string, std::vector<std::pair<std::string, at::Tensor>>>;
  nn::UNet2DConditionModel& unet;
  const nn::LoraNetwork& network;
  std::size_t limit = 2;
  std::shared_mutex lock;
  std::list<Set> cache;  // front = most recently used

  void job(const LoraSet* set, std::int64_t latent, int steps) {
    if (set == nullptr) {
      std::shared_lock<std::shared_mutex> shared(lock);
      for (int i = 0; i < steps; ++i) unet_step(unet, latent);
      return;
    }
    std::unique_lock<std::shared_mutex> exclusive(lock);
    nn::PatchableWeights& table = unet.patchable_weights();
    auto hit = std::find_if(cache.begin(), cache.end(), [&](const Set& s) { return s.first == set->key; });
    if (hit != cache.end()) {
      cache.splice(cache.begin(), cache, hit);
      for (const auto& [key, value] : cache.front().second) table.set_weight(key, value);
    } else {
      nn::apply_lora(network, set->weight, table, "lora");
      Set kept{set->key, {}};
      for (const auto& key : table.patched_keys()) kept.second.emplace_back(key, table.weight(key));
      cache.push_front(std::move(kept));
      while (cache.size() > limit) cache.pop_back();
    }
    for (int i = 0; i < steps; ++i) unet_step(unet, latent);
    table.restore();
  }
  std::uint64_t kept_bytes() const {
    std::uint64_t bytes = 0;
    for (const auto& set : cache)
      for (const auto& entry : set.second) bytes += entry.second.nbytes();
    return bytes;
  }
};

/// The new lifecycle: a job with LoRAs computes with a patched copy of the UNet (built from a
/// WeightOverlay, kept in PatchedSets by key); a job without computes with the shared UNet.
struct NewLifecycle {
  std::shared_ptr<nn::UNet2DConditionModel> unet;
  const nn::LoraNetwork& network;
  pipeline::PatchedSets sets;
  std::size_t limit = 2;  ///< plugins.config.sdxl.patched_sets' default

  void job(const LoraSet* set, std::int64_t latent, int steps) {
    if (set == nullptr) {
      for (int i = 0; i < steps; ++i) unet_step(*unet, latent);
      return;
    }
    const pipeline::PatchedModels patched = sets.get(set->key, limit, [&] {
      nn::WeightOverlay overlay(unet->patchable_weights());
      nn::apply_lora(network, set->weight, overlay, "lora");
      auto copy = std::make_shared<pipeline::SdxlModels>();
      copy->patched_sets.reset();
      copy->unet = unet->with_weights(overlay.changes());
      return pipeline::PatchedModels{copy, overlay.bytes()};
    });
    for (int i = 0; i < steps; ++i) unet_step(*patched.models->unet, latent);
  }
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct LifecycleRow {
  double seconds = 0;
  double peak_mib = 0;
};

/// `repeat` jobs (after `prepare`, untimed, before each): the median time and the largest peak.
template <class Job, class Prepare>
LifecycleRow measure(int repeat, const Prepare& prepare, const Job& job) {
  std::vector<double> times;
  LifecycleRow row;
  for (int i = 0; i < repeat; ++i) {
    prepare();
    const PeakMemory peak;
    const auto start = Clock::now();
    job();
    times.push_back(seconds_since(start));
    row.peak_mib = std::max(row.peak_mib, peak.added_mib());
  }
  row.seconds = median(times);
  return row;
}

void lifecycle_row(const std::string& job, const LifecycleRow& old_row, const LifecycleRow& new_row,
                   double plain_old, double plain_new) {
  std::printf("| %-38s | %8.4f | %8.4f | %+9.4f | %+9.4f | %8.1f | %8.1f |\n", job.c_str(), old_row.seconds,
              new_row.seconds, old_row.seconds - plain_old, new_row.seconds - plain_new, old_row.peak_mib,
              new_row.peak_mib);
}

/// Both lifecycles on the same UNet and LoRA, row by row (old, then new, per row).
void compare_lifecycles(const Options& o, const std::shared_ptr<nn::UNet2DConditionModel>& unet,
                        const nn::LoraNetwork& network, std::int64_t latent) {
  OldLifecycle old_way{*unet, network, 2, {}, {}};
  NewLifecycle new_way{unet, network, {}, 2};
  const std::vector<LoraSet> sets{{"a@0.8", 0.8}, {"a@0.5", 0.5}};
  const auto nothing = [] {};
  int fresh = 0;  // a new weight per job, so "not cached" rows never hit a cache
  LoraSet fresh_set;
  const auto next_fresh = [&] { ++fresh, fresh_set = {"fresh@" + std::to_string(fresh), 0.8 + 1e-3 * fresh}; };

  std::printf("\nPatch lifecycle, %d job(s) per row (median time, largest peak), %d UNet step(s) per job; "
              "overhead = job - plain job of the same lifecycle; peak = resident memory the job added:\n\n",
              o.repeat, o.steps);
  std::printf("| %-38s | %8s | %8s | %9s | %9s | %8s | %8s |\n", "job", "old s", "new s", "old +s", "new +s",
              "old MiB", "new MiB");
  std::printf("|%s|%s|%s|%s|%s|%s|%s|\n", std::string(40, '-').c_str(), std::string(10, '-').c_str(),
              std::string(10, '-').c_str(), std::string(11, '-').c_str(), std::string(11, '-').c_str(),
              std::string(10, '-').c_str(), std::string(10, '-').c_str());

  const auto plain_old = measure(o.repeat, nothing, [&] { old_way.job(nullptr, latent, o.steps); });
  const auto plain_new = measure(o.repeat, nothing, [&] { new_way.job(nullptr, latent, o.steps); });
  lifecycle_row("plain job (no LoRA)", plain_old, plain_new, plain_old.seconds, plain_new.seconds);

  const auto first_old = measure(o.repeat, next_fresh, [&] { old_way.job(&fresh_set, latent, o.steps); });
  const auto first_new = measure(o.repeat, next_fresh, [&] { new_way.job(&fresh_set, latent, o.steps); });
  lifecycle_row("LoRA set not cached (deltas computed)", first_old, first_new, plain_old.seconds, plain_new.seconds);

  old_way.job(&sets[0], latent, o.steps);  // fill both caches
  new_way.job(&sets[0], latent, o.steps);
  const auto cached_old = measure(o.repeat, nothing, [&] { old_way.job(&sets[0], latent, o.steps); });
  const auto cached_new = measure(o.repeat, nothing, [&] { new_way.job(&sets[0], latent, o.steps); });
  lifecycle_row("LoRA set cached", cached_old, cached_new, plain_old.seconds, plain_new.seconds);

  // Two jobs with different (cached) LoRA sets at once, as two executors run them.
  old_way.job(&sets[1], latent, o.steps);
  new_way.job(&sets[1], latent, o.steps);
  auto pair_of = [&](auto& way) {
    return [&] {
      std::thread first([&] { way.job(&sets[0], latent, o.steps); });
      std::thread second([&] { way.job(&sets[1], latent, o.steps); });
      first.join();
      second.join();
    };
  };
  const auto pair_old = measure(o.repeat, nothing, pair_of(old_way));
  const auto pair_new = measure(o.repeat, nothing, pair_of(new_way));
  const auto plain_pair = measure(o.repeat, nothing, [&] {
    std::thread first([&] { new_way.job(nullptr, latent, o.steps); });
    std::thread second([&] { new_way.job(nullptr, latent, o.steps); });
    first.join();
    second.join();
  });
  lifecycle_row("2 jobs, 2 LoRA sets, 2 threads (wall)", pair_old, pair_new, plain_pair.seconds, plain_pair.seconds);

  std::printf("\n2 LoRA sets kept: old %.1f MiB of patched weights, new %.1f MiB (PatchedSets; a copy shares every "
              "other weight with the shared UNet, which stays as loaded). 2 plain jobs on 2 threads: %.4f s wall.\n",
              static_cast<double>(old_way.kept_bytes()) / (1 << 20), static_cast<double>(new_way.sets.bytes()) / (1 << 20),
              plain_pair.seconds);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--config") o.config = next();
    else if (arg == "--dtype") o.dtype = next();
    else if (arg == "--rank") o.rank = std::stoll(next());
    else if (arg == "--pixels") o.pixels = std::stoll(next());
    else if (arg == "--threads") o.threads = std::stoi(next());
    else if (arg == "--steps") o.steps = std::stoi(next());
    else if (arg == "--repeat") o.repeat = std::max(1, std::stoi(next()));
    else if (arg == "--dir") o.dir = next();
    else {
      std::cerr << "usage: bench_lora [--config tiny|sdxl|sdxl-width] [--dtype bf16|f32] [--rank N] [--pixels N] "
                   "[--threads N] [--steps N] [--repeat N] [--dir DIR]\n";
      return 2;
    }
  }
  at::set_num_threads(o.threads);
  const at::ScalarType dtype = o.dtype == "f32" ? at::kFloat : at::kBFloat16;
  fs::create_directories(o.dir);
  const fs::path unet_file = o.dir / ("unet_" + o.config + "_" + o.dtype + ".safetensors");
  const fs::path lora_file = o.dir / ("lora_rank" + std::to_string(o.rank) + "_" + o.config + ".safetensors");
  auto start = Clock::now();
  const std::size_t modules = write_files(o, dtype, unet_file, lora_file);
  const double write_s = seconds_since(start);

  start = Clock::now();
  const auto checkpoint = nn::SafetensorsFile::open(unet_file);
  auto unet = nn::UNet2DConditionModel::load(unet_config(o.config), checkpoint->tensors(), dtype);
  const double load_s = seconds_since(start);
  std::printf("bench_lora: %s UNet, %s, %.2f G params (%.1f GiB mapped from %s), LoRA rank %lld on %zu Linear "
              "modules (%.0f MiB fp16), %d threads, step = batch 2 at %lldx%lld px\n",
              o.config.c_str(), o.dtype.c_str(), static_cast<double>(unet->parameter_bytes()) / at::elementSize(dtype) / 1e9,
              static_cast<double>(unet->parameter_bytes()) / (1 << 30), unet_file.filename().c_str(),
              static_cast<long long>(o.rank), modules, static_cast<double>(fs::file_size(lora_file)) / (1 << 20),
              o.threads, static_cast<long long>(o.pixels), static_cast<long long>(o.pixels));
  std::printf("(files written in %.1f s; checkpoint mapped and bound in %.2f s)\n\n", write_s, load_s);
  std::printf("| %-44s | %9s | %10s | %10s | %6s |\n", "what", "seconds", "rchar B", "disk B", "majflt");
  std::printf("|%s|%s|%s|%s|%s|\n", std::string(46, '-').c_str(), std::string(11, '-').c_str(),
              std::string(12, '-').c_str(), std::string(12, '-').c_str(), std::string(8, '-').c_str());

  const std::int64_t latent = o.pixels / 8;
  const double warm = unet_step(*unet, latent);  // touches every weight once
  Io io0 = Io::now();
  const double plain = unet_step(*unet, latent);
  row("UNet step, no LoRA", plain, io_since(io0), "warm-up step " + std::to_string(warm) + " s");

  nn::PatchableWeights& target = unet->patchable_weights();
  io0 = Io::now();
  start = Clock::now();
  const auto file = nn::SafetensorsFile::open(lora_file);
  const nn::LoraNetwork network = nn::parse_lora(file->tensors(), "lora");
  row("parse the LoRA file (mmap)", seconds_since(start), io_since(io0), "reads the LoRA, not the checkpoint");

  io0 = Io::now();
  start = Clock::now();
  const auto result = nn::apply_lora(network, 0.8, target, "lora");
  const double apply_s = seconds_since(start);
  row("first apply (deltas computed, W + dW)", apply_s, io_since(io0),
      std::to_string(result.matched) + "/" + std::to_string(result.modules) + " modules");
  std::vector<std::pair<std::string, at::Tensor>> cached;
  for (const auto& key : target.patched_keys()) cached.emplace_back(key, target.weight(key));

  io0 = Io::now();
  const double with_lora = unet_step(*unet, latent);
  row("UNet step, LoRA applied", with_lora, io_since(io0));

  io0 = Io::now();
  start = Clock::now();
  const std::size_t restored = target.restore();
  row("revert (originals swapped back)", seconds_since(start), io_since(io0), std::to_string(restored) + " weights");

  io0 = Io::now();
  start = Clock::now();
  for (const auto& [key, value] : cached) target.set_weight(key, value);
  const double reapply_s = seconds_since(start);
  row("apply a cached patched set (swap in)", reapply_s, io_since(io0));
  io0 = Io::now();
  start = Clock::now();
  target.restore();
  row("revert again", seconds_since(start), io_since(io0));

  std::uint64_t patched_bytes = 0;
  for (const auto& entry : cached) patched_bytes += entry.second.nbytes();
  std::printf("\nfirst job with this LoRA (apply + step + revert) vs a job without: %.3f s vs %.3f s (%.2fx);\n"
              "a repeated LoRA set (cached): %.3f s vs %.3f s. A cached patched set holds %.2f GiB.\n",
              apply_s + with_lora, plain, (apply_s + with_lora) / plain, reapply_s + with_lora, plain,
              static_cast<double>(patched_bytes) / (1 << 30));
  compare_lifecycles(o, unet, network, latent);
  fs::remove_all(o.dir);
  return 0;
}
