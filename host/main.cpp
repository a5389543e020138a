// sdxl-host: the executable. Everything lives in the sdxlhost_host library; see host/cli/cli.hpp.
#include "host/cli/cli.hpp"

int main(int argc, char** argv) { return sdxlhost::host::cli::run(argc, argv); }
