# Helpers shared by every target: ccache, plugin libraries, test binaries, precompiled headers.

find_program(SDXLHOST_CCACHE ccache)
if(SDXLHOST_CCACHE)
  set(CMAKE_CXX_COMPILER_LAUNCHER ${SDXLHOST_CCACHE})
  # Needed for ccache to cache translation units that use a precompiled header.
  set(ENV{CCACHE_SLOPPINESS} "pch_defines,time_macros,include_file_mtime,include_file_ctime")
endif()

# Boost.DLL must use std::filesystem everywhere (host and plugins): no Boost library to link,
# and only then does unloading a plugin really unmap it (BUILD-NOTES.md).
add_compile_definitions(BOOST_DLL_USE_STD_FS)

# sdxlhost_torch_pch(<target>): give <target> the one shared precompiled <ATen/ATen.h>.
# Targets that do tensor work call this; the PCH is built once (target sdxlhost_pch).
function(sdxlhost_torch_pch target)
  if(TARGET sdxlhost_pch)
    target_precompile_headers(${target} REUSE_FROM sdxlhost_pch)
  endif()
endfunction()

# sdxlhost_add_plugin(<name> SOURCES ... [LIBS ...] [TEST_ONLY])
# A plugin: a MODULE library named <name>.so (no "lib" prefix), hidden visibility so only the
# BOOST_DLL_ALIAS entry points are exported, placed in build/plugins (or build/test-plugins).
function(sdxlhost_add_plugin name)
  cmake_parse_arguments(P "TEST_ONLY" "" "SOURCES;LIBS" ${ARGN})
  add_library(${name} MODULE ${P_SOURCES})
  target_link_libraries(${name} PRIVATE sdxlhost_sdk ${P_LIBS})
  if(P_TEST_ONLY)
    set(_out ${SDXLHOST_TEST_PLUGIN_OUTPUT_DIR})
  else()
    set(_out ${SDXLHOST_PLUGIN_OUTPUT_DIR})
    # One Debian package per plugin (sdxl-host-plugin-<name>, see cmake/SdxlHostPackaging.cmake).
    install(TARGETS ${name} LIBRARY DESTINATION lib/sdxl-host/plugins COMPONENT plugin-${name})
    set_property(GLOBAL APPEND PROPERTY SDXLHOST_PACKAGED_PLUGINS ${name})
  endif()
  set_target_properties(${name} PROPERTIES
    INSTALL_RPATH "$ORIGIN/.."
    PREFIX ""
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    LIBRARY_OUTPUT_DIRECTORY ${_out})
endfunction()

# sdxlhost_add_test(<name> LABELS ... SOURCES ... [LIBS ...] [TIMEOUT s])
# One test binary = one ctest entry (process start with libtorch costs ~1.2 s, so no
# per-case discovery). Tests run from the source tree's parent so ../shared resolves.
function(sdxlhost_add_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "LABELS;SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE GTest::gtest GTest::gtest_main sdxlhost_test_support ${T_LIBS})
  # Helpers shared by every test area live in tests/common/ ("common/temp_dir.hpp"), built as
  # the library sdxlhost_test_support (tests/common/CMakeLists.txt).
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_compile_definitions(${name} PRIVATE
    SDXLHOST_SHARED_DIR="${SDXLHOST_SHARED_DIR}"
    SDXLHOST_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    SDXLHOST_BINARY_DIR="${CMAKE_BINARY_DIR}"
    SDXLHOST_PLUGIN_DIR="${SDXLHOST_PLUGIN_OUTPUT_DIR}"
    SDXLHOST_TEST_PLUGIN_DIR="${SDXLHOST_TEST_PLUGIN_OUTPUT_DIR}")
  add_test(NAME ${name} COMMAND ${name})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 600)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
    ENVIRONMENT "SDXLHOST_SHARED_DIR=${SDXLHOST_SHARED_DIR}")
endfunction()
