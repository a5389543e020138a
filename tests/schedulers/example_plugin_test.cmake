# Third-party proof (ctest: test_example_scheduler_plugin). Run with cmake -P and:
#   BUILD_DIR   sdxl-host's build tree (its sdk/ subtree is installed)
#   SOURCE_DIR  sdxl-host's source tree (examples/example_scheduler is built)
#   WORK_DIR    scratch folder (removed first)
#   PROBE       the example_plugin_probe executable
#   HOST        sdxl-host executable (optional: when it exists, the host part runs too)
# 1. cmake --install the SDK to a temp prefix; 2. configure + build the example against it with
# find_package(SdxlHostSdk); 3. load the built .so through Boost.DLL and use its scheduler;
# 4. if the host exists: host check (see example_host_check.py).
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(prefix "${WORK_DIR}/prefix")

function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  message(STATUS "${what}: ok")
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

run_step("install SDK" ${CMAKE_COMMAND} --install "${BUILD_DIR}/sdk" --prefix "${prefix}")
if(NOT EXISTS "${prefix}/lib/cmake/SdxlHostSdk/SdxlHostSdkConfig.cmake")
  message(FATAL_ERROR "the installed SDK has no SdxlHostSdkConfig.cmake")
endif()
set(generator_args)
find_program(NINJA ninja)
if(NINJA)
  set(generator_args -G Ninja)
endif()
run_step("configure example against the installed SDK" ${CMAKE_COMMAND} -S "${SOURCE_DIR}/examples/example_scheduler"
  -B "${WORK_DIR}/build" ${generator_args} -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=${prefix}")
run_step("build example" ${CMAKE_COMMAND} --build "${WORK_DIR}/build")
set(plugin "${WORK_DIR}/build/example_scheduler.so")
if(NOT EXISTS "${plugin}")
  message(FATAL_ERROR "example build produced no ${plugin}")
endif()
run_step("load example through the plugin boundary" "${PROBE}" "${plugin}")
message(STATUS "${step_output}")

if(HOST AND EXISTS "${HOST}" AND EXISTS "${CMAKE_CURRENT_LIST_DIR}/example_host_check.py")
  file(MAKE_DIRECTORY "${WORK_DIR}/plugins")
  file(COPY "${plugin}" DESTINATION "${WORK_DIR}/plugins")
  if(EXISTS "${BUILD_DIR}/test-plugins/test_generate.so")
    file(COPY "${BUILD_DIR}/test-plugins/test_generate.so" DESTINATION "${WORK_DIR}/plugins")
  endif()
  run_step("host loads the example from a plugin dir" python3 "${CMAKE_CURRENT_LIST_DIR}/example_host_check.py"
    "${HOST}" "${WORK_DIR}/plugins" "${WORK_DIR}")
  message(STATUS "${step_output}")
else()
  message(STATUS "host part skipped: no sdxl-host at '${HOST}'")
endif()
