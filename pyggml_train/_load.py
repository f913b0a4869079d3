"""Import the compiled extension, finding the OpenBLAS it links wherever pip put it.

The extension's rpath points at ``scipy_openblas32`` beside it in site-packages. When that
wheel sits in another site directory (a user site, a layered environment), the library is
loaded from the wheel's own location first; when the wheel is missing, the error says so.
A source checkout without a build (Python run from the repository root after
``pip install .`` imports the checkout, not the installed copy) gets one line on what to do.
"""

from __future__ import annotations

import ctypes
import importlib
import os
from pathlib import Path
from types import ModuleType


def _unbuilt_checkout(err: ImportError) -> ImportError | None:
    """The error to raise when this package is a source tree with no compiled _C."""
    package = Path(__file__).resolve().parent
    if err.name != "pyggml_train._C" or not (package.parent / "pyproject.toml").is_file():
        return None
    return ImportError(
        f"pyggml_train is imported from the source tree {package}, which has no compiled "
        "extension (from the repository root the folder shadows an installed copy): run "
        "Python from another folder, or build in place with scripts/dev_build.sh "
        "(README: Developing)"
    )


# ggml's CPU threads meet at an OpenMP barrier after every graph node. libgomp's default
# spins there before sleeping, which on a busy machine keeps a core from the thread that
# has the work: sampling 200 tokens on 2 threads took 12-51 s spinning and 1.0 s sleeping
# (docs/benchmarks.md, "Threads on a busy machine"). A value the user set is kept.
OMP_WAIT_POLICY = "passive"


def load_extension() -> ModuleType:
    # read by libgomp when the extension loads it, so before the import
    os.environ.setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)
    try:
        return importlib.import_module("pyggml_train._C")
    except ImportError as err:
        unbuilt = _unbuilt_checkout(err)
        if unbuilt is not None:
            raise unbuilt from None
        if "scipy_openblas" not in str(err):
            raise
        first_error = err
    try:
        import scipy_openblas32
    except ImportError:
        raise ImportError(
            f"{first_error}: pyggml_train's CPU matmuls need the scipy-openblas32 package "
            "(pip install scipy-openblas32)"
        ) from first_error
    library = os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so")
    ctypes.CDLL(library, mode=ctypes.RTLD_GLOBAL)
    return importlib.import_module("pyggml_train._C")
