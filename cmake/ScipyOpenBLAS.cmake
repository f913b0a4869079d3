# ggml's BLAS backend on the OpenBLAS of the scipy-openblas32 wheel (a current OpenBLAS
# that knows recent CPUs, unlike some distributions'). The wheel prefixes every symbol
# with scipy_ and ships a pkg-config file named scipy-openblas.
find_package(Python3 COMPONENTS Interpreter REQUIRED)
execute_process(
  COMMAND "${Python3_EXECUTABLE}" -c
          "import scipy_openblas32 as s; print(s.get_include_dir()); print(s.get_lib_dir())"
  OUTPUT_VARIABLE _sob OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "PYGGML_OPENBLAS=ON needs the scipy-openblas32 wheel: pip install scipy-openblas32")
endif()
string(REPLACE "\n" ";" _sob "${_sob}")
list(GET _sob 0 PYGGML_OPENBLAS_INCLUDE)
list(GET _sob 1 PYGGML_OPENBLAS_LIBDIR)
set(ENV{PKG_CONFIG_PATH} "${PYGGML_OPENBLAS_LIBDIR}/pkgconfig:$ENV{PKG_CONFIG_PATH}")
set(BLA_PREFER_PKGCONFIG ON)
set(BLA_PKGCONFIG_BLAS scipy-openblas)
set(BLAS_INCLUDE_DIRS "${PYGGML_OPENBLAS_INCLUDE}" CACHE PATH "" FORCE)
set(GGML_BLAS ON CACHE BOOL "" FORCE)
set(GGML_BLAS_VENDOR OpenBLAS CACHE STRING "" FORCE)
message(STATUS "pyggml: BLAS backend on scipy-openblas32 (${PYGGML_OPENBLAS_LIBDIR})")

# ggml-blas calls the unprefixed names.
function(pyggml_map_scipy_openblas_symbols target)
  target_compile_definitions(${target} PRIVATE
    cblas_sgemm=scipy_cblas_sgemm
    openblas_set_num_threads=scipy_openblas_set_num_threads
    openblas_get_parallel=scipy_openblas_get_parallel)
  target_link_libraries(${target} PRIVATE "${PYGGML_OPENBLAS_LIBDIR}/libscipy_openblas.so")
endfunction()

# Installed, the extension finds the library in the wheel beside it in site-packages.
function(pyggml_openblas_rpath target)
  set_target_properties(${target} PROPERTIES
    BUILD_RPATH "${PYGGML_OPENBLAS_LIBDIR}"
    INSTALL_RPATH "$ORIGIN/../scipy_openblas32/lib")
endfunction()
