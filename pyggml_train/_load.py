"""Import the compiled extension, finding the OpenBLAS it links wherever pip put it.

The extension's rpath points at ``scipy_openblas32`` beside it in site-packages. When that
wheel sits in another site directory (a user site, a layered environment), the library is
loaded from the wheel's own location first; when the wheel is missing, the error says so.
"""

from __future__ import annotations

import ctypes
import importlib
import os
from types import ModuleType


def load_extension() -> ModuleType:
    try:
        return importlib.import_module("pyggml_train._C")
    except ImportError as err:
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
