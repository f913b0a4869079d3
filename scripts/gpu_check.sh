#!/usr/bin/env bash
# The first run on an NVIDIA GPU (sized for an H100): build the extension with CUDA
# (-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90, into build/cuda), run the device tests
# on CUDA (tests/ops/test_devices.py: every op of a step and the GPT-2 step against the CPU,
# no node on the CPU), and print one summary: what ran, what passed, how long each part took.
#
#   scripts/gpu_check.sh
#
# Without a GPU it says so in one line and exits 0 (CI runs it that way); without nvcc
# beside a GPU it exits 2. Exit 1 if the build or a test fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

summary=()
status=0
part() {  # part NAME COMMAND...: run, time and record one part
  local name=$1 t0=$SECONDS
  shift
  if "$@"; then
    summary+=("$(printf '%-12s ok      %5ds' "$name" $((SECONDS - t0)))")
  else
    summary+=("$(printf '%-12s FAILED  %5ds' "$name" $((SECONDS - t0)))")
    status=1
  fi
}

gpu=$(nvidia-smi -L 2>/dev/null | head -1 || true)
if [[ -z "$gpu" ]]; then
  echo "gpu_check: skipped: no NVIDIA GPU here (nvidia-smi lists none)"
  exit 0
fi
if ! command -v nvcc >/dev/null; then
  echo "gpu_check: $gpu is present but nvcc is not on PATH: install the CUDA toolkit" >&2
  exit 2
fi

build() {
  pip install -q pybind11
  cmake -S . -B build/cuda -DPYGGML_BUILD_PYTHON=ON -DPYGGML_BUILD_DEMOS=OFF -DGGML_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DPYGGML_STUDIO_ASSETS=OFF \
    -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v python)" >/dev/null &&
    cmake --build build/cuda -j"$(nproc)" --target _C
}
pkg=$(mktemp -d)
device_tests() {
  cp -r pyggml_train "$pkg/" && rm -f "$pkg"/pyggml_train/_C*.so && cp build/cuda/_C*.so "$pkg/pyggml_train/" &&
    PYGGML_REQUIRE_DEVICES=cuda PYTHONPATH="$pkg" python -m pytest -q tests/ops/test_devices.py
}

part build build
if ((status == 0)); then
  part tests device_tests
fi
echo
echo "gpu_check summary ($gpu)"
printf '  %s\n' "${summary[@]}"
echo "  benchmark    not run: benchmarks/run.py measures the CPU only so far"
exit $status
