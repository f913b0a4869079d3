"""The patched backward ops (NORM_BACK, GELU_BACK) and the mul_mat backward at GPT-2 sizes.

Small gradchecks run on one thread and fit in one SIMD tail; here the tensors are big
enough (512 x 768) that the CPU backend splits rows across threads and uses the vector
loops. Row-parallel ops must give bit-identical results for any thread count (each row is
computed by one thread in a fixed order), and all must match float64 numpy.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.gradcheck import GRAD_RTOL, GRAD_RTOL_LOOSE, assert_close
from reference import ops_numpy as ref

import pyggml_train as pg
from pyggml_train import ggml as G

ROWS, COLS, OUT = 512, 768, 256
THREADS = (2, 4)
EPS = 1e-5


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x": (rng.standard_normal((ROWS, COLS)) * 2 + 0.5).astype(np.float32),
        "dy": rng.standard_normal((ROWS, COLS)).astype(np.float32),
        "w": (rng.standard_normal((OUT, COLS)) / np.sqrt(COLS)).astype(np.float32),
        "r": rng.standard_normal((ROWS, OUT)).astype(np.float32),
        "flat": (1000.0 + 1e-4 * rng.standard_normal((64, COLS))).astype(np.float32),
    }


def run_binary(op, a: np.ndarray, b: np.ndarray, threads: int) -> np.ndarray:
    """``op(a, b)`` as a one-node graph computed with ``threads`` threads."""
    ctx = pg.Context(threads=threads)
    ta, tb = ctx.input(a.shape), ctx.input(b.shape)
    out = op(ta, tb)
    g = ctx.graph(out)
    ta.set(a)
    tb.set(b)
    g.compute()
    return out.numpy()


def f64(*arrays: np.ndarray) -> list[np.ndarray]:
    return [a.astype(np.float64) for a in arrays]


def test_norm_back_threads(data: dict[str, np.ndarray]) -> None:
    dy, x = data["dy"], data["x"]
    one = run_binary(lambda g, t: G.norm_back(g, t, EPS), dy, x, 1)
    assert_close(one, ref.norm_grad(*f64(dy, x), EPS), GRAD_RTOL, "norm_back")
    for n in THREADS:
        np.testing.assert_array_equal(
            run_binary(lambda g, t: G.norm_back(g, t, EPS), dy, x, n), one
        )


@pytest.mark.parametrize(
    ("name", "grad"), [("gelu_back", ref.gelu_grad), ("gelu_erf_back", ref.gelu_erf_grad)]
)
def test_gelu_back_threads(data: dict[str, np.ndarray], name: str, grad) -> None:
    dy, x = data["dy"], data["x"]
    op = getattr(G, name)
    one = run_binary(op, dy, x, 1)
    want = grad(*f64(dy, x))
    np.testing.assert_allclose(
        one, want, rtol=GRAD_RTOL, atol=GRAD_RTOL * 1e-2 * np.abs(want).max()
    )
    for n in THREADS:
        np.testing.assert_array_equal(run_binary(op, dy, x, n), one)


def test_norm_back_tiny_variance(data: dict[str, np.ndarray]) -> None:
    """Rows 1000 + 1e-4*noise: variance ~1e-8 is far below eps, the mean ~1e7 times larger than
    the spread. A naive f32 E[x^2] - E[x]^2 or an f32 mean would lose every digit."""
    x, dy = data["flat"], data["dy"][: data["flat"].shape[0]]
    want = ref.norm_grad(*f64(dy, x), EPS)  # x rounded to f32 is the input for both
    for n in (1, *THREADS):
        got = run_binary(lambda g, t: G.norm_back(g, t, EPS), dy, x, n)
        assert_close(got, want, GRAD_RTOL, f"norm_back tiny variance, {n} threads")


def test_norm_forward_tiny_variance(data: dict[str, np.ndarray]) -> None:
    """The forward that NORM_BACK differentiates must be as accurate: an f32 mean of ~1000
    is off by up to 3e-5, a third of the spread, and every normalized value inherits that."""
    x = data["flat"]
    ctx = pg.Context(threads=2)
    t = ctx.input(x.shape)
    out = G.norm(t, EPS)
    g = ctx.graph(out)
    t.set(x)
    g.compute()
    assert_close(
        out.numpy(), ref.norm(x.astype(np.float64), EPS), GRAD_RTOL_LOOSE, "norm tiny variance"
    )


def _layer_grads(d: dict[str, np.ndarray], threads: int) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of L = sum(r * (gelu(norm(x)) @ w^T)) w.r.t. x and w: the backward pass runs
    OUT_PROD (mul_mat backward), GELU_BACK and NORM_BACK on full-size tensors."""
    ctx = pg.Context(threads=threads)
    x = ctx.param((ROWS, COLS), init=d["x"])
    w = ctx.param((OUT, COLS), init=d["w"])
    r = ctx.input((ROWS, OUT))
    y = G.mul_mat(w, G.gelu(G.norm(x, EPS)))
    loss = G.sum(G.mul(y, r)).set_loss()
    g = ctx.graph(loss, backward=True)
    r.set(d["r"])
    g.compute()
    return g.grad(x), g.grad(w)


def test_layer_backward_threads_and_reference(data: dict[str, np.ndarray]) -> None:
    gx1, gw1 = _layer_grads(data, 1)
    x, w, r = f64(data["x"], data["w"], data["r"])
    h = ref.gelu(ref.norm(x, EPS))
    dw, dh = ref.mul_mat_grad(r, w, h)
    dx = ref.norm_grad(ref.gelu_grad(dh, ref.norm(x, EPS)), x, EPS)
    assert_close(gw1, dw, GRAD_RTOL, "dL/dw")
    assert_close(gx1, dx, GRAD_RTOL, "dL/dx")
    for n in THREADS:
        gx, gw = _layer_grads(data, n)
        np.testing.assert_array_equal(gx, gx1, err_msg=f"dL/dx with {n} threads")
        np.testing.assert_array_equal(gw, gw1, err_msg=f"dL/dw with {n} threads")
