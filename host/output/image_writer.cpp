// write_images: metadata, A1111 infotext, sandboxed saving under output_root, base64.
#include "host/output/image_writer.hpp"

#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <atomic>
#include <random>
#include <system_error>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdio.h>  // RENAME_NOREPLACE (glibc, _GNU_SOURCE)

#include "host/common/paths.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/image_metadata.hpp"
#include "sdxlhost/sdk/request_parser.hpp"

namespace sdxlhost::host {
namespace {

namespace fs = std::filesystem;
using sdk::Error;
using sdk::ErrorCode;

constexpr const char* kSavePathField = "data.output.save_path";
constexpr int kMaxSuffix = 100000;
constexpr const char* kTemporaryPrefix = ".sdxl-host-tmp-";

std::string canonical_format(const std::string& format) {
  if (format == "jpg") return "jpeg";
  return format;
}

std::string extension_for(const std::string& format) {
  if (format == "jpeg") return ".jpg";
  return "." + format;
}

bool extension_matches(const std::string& extension, const std::string& format) {
  if (format == "jpeg") return extension == ".jpg" || extension == ".jpeg";
  return extension == "." + format;
}

/// A request id made safe for a file name.
std::string file_stem_for(const std::string& request_id) {
  std::string out;
  for (char c : request_id)
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
  return out.empty() ? "image" : out.substr(0, 100);
}

/// The folder (created, checked to be inside output_root after resolving symlinks) and file
/// name for image `index` of `count`.
fs::path save_target(const std::string& save_path, const sdk::GenerationRequest& request,
                     const OutputSettings& settings, const std::string& format, std::size_t index,
                     std::size_t count) {
  check_save_path(save_path, kSavePathField);  // the parser's check: requests from other paths too
  std::error_code ec;
  fs::create_directories(settings.output_root, ec);
  const fs::path root = fs::canonical(settings.output_root, ec);
  if (ec) throw Error(ErrorCode::OutputError, "output_root is not usable: " + ec.message());

  const fs::path relative(save_path);
  const bool names_folder = save_path.back() == '/' || !relative.has_extension() ||
                            fs::is_directory(root / relative, ec);
  fs::path folder = names_folder ? root / relative : (root / relative).parent_path();
  std::string file_name;
  if (names_folder) {
    file_name = file_stem_for(request.request_id) + "_" + std::to_string(index) + extension_for(format);
  } else {
    const std::string extension = relative.extension().string();
    file_name = relative.stem().string() + (count > 1 ? "_" + std::to_string(index) : "") +
                (extension_matches(extension, format) ? extension : extension_for(format));
  }

  if (!is_within(fs::weakly_canonical(folder, ec), root))
    throw Error(ErrorCode::OutputError, "resolves outside output_root", kSavePathField);
  fs::create_directories(folder, ec);
  if (ec) throw Error(ErrorCode::OutputError, "cannot create the folder: " + ec.message(), kSavePathField);
  folder = fs::canonical(folder, ec);
  if (ec || !is_within(folder, root))
    throw Error(ErrorCode::OutputError, "resolves outside output_root", kSavePathField);
  return folder / file_name;
}

std::string errno_text(int err) {
  if (err == ENOSPC) return "no space left on the device (disk full)";
  if (err == EDQUOT) return "disk quota exceeded";
  if (err == EFBIG) return "file too large for this system (RLIMIT_FSIZE or the file system)";
  return std::strerror(err);
}

/// Writes `bytes` to a new temporary file in `folder` (a name starting with
/// kTemporaryPrefix and this process's id), fsynced. On failure nothing is left and
/// Error(OutputError) says why (disk full, quota, ...).
fs::path write_temporary(const fs::path& folder, const std::vector<std::uint8_t>& bytes) {
  static std::atomic<unsigned long> counter{0};
  static const unsigned long salt = std::random_device{}();
  for (int attempt = 0; attempt < 100; ++attempt) {
    const fs::path temporary = folder / (std::string(kTemporaryPrefix) + std::to_string(::getpid()) + "-" +
                                         std::to_string(salt) + "-" + std::to_string(counter++));
    const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0 && errno == EEXIST) continue;
    if (fd < 0) throw Error(ErrorCode::OutputError, "cannot create the file: " + errno_text(errno), kSavePathField);
    std::size_t done = 0;
    int err = 0;
    while (done < bytes.size() && err == 0) {
      const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) err = n < 0 ? errno : ENOSPC;
      else done += static_cast<std::size_t>(n);
    }
    if (err == 0 && ::fsync(fd) != 0) err = errno;
    if (::close(fd) != 0 && err == 0) err = errno;
    if (err != 0) {
      ::unlink(temporary.c_str());
      throw Error(ErrorCode::OutputError, "writing the image failed: " + errno_text(err), kSavePathField);
    }
    return temporary;
  }
  throw Error(ErrorCode::OutputError, "cannot create a temporary file", kSavePathField);
}

