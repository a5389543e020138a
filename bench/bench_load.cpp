// bench_load: how fast a checkpoint loads from a cold page cache, against reading the same file
// (what `cat` does), with the peak RSS against the bytes of the served weights. Each
// measurement runs in a fresh process after the file's pages were dropped from the page cache
// (posix_fadvise DONTNEED: no privilege needed; a file another process maps stays cached, so
// run it on a file nothing else has open). Modes alternate; rows are medians over repeats.
// Not a test; docs/performance.md has the table and the command.
//   bench_load --model FILE.safetensors|FOLDER [--dtypes bf16,fp32] [--repeats 3]
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "bench_args.hpp"
#include "sdxlhost/nn/checkpoint.hpp"
#include "sdxlhost/nn/cpu_runtime.hpp"
#include "sdxlhost/pipeline/sdxl_models.hpp"

namespace {

using namespace sdxlhost;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::vector<fs::path> files_of(const fs::path& model) {
  std::vector<fs::path> files;
  if (fs::is_regular_file(model)) return {model};
  for (const auto& entry : fs::recursive_directory_iterator(model))
    if (entry.is_regular_file() && entry.path().extension() == ".safetensors") files.push_back(entry.path());
  return files;
}

std::uint64_t total_bytes(const std::vector<fs::path>& files) {
  std::uint64_t bytes = 0;
  for (const auto& f : files) bytes += fs::file_size(f);
  return bytes;
}

/// Drops the files' clean pages from the page cache, so the next read comes from the disk.
void drop_from_page_cache(const std::vector<fs::path>& files) {
  for (const auto& f : files) {
    const int fd = ::open(f.c_str(), O_RDONLY);
    if (fd < 0) continue;
    ::fdatasync(fd);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

/// Reads every file start to end in 16 MiB blocks (what `cat FILE > /dev/null` does).
void read_files(const std::vector<fs::path>& files) {
  std::vector<char> buffer(16u << 20);
  for (const auto& f : files) {
    const int fd = ::open(f.c_str(), O_RDONLY);
    if (fd < 0) throw std::runtime_error("cannot open " + f.string());
    while (::read(fd, buffer.data(), buffer.size()) > 0) {
    }
    ::close(fd);
  }
}

/// The child: one measurement; prints "seconds peak_rss_bytes served_bytes".
int run_child(const std::string& mode, const fs::path& model) {
  nn::apply_threads(0);
  std::uint64_t served = 0;
  const auto start = Clock::now();
  if (mode == "read") {
    read_files(files_of(model));
  } else {
    const at::ScalarType dtype = mode == "bf16" ? at::kBFloat16 : mode == "fp16" ? at::kHalf : at::kFloat;
    const nn::CheckpointWeights weights = nn::open_checkpoint(model);
    const auto models = pipeline::SdxlModels::bind(weights, dtype, at::kCPU, model.string());
    served = models->bytes;  // UNet, VAE and text encoders
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  std::printf("%.3f %llu %llu\n", seconds, static_cast<unsigned long long>(usage.ru_maxrss) * 1024ull,
              static_cast<unsigned long long>(served));
  return 0;
}

struct Sample {
  double seconds = 0;
  double peak_gib = 0;
  double served_gib = 0;
};

Sample run_mode(const std::string& mode, const fs::path& model) {
  drop_from_page_cache(files_of(model));
  int pipe_fds[2];
  if (::pipe(pipe_fds) != 0) throw std::runtime_error("pipe failed");
  const pid_t child = ::fork();
  if (child < 0) throw std::runtime_error("fork failed");
  if (child == 0) {
    ::dup2(pipe_fds[1], 1);
    ::close(pipe_fds[0]);
    ::execl("/proc/self/exe", "bench_load", "--child", mode.c_str(), model.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(pipe_fds[1]);
  std::string text;
  char buffer[256];
  for (ssize_t n; (n = ::read(pipe_fds[0], buffer, sizeof buffer)) > 0;) text.append(buffer, static_cast<size_t>(n));
  ::close(pipe_fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) throw std::runtime_error("the " + mode + " run failed");
  std::istringstream in(text);
  double peak = 0, served = 0;
  Sample s;
  in >> s.seconds >> peak >> served;
  s.peak_gib = peak / (1u << 30);
  s.served_gib = served / (1u << 30);
  return s;
}

using bench::split_list;

int run_parent(const fs::path& model, const std::vector<std::string>& dtypes, int repeats) {
  const std::vector<fs::path> files = files_of(model);
  const double file_gib = static_cast<double>(total_bytes(files)) / (1u << 30);
  std::printf("bench_load  %s  (%.2f GiB in %zu file(s)); cold page cache before every run\n", model.c_str(),
              file_gib, files.size());
  std::vector<std::string> modes = {"read"};
  modes.insert(modes.end(), dtypes.begin(), dtypes.end());
  std::map<std::string, std::vector<Sample>> samples;
  for (int r = 0; r < repeats; ++r)
    for (const auto& mode : modes) samples[mode].push_back(run_mode(mode, model));
  std::printf("| %-6s | %9s | %8s | %9s | %10s | %11s |\n", "mode", "seconds", "vs read", "GiB/s", "peak GiB",
              "peak/served");
  std::printf("|--------|-----------|----------|-----------|------------|-------------|\n");
  double read_seconds = 0;
  for (const auto& mode : modes) {
    auto& list = samples[mode];
    std::sort(list.begin(), list.end(), [](const Sample& a, const Sample& b) { return a.seconds < b.seconds; });
    const Sample& m = list[list.size() / 2];
    if (mode == "read") read_seconds = m.seconds;
    std::printf("| %-6s | %9.2f | %7.2fx | %9.2f | %10.2f | %11s |\n", mode.c_str(), m.seconds,
                m.seconds / read_seconds, file_gib / m.seconds, m.peak_gib,
                m.served_gib > 0 ? (std::to_string(m.peak_gib / m.served_gib).substr(0, 4) + "x").c_str() : "-");
  }
  std::printf("(read = the file read start to end, as cat; the others: open_checkpoint + SdxlModels::bind as "
              "the sdxl plugin loads, converting to the dtype; median of %d; served = bytes of the bound "
              "weights)\n",
              repeats);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc == 4 && std::string(argv[1]) == "--child") return run_child(argv[2], argv[3]);
    fs::path model;
    std::vector<std::string> dtypes = {"bf16", "fp32"};
    int repeats = 3;
    for (int i = 1; i + 1 < argc; i += 2) {
      const std::string key = argv[i], value = argv[i + 1];
      if (key == "--model") model = value;
      else if (key == "--dtypes") dtypes = split_list(value);
      else if (key == "--repeats") repeats = std::max(1, std::stoi(value));
      else throw std::invalid_argument("unknown option " + key);
    }
    if (model.empty() || argc % 2 == 0) throw std::invalid_argument("usage: bench_load --model PATH [--dtypes bf16,fp32] [--repeats 3]");
    return run_parent(model, dtypes, repeats);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_load: %s\n", e.what());
    return 1;
  }
}
