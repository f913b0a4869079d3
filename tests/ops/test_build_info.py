"""The built extension says which ggml it is: the pinned upstream commit plus our patch series.

A stale ``_C`` (built before a patch was added or changed) would silently test the wrong
ggml; these tests catch that by comparing against the files in ``csrc/patches``.
"""

from __future__ import annotations

import numpy as np
from helpers.env import REPO_ROOT

import pyggml_train
import pyggml_train as pg
from pyggml_train import ggml as G

# The commit against the pin (cmake/GgmlPin.cmake): tests/ops/test_patch_series.py


def test_patch_list_matches_csrc_patches() -> None:
    _, patches = pg.ggml_version()
    on_disk = sorted(p.name for p in (REPO_ROOT / "csrc" / "patches").glob("*.patch"))
    assert patches == on_disk, (
        f"the extension was built with patches {patches} but csrc/patches holds {on_disk}; "
        "rerun scripts/dev_build.sh"
    )


def test_patches_applied_in_sorted_order() -> None:
    _, patches = pg.ggml_version()
    assert patches == sorted(patches)
    assert all(isinstance(p, str) and p.endswith(".patch") for p in patches)


def test_version_matches_the_loaded_extension() -> None:
    # ggml_version() must report the module that is actually imported, not a cached constant.
    commit, patches = pg.ggml_version()
    assert commit == pyggml_train._C.GGML_COMMIT
    assert patches == list(pyggml_train._C.GGML_PATCHES)
    assert len(commit) == 40 and all(c in "0123456789abcdef" for c in commit)


def test_cpu_device_is_built() -> None:
    assert "CPU" in pg.devices()


def test_listed_patches_took_effect() -> None:
    """The list is written by the build from file names; check that the code changed too
    (a patch step that silently skips files would otherwise go unnoticed)."""
    _, patches = pg.ggml_version()
    listed = " ".join(patches).lower()
    if "norm_back" in listed:
        assert hasattr(pyggml_train._C, "norm_back"), (
            "NORM_BACK patch listed but ggml_norm_back is not bound"
        )
    if "gelu_back" in listed:
        assert hasattr(pyggml_train._C, "gelu_back"), (
            "GELU_BACK patch listed but ggml_gelu_back is not bound"
        )
    if "gelu-exactly" in listed:
        ctx = pg.Context(threads=1)
        x = ctx.input((1,))
        y = G.gelu(x)
        g = ctx.graph(y)
        x.set(np.array([8.495], np.float32))
        g.compute()
        xv = np.float64(np.float32(8.495))
        exact = 0.5 * xv * (1 + np.tanh(np.sqrt(2 / np.pi) * (xv + 0.044715 * xv**3)))
        # the f16 table path returns 8.4921875 here (error 2.9e-3)
        assert abs(float(y.numpy()[0]) - exact) < 1e-5, (
            "exact-GELU patch listed but GELU uses the f16 table"
        )