/// Gives `temporary` the name `candidate` unless that name exists (link(2), or
/// renameat2(RENAME_NOREPLACE) where the file system has no hard links). Returns false when the
/// name is taken; throws Error(OutputError) on another failure.
bool publish(const fs::path& temporary, const fs::path& candidate) {
  if (::link(temporary.c_str(), candidate.c_str()) == 0) {
    ::unlink(temporary.c_str());
    return true;
  }
  int err = errno;
  if (err == EEXIST) return false;
#if defined(SYS_renameat2) && defined(RENAME_NOREPLACE)
  if (err == EPERM || err == ENOTSUP || err == EOPNOTSUPP || err == EMLINK) {
    if (::syscall(SYS_renameat2, AT_FDCWD, temporary.c_str(), AT_FDCWD, candidate.c_str(), RENAME_NOREPLACE) == 0)
      return true;
    err = errno;
    if (err == EEXIST) return false;
  }
#endif
  throw Error(ErrorCode::OutputError, "cannot name the file: " + errno_text(err), kSavePathField);
}

/// fsync of a folder, so a new name in it survives a crash (best effort).
void sync_folder(const fs::path& folder) {
  const int fd = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

/// Writes `bytes` to `target`, or to target_1, target_2, ... when it exists: the bytes go to a
/// temporary file in the same folder, are fsynced, then get the final name without replacing
/// anything (never overwrites, never follows a symlink at the final name). A crash or kill -9
/// at any moment leaves either nothing or a complete file under the final name (and maybe a
/// temporary, removed by remove_stale_temporaries at the next start). Returns the path written.
fs::path save_new_file(const fs::path& target, const std::vector<std::uint8_t>& bytes) {
  const fs::path temporary = write_temporary(target.parent_path(), bytes);
  try {
    for (int suffix = 0; suffix < kMaxSuffix; ++suffix) {
      const fs::path candidate =
          suffix == 0 ? target
                      : target.parent_path() / (target.stem().string() + "_" + std::to_string(suffix) +
                                                target.extension().string());
      if (!publish(temporary, candidate)) continue;
      sync_folder(target.parent_path());
      return candidate;
    }
  } catch (...) {
    ::unlink(temporary.c_str());
    throw;
  }
  ::unlink(temporary.c_str());
  throw Error(ErrorCode::OutputError, "too many files with this name", kSavePathField);
}

/// The request as JSON for the `sdxl_host` chunk: the normalized `data` object when the
/// protocol layer kept it, else the SDK's wire form of the modelled fields.
nlohmann::json request_json(const sdk::GenerationRequest& request) {
  if (request.data.is_object() && !request.data.empty()) return request.data;
  return sdk::request_to_json(request);
}

/// The image's metadata completed with what the request says (the plugin's values win).
nlohmann::json image_metadata(const sdk::Image& image, const sdk::GenerationRequest& request,
                              std::size_t index) {
  nlohmann::json meta = image.metadata.is_object() ? image.metadata : nlohmann::json::object();
  const auto& h = request.hyperparameters;
  if (!meta.contains("seed")) meta["seed"] = h.seed + static_cast<std::int64_t>(index);
  if (!meta.contains("steps")) meta["steps"] = h.num_inference_steps;
  if (!meta.contains("guidance_scale")) meta["guidance_scale"] = h.guidance_scale;
  if (!meta.contains("scheduler")) meta["scheduler"] = request.scheduler;
  // The SDK's defaults under what the stages recorded (a stage that ran a second model names it).
  nlohmann::json model_info = sdk::default_model_info(request);
  if (auto it = meta.find("model_info"); it != meta.end() && it->is_object())
    for (const auto& [key, value] : it->items()) model_info[key] = value;
  meta["model_info"] = std::move(model_info);
  return meta;
}

}  // namespace

