#include "host/common/memory.hpp"

#include <cstdlib>
#include <fstream>
#include <mutex>

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__linux__)
#include <dlfcn.h>
#include <unistd.h>
#endif

namespace sdxlhost::host {
namespace {

/// tcmalloc's C entry point, when the process runs on it (looked up, so a build without it
/// still links and falls back to glibc's malloc_trim).
using ReleaseFn = void (*)();
ReleaseFn tcmalloc_release() {
#if defined(__linux__)
  static const auto fn = reinterpret_cast<ReleaseFn>(dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory"));
  return fn;
#else
  return nullptr;
#endif
}

}  // namespace

const char* allocator_name() { return tcmalloc_release() ? "tcmalloc" : "glibc"; }

bool configure_allocator(std::size_t threshold_bytes) {
#if defined(__GLIBC__)
  static std::once_flag once;
  bool set = false;
  std::call_once(once, [&] {
    if (tcmalloc_release()) return;  // tcmalloc keeps and reuses large blocks by design
    if (const char* env = std::getenv("MALLOC_MMAP_THRESHOLD_"); env && *env) return;
    // Setting M_MMAP_THRESHOLD (and M_TRIM_THRESHOLD) turns off glibc's dynamic adjustment.
    set = mallopt(M_MMAP_THRESHOLD, static_cast<int>(threshold_bytes)) == 1;
    mallopt(M_TRIM_THRESHOLD, static_cast<int>(threshold_bytes * 2));
  });
  return set;
#else
  (void)threshold_bytes;
  return false;
#endif
}

void release_free_memory() {
  if (const ReleaseFn release = tcmalloc_release()) {
    release();
    return;
  }
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

std::size_t resident_bytes() {
#if defined(__linux__)
  std::ifstream statm("/proc/self/statm");
  std::size_t pages_total = 0, pages_resident = 0;
  if (!(statm >> pages_total >> pages_resident)) return 0;
  return pages_resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
#else
  return 0;
#endif
}

}  // namespace sdxlhost::host
