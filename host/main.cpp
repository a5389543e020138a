// sdxl-host: the executable. Everything lives in the sdxlhost_host library; see host/cli/cli.hpp.
#include "host/cli/cli.hpp"
#include "sdxlhost/nn/cpu_runtime.hpp"

int main(int argc, char** argv) {
  // First: OpenBLAS picks its kernels when it loads; on a CPU it does not know this re-executes
  // the program once with the right core type (see cpu_runtime.hpp).
  sdxlhost::nn::select_blas_kernels(argv);
  return sdxlhost::host::cli::run(argc, argv);
}