std::string a1111_parameters(const sdk::GenerationRequest& request, const sdk::Image& image, bool generation) {
  const auto& meta = image.metadata;
  const std::string recorded = sdk::recorded_infotext(meta);
  if (!generation)
    return "Size: " + std::to_string(image.width) + "x" + std::to_string(image.height) +
           (recorded.empty() ? "" : ", " + recorded);
  auto number = [&](const char* key, auto fallback) {
    return meta.is_object() && meta.contains(key) && meta[key].is_number()
               ? meta[key].get<decltype(fallback)>()
               : fallback;
  };
  std::ostringstream text;
  text << request.prompt;
  if (!request.negative_prompt.empty()) text << "\nNegative prompt: " << request.negative_prompt;
  text << "\nSteps: " << number("steps", request.hyperparameters.num_inference_steps)
       << ", Sampler: " << request.scheduler
       << ", CFG scale: " << sdk::infotext_number(number("guidance_scale", request.hyperparameters.guidance_scale))
       << ", Seed: " << number("seed", request.hyperparameters.seed)
       << ", Size: " << image.width << "x" << image.height
       << ", Model: " << request.models.base;
  // What plugins recorded (sdxlhost/sdk/image_metadata.hpp): generation parameters, then post-processing
  if (!recorded.empty()) text << ", " << recorded;
  return text.str();
}

nlohmann::json write_images(const std::vector<sdk::Image>& images,
                            const sdk::GenerationRequest& request, const OutputSettings& settings) {
  const std::string format = canonical_format(request.output.format);
  const std::string& save_path = request.output.save_path;
  const std::string request_text = request_json(request).dump();
  nlohmann::json out = nlohmann::json::array();
  for (std::size_t i = 0; i < images.size(); ++i) {
    const sdk::Image& image = images[i];
    const std::map<std::string, std::string> text{{"parameters", a1111_parameters(request, image, settings.generation)},
                                                  {"sdxl_host", request_text}};
    const std::vector<std::uint8_t> bytes = encode_image(image, format, request.output.quality, text);
    nlohmann::json entry = {{"format", format},
                            {"width", image.width},
                            {"height", image.height},
                            {"metadata", settings.generation ? image_metadata(image, request, i) : image.metadata}};
    if (!save_path.empty()) {
      const fs::path target = save_target(save_path, request, settings, format, i, images.size());
      entry["image_path"] = save_new_file(target, bytes).string();
    }
    if (request.output.return_base64 || save_path.empty()) entry["image_data"] = base64_encode(bytes);
    out.push_back(std::move(entry));
  }
  return out;
}

std::size_t remove_stale_temporaries(const fs::path& output_root) {
  std::size_t removed = 0;
  std::error_code ec;
  const std::string prefix = kTemporaryPrefix;
  fs::recursive_directory_iterator it(output_root, fs::directory_options::skip_permission_denied, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    const fs::path& path = it->path();
    const std::string name = path.filename().string();
    if (name.rfind(prefix, 0) != 0 || it->is_symlink(ec) || !it->is_regular_file(ec)) continue;
    const long pid = std::strtol(name.c_str() + prefix.size(), nullptr, 10);
    if (pid > 0 && pid != static_cast<long>(::getpid()) && ::kill(static_cast<pid_t>(pid), 0) == 0) continue;
    if (pid == static_cast<long>(::getpid())) continue;  // this process may be writing it now
    std::error_code ignored;
    if (fs::remove(path, ignored)) ++removed;
  }
  return removed;
}

}  // namespace sdxlhost::host
