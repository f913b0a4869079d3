"""The extension finds the OpenBLAS of the scipy-openblas32 wheel even when the package is
not installed beside it, and says what is missing when the wheel is absent."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pyggml_train

pytestmark = pytest.mark.slow  # imports the package in subprocesses

PACKAGE = Path(pyggml_train.__file__).resolve().parent
BLOCK_WHEEL = (
    "import sys\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name == 'scipy_openblas32':\n"
    "            raise ImportError('blocked by the test')\n"
    "sys.meta_path.insert(0, Block())\n"
)


def _copy_package(tmp_path: Path) -> Path:
    shutil.copytree(
        PACKAGE, tmp_path / "pyggml_train", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path


def _import(root: Path, prelude: str = "") -> subprocess.CompletedProcess:
    code = prelude + "import pyggml_train; print(pyggml_train.cpu_blas())"
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        # OpenBLAS's kernel choice follows OPENBLAS_CORETYPE where the machine sets it
        env={
            "PYTHONPATH": str(root),
            "PATH": "/usr/bin:/bin",
            **{k: v for k, v in os.environ.items() if k.startswith("OPENBLAS_")},
        },
        capture_output=True,
        text=True,
    )


def _installed_layout() -> bool:
    """True for an extension that finds OpenBLAS only relative to itself (pip install)."""
    (so,) = PACKAGE.glob("_C*.so")
    return b"$ORIGIN/../scipy_openblas32" in so.read_bytes()


def test_imports_away_from_the_wheel(tmp_path: Path) -> None:
    result = _import(_copy_package(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == pyggml_train.cpu_blas()


def test_missing_wheel_is_named(tmp_path: Path) -> None:
    result = _import(_copy_package(tmp_path), BLOCK_WHEEL)
    if _installed_layout():
        assert result.returncode != 0
        assert "pip install scipy-openblas32" in result.stderr, result.stderr
    else:  # a development build links the wheel by absolute path and needs no lookup
        assert result.returncode == 0, result.stderr
