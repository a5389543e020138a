// Output: PNG round trip with the tEXt chunks read back by libpng, JPEG/WebP decoded back,
// A1111 infotext, base64, sandboxed saving (no overwrite, escapes refused).
#include <gtest/gtest.h>

#include <csetjmp>
#include <csignal>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cstdlib>
#include <map>

#include <jpeglib.h>
#include <png.h>
#include <webp/decode.h>

#include "host/output/image_writer.hpp"
#include "error_capture.hpp"
#include "sdxlhost/sdk/error.hpp"
#include "sdxlhost/sdk/image_metadata.hpp"
#include "common/goldens.hpp"
#include "common/temp_dir.hpp"

namespace fs = std::filesystem;
using namespace sdxlhost;
using sdk::ErrorCode;
using test_support::code_of;

namespace {

/// A smooth gradient without edges (lossy codecs keep it close), `channels` per pixel.
sdk::Image gradient(int width, int height, int channels = 3) {
  sdk::Image image;
  image.width = width;
  image.height = height;
  image.channels = channels;
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      for (int c = 0; c < channels; ++c)
        image.pixels.push_back(static_cast<std::uint8_t>(c == 3   ? 200
                                                         : c == 0 ? 20 + x * 200 / width
                                                         : c == 1 ? 20 + y * 200 / height
                                                                  : 60 + (x + y) * 100 / (width + height)));
  return image;
}

struct DecodedPng {
  int width = 0, height = 0, channels = 0;
  std::vector<std::uint8_t> pixels;
  std::map<std::string, std::string> text;
  std::map<std::string, int> text_compression;
};

struct MemoryReader {
  const std::vector<std::uint8_t>* bytes;
  std::size_t offset = 0;
};

void read_from_memory(png_structp png, png_bytep out, png_size_t length) {
  auto* reader = static_cast<MemoryReader*>(png_get_io_ptr(png));
  if (reader->offset + length > reader->bytes->size()) png_error(png, "read past end");
  std::memcpy(out, reader->bytes->data() + reader->offset, length);
  reader->offset += length;
}

DecodedPng decode_png(const std::vector<std::uint8_t>& bytes) {
  DecodedPng out;
  MemoryReader reader{&bytes};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    ADD_FAILURE() << "libpng could not read the PNG";
    return {};
  }
  png_set_read_fn(png, &reader, read_from_memory);
  png_read_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
  out.width = static_cast<int>(png_get_image_width(png, info));
  out.height = static_cast<int>(png_get_image_height(png, info));
  out.channels = png_get_channels(png, info);
  png_bytepp rows = png_get_rows(png, info);
  for (int y = 0; y < out.height; ++y)
    out.pixels.insert(out.pixels.end(), rows[y], rows[y] + out.width * out.channels);
  png_textp text = nullptr;
  int count = 0;
  png_get_text(png, info, &text, &count);
  for (int i = 0; i < count; ++i) {
    out.text[text[i].key] = std::string(text[i].text, text[i].compression == PNG_TEXT_COMPRESSION_NONE
                                                          ? text[i].text_length
                                                          : text[i].itxt_length);
    out.text_compression[text[i].key] = text[i].compression;
  }
  png_destroy_read_struct(&png, &info, nullptr);
  return out;
}

struct JpegTrap {
  jpeg_error_mgr manager;
  std::jmp_buf jump;
};

