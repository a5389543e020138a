#include "host/plugins/plugin_file.hpp"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <system_error>

#include <openssl/evp.h>

#if defined(__linux__)
#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

namespace sdxlhost::host {

namespace fs = std::filesystem;

namespace {

/// Largest plugin file the host reads (a plugin is code, not weights).
constexpr std::uintmax_t kMaxPluginBytes = 1ull << 30;

[[noreturn]] void refuse(const std::string& why) { throw BadPluginFile("not a complete library: " + why); }

/// a + b <= limit without overflow.
bool fits(std::uint64_t offset, std::uint64_t length, std::uint64_t limit) {
  return offset <= limit && length <= limit - offset;
}

std::string sha256_hex(std::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest, &length, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("SHA-256 of a plugin file failed");
  static const char* const kHex = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < length; ++i) {
    out += kHex[digest[i] >> 4];
    out += kHex[digest[i] & 15];
  }
  return out;
}

std::string read_whole(const fs::path& source) {
  std::error_code ec;
  const auto size = fs::file_size(source, ec);
  if (ec) throw BadPluginFile("cannot read the plugin file: " + ec.message());
  if (size > kMaxPluginBytes) throw BadPluginFile("the plugin file is larger than 1 GiB");
  std::ifstream in(source, std::ios::binary);
  if (!in) throw BadPluginFile("cannot open the plugin file");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw BadPluginFile("cannot read the plugin file");
  return bytes;
}

#if defined(__linux__)
/// Writes `bytes` to `path` (new file, 0500), fsyncs it; throws on failure.
void write_synced(const fs::path& path, std::string_view bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) throw std::runtime_error("cannot create " + path.string() + ": " + std::strerror(errno));
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = errno;
      ::close(fd);
      ::unlink(path.c_str());
      throw std::runtime_error("cannot write " + path.string() + ": " + std::strerror(err));
    }
    done += static_cast<std::size_t>(n);
  }
  const bool ok = ::fchmod(fd, 0500) == 0 && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    throw std::runtime_error("cannot write " + path.string() + ": " + std::strerror(err));
  }
}

/// Creates `dir` with mode 0700 if needed and checks it is a real folder owned by this user.
void ensure_private_dir(const fs::path& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    throw std::runtime_error("cannot create the plugin run folder " + dir.string() + ": " + std::strerror(errno));
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::getuid())
    throw std::runtime_error("the plugin run folder " + dir.string() +
                             " is not a folder owned by this user (plugins.run_dir)");
  if ((st.st_mode & 077) != 0) ::chmod(dir.c_str(), 0700);
}

/// Removes `plugins-<pid>-<n>` folders of processes that no longer run.
void remove_stale(const fs::path& base) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(base, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("plugins-", 0) != 0) continue;
    const long pid = std::strtol(name.c_str() + 8, nullptr, 10);
    if (pid <= 0 || pid == static_cast<long>(::getpid())) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    std::error_code ignored;
    fs::remove_all(entry.path(), ignored);
  }
}
#endif

}  // namespace

void check_library_image(std::string_view bytes) {
  if (bytes.empty()) refuse("the file is empty");
#if defined(__linux__)
  const std::uint64_t size = bytes.size();
  if (size < sizeof(Elf64_Ehdr) || std::memcmp(bytes.data(), ELFMAG, SELFMAG) != 0)
    refuse("no ELF header (the file is not a shared library or is cut short)");
  Elf64_Ehdr eh;
  std::memcpy(&eh, bytes.data(), sizeof eh);
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) refuse("not a 64-bit ELF file");
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) refuse("not a little-endian ELF file");
  if (eh.e_ident[EI_VERSION] != EV_CURRENT || eh.e_version != EV_CURRENT) refuse("unknown ELF version");
  if (eh.e_type != ET_DYN) refuse("not a shared object (ELF type " + std::to_string(eh.e_type) + ")");
#if defined(__x86_64__)
  if (eh.e_machine != EM_X86_64) refuse("built for another architecture (e_machine " + std::to_string(eh.e_machine) + ")");
#elif defined(__aarch64__)
  if (eh.e_machine != EM_AARCH64) refuse("built for another architecture (e_machine " + std::to_string(eh.e_machine) + ")");
