# Third-party proof for preprocessors (ctest: test_example_preprocessor_plugin). Run with cmake -P and:
#   BUILD_DIR, SOURCE_DIR  sdxl-host's build tree (its sdk/ is installed) and source tree
#   WORK_DIR               scratch folder (removed first)
#   HOST                   sdxl-host executable
#   SDXL_PLUGIN, SCHEDULERS_PLUGIN, CONTROLNET_PLUGIN  the built real plugins
#   SHARED                 ../shared (the goldens' tiny SDXL, ControlNet and control images)
#   COMPARE                png_compare (tests/sdxl)
# 1. installs the SDK and builds examples/example_preprocessor against it (find_package);
# 2. example_preprocessor_check.py: sdxl-host serves it beside the real plugins, lists it with its
#    options, previews it with `preprocess`, and generates with it in a ControlNet unit.
foreach(required HOST COMPARE SDXL_PLUGIN SCHEDULERS_PLUGIN CONTROLNET_PLUGIN)
  if(NOT ${required} OR NOT EXISTS "${${required}}")
    message(FATAL_ERROR "${required} missing: '${${required}}'")
  endif()
endforeach()
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
include("${CMAKE_CURRENT_LIST_DIR}/../common/example_plugin_build.cmake")
build_example_plugin(example_preprocessor plugin)

find_program(PYTHON3 python3)
if(NOT PYTHON3)
  message(FATAL_ERROR "python3 is needed for the host check (scripts/setup installs it)")
endif()
file(MAKE_DIRECTORY "${WORK_DIR}/plugins")
file(COPY "${plugin}" "${SDXL_PLUGIN}" "${SCHEDULERS_PLUGIN}" "${CONTROLNET_PLUGIN}" DESTINATION "${WORK_DIR}/plugins")
run_step("host previews and generates with the example preprocessor" "${PYTHON3}"
  "${CMAKE_CURRENT_LIST_DIR}/example_preprocessor_check.py" "${HOST}" "${WORK_DIR}/plugins" "${SHARED}"
  "${WORK_DIR}" "${COMPARE}")
message(STATUS "${step_output}")