sdk::Image decode_jpeg(const std::vector<std::uint8_t>& bytes, std::string* comment) {
  sdk::Image out;
  jpeg_decompress_struct info;
  JpegTrap trap;
  info.err = jpeg_std_error(&trap.manager);
  trap.manager.error_exit = [](j_common_ptr c) { std::longjmp(reinterpret_cast<JpegTrap*>(c->err)->jump, 1); };
  if (setjmp(trap.jump)) {
    jpeg_destroy_decompress(&info);
    ADD_FAILURE() << "libjpeg could not read the JPEG";
    return {};
  }
  jpeg_create_decompress(&info);
  jpeg_mem_src(&info, bytes.data(), bytes.size());
  jpeg_save_markers(&info, JPEG_COM, 0xFFFF);
  jpeg_read_header(&info, TRUE);
  for (auto* m = info.marker_list; m; m = m->next)
    if (m->marker == JPEG_COM) comment->assign(reinterpret_cast<char*>(m->data), m->data_length);
  jpeg_start_decompress(&info);
  out.width = static_cast<int>(info.output_width);
  out.height = static_cast<int>(info.output_height);
  out.channels = info.output_components;
  out.pixels.resize(static_cast<std::size_t>(out.width) * out.height * out.channels);
  while (info.output_scanline < info.output_height) {
    JSAMPROW row = out.pixels.data() + info.output_scanline * out.width * out.channels;
    jpeg_read_scanlines(&info, &row, 1);
  }
  jpeg_finish_decompress(&info);
  jpeg_destroy_decompress(&info);
  return out;
}

double mean_abs_diff(const std::vector<std::uint8_t>& a, const std::vector<std::uint8_t>& b) {
  EXPECT_EQ(a.size(), b.size());
  double sum = 0;
  for (std::size_t i = 0; i < std::min(a.size(), b.size()); ++i) sum += std::abs(int(a[i]) - int(b[i]));
  return a.empty() ? 0 : sum / a.size();
}

sdk::GenerationRequest sample_request() {
  sdk::GenerationRequest r;
  r.request_id = "req-7";
  r.prompt = "a cat on a mat";
  r.negative_prompt = "blurry";
  r.models.base = "sdxl_base";
  r.hyperparameters.num_inference_steps = 20;
  r.hyperparameters.guidance_scale = 7.5;
  r.hyperparameters.seed = 42;
  r.scheduler = "EulerDiscreteScheduler";
  r.width = 64;
  r.height = 48;
  r.data = {{"prompt", r.prompt}, {"negative_prompt", r.negative_prompt},
            {"hyperparameters", {{"seed", 42}, {"num_inference_steps", 20}}}};
  return r;
}

}  // namespace

TEST(Output, A1111InfotextFormat) {
  auto request = sample_request();
  auto image = gradient(64, 48);
  EXPECT_EQ(host::a1111_parameters(request, image),
            "a cat on a mat\nNegative prompt: blurry\nSteps: 20, Sampler: EulerDiscreteScheduler, "
            "CFG scale: 7.5, Seed: 42, Size: 64x48, Model: sdxl_base");
  image.metadata["seed"] = 43;  // image 1 of a batch
  request.negative_prompt.clear();
  request.hyperparameters.guidance_scale = 7.0;
  EXPECT_EQ(host::a1111_parameters(request, image),
            "a cat on a mat\nSteps: 20, Sampler: EulerDiscreteScheduler, CFG scale: 7.0, Seed: 43, "
            "Size: 64x48, Model: sdxl_base");
}

// The host writes what stages recorded through the SDK (image_metadata.hpp) without knowing
// their keys: generation parameters in key order after its own, post-processing entries last in
// the order added; an image that was not generated gets "Size" and the recorded entries.
TEST(Output, A1111InfotextAppendsTheEntriesStagesRecorded) {
  auto request = sample_request();
  auto image = gradient(64, 48);
  sdk::add_postprocess_infotext(image.metadata, "Postprocess zeta", "z");
  sdk::add_postprocess_infotext(image.metadata, "Postprocess alpha", sdk::infotext_number(2));
  sdk::add_infotext(image.metadata, "Zoom", "1.5x");
  sdk::add_infotext(image.metadata, "Alpha hashes", "\"a: 01ab\"");
  sdk::add_infotext(image.metadata, "Count", 3);
  EXPECT_EQ(host::a1111_parameters(request, image),
            "a cat on a mat\nNegative prompt: blurry\nSteps: 20, Sampler: EulerDiscreteScheduler, "
            "CFG scale: 7.5, Seed: 42, Size: 64x48, Model: sdxl_base, Alpha hashes: \"a: 01ab\", Count: 3, "
            "Zoom: 1.5x, Postprocess zeta: z, Postprocess alpha: 2.0");
  EXPECT_EQ(host::a1111_parameters(request, image, /*generation=*/false),
            "Size: 64x48, Alpha hashes: \"a: 01ab\", Count: 3, Zoom: 1.5x, Postprocess zeta: z, Postprocess alpha: 2.0");
  EXPECT_EQ(host::a1111_parameters(request, gradient(8, 8), /*generation=*/false), "Size: 8x8");
}

