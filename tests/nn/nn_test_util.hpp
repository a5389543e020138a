#pragma once
// Small helpers shared by the nn tests: the shared/ folder and a self-removing temp folder.
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <unistd.h>

namespace sdxlhost::test {

/// The shared/ folder with the goldens (env SDXLHOST_SHARED_DIR, else the compile-time define).
inline std::filesystem::path shared_dir() {
  if (const char* env = std::getenv("SDXLHOST_SHARED_DIR"); env != nullptr && *env != '\0') return env;
  return SDXLHOST_SHARED_DIR;
}

/// A fresh folder under the system temp folder, removed with its contents on destruction.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("sdxlhost-nn-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace sdxlhost::test
