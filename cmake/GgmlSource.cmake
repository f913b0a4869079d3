# Find the pinned, pristine ggml tree and make a patched copy of it in the build tree.
#
# Sources, in order:
#   1. PYGGML_GGML_SOURCE_DIR, if set (a pristine checkout of the pinned commit);
#   2. the ggml/ submodule, if it is checked out;
#   3. a cache of the tree from the PyPI sdist PYGGML_SDIST_SPEC (cmake/GgmlPin.cmake),
#      which ships the identical tree under vendor/ggml/; fetched with pip on first use
#      and verified by sha256.
# The patched copy is rebuilt only when the source or the patch series changes, so
# re-configuring is idempotent. Our own source files (csrc/ggml-ext/) are then copied in
# beside ggml's, where the patches hook them into ggml's code and CMake lists.

include("${CMAKE_CURRENT_LIST_DIR}/GgmlPin.cmake")

function(_pyggml_default_cache_dir out_var)
  if(DEFINED ENV{PYGGML_CACHE_DIR})
    set(base "$ENV{PYGGML_CACHE_DIR}")
  elseif(DEFINED ENV{XDG_CACHE_HOME})
    set(base "$ENV{XDG_CACHE_HOME}/pyggml_train")
  elseif(DEFINED ENV{HOME})
    set(base "$ENV{HOME}/.cache/pyggml_train")
  else()
    set(base "${CMAKE_BINARY_DIR}/_deps")
  endif()
  set(${out_var} "${base}" PARENT_SCOPE)
endfunction()