// model_info: the SDK's defaults (the refiner named only by a stage that ran one) under the
// keys a stage recorded.
TEST(Output, ModelInfoIsTheSdkDefaultsUnderWhatStagesRecorded) {
  auto request = sample_request();
  request.models.refiner = "second_model";
  request.models.vae = "custom_vae";
  host::OutputSettings settings;
  std::vector<sdk::Image> images{gradient(8, 8), gradient(8, 8)};
  images[1].metadata["model_info"] = {{"refiner_model", "second_model"}, {"extra", 1}};
  const auto result = host::write_images(images, request, settings);
  EXPECT_EQ(result[0]["metadata"]["model_info"],
            (nlohmann::json{{"base_model", "sdxl_base"}, {"refiner_model", ""}, {"vae_model", "custom_vae"}}));
  EXPECT_EQ(result[1]["metadata"]["model_info"],
            (nlohmann::json{{"base_model", "sdxl_base"}, {"refiner_model", "second_model"},
                            {"vae_model", "custom_vae"}, {"extra", 1}}));
}

TEST(Output, PngRoundTripKeepsPixelsAndTextChunks) {
  const auto request = sample_request();
  for (int channels : {1, 3, 4}) {
    const auto image = gradient(37, 21, channels);
    const std::map<std::string, std::string> text{{"parameters", host::a1111_parameters(request, image)},
                                                  {"sdxl_host", request.data.dump()}};
    const auto bytes = host::encode_image(image, "png", 95, text);
    const auto decoded = decode_png(bytes);
    EXPECT_EQ(decoded.width, 37);
    EXPECT_EQ(decoded.height, 21);
    EXPECT_EQ(decoded.channels, channels);
    EXPECT_EQ(decoded.pixels, image.pixels);
    EXPECT_EQ(decoded.text.at("parameters"), text.at("parameters"));
    EXPECT_EQ(decoded.text_compression.at("parameters"), PNG_TEXT_COMPRESSION_NONE);  // tEXt
    EXPECT_EQ(nlohmann::json::parse(decoded.text.at("sdxl_host")), request.data);
  }
}

TEST(Output, NonAsciiPromptsSurviveInAnInternationalTextChunk) {
  const auto image = gradient(8, 8);
  const std::string prompt = "ein Kätzchen, 猫";
  const auto decoded = decode_png(host::encode_image(image, "png", 95, {{"parameters", prompt}}));
  EXPECT_EQ(decoded.text.at("parameters"), prompt);
}

TEST(Output, JpegDecodesBackCloseWithTheInfotextComment) {
  const auto image = gradient(64, 40);
  const auto high = host::encode_image(image, "jpeg", 95, {{"parameters", "a cat"}});
  const auto low = host::encode_image(image, "jpg", 10, {{"parameters", "a cat"}});
  EXPECT_LT(low.size(), high.size());
  std::string comment;
  const auto decoded = decode_jpeg(high, &comment);
  EXPECT_EQ(decoded.width, 64);
  EXPECT_EQ(decoded.height, 40);
  EXPECT_EQ(decoded.channels, 3);
  EXPECT_LT(mean_abs_diff(decoded.pixels, image.pixels), 3.0);
  EXPECT_EQ(comment, "a cat");
  // RGBA input: alpha dropped.
  const auto rgba = host::encode_image(gradient(16, 16, 4), "jpeg", 90, {});
  EXPECT_EQ(decode_jpeg(rgba, &comment).channels, 3);
}

