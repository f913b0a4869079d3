#!/usr/bin/env bash
# Incremental developer build: (re)configure build/dev (re-applying csrc/patches when
# they changed), build the _C extension and drop it into pyggml_train/ so that
# `PYTHONPATH=. pytest` uses it. Serialized with flock so parallel callers do not
# trample each other's build.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${PYGGML_DEV_BUILD_DIR:-$root/build/dev}"
mkdir -p "$build"
exec 9>"$build/.lock"
flock 9
cmake -S "$root" -B "$build" -DPYGGML_BUILD_PYTHON=ON -DPYGGML_BUILD_DEMOS="${PYGGML_BUILD_DEMOS:-OFF}" \
  -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v python)" >"$build/configure.log" \
  || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j"$(nproc)" --target _C "$@"
# copy then rename: a running process keeps its mapping of the old file intact
for so in "$build"/_C*.so; do
  cp "$so" "$root/pyggml_train/.$(basename "$so").tmp"
  mv -f "$root/pyggml_train/.$(basename "$so").tmp" "$root/pyggml_train/$(basename "$so")"
done
echo "dev build ok: $(ls "$root"/pyggml_train/_C*.so)"
