# The ggml pin: the upstream commit csrc/patches applies to, and the PyPI sdist that ships
# the identical tree (the fallback source when the ggml/ submodule is empty).
#
# The only place the pin is written: cmake/GgmlSource.cmake includes this file,
# scripts/ggml_patch_workspace.sh and the tests (tests/ops/test_patch_series.py,
# tests/ops/test_build_info.py) read it, the docs point here. A pin bump changes this file and
# the ggml/ submodule; tests/ops/test_patch_series.py checks that the two agree.
set(PYGGML_GGML_COMMIT "eced84c86f8b012c752c016f7fe789adea168e1e")
set(PYGGML_GGML_VERSION "v0.15.3")
set(PYGGML_SDIST_SPEC "ggml-python==0.0.45")
set(PYGGML_SDIST_FILE "ggml_python-0.0.45.tar.gz")
set(PYGGML_SDIST_SHA256 "10aac52075cf3c7ef2b00d6c35b1c23f7b018dbeff8ae8df67339b4be1166f05")
