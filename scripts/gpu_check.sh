#!/usr/bin/env bash
# The first run on a GPU: build the extension for the device, run the device tests there
# (tests/ops/test_devices.py: every op of a step and the GPT-2 step against the CPU, no
# node on the CPU), run the training-step benchmark against PyTorch on the same device in
# f32 and bf16, and print one summary: what ran, what passed, how long each part took, and
# the benchmark rows.
#
#   scripts/gpu_check.sh                         # CUDA, sized for an H100 (sm_90)
#   scripts/gpu_check.sh --device vulkan         # any Vulkan GPU (AMD, Intel, NVIDIA)
#   GGML_VK_VISIBLE_DEVICES=0 scripts/gpu_check.sh --device vulkan --bench smoke --require
#                                                # Mesa's lavapipe, as CI runs it
#
# --bench CONFIGS: benchmarks/configs.py names (default C,C1024B8: GPT-2 124M at T=256, B=4
#   and at T=1024, B=8), or "smoke" for a tiny model (a CPU-type device, where speed says
#   nothing), or "none".
# --require: a missing device is a failure (exit 1) instead of a skip.
# Without the device it says so in one line and exits 0; without the device's compiler it
# exits 2. Exit 1 if the build, a test or the benchmark fails.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

device=cuda bench=C,C1024B8 require=0
while (($#)); do
  case $1 in
    --device) device=$2; shift 2 ;;
    --bench) bench=$2; shift 2 ;;
    --require) require=1; shift ;;
    *) echo "gpu_check: unknown argument $1 (see the header of $0)" >&2; exit 2 ;;
  esac
done

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
skip() {  # skip REASON: no device here; a failure under --require
  echo "gpu_check: skipped: $1"
  exit $((require ? 1 : 0))
}

case $device in
  cuda)
    gpu=$(nvidia-smi -L 2>/dev/null | head -1 || true)
    [[ -n "$gpu" ]] || skip "no NVIDIA GPU here (nvidia-smi lists none)"
    if ! command -v nvcc >/dev/null; then
      echo "gpu_check: $gpu is present but nvcc is not on PATH: install the CUDA toolkit" >&2
      exit 2
    fi
    ;;
  vulkan)
    command -v glslc >/dev/null || {
      echo "gpu_check: glslc is not on PATH: install the Vulkan SDK (Debian: scripts/install_vulkan.sh)" >&2
      exit 2
    }
    gpu=$(vulkaninfo --summary 2>/dev/null | sed -n 's/^\s*deviceName\s*=\s*//p' | head -1 || true)
    [[ -n "$gpu" ]] || skip "no Vulkan device here (vulkaninfo --summary lists none)"
    ;;
  *) echo "gpu_check: --device must be cuda or vulkan, got $device" >&2; exit 2 ;;
esac

so=""
build() {
  pip install -q pybind11
  if [[ $device == vulkan ]]; then
    so=$(scripts/vulkan_build.sh "$root/build/vulkan")  # cached outside the clone
    return
  fi
  cmake -S . -B build/cuda -DPYGGML_BUILD_PYTHON=ON -DPYGGML_BUILD_DEMOS=OFF -DGGML_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DPYGGML_STUDIO_ASSETS=OFF \
    -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v python)" >/dev/null &&
    cmake --build build/cuda -j"$(nproc)" --target _C &&
    so=$(ls build/cuda/_C*.so)
}
# a copy of the package with the device build in it, first on the path of every test
pkg=$(mktemp -d)
trap 'rm -rf "$pkg"' EXIT
package() {
  cp -r pyggml_train benchmarks "$pkg/" && rm -f "$pkg"/pyggml_train/_C*.so && cp "$so" "$pkg/pyggml_train/"
}
has_device() {
  PYTHONPATH="$pkg" python -P -c "
from pyggml_train import ggml
import sys
sys.exit(0 if any(d.lower().startswith('$device') for d in ggml.devices()) else 1)"
}
device_tests() {
  PYGGML_REQUIRE_DEVICES=$device PYTHONPATH="$pkg" pytest -q -p no:cacheprovider tests/ops/test_devices.py
}
benchmark() {
  local args=(--device "$device" --rounds 1 --steps 3 --frameworks ours,ours-bf16,torch,torch-bf16
    --seq-scaling '' --out "$pkg/benchmarks.md" --json "$pkg/benchmarks.json")
  if [[ $bench == smoke ]]; then args+=(--smoke); else args+=(--configs "$bench"); fi
  (cd "$pkg" && PYTHONPATH="$pkg" python -m benchmarks.run "${args[@]}") >"$pkg/benchmark.log" 2>&1 ||
    { tail -20 "$pkg/benchmark.log"; return 1; }
}

part build build
if ((status == 0)); then
  package
  has_device || skip "the $device build sees no $device device ($gpu is listed by the driver; docs/devices.md)"
  part tests device_tests
  if [[ $bench != none ]]; then part benchmark benchmark; fi
fi
echo
echo "gpu_check summary ($device: $gpu)"
printf '  %s\n' "${summary[@]}"
if [[ -f "$pkg/benchmark.log" ]]; then
  echo
  grep -E '^\| ' "$pkg/benchmark.log" || true
fi
exit $status
