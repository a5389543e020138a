#pragma once
/// @file plugin_file.hpp
/// What the host does with a plugin file before `dlopen`: read it once, check that it is a
/// complete shared library for this machine (ELF headers, every loadable segment inside the file),
/// and load it from a private, content-addressed copy in a run directory the host owns. A file
/// cut short or replaced in `plugins.dir` (a deploy copying a new build over a loaded plugin)
/// then never reaches the dynamic loader, and a running host never maps `plugins.dir` itself.

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>

namespace sdxlhost::host {

/// Why a plugin file is refused before it is loaded; the message becomes the plugin's reason.
class BadPluginFile : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Checks that `bytes` (a whole file's contents) is a shared library this process can map:
/// ELF magic, class, byte order, version, type ET_DYN, this machine's architecture, a program
/// header table inside the file, every PT_LOAD/PT_DYNAMIC segment's bytes inside the file
/// (p_offset + p_filesz <= size, p_filesz <= p_memsz) and the section header table inside the
/// file. Throws BadPluginFile saying what is wrong. On systems other than Linux it only checks
/// that the file is not empty.
void check_library_image(std::string_view bytes);

/// The run directory of one PluginManager: `<base>/plugins-<pid>-<n>`, mode 0700, where each
/// plugin is copied to `<stem>-<sha256 prefix><ext>` and loaded from there. Removed (with its
/// copies) when the object goes; directories of processes that no longer exist are removed when
/// one is created (stale copies after a crash). Thread-safety: `copy` is serialized.
class PluginRunDir {
 public:
  /// `base` empty: `$XDG_RUNTIME_DIR/sdxl-host` when that is set, else
  /// `${TMPDIR:-/tmp}/sdxl-host-<uid>`. Creates nothing until the first copy.
  explicit PluginRunDir(std::filesystem::path base);
  ~PluginRunDir();
  PluginRunDir(const PluginRunDir&) = delete;
  PluginRunDir& operator=(const PluginRunDir&) = delete;

  /// Reads `source` once, checks it (check_library_image), and returns the path of its private
  /// copy (written to a temporary file, fsynced, renamed; reused when the same content was
  /// copied before). Throws BadPluginFile when the file cannot be read or is not a complete
  /// library, std::runtime_error when the copy cannot be written.
  std::filesystem::path copy(const std::filesystem::path& source);

  /// This manager's folder (created on the first copy).
  const std::filesystem::path& dir() const { return dir_; }

  /// The default base folder (see the constructor).
  static std::filesystem::path default_base();

 private:
  std::mutex mutex_;
  std::filesystem::path base_;
  std::filesystem::path dir_;
  bool created_ = false;
};

}  // namespace sdxlhost::host
