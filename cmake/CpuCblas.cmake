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
  message(FATAL_ERROR
    "PYGGML_CPU_BLAS=ON (the default) needs the scipy-openblas32 wheel for ${Python3_EXECUTABLE}: "
    "pip install scipy-openblas32, or configure with -DPYGGML_CPU_BLAS=OFF to use ggml's own sgemm")
endif()
string(REPLACE "\n" ";" _sob "${_sob}")
list(GET _sob 0 PYGGML_OPENBLAS_INCLUDE)
list(GET _sob 1 PYGGML_OPENBLAS_LIBDIR)
set(PYGGML_OPENBLAS_LIBRARY "${PYGGML_OPENBLAS_LIBDIR}/libscipy_openblas.so")
if(NOT EXISTS "${PYGGML_OPENBLAS_LIBRARY}")
  message(FATAL_ERROR "scipy-openblas32 has no ${PYGGML_OPENBLAS_LIBRARY}; configure with -DPYGGML_CPU_BLAS=OFF")
endif()
message(STATUS "pyggml: CPU matmuls on the OpenBLAS of scipy-openblas32 (${PYGGML_OPENBLAS_LIBDIR})")

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
