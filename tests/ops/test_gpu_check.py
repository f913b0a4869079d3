"""scripts/gpu_check.sh and the benchmark's --device: every part that runs without a GPU.

The whole script (build, device tests, benchmark, summary) runs in CI on lavapipe:
`.ci/run` calls `scripts/gpu_check.sh --device vulkan --bench smoke --require`.
"""

import shutil
import subprocess
import sys

import pytest
from helpers.env import REPO_ROOT

from pyggml_train import ggml as G

SCRIPT = REPO_ROOT / "scripts" / "gpu_check.sh"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_an_unknown_device_is_refused_with_the_choices():
    r = run("--device", "metal")
    assert r.returncode == 2
    assert "--device must be cuda or vulkan, got metal" in r.stderr


def test_a_missing_gpu_fails_only_when_required():
    if shutil.which("nvidia-smi"):
        pytest.skip("nvidia-smi is present: scripts/gpu_check.sh would build and run")
    skipped = "gpu_check: skipped: no NVIDIA GPU here (nvidia-smi lists none)"
    relaxed, required = run(), run("--require")
    assert (relaxed.returncode, relaxed.stdout.strip()) == (0, skipped)
    assert (required.returncode, required.stdout.strip()) == (1, skipped)


def test_benchmark_rows_say_why_a_framework_has_no_such_device():
    sys.path.append(str(REPO_ROOT))
    from benchmarks.configs import CONFIGS
    from benchmarks.run import measure_one, render_markdown

    smoke = CONFIGS["smoke"]
    torch_row = measure_one("torch", smoke, 1, 1, 0, device="vulkan")
    assert torch_row["skipped"] == "PyTorch has no vulkan device"
    if any(d.lower().startswith("cuda") for d in G.devices()):
        pytest.skip("this build has a CUDA device: the ours row would run")
    ours_row = measure_one("ours", smoke, 1, 1, 0, device="cuda")
    assert "-DGGML_CUDA=ON" in ours_row["skipped"] and "\n" not in ours_row["skipped"]
    result = {
        "date": "today",
        "device": "cuda",
        "machine": {"cpu": "cpu", "cores": "2", "simd": ""},
        "threads": 1,
        "steps": 1,
        "warmup": 0,
        "rounds": 1,
        "matmul_peak": {},
        "rows": [ours_row, torch_row],
    }
    table = render_markdown(result)
    assert "(cuda, peak RSS = host memory)" in table
    assert f"| smoke | ours | not run: {ours_row['skipped']} |" in table
    assert "| smoke | torch | not run: PyTorch has no vulkan device |" in table