TEST(Output, WebpDecodesBackClose) {
  const auto image = gradient(64, 40);
  const auto high = host::encode_image(image, "webp", 95, {});
  const auto low = host::encode_image(image, "webp", 5, {});
  EXPECT_LT(low.size(), high.size());
  int width = 0, height = 0;
  std::uint8_t* rgb = WebPDecodeRGB(high.data(), high.size(), &width, &height);
  ASSERT_NE(rgb, nullptr);
  EXPECT_EQ(width, 64);
  EXPECT_EQ(height, 40);
  std::vector<std::uint8_t> pixels(rgb, rgb + width * height * 3);
  WebPFree(rgb);
  EXPECT_LT(mean_abs_diff(pixels, image.pixels), 4.0);
}

TEST(Output, BadFormatQualityOrImageAreErrors) {
  const auto image = gradient(8, 8);
  std::string field;
  EXPECT_EQ(code_of([&] { host::encode_image(image, "gif", 90, {}); }, nullptr, &field), ErrorCode::ValidationError);
  EXPECT_EQ(field, "data.output.format");
  EXPECT_EQ(code_of([&] { host::encode_image(image, "jpeg", 0, {}); }, nullptr, &field), ErrorCode::ValidationError);
  EXPECT_EQ(field, "data.output.quality");
  auto broken = image;
  broken.pixels.pop_back();
  EXPECT_EQ(code_of([&] { host::encode_image(broken, "png", 90, {}); }), ErrorCode::OutputError);
  broken = image;
  broken.channels = 2;
  EXPECT_EQ(code_of([&] { host::encode_image(broken, "png", 90, {}); }), ErrorCode::OutputError);
}

TEST(Output, Base64KnownVectors) {
  auto b64 = [](const std::string& s) { return host::base64_encode({s.begin(), s.end()}); };
  EXPECT_EQ(b64(""), "");
  EXPECT_EQ(b64("f"), "Zg==");
  EXPECT_EQ(b64("fo"), "Zm8=");
  EXPECT_EQ(b64("foo"), "Zm9v");
  EXPECT_EQ(b64("foob"), "Zm9vYg==");
  EXPECT_EQ(b64("fooba"), "Zm9vYmE=");
  EXPECT_EQ(b64("foobar"), "Zm9vYmFy");
  EXPECT_EQ(host::base64_encode({0xFF, 0xFE, 0x00}), "//4A");
}

TEST(Output, WithoutSavePathImagesComeBackAsBase64) {
  test_support::TempDir tmp;
  auto request = sample_request();
  const auto result = host::write_images({gradient(16, 8)}, request, {tmp / "out"});
  ASSERT_EQ(result.size(), 1u);
  EXPECT_FALSE(result[0].contains("image_path"));
  EXPECT_EQ(result[0]["format"], "png");
  EXPECT_EQ(result[0]["width"], 16);
  EXPECT_EQ(result[0]["metadata"]["seed"], 42);
  EXPECT_EQ(result[0]["metadata"]["model_info"]["base_model"], "sdxl_base");
  const std::string data = result[0]["image_data"];
  EXPECT_EQ(data.substr(0, 8), "iVBORw0K");  // base64 of the PNG signature
}

