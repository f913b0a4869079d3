# The CPU backend's f32 MUL_MAT / OUT_PROD on the sgemm of the scipy-openblas32 wheel
# (patch 0011): a current OpenBLAS (AVX2 and AVX-512 kernels), installed from the package
# registry like any other dependency. Its symbols carry a scipy_ prefix, mapped here to the
# plain CBLAS names the patch calls. Each ggml thread calls the sgemm single-threaded on
# its share of the output, so there is one thread pool, ggml's.
find_package(Python3 COMPONENTS Interpreter REQUIRED)
execute_process(
  COMMAND "${Python3_EXECUTABLE}" -c
          "import scipy_openblas32 as s; print(s.get_include_dir()); print(s.get_lib_dir())"
  OUTPUT_VARIABLE _sob OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc ERROR_QUIET)
if(NOT _rc EQUAL 0)
  if(PYGGML_BUILD_PYTHON)  # a pip build has the wheel as a build requirement: a real error
    message(FATAL_ERROR
      "PYGGML_CPU_BLAS=ON (the default) needs the scipy-openblas32 wheel for ${Python3_EXECUTABLE}: "
      "pip install scipy-openblas32, or configure with -DPYGGML_CPU_BLAS=OFF to use ggml's own sgemm")
  endif()
  # a plain CMake build (the C++ demos, docs/demos.md) works on a fresh machine without it
  message(NOTICE
    "pyggml: no scipy-openblas32 wheel for ${Python3_EXECUTABLE}, so the CPU's f32 matmuls run on "
    "ggml's own sgemm. For OpenBLAS: ${Python3_EXECUTABLE} -m pip install scipy-openblas32, then "
    "configure again")
  set(PYGGML_CPU_BLAS OFF)
  return()
endif()
string(REPLACE "\n" ";" _sob "${_sob}")
list(GET _sob 0 PYGGML_OPENBLAS_INCLUDE)
list(GET _sob 1 PYGGML_OPENBLAS_LIBDIR)
set(PYGGML_OPENBLAS_LIBRARY "${PYGGML_OPENBLAS_LIBDIR}/libscipy_openblas.so")
if(NOT EXISTS "${PYGGML_OPENBLAS_LIBRARY}")
  message(FATAL_ERROR "scipy-openblas32 has no ${PYGGML_OPENBLAS_LIBRARY}; configure with -DPYGGML_CPU_BLAS=OFF")
endif()
message(STATUS "pyggml: CPU matmuls on the OpenBLAS of scipy-openblas32 (${PYGGML_OPENBLAS_LIBDIR})")
# pip builds in a fresh environment every time (a reinstall, an extra such as .[studio]), so
# the wheel's path changes with each build; compiled against that path, every ggml-cpu
# object would be out of date. Headers and library are copied into the build tree instead,
# rewritten only when their content changes, so the previous build's objects stay valid.
set(_pyggml_openblas_copy "${CMAKE_BINARY_DIR}/scipy-openblas32")
file(GLOB _pyggml_openblas_headers "${PYGGML_OPENBLAS_INCLUDE}/*.h")
foreach(_header ${_pyggml_openblas_headers})
  get_filename_component(_name "${_header}" NAME)
  configure_file("${_header}" "${_pyggml_openblas_copy}/include/${_name}" COPYONLY)
endforeach()
configure_file("${PYGGML_OPENBLAS_LIBRARY}" "${_pyggml_openblas_copy}/lib/libscipy_openblas.so" COPYONLY)
set(PYGGML_OPENBLAS_INCLUDE "${_pyggml_openblas_copy}/include")
set(PYGGML_OPENBLAS_LIBRARY "${_pyggml_openblas_copy}/lib/libscipy_openblas.so")

# After add_subdirectory(ggml): compile the patch's sgemm path into ggml-cpu, and let the
# MUL_MAT backward in ggml-base use out_prod, which then needs no transposed copies.
function(pyggml_enable_cpu_cblas)
  target_compile_definitions(ggml-cpu PRIVATE
    GGML_CPU_CBLAS
    cblas_sgemm=scipy_cblas_sgemm
    openblas_set_num_threads=scipy_openblas_set_num_threads
    openblas_get_corename=scipy_openblas_get_corename)
  target_include_directories(ggml-cpu PRIVATE "${PYGGML_OPENBLAS_INCLUDE}")
  target_link_libraries(ggml-cpu PRIVATE "${PYGGML_OPENBLAS_LIBRARY}")
  target_compile_definitions(ggml-base PRIVATE GGML_MUL_MAT_BACK_OUT_PROD)
endfunction()

# Installed, the extension finds the library in the wheel beside it in site-packages.
function(pyggml_cpu_cblas_rpath target)
  set_target_properties(${target} PROPERTIES
    BUILD_RPATH "${PYGGML_OPENBLAS_LIBDIR}"
    INSTALL_RPATH "$ORIGIN/../scipy_openblas32/lib")
endfunction()
