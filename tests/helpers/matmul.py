"""Products for the kernel record (patch 0019): bf16 rounding as ggml does it, a weight
product with the record reset first, and which kernels ran it. Shared by the kernel,
op and bf16 GEMM tests."""

from __future__ import annotations

import numpy as np

from pyggml_train import ggml as G
from pyggml_train import kernels as K


def bf16_round(x: np.ndarray) -> np.ndarray:
    """f32 -> nearest bf16 (ties to even), as f32: what ggml's cast and from_float give."""
    u = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32)


def weight_product(dtype: str, w: np.ndarray, x: np.ndarray, threads: int) -> np.ndarray:
    """x (..., m, k) @ cast(w, dtype).T for a weight w (n, k) and f32 activations x, with
    patch 0019's record reset first (so it names this product's kernels alone)."""
    ctx = G.Context("cpu", threads)
    wt, xt = ctx.input(w.shape), ctx.input(x.shape)
    out = G.mul_mat(wt if dtype == "f32" else G.cast(wt, dtype), xt)
    graph = ctx.graph(out)
    wt.set(w)
    xt.set(x)
    K.reset_matmul_stats()
    graph.compute()
    return out.numpy()


def ran(op: str, dtype: str) -> dict[str, int]:
    """kernel -> multiply-adds of ``op`` products with src0 ``dtype`` since the last reset."""
    return {s["kernel"]: s["macs"] for s in K.matmul_stats() if (s["op"], s["type"]) == (op, dtype)}
