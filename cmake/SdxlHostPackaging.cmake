# Debian packages (CPack DEB, `cpack -G DEB` in the build folder; docs/operations.md):
#   sdxl-host                  the binary, the SDK's runtime libraries, /etc/sdxl-host/host.json,
#                              the systemd unit, a system user and /var/lib/sdxl-host (postinst);
#                              Provides: sdxl-host-abi-<kAbiVersion>
#   sdxl-host-dev              SDK headers and the CMake package (find_package(SdxlHostSdk))
#   sdxl-host-plugin-<name>    one per plugin in plugins/; Depends: sdxl-host-abi-<version>, so a
#                              plugin built for another ABI cannot be installed beside the host
# Included at the end of the top-level CMakeLists.txt, after every plugin was added.

# The plugin ABI the packages are built for, read from the SDK header (one source of truth).
file(STRINGS ${PROJECT_SOURCE_DIR}/sdk/include/sdxlhost/sdk/abi.hpp _abi_line
     REGEX "inline constexpr int kAbiVersion = [0-9]+;")
string(REGEX MATCH "kAbiVersion = ([0-9]+)" _abi_match "${_abi_line}")
set(SDXLHOST_ABI_VERSION "${CMAKE_MATCH_1}")
if(NOT SDXLHOST_ABI_VERSION)
  message(FATAL_ERROR "could not read kAbiVersion from sdk/include/sdxlhost/sdk/abi.hpp")
endif()
set(_abi_package "sdxl-host-abi-${SDXLHOST_ABI_VERSION}")

# Files only the host package installs (absolute paths outside the prefix): not part of a plain
# `cmake --install`, only of the component.
install(FILES ${PROJECT_SOURCE_DIR}/packaging/host.json DESTINATION /etc/sdxl-host
        COMPONENT host EXCLUDE_FROM_ALL)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/sdxl-host.service DESTINATION /lib/systemd/system
        COMPONENT host EXCLUDE_FROM_ALL)
install(FILES ${PROJECT_SOURCE_DIR}/docs/operations.md ${PROJECT_SOURCE_DIR}/docs/configuration.md
              ${PROJECT_SOURCE_DIR}/docs/protocol.md
        DESTINATION share/doc/sdxl-host COMPONENT host EXCLUDE_FROM_ALL)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME sdxl-host)
set(CPACK_PACKAGE_VENDOR "sdxl-host")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "sdxl-host maintainers <sdxl-host@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "SDXL image generation host with plugins")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_COMPRESSION_TYPE gzip)  # fast to build in CI; the payload is mostly .so files
set(CPACK_DEBIAN_PACKAGE_SECTION misc)

set(CPACK_DEBIAN_HOST_PACKAGE_NAME sdxl-host)
set(CPACK_COMPONENT_HOST_DESCRIPTION "SDXL image generation host (JSON over a Unix socket): the host, its SDK runtime, config and systemd unit")
set(CPACK_DEBIAN_HOST_PACKAGE_DEPENDS
    "libtorch1.13, libopenblas0-pthread, libopenblas0-openmp, libtcmalloc-minimal4, librabbitmq4, libspdlog1.10, libpng16-16, libjpeg62-turbo, libwebp7, libicu72, adduser")
set(CPACK_DEBIAN_HOST_PACKAGE_PROVIDES "${_abi_package}")
set(CPACK_DEBIAN_HOST_PACKAGE_CONTROL_EXTRA
    "${PROJECT_SOURCE_DIR}/packaging/debian/postinst;${PROJECT_SOURCE_DIR}/packaging/debian/prerm;${PROJECT_SOURCE_DIR}/packaging/debian/postrm;${PROJECT_SOURCE_DIR}/packaging/debian/conffiles")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME sdxl-host-dev)
set(CPACK_COMPONENT_DEV_DESCRIPTION "sdxl-host SDK: headers and CMake package to build plugins (find_package(SdxlHostSdk))")
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
    "sdxl-host (= ${PROJECT_VERSION}), libtorch-dev, nlohmann-json3-dev, libboost-dev, cmake, g++")

get_property(_plugins GLOBAL PROPERTY SDXLHOST_PACKAGED_PLUGINS)
set(_components host dev)
foreach(_plugin ${_plugins})
  string(TOUPPER "PLUGIN-${_plugin}" _upper)
  set(CPACK_DEBIAN_${_upper}_PACKAGE_NAME "sdxl-host-plugin-${_plugin}")
  set(CPACK_COMPONENT_${_upper}_DESCRIPTION "sdxl-host plugin '${_plugin}'")
  # Other plugins and libraries a plugin needs: SDXLHOST_PLUGIN_DEB_DEPENDS_<name> in its folder.
  get_property(_extra GLOBAL PROPERTY SDXLHOST_PLUGIN_DEB_DEPENDS_${_plugin})
  set(_depends "${_abi_package}")
  if(_extra)
    string(APPEND _depends ", ${_extra}")
  endif()
  set(CPACK_DEBIAN_${_upper}_PACKAGE_DEPENDS "${_depends}")
  set(CPACK_DEBIAN_${_upper}_PACKAGE_CONTROL_EXTRA "${PROJECT_SOURCE_DIR}/packaging/debian/plugin-postinst")
  list(APPEND _components plugin-${_plugin})
endforeach()
set(CPACK_COMPONENTS_ALL ${_components})
include(CPack)
