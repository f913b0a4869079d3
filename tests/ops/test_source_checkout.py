"""The README's snippet run from a source checkout without a build (issue 21 item 6): the
folder shadows the installed package, and the import says what to do in one line."""

import shutil
import subprocess
import sys

import pytest
from helpers.env import REPO_ROOT

pytestmark = pytest.mark.slow  # child processes


PACKAGE = REPO_ROOT / "pyggml_train"


def test_an_unbuilt_checkout_says_how_to_build_or_where_to_run(tmp_path):
    checkout = tmp_path / "checkout"
    shutil.copytree(PACKAGE, checkout / "pyggml_train", ignore=shutil.ignore_patterns("*.so"))
    (checkout / "pyproject.toml").write_text("[project]\nname = 'pyggml_train'\n")
    done = subprocess.run(
        [sys.executable, "-c", "import pyggml_train"],
        capture_output=True, text=True, cwd=checkout, timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: pyggml_train is imported from the source tree")
    assert "scripts/dev_build.sh" in last and "another folder" in last
    assert "During handling" not in done.stderr  # one cause, not a chain
