"""The console script in a child process, from the root of the pyggml_train the tests
import (installed, or the source tree with a dev build)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyggml_train
from helpers.env import SHARED, child_env

PACKAGE_ROOT = Path(pyggml_train.__file__).resolve().parents[1]
VERDICT = SHARED / "data" / "the-verdict.txt"  # a small English text


def cli(*args: str) -> subprocess.CompletedProcess:
    env = child_env(OMP_WAIT_POLICY="passive")
    return subprocess.run(
        [sys.executable, "-m", "pyggml_train.cli", *args],
        capture_output=True, text=True, env=env, timeout=300, cwd=PACKAGE_ROOT,
    )  # fmt: skip