# Download the sdist with pip, check its hash and extract vendor/ggml into dest.
function(_pyggml_fetch_sdist dest)
  find_package(Python3 COMPONENTS Interpreter REQUIRED)
  set(dl_dir "${CMAKE_BINARY_DIR}/_ggml_sdist")
  file(REMOVE_RECURSE "${dl_dir}")
  file(MAKE_DIRECTORY "${dl_dir}")
  message(STATUS "pyggml: ggml/ is empty; fetching ${PYGGML_SDIST_SPEC} with pip (sdist, no deps)")
  # pip prepares the sdist's metadata, which needs scikit-build-core: use the one
  # already installed (fast), else let pip fetch it into an isolated env.
  set(archive "${dl_dir}/${PYGGML_SDIST_FILE}")
  foreach(isolation --no-build-isolation "")
    if(NOT EXISTS "${archive}")
      execute_process(
        COMMAND "${Python3_EXECUTABLE}" -m pip download --no-deps --no-binary :all:
                ${isolation} --disable-pip-version-check
                "${PYGGML_SDIST_SPEC}" -d "${dl_dir}"
        RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    endif()
  endforeach()
  if(NOT EXISTS "${archive}")
    message(FATAL_ERROR
      "pyggml: no ggml source available.\n"
      "The ggml/ submodule is empty and `pip download ${PYGGML_SDIST_SPEC}` failed "
      "(exit ${rc}):\n${err}\n"
      "Fix it one of two ways:\n"
      "  1. check out the submodule: git submodule update --init ggml   (pinned at ${PYGGML_GGML_COMMIT})\n"
      "  2. make the PyPI package index reachable for pip (or point pip at a mirror "
      "with PIP_INDEX_URL) so the sdist ${PYGGML_SDIST_SPEC} can be fetched; or pass "
      "-DPYGGML_GGML_SOURCE_DIR=<pristine ggml tree at ${PYGGML_GGML_COMMIT}>.")
  endif()
  file(SHA256 "${archive}" got)
  if(NOT got STREQUAL PYGGML_SDIST_SHA256)
    message(FATAL_ERROR "pyggml: ${archive} has sha256 ${got}, expected ${PYGGML_SDIST_SHA256}. "
                        "Refusing to build from an unverified ggml tree.")
  endif()
  file(ARCHIVE_EXTRACT INPUT "${archive}" DESTINATION "${dl_dir}/x" PATTERNS "*/vendor/ggml/*")
  file(GLOB roots LIST_DIRECTORIES true "${dl_dir}/x/*")
  list(GET roots 0 root)
  set(tmp_dest "${dest}.tmp")
  file(REMOVE_RECURSE "${tmp_dest}" "${dest}")
  get_filename_component(parent "${dest}" DIRECTORY)
  file(MAKE_DIRECTORY "${parent}")
  file(RENAME "${root}/vendor/ggml" "${tmp_dest}")
  file(WRITE "${tmp_dest}/.pyggml-sdist-sha256" "${PYGGML_SDIST_SHA256}\n")
  file(RENAME "${tmp_dest}" "${dest}")
  file(REMOVE_RECURSE "${dl_dir}")
endfunction()

# Sets PYGGML_GGML_PRISTINE_DIR to a pristine ggml tree at the pinned commit.
function(pyggml_find_pristine_ggml)
  if(PYGGML_GGML_SOURCE_DIR)
    set(src "${PYGGML_GGML_SOURCE_DIR}")
    set(how "PYGGML_GGML_SOURCE_DIR")
  elseif(EXISTS "${PROJECT_SOURCE_DIR}/ggml/CMakeLists.txt")
    set(src "${PROJECT_SOURCE_DIR}/ggml")
    set(how "the ggml/ submodule")
  else()
    _pyggml_default_cache_dir(cache)
    set(src "${cache}/ggml-${PYGGML_GGML_COMMIT}")
    if(NOT EXISTS "${src}/.pyggml-sdist-sha256")
      _pyggml_fetch_sdist("${src}")
    endif()
    set(how "the ${PYGGML_SDIST_SPEC} sdist (cached in ${src})")
  endif()
  if(NOT EXISTS "${src}/include/ggml.h")
    message(FATAL_ERROR "pyggml: ${src} (from ${how}) is not a ggml source tree.")
  endif()
  message(STATUS "pyggml: pristine ggml ${PYGGML_GGML_COMMIT} from ${how}")
  set(PYGGML_GGML_PRISTINE_DIR "${src}" PARENT_SCOPE)
endfunction()

# Copies the pristine tree to ${dest} and applies patches in order, unless a stamp
# shows the same source and the same patch contents were applied already.
function(pyggml_patch_ggml pristine dest)
  file(GLOB patches "${PROJECT_SOURCE_DIR}/csrc/patches/*.patch")
  list(SORT patches)
  set(fingerprint "format=2\nsource=${pristine}\n")
  foreach(p IN LISTS patches)
    file(SHA256 "${p}" h)
    get_filename_component(n "${p}" NAME)
    string(APPEND fingerprint "${n}=${h}\n")
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${p}")
  endforeach()
  set(stamp "${dest}/.pyggml-patch-stamp")
  if(EXISTS "${stamp}")
    file(READ "${stamp}" old)
    if(old STREQUAL fingerprint)
      return()
    endif()
  endif()
  file(REMOVE_RECURSE "${dest}")
  file(COPY "${pristine}/" DESTINATION "${dest}" PATTERN ".git" EXCLUDE)
  find_program(GIT_EXECUTABLE git)
  find_program(PATCH_EXECUTABLE patch)
  foreach(p IN LISTS patches)
    get_filename_component(n "${p}" NAME)
    if(GIT_EXECUTABLE)
      # The copy may sit inside another git work tree (our build dir); git apply would
      # then take paths relative to that tree and silently skip every file. The
      # ceiling makes git treat the copy as a plain directory.
      get_filename_component(dest_parent "${dest}" DIRECTORY)
      set(cmd "${CMAKE_COMMAND}" -E env "GIT_CEILING_DIRECTORIES=${dest_parent}"
              "${GIT_EXECUTABLE}" apply --whitespace=nowarn "${p}")
    elseif(PATCH_EXECUTABLE)
      set(cmd "${PATCH_EXECUTABLE}" -p1 --forward --batch -i "${p}")
    else()
      message(FATAL_ERROR "pyggml: neither git nor patch is installed; one is needed to apply csrc/patches.")
    endif()
    execute_process(COMMAND ${cmd} WORKING_DIRECTORY "${dest}"
                    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
    if(NOT rc EQUAL 0)
      message(FATAL_ERROR "pyggml: patch ${n} does not apply to ggml ${PYGGML_GGML_COMMIT}:\n${out}${err}")
    endif()
    if(GIT_EXECUTABLE)
      execute_process(COMMAND "${CMAKE_COMMAND}" -E env "GIT_CEILING_DIRECTORIES=${dest_parent}"
                              "${GIT_EXECUTABLE}" apply --reverse --check "${p}"
                      WORKING_DIRECTORY "${dest}" RESULT_VARIABLE rc ERROR_VARIABLE err)
      if(NOT rc EQUAL 0)
        message(FATAL_ERROR "pyggml: patch ${n} reported success but is not applied:\n${err}")
      endif()
    endif()
    message(STATUS "pyggml: applied ${n}")
  endforeach()
  file(WRITE "${dest}/.pyggml-patches" "${PYGGML_GGML_COMMIT}\n")
  foreach(p IN LISTS patches)
    get_filename_component(n "${p}" NAME)
    file(APPEND "${dest}/.pyggml-patches" "${n}\n")
  endforeach()
  file(WRITE "${stamp}" "${fingerprint}")
endfunction()

# Copies our own sources into the patched tree: csrc/ggml-ext/<name>/<path> becomes
# src/ggml-<name>/<path> (cpu/amx-bf16.c -> src/ggml-cpu/amx-bf16.c). They are whole files
# of ours, so they live here as ordinary sources rather than as patches that carry their
# text; the patches only hook them in (an #include, a CMake source list entry; ggml-cuda
# and the Vulkan shaders are globbed). configure_file rewrites a copy only when its
# content changed, so an edit rebuilds that file alone, and re-configuring is free.
function(pyggml_copy_ggml_ext pristine dest)
  set(ext_root "${PROJECT_SOURCE_DIR}/csrc/ggml-ext")
  file(GLOB_RECURSE ext_files RELATIVE "${ext_root}" CONFIGURE_DEPENDS "${ext_root}/*")
  list(FILTER ext_files INCLUDE REGEX "/")  # csrc/ggml-ext/README.md stays behind
  foreach(rel IN LISTS ext_files)
    string(REGEX REPLACE "^([^/]+)/" "src/ggml-\\1/" target "${rel}")
    if(EXISTS "${pristine}/${target}")
      message(FATAL_ERROR "pyggml: csrc/ggml-ext/${rel} would replace ggml's own ${target}; "
                          "change an upstream file with a patch in csrc/patches instead.")
    endif()
    configure_file("${ext_root}/${rel}" "${dest}/${target}" COPYONLY)
  endforeach()
endfunction()
