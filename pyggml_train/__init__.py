"""pyggml_train: GPT-2 training on the ggml tensor library, driven from Python."""

from .ggml import Context, Graph, Tensor, cpu_blas, devices, ggml_version

__all__ = ["Context", "Graph", "Tensor", "cpu_blas", "devices", "ggml_version"]
__version__ = "0.1.0"
