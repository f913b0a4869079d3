#!/usr/bin/env bash
# Build the _C extension with ggml's Vulkan backend and our Vulkan ops (-DGGML_VULKAN=ON)
# and print the path of the built module.
#
#   scripts/vulkan_build.sh [BUILD_DIR]      (default build/vulkan)
#
# The build is slow: ggml-vulkan compiles ~130 shader files with glslc into C++ sources,
# then an 18k-line backend (about 25 minutes on 2 shared cores). So the module is cached
# outside the clone, under a key of everything it is built from (CMake files, csrc/
# bindings, patches and ggml-ext sources, the C++ compiler, glslc, Python's ABI); a warm
# cache answers in a second. Needs the Debian packages of scripts/install_vulkan.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build/vulkan}
cache="${PYGGML_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pyggml_train}/vulkan-ext"
soabi=$(python -c "import sysconfig; print(sysconfig.get_config_var('SOABI'))")

key=$(
  cd "$root"
  find CMakeLists.txt cmake csrc/bindings csrc/patches csrc/ggml-ext -type f -print0 | sort -z | xargs -0 sha256sum
  c++ --version | head -1
  glslc --version | head -1
  python -m pybind11 --version
  echo "$soabi"
)
key=$(echo "$key" | sha256sum | cut -c1-16)
cached="$cache/$key/_C.$soabi.so"
if [[ ! -f "$cached" ]]; then
  echo "vulkan_build: no cached module for $key; building into $build (slow, once)" >&2
  cmake -S "$root" -B "$build" -DPYGGML_BUILD_PYTHON=ON -DPYGGML_BUILD_DEMOS=OFF -DGGML_VULKAN=ON \
    -DPYGGML_STUDIO_ASSETS=OFF -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" \
    -DPython_EXECUTABLE="$(command -v python)" >"$build.configure.log" 2>&1 \
    || { cat "$build.configure.log" >&2; exit 1; }
  cmake --build "$build" -j"$(nproc)" --target _C >&2
  mkdir -p "$cache/$key.tmp.$$"
  cp "$build/_C.$soabi.so" "$cache/$key.tmp.$$/"
  rm -rf "${cache:?}/$key" && mv "$cache/$key.tmp.$$" "$cache/$key"
fi
echo "$cached"
