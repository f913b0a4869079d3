"""The environment of the tests and of the processes they start: the repo and the shared
data beside it, tiktoken's offline GPT-2 BPE cache, children that import the tested package,
and skips that name the missing component. Importing this module sets the environment up
(conftest.py does so for every test; the drills in scripts/ through their helpers)."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT / ".." / "shared"

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken_cache"))
# the named datasets' files the tests train on (tiny shakespeare, the verdict), checked
# against their recorded checksums like any other copy; nothing is downloaded
os.environ.setdefault("PYGGML_DATASETS", str((SHARED / "data").resolve()))
# Child processes (`python -m pyggml_train.cli ...` run from the repo root) must import the
# package the tests import, not the uncompiled sources in the working directory: with pip
# install, the source tree has no _C extension. PYTHONPATH (a dev build) still comes first.
os.environ["PYTHONSAFEPATH"] = "1"


def child_env(**overrides: str) -> dict[str, str]:
    """The environment of a child Python process that must import the pyggml_train these
    tests import (an installed one, or the source tree with a dev build) from any working
    directory: that copy's root first on PYTHONPATH, then the inherited entries made
    absolute; plus ``overrides``."""
    import pyggml_train

    root = str(Path(pyggml_train.__file__).resolve().parents[1])
    inherited = [
        os.path.abspath(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p
    ]
    path = os.pathsep.join(dict.fromkeys([root, *inherited]))
    return {**os.environ, "PYTHONPATH": path, **overrides}


def require(available: bool, why: str) -> None:
    """Skip a test whose optional component is missing, saying which and how to get it.

    CI sets PYGGML_REQUIRE_ALL=1 and installs every component, so there a missing one
    fails the test instead of hiding it behind a skip."""
    import pytest

    if available:
        return
    if os.environ.get("PYGGML_REQUIRE_ALL") == "1":
        pytest.fail(f"required component missing (PYGGML_REQUIRE_ALL=1): {why}")
    pytest.skip(why)
