# Finds libtorch: Debian's libtorch-dev (CPU, 1.13: CI and the default) or, with
# -DSDXLHOST_TORCH_FROM_PYTHON=ON, the PyTorch installed in a Python (pip wheels ship a
# TorchConfig.cmake; a CUDA wheel gives the CUDA build, docs/gpu.md).
#
# Sets SDXLHOST_WITH_CUDA (ON when the libtorch found has CUDA). CUDA-only code is compiled only
# then, behind the SDXLHOST_WITH_CUDA macro that sdxlhost_enable_cuda_code(<target>) defines on
# the few targets that have such code, so the CPU build compiles exactly as without it.

option(SDXLHOST_TORCH_FROM_PYTHON "Build against the PyTorch of SDXLHOST_PYTHON (pip wheel) instead of Debian's libtorch" OFF)
set(SDXLHOST_PYTHON python3 CACHE STRING "The Python whose PyTorch SDXLHOST_TORCH_FROM_PYTHON uses")

if(SDXLHOST_TORCH_FROM_PYTHON)
  execute_process(
    COMMAND ${SDXLHOST_PYTHON} -c
      "import torch; print(torch.utils.cmake_prefix_path); print(int(torch._C._GLIBCXX_USE_CXX11_ABI)); print(torch.__version__)"
    OUTPUT_VARIABLE _torch_query OUTPUT_STRIP_TRAILING_WHITESPACE
    ERROR_VARIABLE _torch_error RESULT_VARIABLE _torch_rc)
  if(NOT _torch_rc EQUAL 0)
    message(FATAL_ERROR "SDXLHOST_TORCH_FROM_PYTHON: '${SDXLHOST_PYTHON} -c \"import torch\"' failed:\n${_torch_error}")
  endif()
  string(REPLACE "\n" ";" _torch_query "${_torch_query}")
  list(GET _torch_query 0 _torch_prefix)
  list(GET _torch_query 1 _torch_abi)
  list(GET _torch_query 2 _torch_version)
  # Every C++ library linked with libtorch must share its std::string / std::list ABI. Debian's
  # compiled libraries (spdlog, fmt, ICU's C++ parts, GoogleTest) use the C++11 ABI, so a wheel
  # built with the old ABI (PyTorch < 2.7 on x86-64) cannot be mixed with them.
  if(NOT _torch_abi EQUAL 1)
    message(FATAL_ERROR
      "PyTorch ${_torch_version} of ${SDXLHOST_PYTHON} was built with _GLIBCXX_USE_CXX11_ABI=0; "
      "Debian's spdlog, fmt and GoogleTest use the C++11 ABI (1). Use a PyTorch built with the C++11 "
      "ABI (pip wheels from 2.7 on, or the cxx11-abi libtorch archive).")
  endif()
  list(PREPEND CMAKE_PREFIX_PATH "${_torch_prefix}")
  message(STATUS "sdxl-host: PyTorch ${_torch_version} from ${SDXLHOST_PYTHON} (${_torch_prefix}), C++11 ABI")
endif()

find_package(Torch REQUIRED)

# TorchConfig appends the CUDA libraries (c10_cuda, cudart, ...) to TORCH_CUDA_LIBRARIES only
# for a CUDA build of libtorch.
if(TORCH_CUDA_LIBRARIES)
  set(SDXLHOST_WITH_CUDA ON)
  # libtorch_cuda registers the CUDA kernels from its static initialisers; nothing of ours calls
  # it by name, so a linker that drops unreferenced libraries (--as-needed, the default on some
  # distributions) would leave a build where every CUDA tensor fails.
  add_link_options(LINKER:--no-as-needed)
else()
  set(SDXLHOST_WITH_CUDA OFF)
endif()
message(STATUS "sdxl-host: libtorch ${Torch_VERSION}, CUDA: ${SDXLHOST_WITH_CUDA}")

# sdxlhost_enable_cuda_code(<target>): compile <target>'s CUDA-only code (#if SDXLHOST_WITH_CUDA)
# when libtorch has CUDA. Nothing changes for a CPU build.
function(sdxlhost_enable_cuda_code target)
  if(SDXLHOST_WITH_CUDA)
    target_compile_definitions(${target} PRIVATE SDXLHOST_WITH_CUDA=1)
    # cuda_runtime_api.h and cudart (cudaMemGetInfo); TorchConfig's CUDA set-up defines the target.
    if(TARGET CUDA::cudart)
      target_link_libraries(${target} PRIVATE CUDA::cudart)
    endif()
  endif()
endfunction()
