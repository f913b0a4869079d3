"""Gradient checking of ggml ops against float64 numpy.

For an op ``y = op(x1, x2, ...)`` the check builds ``L = sum(R * y)`` with fixed random
weights ``R`` (so that errors in different output elements cannot cancel, as they could in a
plain ``sum(y)``), lets ggml differentiate ``L``, and compares every parameter gradient with

(a) the analytic float64 gradient from ``tests/reference/ops_numpy.py`` (``dout = R``), and
(b) central finite differences of the same float64 numpy forward.

(b) checks the reference itself, so a wrong analytic formula cannot vouch for a wrong ggml
gradient. Errors are measured relative to the largest gradient magnitude: f32 rounding is
relative to the values being summed, not to each (possibly near-zero) element.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from reference import ops_numpy as ref

import pyggml_train as pg
from pyggml_train import ggml as G

# ggml f32 forward vs float64 numpy, relative to max|reference|.
FWD_RTOL = 1e-5
# ggml f32 gradient vs analytic float64 gradient, relative to max|gradient|.
GRAD_RTOL = 1e-4
# the same for ill-conditioned ops (normalisation of near-constant rows, long reductions).
GRAD_RTOL_LOOSE = 1e-3
# float64 central differences vs the analytic gradient, relative to max|gradient|.
FD_RTOL = 1e-6
FD_STEP = 1e-6
# with an analytic reference, central differences check it at this many entries per operand.
FD_MAX_POINTS = 48

Builder = Callable[..., G.Tensor]


def rel_err(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want| (the scale f32 rounding errors are relative to)."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"shape {got.shape} != expected {want.shape}")
    finite = np.isfinite(want)
    if not np.array_equal(np.isfinite(got), finite) or not np.array_equal(
        got[~finite], want[~finite]
    ):
        return float("inf")
    scale = max(float(np.abs(want[finite]).max(initial=0.0)), 1e-30)
    return float(np.abs(got[finite] - want[finite]).max(initial=0.0)) / scale


def assert_close(got: np.ndarray, want: np.ndarray, rtol: float, what: str) -> None:
    err = rel_err(got, want)
    assert err <= rtol, (
        f"{what}: relative error {err:.3g} > {rtol:g}\n"
        f" got {np.asarray(got).ravel()[:8]}\nwant {np.asarray(want).ravel()[:8]}"
    )


def _leaf(ctx: pg.Context, value: np.ndarray, param: bool) -> G.Tensor:
    if np.issubdtype(value.dtype, np.integer):
        return ctx.input(value.shape, "i32")
    return ctx.param(value.shape) if param else ctx.input(value.shape)


_VIEW_OPS = {"RESHAPE", "VIEW", "PERMUTE", "TRANSPOSE"}


def _readable(out: G.Tensor) -> G.Tensor:
    """A node whose memory the allocator keeps after compute: flagged output, and not a view
    (a view's memory is its source's, which is recycled once the view is consumed)."""
    if out.op in _VIEW_OPS or not out.is_contiguous:
        out = G.cont(out)
    out._h.set_output()
    return out


def forward(
    build: Builder, inputs: Sequence[np.ndarray], threads: int = 1, device: str = "cpu"
) -> np.ndarray:
    """Run ``build`` on ggml leaves holding ``inputs`` and return its result as numpy."""
    ctx = pg.Context(device, threads=threads)
    leaves = [_leaf(ctx, np.asarray(x), False) for x in inputs]
    out = _readable(build(*leaves))
    graph = ctx.graph(out)
    for leaf, x in zip(leaves, inputs, strict=False):
        leaf.set(x)
    graph.compute()
    return out.numpy()


@dataclass
class GradResult:
    """What a gradient check measured (for extra assertions in a test)."""

    out: np.ndarray
    grads: dict[int, np.ndarray]
    ref_grads: dict[int, np.ndarray]
    errors: dict[int, float] = field(default_factory=dict)
    backends: dict[str, int] = field(default_factory=dict)  # nodes per backend (Graph)


def ggml_grads(
    build: Builder,
    inputs: Sequence[np.ndarray],
    wrt: Sequence[int],
    weights: np.ndarray,
    threads: int = 1,
    device: str = "cpu",
    backends: dict[str, int] | None = None,
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Forward value and ggml's gradients of ``sum(weights * build(*inputs))`` w.r.t. ``wrt``;
    ``backends``, if given, receives how many nodes ran on each backend."""
    ctx = pg.Context(device, threads=threads)
    leaves = [_leaf(ctx, np.asarray(x), i in wrt) for i, x in enumerate(inputs)]
    out = _readable(build(*leaves))
    r = ctx.input(out.shape)
    loss = G.sum(G.mul(out, r)).set_loss()
    graph = ctx.graph(loss, backward=True)
    for leaf, x in zip(leaves, inputs, strict=False):
        leaf.set(x)
    r.set(weights)
    graph.compute()
    if backends is not None:
        backends.update(graph.backend_counts())
    return out.numpy(), {i: graph.grad(leaves[i]) for i in wrt}


