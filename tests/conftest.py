"""Shared test setup: point tiktoken at the offline GPT-2 BPE cache in ../shared."""

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT / ".." / "shared"

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(SHARED / "tiktoken_cache"))
# Child processes (`python -m pyggml_train.cli ...` run from the repo root) must import the
# package the tests import, not the uncompiled sources in the working directory: with pip
# install, the source tree has no _C extension. PYTHONPATH (a dev build) still comes first.
os.environ["PYTHONSAFEPATH"] = "1"


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