TEST(Output, SavedFilesAreNeverOverwritten) {
  test_support::TempDir tmp;
  auto request = sample_request();
  request.output.save_path = "nested/dir/cat.png";
  request.output.return_base64 = true;
  const auto first = host::write_images({gradient(16, 8)}, request, {tmp / "out"});
  const fs::path first_path = first[0]["image_path"].get<std::string>();
  EXPECT_TRUE(first_path.is_absolute());
  EXPECT_EQ(first_path, fs::canonical(tmp / "out") / "nested" / "dir" / "cat.png");
  EXPECT_TRUE(first[0].contains("image_data"));
  const auto original = test_support::read_bytes(first_path);

  const auto second = host::write_images({gradient(8, 8)}, request, {tmp / "out"});
  const fs::path second_path = second[0]["image_path"].get<std::string>();
  EXPECT_EQ(second_path.filename(), "cat_1.png");
  EXPECT_EQ(test_support::read_bytes(first_path), original);
  const auto decoded = decode_png({original.begin(), original.end()});
  EXPECT_NE(decoded.text.at("parameters").find("Seed: 42"), std::string::npos);
}

TEST(Output, FolderSavePathsGetGeneratedNamesPerImage) {
  test_support::TempDir tmp;
  auto request = sample_request();
  request.output.format = "webp";
  for (const std::string save_path : {"batch/", "runs/today"}) {
    request.output.save_path = save_path;
    auto second = gradient(16, 8);
    second.metadata["seed"] = 43;
    const auto result = host::write_images({gradient(16, 8), second}, request, {tmp / "out"});
    ASSERT_EQ(result.size(), 2u);
    EXPECT_EQ(fs::path(result[0]["image_path"].get<std::string>()).filename(), "req-7_0.webp");
    EXPECT_EQ(fs::path(result[1]["image_path"].get<std::string>()).filename(), "req-7_1.webp");
    EXPECT_EQ(result[1]["metadata"]["seed"], 43);
    EXPECT_FALSE(result[0].contains("image_data"));
  }
  request.output.format = "jpeg";
  request.output.save_path = "single/shot.png";  // the format decides the extension
  const auto result = host::write_images({gradient(16, 8)}, request, {tmp / "out"});
  EXPECT_EQ(fs::path(result[0]["image_path"].get<std::string>()).filename(), "shot.jpg");
}

TEST(Output, SavePathsThatEscapeOutputRootAreRefused) {
  test_support::TempDir tmp;
  const fs::path outside = tmp / "outside";
  fs::create_directories(outside);
  fs::create_directories(tmp / "out");
  fs::create_directory_symlink(outside, tmp / "out" / "link");
  fs::create_symlink(outside / "target.png", tmp / "out" / "trap.png");
  auto request = sample_request();
  std::string field;
  for (const std::string& bad : std::vector<std::string>{"../x.png", "a/../../x.png", "/tmp/x.png", "dir\\x.png",
                                std::string("x\0.png", 6)}) {
    request.output.save_path = bad;
    EXPECT_EQ(code_of([&] { host::write_images({gradient(8, 8)}, request, {tmp / "out"}); }, nullptr, &field),
              ErrorCode::ValidationError) << bad;
    EXPECT_EQ(field, "data.output.save_path");
  }
  request.output.save_path = "link/x.png";
  EXPECT_EQ(code_of([&] { host::write_images({gradient(8, 8)}, request, {tmp / "out"}); }, nullptr, &field),
            ErrorCode::OutputError);
  EXPECT_EQ(field, "data.output.save_path");
  request.output.save_path = "link/deeper/x.png";
  EXPECT_EQ(code_of([&] { host::write_images({gradient(8, 8)}, request, {tmp / "out"}); }),
            ErrorCode::OutputError);
  // A symlink at the file name itself is not followed: a new name is chosen.
  request.output.save_path = "trap.png";
  const auto result = host::write_images({gradient(8, 8)}, request, {tmp / "out"});
  EXPECT_EQ(fs::path(result[0]["image_path"].get<std::string>()).filename(), "trap_1.png");
  EXPECT_TRUE(fs::is_empty(outside));
}