#endif
  if (eh.e_ehsize < sizeof(Elf64_Ehdr)) refuse("ELF header size is wrong");
  if (eh.e_phnum == 0 || eh.e_phnum == PN_XNUM) refuse("no program headers");
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) refuse("program header size is wrong");
  if (!fits(eh.e_phoff, std::uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr), size))
    refuse("the program headers lie past the end of the file (" + std::to_string(size) + " bytes)");
  if (eh.e_shnum != 0) {
    if (eh.e_shentsize != sizeof(Elf64_Shdr)) refuse("section header size is wrong");
    if (!fits(eh.e_shoff, std::uint64_t{eh.e_shnum} * sizeof(Elf64_Shdr), size))
      refuse("the section headers lie past the end of the file (" + std::to_string(size) + " bytes)");
  }
  bool any_load = false;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, bytes.data() + eh.e_phoff + std::uint64_t{i} * sizeof(Elf64_Phdr), sizeof ph);
    if (ph.p_type != PT_LOAD && ph.p_type != PT_DYNAMIC && ph.p_type != PT_INTERP &&
        ph.p_type != PT_NOTE && ph.p_type != PT_GNU_EH_FRAME)
      continue;
    any_load = any_load || ph.p_type == PT_LOAD;
    if (!fits(ph.p_offset, ph.p_filesz, size))
      refuse("segment " + std::to_string(i) + " (bytes " + std::to_string(ph.p_offset) + ".." +
             std::to_string(ph.p_offset + ph.p_filesz) + ") lies past the end of the file (" +
             std::to_string(size) + " bytes)");
    if (ph.p_type == PT_LOAD && ph.p_filesz > ph.p_memsz) refuse("segment " + std::to_string(i) + " is larger on disk than in memory");
  }
  if (!any_load) refuse("no loadable segment");
#endif
}

PluginRunDir::PluginRunDir(fs::path base) : base_(base.empty() ? default_base() : std::move(base)) {
  static std::atomic<unsigned> counter{0};
#if defined(__linux__)
  const long pid = static_cast<long>(::getpid());
#else
  const long pid = 0;
#endif
  dir_ = base_ / ("plugins-" + std::to_string(pid) + "-" + std::to_string(counter++));
}

PluginRunDir::~PluginRunDir() {
  // Mapped copies stay mapped after their names are gone (the kernel keeps the inode).
  std::error_code ec;
  if (created_) fs::remove_all(dir_, ec);
}

fs::path PluginRunDir::default_base() {
  if (const char* xdg = std::getenv("XDG_RUNTIME_DIR"); xdg && *xdg) return fs::path(xdg) / "sdxl-host";
  const char* tmp = std::getenv("TMPDIR");
  fs::path root = tmp && *tmp ? fs::path(tmp) : fs::path("/tmp");
#if defined(__linux__)
  return root / ("sdxl-host-" + std::to_string(::getuid()));
#else
  return root / "sdxl-host";
#endif
}

fs::path PluginRunDir::copy(const fs::path& source) {
  const std::string bytes = read_whole(source);
  check_library_image(bytes);
  const std::string hash = sha256_hex(bytes).substr(0, 24);
  std::lock_guard<std::mutex> lock(mutex_);
#if defined(__linux__)
  if (!created_) {
    std::error_code ec;
    fs::create_directories(base_.parent_path(), ec);
    ensure_private_dir(base_);
    remove_stale(base_);
    ensure_private_dir(dir_);
    created_ = true;
  }
  const fs::path target = dir_ / (source.stem().string() + "-" + hash + source.extension().string());
  std::error_code ec;
  if (fs::is_regular_file(target, ec) && fs::file_size(target, ec) == bytes.size() && !ec)
    return target;  // the same content, copied (and checked) before: written only by this host
  const fs::path temporary = dir_ / (".tmp-" + hash);
  fs::remove(temporary, ec);
  write_synced(temporary, bytes);
  if (::rename(temporary.c_str(), target.c_str()) != 0) {
    const int err = errno;
    ::unlink(temporary.c_str());
    throw std::runtime_error("cannot place the plugin copy " + target.string() + ": " + std::strerror(err));
  }
  return target;
#else
  return source;  // no private copies where a loaded library file cannot be replaced anyway
#endif
}

}  // namespace sdxlhost::host
