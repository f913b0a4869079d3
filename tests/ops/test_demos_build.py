"""docs/demos.md's build command works on a fresh machine (issue 21): a Python without the
scipy-openblas32 wheel gets ggml's own sgemm and a notice, not a configure error."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers.env import REPO_ROOT

REPO = REPO_ROOT
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"  # no pyenv, no virtualenv: Debian's python3


def fresh_env(tmp_path: Path) -> dict[str, str]:
    """Nothing of ours in the environment; the ggml tree cache (~/.cache) stays reachable."""
    env = {"PATH": SYSTEM_PATH, "HOME": os.environ["HOME"], "LANG": "C.UTF-8"}
    env["PYGGML_CACHE_DIR"] = os.environ.get("PYGGML_CACHE_DIR", "")
    return {k: v for k, v in env.items() if v}


@pytest.mark.slow
def test_the_documented_demo_build_configures_builds_and_passes(tmp_path):
    if shutil.which("cmake", path=SYSTEM_PATH) is None:
        pytest.skip("no cmake on the system PATH")
    python3 = shutil.which("python3", path=SYSTEM_PATH)
    has_wheel = subprocess.run([python3, "-c", "import scipy_openblas32"], capture_output=True)
    build = tmp_path / "build"
    steps = [
        ["cmake", "-S", str(REPO), "-B", str(build)],
        ["nice", "-n", "10", "cmake", "--build", str(build), "-j2"],
        ["ctest", "--test-dir", str(build), "--output-on-failure"],
    ]
    outputs = []
    for cmd in steps:
        done = subprocess.run(cmd, capture_output=True, text=True, env=fresh_env(tmp_path),
                              cwd=REPO, timeout=3600)  # fmt: skip
        assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        outputs.append(done.stdout + done.stderr)
    if has_wheel.returncode != 0:
        assert "no scipy-openblas32 wheel" in outputs[0] and "ggml's own sgemm" in outputs[0]
