"""pyggml_train: GPT-2 training on the ggml tensor library, driven from Python."""

import os

# ggml's CPU backend runs on OpenMP. Its idle threads spin between graph computes by
# default, which on a shared or busy machine slows every step several times over
# (measured: a char-tiny step 2-5 s spinning vs 1 s passive under load). Passive waiting
# costs nothing measurable when the machine is idle. Must be set before the extension
# (and with it libgomp) loads; a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

from .ggml import Context, Graph, Tensor, devices, ggml_version  # noqa: E402

__all__ = ["Context", "Graph", "Tensor", "devices", "ggml_version"]
__version__ = "0.1.0"
