"""Frozen weights stored in bf16 or q8_0 (a LoRA run's base, --base-dtype): set from f32
exactly as numpy's own rounding and block quantization say, and the gradient of a matmul's
input flows through them (patch 0023 for q8_0) while they get none.

The input gradient is checked against float64 ``R @ W`` with W the values the tensor holds,
and that analytic formula against central differences of the float64 forward. A q8_0
weight's gradient path multiplies an f32 copy of it (f32 precision); a bf16 weight's
multiplies in bf16, which rounds the incoming gradient to bf16 (8 significant bits).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.gradcheck import FD_RTOL, assert_close
from helpers.matmul import bf16_round

from pyggml_train import ggml as G

RTOL = {"q8_0": 1e-5, "bf16": 1e-2}


def q8_0_round(x: np.ndarray) -> np.ndarray:
    """ggml's q8_0: blocks of 32 along a row, scale d = max|x| / 127 held in f16, values
    round(x / d) in int8; the dequantized result d * q."""
    blocks = x.astype(np.float32).reshape(-1, 32)
    d = np.abs(blocks).max(axis=1, keepdims=True) / 127.0
    inv = np.where(d > 0, 1.0 / np.where(d > 0, d, 1.0), 0.0).astype(np.float32)
    v = blocks * inv
    q = np.sign(v) * np.floor(np.abs(v) + 0.5)  # C's roundf: halves away from zero
    return (q * d.astype(np.float16).astype(np.float32)).reshape(x.shape)


ROUND = {"bf16": bf16_round, "q8_0": q8_0_round}


@pytest.mark.parametrize("dtype", ["bf16", "q8_0"])
def test_a_frozen_weight_holds_the_rounded_values(dtype):
    w = np.random.default_rng(0).normal(0, 0.5, (24, 96)).astype(np.float32)
    t = G.Context().tensor(w.shape, dtype)
    t.set(w)
    assert t.dtype == dtype and not t.is_param
    np.testing.assert_array_equal(t.numpy(), ROUND[dtype](w))


@pytest.mark.parametrize("dtype", ["bf16", "q8_0"])
@pytest.mark.parametrize("rows, n_in, n_out", [(6, 64, 40), (40, 96, 64)])
def test_the_input_gradient_flows_through_a_frozen_weight(dtype, rows, n_in, n_out):
    rng = np.random.default_rng(rows)
    ctx = G.Context(threads=2)
    w = ctx.tensor((n_out, n_in), dtype, name="frozen")  # (out, in), as a Linear holds it
    x = ctx.param((rows, n_in), name="x")
    r = ctx.input((rows, n_out))
    loss = G.sum(G.mul(G.linear(x, w), r)).set_loss()
    graph = ctx.graph(loss, backward=True)
    w.set(rng.normal(0, 0.5, (n_out, n_in)).astype(np.float32))
    x0 = rng.normal(0, 1.0, (rows, n_in))
    r0 = rng.normal(0, 1.0, (rows, n_out))
    x.set(x0.astype(np.float32))
    r.set(r0.astype(np.float32))
    graph.reset_grads()
    graph.compute()
    held = w.numpy().astype(np.float64)  # the values the product multiplies by
    want = r0 @ held  # d/dx sum(r * (x @ W^T)), float64
    assert_close(graph.grad(x), want, RTOL[dtype], f"input gradient through {dtype}")
    with pytest.raises(ValueError, match="not a parameter"):
        graph.grad_accumulator(w)  # the frozen weight has no accumulator

    def f(xv: np.ndarray) -> float:
        return float(np.sum(r0 * (xv @ held.T)))

    step = 1e-6
    for i, j in [(0, 0), (rows - 1, n_in - 1), (rows // 2, n_in // 3)]:
        up, down = x0.copy(), x0.copy()
        up[i, j] += step
        down[i, j] -= step
        fd = (f(up) - f(down)) / (2 * step)
        assert abs(fd - want[i, j]) <= FD_RTOL * np.abs(want).max() + 1e-6


def test_q8_0_needs_rows_in_blocks_of_32():
    with pytest.raises(ValueError, match="blocks of 32.*got 40"):
        G.Context().tensor((8, 40), "q8_0")
