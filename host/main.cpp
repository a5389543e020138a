// sdxl-host: the executable. Everything lives in the sdxlhost_host library; see host/cli/cli.hpp.
#include <string_view>

#include "host/cli/cli.hpp"
#include "sdxlhost/nn/cpu_runtime.hpp"

/// True for the commands that run models. Only they pay for the kernel selection's re-exec, which
/// initialises libtorch a second time (~0.4 s here); `send`, `plugins` and `--help` compute nothing.
static bool runs_models(int argc, char** argv) {
  if (argc < 2) return false;
  const std::string_view command = argv[1];
  return command == "serve" || command == "generate";
}

int main(int argc, char** argv) {
  // First: OpenBLAS picks its kernels when it loads; on a CPU it does not know this re-executes
  // the program once with the right core type (see cpu_runtime.hpp).
  if (runs_models(argc, argv)) sdxlhost::nn::select_blas_kernels(argv);
  return sdxlhost::host::cli::run(argc, argv);
}