def gradcheck(
    build: Builder,
    reference: Callable[..., np.ndarray],
    inputs: Sequence[np.ndarray],
    ref_grad: Callable[..., Sequence[np.ndarray]] | None = None,
    wrt: Sequence[int] | None = None,
    rtol: float = GRAD_RTOL,
    fwd_rtol: float = FWD_RTOL,
    threads: int = 1,
    seed: int = 0,
    device: str = "cpu",
) -> GradResult:
    """Check ggml's forward and gradients of ``build`` against the float64 ``reference``.

    ``inputs`` are numpy arrays (integer ones become i32 inputs and are never
    differentiated); ``wrt`` picks the operands that become parameters (default: every
    float operand). ``ref_grad(dout, *inputs)`` returns the analytic gradients of the
    ``wrt`` operands in order; without it the finite differences are the only reference.
    ``device``: the ggml device the graph runs on (the references stay float64 numpy).
    """
    inputs = [np.asarray(x) for x in inputs]
    if wrt is None:
        wrt = [i for i, x in enumerate(inputs) if np.issubdtype(x.dtype, np.floating)]
    wrt = list(wrt)
    rng = np.random.default_rng(seed)
    x64 = [x.astype(np.float64) if np.issubdtype(x.dtype, np.floating) else x for x in inputs]
    y_ref = np.asarray(reference(*x64), dtype=np.float64)
    if not np.all(np.isfinite(y_ref)):
        raise ValueError("gradcheck needs finite outputs (mask -inf entries through soft_max)")
    weights = rng.standard_normal(y_ref.shape)

    x32 = [x.astype(np.float32) if x.dtype.kind == "f" else x for x in inputs]
    backends: dict[str, int] = {}
    out, grads = ggml_grads(build, x32, wrt, weights.astype(np.float32), threads, device, backends)
    assert_close(out, y_ref, fwd_rtol, "forward")

    def loss_of(i: int) -> Callable[[np.ndarray], float]:
        def f(xi: np.ndarray) -> float:
            args = list(x64)
            args[i] = xi
            return float(np.sum(weights * np.asarray(reference(*args), dtype=np.float64)))

        return f

    analytic = list(ref_grad(weights, *x64)) if ref_grad is not None else None
    result = GradResult(out=out, grads=grads, ref_grads={}, backends=backends)
    for k, i in enumerate(wrt):
        x = x64[i]
        idx = None
        if x.size > FD_MAX_POINTS and ref_grad is not None:
            idx = rng.choice(x.size, FD_MAX_POINTS, replace=False)
        fd = ref.central_diff(loss_of(i), x, FD_STEP, idx)
        if analytic is not None:
            want = np.asarray(analytic[k], dtype=np.float64).reshape(x.shape)
            pick = np.arange(x.size) if idx is None else idx
            scale = max(float(np.abs(want).max()), 1e-30)
            fd_err = float(np.abs(fd.reshape(-1)[pick] - want.reshape(-1)[pick]).max()) / scale
            assert fd_err <= FD_RTOL, (
                f"reference gradient of operand {i} disagrees with finite differences: {fd_err:.3g}"
            )
        else:  # finite differences at every entry are the reference
            want = fd
        result.ref_grads[i] = want
        result.errors[i] = rel_err(grads[i], want)
        assert result.errors[i] <= rtol, (
            f"gradient of operand {i} {x.shape}: relative error {result.errors[i]:.3g} > {rtol:g}\n"
            f" got {grads[i].ravel()[:6]}\nwant {want.ravel()[:6]}"
        )
    return result
