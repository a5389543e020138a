# Shared by the third-party proofs (cmake -P scripts of tests/schedulers and tests/controlnet):
#   run_step(<what> <command...>)  runs a command, fails the script with its output on error,
#                                  leaves its stdout in `step_output`
#   build_example_plugin(<example> <out_var>)
#       installs sdxl-host's SDK from ${BUILD_DIR}/sdk into ${WORK_DIR}/prefix, configures and
#       builds ${SOURCE_DIR}/examples/<example> against it with find_package(SdxlHostSdk), and sets
#       <out_var> to the built <example>.so
function(run_step what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}):\n${out}\n${err}")
  endif()
  message(STATUS "${what}: ok")
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

function(build_example_plugin example out_var)
  set(prefix "${WORK_DIR}/prefix")
  run_step("install SDK" ${CMAKE_COMMAND} --install "${BUILD_DIR}/sdk" --prefix "${prefix}")
  if(NOT EXISTS "${prefix}/lib/cmake/SdxlHostSdk/SdxlHostSdkConfig.cmake")
    message(FATAL_ERROR "the installed SDK has no SdxlHostSdkConfig.cmake")
  endif()
  set(generator_args)
  find_program(NINJA ninja)
  if(NINJA)
    set(generator_args -G Ninja)
  endif()
  run_step("configure ${example} against the installed SDK" ${CMAKE_COMMAND} -S "${SOURCE_DIR}/examples/${example}"
    -B "${WORK_DIR}/build" ${generator_args} -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=${prefix}")
  run_step("build ${example}" ${CMAKE_COMMAND} --build "${WORK_DIR}/build")
  set(plugin "${WORK_DIR}/build/${example}.so")
  if(NOT EXISTS "${plugin}")
    message(FATAL_ERROR "the example build produced no ${plugin}")
  endif()
  set(${out_var} "${plugin}" PARENT_SCOPE)
endfunction()
