#include "host/cli/cli.hpp"

#include <cstdio>
#include <iostream>
#include <stdexcept>

#include "host/cli/commands.hpp"
#include "host/common/logging.hpp"
#include "sdxlhost/sdk/error.hpp"

namespace sdxlhost::host::cli {
namespace {

const char* kUsage =
    "usage:\n"
    "  sdxl-host serve    --config FILE [--stdio]\n"
    "  sdxl-host generate --config FILE REQUEST.json\n"
    "  sdxl-host generate --config FILE --prompt TEXT [--negative-prompt TEXT] [--steps N]\n"
    "                     [--width W] [--height H] [--seed S] [--save-path P] [--format png|jpeg|webp]\n"
    "  sdxl-host send     --pipe NAME REQUEST.json | --message TYPE [--data JSON] [--timeout SECONDS]\n"
    "  sdxl-host plugins  --config FILE [--json]\n";

const std::set<std::string> kValueOptions = {"--config", "--pipe",   "--message", "--data",  "--timeout",
                                             "--prompt", "--negative-prompt", "--steps", "--width",
                                             "--height", "--seed",   "--save-path", "--format"};

}  // namespace

HostConfig config_from_arguments(const Arguments& args, std::vector<std::string>& warnings) {
  HostConfig config;
  if (auto file = args.get("--config")) {
    config = load_config(*file, warnings);
  } else {
    warnings.push_back("no --config given: using the defaults");
    config = default_config(std::filesystem::current_path());
  }
  set_log_level(config.log_level);
  return config;
}

int run(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  std::string command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kUsage;
    return 0;
  }
  try {
    Arguments args = parse_arguments(argc, argv, 2, kValueOptions);
    if (args.has_flag("--help")) {
      std::cout << kUsage;
      return 0;
    }
    if (command == "serve") return serve_command(args);
    if (command == "generate") return generate_command(args);
    if (command == "send") return send_command(args);
    if (command == "plugins") return plugins_command(args);
    std::cerr << "unknown command '" << command << "'\n" << kUsage;
    return 2;
  } catch (const std::invalid_argument& error) {
    std::cerr << "sdxl-host: " << error.what() << "\n" << kUsage;
    return 2;
  } catch (const sdk::Error& error) {
    std::cerr << "sdxl-host: " << error.what() << " (" << sdk::to_string(error.code()) << ")\n";
    return 1;
  } catch (const std::exception& error) {
    std::cerr << "sdxl-host: " << error.what() << "\n";
    return 1;
  }
}

}  // namespace sdxlhost::host::cli
