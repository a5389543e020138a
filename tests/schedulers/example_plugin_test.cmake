# Third-party proof (ctest: test_example_scheduler_plugin). Run with cmake -P and:
#   BUILD_DIR   sdxl-host's build tree (its sdk/ subtree is installed)
#   SOURCE_DIR  sdxl-host's source tree (examples/example_scheduler is built)
#   WORK_DIR    scratch folder (removed first)
#   PROBE       the example_plugin_probe executable
#   HOST        sdxl-host executable (required)
#   SDXL_PLUGIN the real sdxl plugin (build/plugins/sdxl.so, required)
#   SCHEDULERS_PLUGIN the schedulers plugin sdxl requires (build/plugins/schedulers.so, required)
#   MODELS_ROOT models_root holding checkpoints/tiny-sdxl (the build's tiny model, required)
# 1. cmake --install the SDK to a temp prefix; 2. configure + build the example against it with
# find_package(SdxlHostSdk); 3. load the built .so through Boost.DLL and use its scheduler;
# 4. host check (example_host_check.py): sdxl-host serves the example, sdxl and schedulers from
# one plugin dir and generates an image with the example scheduler.
foreach(required HOST SDXL_PLUGIN SCHEDULERS_PLUGIN)
  if(NOT ${required} OR NOT EXISTS "${${required}}")
    message(FATAL_ERROR "${required} missing: '${${required}}' (build the example_plugin_probe target)")
  endif()
endforeach()
if(NOT MODELS_ROOT OR NOT EXISTS "${MODELS_ROOT}/checkpoints/tiny-sdxl")
  message(FATAL_ERROR "the tiny model is missing: '${MODELS_ROOT}/checkpoints/tiny-sdxl' (build tiny_sdxl_model)")
endif()
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
include("${CMAKE_CURRENT_LIST_DIR}/../common/example_plugin_build.cmake")
build_example_plugin(example_scheduler plugin)
run_step("load example through the plugin boundary" "${PROBE}" "${plugin}")
message(STATUS "${step_output}")

find_program(PYTHON3 python3)
if(NOT PYTHON3)
  message(FATAL_ERROR "python3 is needed for the host check (scripts/setup installs it)")
endif()
file(MAKE_DIRECTORY "${WORK_DIR}/plugins")
file(COPY "${plugin}" "${SDXL_PLUGIN}" "${SCHEDULERS_PLUGIN}" DESTINATION "${WORK_DIR}/plugins")
run_step("host generates with the example scheduler" "${PYTHON3}" "${CMAKE_CURRENT_LIST_DIR}/example_host_check.py"
  "${HOST}" "${WORK_DIR}/plugins" "${MODELS_ROOT}" "${WORK_DIR}")
message(STATUS "${step_output}")