namespace {

/// Noise pixels: PNG cannot compress them, so the file is about width * height * 3 bytes.
sdk::Image noise(int width, int height) {
  sdk::Image image;
  image.width = width;
  image.height = height;
  image.channels = 3;
  std::uint32_t state = 12345;
  for (int i = 0; i < width * height * 3; ++i) {
    state = state * 1664525u + 1013904223u;
    image.pixels.push_back(static_cast<std::uint8_t>(state >> 24));
  }
  return image;
}

/// Every file under `root` (recursively), by name.
std::vector<std::string> files_under(const fs::path& root) {
  std::vector<std::string> names;
  for (const auto& entry : fs::recursive_directory_iterator(root))
    if (entry.is_regular_file()) names.push_back(entry.path().filename().string());
  return names;
}

}  // namespace

// Issue 14, item 4: a process killed while it writes an image (here by SIGXFSZ, which kills it
// half-way through the write like kill -9) leaves no file under the final name; the temporary
// it leaves is removed at the next start.
TEST(Output, AProcessKilledWhileWritingLeavesNoPartialImage) {
  test_support::TempDir tmp;
  const fs::path out = tmp / "out";
  fs::create_directories(out);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::signal(SIGXFSZ, SIG_DFL);
    rlimit limit{4096, 4096};  // any write past 4 KiB kills the process (SIGXFSZ)
    ::setrlimit(RLIMIT_FSIZE, &limit);
    auto request = sample_request();
    request.output.save_path = "killed.png";
    try {
      host::write_images({noise(64, 64)}, request, {out});
    } catch (...) {
    }
    ::_exit(0);  // not reached when the write kills the process
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the child was not killed during the write";
  EXPECT_EQ(WTERMSIG(status), SIGXFSZ);
  EXPECT_FALSE(fs::exists(out / "killed.png")) << "a partial image carries the final name";
  const auto left = files_under(out);
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].rfind(".sdxl-host-tmp-" + std::to_string(child) + "-", 0), 0u) << left[0];

  // The next start removes it; a temporary of a live process (ours) is kept.
  test_support::write_bytes(out / "sub" / (".sdxl-host-tmp-" + std::to_string(::getpid()) + "-1-2"), "live");
  EXPECT_EQ(host::remove_stale_temporaries(out), 1u);
  EXPECT_EQ(files_under(out), std::vector<std::string>{".sdxl-host-tmp-" + std::to_string(::getpid()) + "-1-2"});
}

// Disk full on output: a clear OUTPUT_ERROR naming the field, nothing partial left behind.
TEST(Output, DiskFullIsAnOutputErrorAndLeavesNothing) {
  test_support::TempDir tmp;
  const fs::path out = tmp / "out";
  fs::create_directories(out);
  auto request = sample_request();
  request.output.save_path = "full.png";
  // RLIMIT_FSIZE makes write(2) fail as a full disk does (EFBIG instead of ENOSPC).
  const auto previous_handler = ::signal(SIGXFSZ, SIG_IGN);
  rlimit previous{};
  ::getrlimit(RLIMIT_FSIZE, &previous);
  rlimit limit{4096, previous.rlim_max};
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &limit), 0);
  std::string field;
  const auto code = code_of([&] { host::write_images({noise(64, 64)}, request, {out}); }, nullptr, &field);
  ::setrlimit(RLIMIT_FSIZE, &previous);
  ::signal(SIGXFSZ, previous_handler);
  EXPECT_EQ(code, ErrorCode::OutputError);
  EXPECT_EQ(field, "data.output.save_path");
  EXPECT_TRUE(files_under(out).empty());
  // Once there is room again, the same request is saved under its name.
  const auto result = host::write_images({noise(64, 64)}, request, {out});
  EXPECT_EQ(fs::path(result[0]["image_path"].get<std::string>()).filename(), "full.png");
  EXPECT_EQ(files_under(out), std::vector<std::string>{"full.png"});
}
