"""Forward values of every op the project uses, against float64 numpy references.

Each op runs on ggml f32 and is compared with ``tests/reference/ops_numpy.py`` relative to
the largest reference magnitude (``FWD_RTOL``), except where a tighter bound is the point
(exact-f32 GELU) or the op is exact (layout ops, masks, gathers: bit-equal).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers.gradcheck import FWD_RTOL, assert_close, forward
from helpers.matmul import bf16_round
from reference import ops_numpy as ref

import pyggml_train as pg
from pyggml_train import _C
from pyggml_train import ggml as G
from pyggml_train import kernels as K

# |ggml gelu - exact formula| <= GELU_ATOL + GELU_RTOL*|y| once GELU is computed in f32
# (no f16 lookup table): a few f32 ulps of tanhf and the polynomial.
GELU_RTOL = 1e-6
GELU_ATOL = 1e-6
# Optimizer state after several f32 steps vs float64 numpy, relative to max|value|.
OPT_RTOL = 1e-5


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def randn(*shape: int, seed: int = 0) -> np.ndarray:
    return rng(seed).standard_normal(shape).astype(np.float32)


def ggml_tiled(op: str):
    """The raw ggml binary op: second operand tiled (each dim divides), no numpy rules."""

    def build(a: G.Tensor, b: G.Tensor) -> G.Tensor:
        return G.Tensor(getattr(_C, op)(a._h, b._h), a.shape)

    return build


# ---- elementwise binary ops ------
BINARY = {"add": ref.add, "sub": ref.sub, "mul": ref.mul, "div": ref.div}


def _positive_if_div(op: str, b: np.ndarray) -> np.ndarray:
    return np.abs(b) + 0.5 if op == "div" else b


@pytest.mark.parametrize("op", sorted(BINARY))
@pytest.mark.parametrize(
    ("sa", "sb"),
    [
        ((7, 13), (7, 13)),  # same shape
        ((4, 5, 6), (5, 1)),  # numpy-compatible and ggml-compatible
        ((4, 5, 6), (6,)),
        ((2, 3, 4, 5), (3, 1, 5)),
        ((4, 6, 6), (2, 3, 6)),  # ggml-only: dims divide, the operand is tiled
        ((6, 4), (3, 2)),
    ],
)
def test_binary_ggml_broadcast(op: str, sa: tuple, sb: tuple) -> None:
    a = randn(*sa, seed=1)
    b = _positive_if_div(op, randn(*sb, seed=2))
    got = forward(ggml_tiled(op), [a, b])
    assert_close(got, BINARY[op](a.astype(np.float64), b.astype(np.float64)), FWD_RTOL, op)


@pytest.mark.parametrize("op", sorted(BINARY))
@pytest.mark.parametrize(
    ("sa", "sb"),
    [
        ((5, 1), (4, 5, 6)),
        ((4, 1, 6), (5, 1)),
        ((1, 6), (4, 1)),
        ((3,), (2, 3)),
        ((7, 13), (7, 13)),
    ],
)
def test_binary_numpy_broadcast(op: str, sa: tuple, sb: tuple) -> None:
    """The Python layer repeats whichever operand numpy would broadcast."""
    a = randn(*sa, seed=3)
    b = _positive_if_div(op, randn(*sb, seed=4))
    got = forward(getattr(G, op), [a, b])
    want = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[op](
        a.astype(np.float64), b.astype(np.float64)
    )
    assert got.shape == want.shape
    assert_close(got, want, FWD_RTOL, op)


def test_operators_and_scale() -> None:
    a, b = randn(3, 5, seed=5), np.abs(randn(3, 5, seed=6)) + 0.5
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cases = {
        "a+b": (lambda x, y: x + y, a64 + b64),
        "a-b": (lambda x, y: x - y, a64 - b64),
        "a*b": (lambda x, y: x * y, a64 * b64),
        "a/b": (lambda x, y: x / y, a64 / b64),
        "a*2.5": (lambda x, y: x * 2.5, a64 * 2.5),
        "0.5*a": (lambda x, y: 0.5 * x, 0.5 * a64),
        "a/4": (lambda x, y: x / 4.0, a64 / 4.0),
        "-a": (lambda x, y: -x, -a64),
        "scale": (lambda x, y: G.scale(x, -3.0), ref.scale(a64, -3.0)),
    }
    for name, (build, want) in cases.items():
        assert_close(forward(build, [a, b]), want, FWD_RTOL, name)


# ---- products ------
@pytest.mark.parametrize(
    ("sa", "sb"),
    [
        ((7, 13), (5, 13)),
        ((33, 17), (1, 17)),
        ((3, 7, 13), (3, 5, 13)),
        ((1, 7, 13), (4, 5, 13)),  # a's batch of 1 broadcasts
        ((2, 7, 13), (6, 5, 13)),  # a batch of 2 serves blocks of 3
        ((2, 1, 4, 8), (2, 3, 5, 8)),  # dims 2 and 3
        ((1, 2, 4, 8), (3, 4, 5, 8)),
    ],
)
def test_mul_mat(sa: tuple, sb: tuple) -> None:
    a, b = randn(*sa, seed=7), randn(*sb, seed=8)
    got = forward(G.mul_mat, [a, b])
    want = ref.mul_mat(a.astype(np.float64), b.astype(np.float64))
    assert got.shape == want.shape
    assert_close(got, want, FWD_RTOL, "mul_mat")


def test_mul_mat_block_broadcast_is_not_tiling() -> None:
    # Batch 0 of a must serve b's batches 0 and 1, batch 1 serves 2 and 3 (not 0,1,0,1).
    a = np.stack([np.eye(2, dtype=np.float32), 2 * np.eye(2, dtype=np.float32)])  # (2, 2, 2)
    b = np.ones((4, 1, 2), np.float32)
    got = forward(G.mul_mat, [a, b])
    np.testing.assert_array_equal(got[:, 0, 0], [1, 1, 2, 2])


@pytest.mark.parametrize(("sx", "bias"), [((5, 13), True), ((2, 3, 13), True), ((4, 13), False)])
def test_linear(sx: tuple, bias: bool) -> None:
    x, w, b = randn(*sx, seed=9), randn(7, 13, seed=10), randn(7, seed=11)
    inputs = [x, w, b] if bias else [x, w]
    got = forward(lambda *t: G.linear(*t), inputs)
    want = x.astype(np.float64) @ w.astype(np.float64).T + (b if bias else 0)
    assert got.shape == sx[:-1] + (7,)
    assert_close(got, want, FWD_RTOL, "linear")


@pytest.mark.parametrize(
    ("sa", "sb"), [((5, 13), (13, 7)), ((3, 5, 13), (3, 13, 7)), ((2, 3, 4, 6), (2, 3, 6, 5))]
)
def test_matmul(sa: tuple, sb: tuple) -> None:
    a, b = randn(*sa, seed=12), randn(*sb, seed=13)
    got = forward(lambda x, y: x @ y, [a, b])
    assert_close(got, a.astype(np.float64) @ b.astype(np.float64), FWD_RTOL, "matmul")


@pytest.mark.parametrize(
    ("sa", "sb"), [((13, 7), (13, 5)), ((3, 13, 7), (3, 13, 5)), ((1, 9, 4), (2, 9, 3))]
)
def test_out_prod(sa: tuple, sb: tuple) -> None:
    a, b = randn(*sa, seed=14), randn(*sb, seed=15)
    got = forward(G.out_prod, [a, b])
    want = ref.out_prod(a.astype(np.float64), b.astype(np.float64))
    assert got.shape == want.shape
    assert_close(got, want, FWD_RTOL, "out_prod")


# ---- layout ops (exact) ----------------------------------------------------------------------
def test_transpose_permute_reshape_view_cont() -> None:
    x = randn(2, 3, 4, 5, seed=16)
    np.testing.assert_array_equal(forward(G.transpose, [x]), np.swapaxes(x, -1, -2))
    np.testing.assert_array_equal(forward(lambda t: t.T, [x[0, 0]]), x[0, 0].T)
    np.testing.assert_array_equal(
        forward(lambda t: G.permute(t, (2, 0, 3, 1)), [x]), x.transpose(2, 0, 3, 1)
    )
    np.testing.assert_array_equal(forward(lambda t: G.reshape(t, (6, -1)), [x]), x.reshape(6, -1))
    np.testing.assert_array_equal(
        forward(lambda t: G.cont(G.transpose(t)), [x]), np.swapaxes(x, -1, -2)
    )
    # view: rows 1..2 of every (4, 5) matrix, and a strided pick of every other row
    s = [stride // x.itemsize for stride in x.strides]  # element strides
    np.testing.assert_array_equal(
        forward(lambda t: G.view(t, (2, 3, 2, 5), offset=s[2]), [x]), x[:, :, 1:3]
    )
    every_other = forward(
        lambda t: G.view(t, (2, 5), strides=(2 * s[2], 1), offset=s[2]), [x[0, 0]]
    )
    np.testing.assert_array_equal(every_other, x[0, 0, 1::2])


def test_repeat() -> None:
    x = randn(3, 1, seed=17)
    np.testing.assert_array_equal(
        forward(lambda t: G.repeat(t, (2, 3, 4)), [x]), np.broadcast_to(x, (2, 3, 4))
    )


@pytest.mark.parametrize("idx_shape", [(9,), (3, 4)])
def test_get_rows(idx_shape: tuple) -> None:
    table = randn(11, 6, seed=18)
    idx = rng(19).integers(0, 11, idx_shape).astype(np.int32)
    idx.flat[0] = idx.flat[-1]  # a repeated index
    got = forward(G.get_rows, [table, idx])
    np.testing.assert_array_equal(got, table[idx])


# ---- normalisation and activations ------
@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 33), (1, 768)])
def test_norm_and_rms_norm(shape: tuple) -> None:
    x = randn(*shape, seed=20) * 3 + 1
    x64 = x.astype(np.float64)
    assert_close(forward(lambda t: G.norm(t, 1e-5), [x]), ref.norm(x64, 1e-5), FWD_RTOL, "norm")
    assert_close(
        forward(lambda t: G.rms_norm(t, 1e-6), [x]), ref.rms_norm(x64, 1e-6), FWD_RTOL, "rms_norm"
    )


def test_layer_norm() -> None:
    x, w, b = randn(3, 5, 16, seed=21), randn(16, seed=22), randn(16, seed=23)
    got = forward(lambda *t: G.layer_norm(*t, eps=1e-5), [x, w, b])
    want = ref.layer_norm(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64))
    assert_close(got, want, FWD_RTOL, "layer_norm")


def test_gelu_is_the_exact_f32_formula() -> None:
    """GPT-2's tanh GELU in f32, not ggml's f16 lookup table (error ~1e-3)."""
    x = np.concatenate([np.linspace(-8, 8, 4001), rng(24).standard_normal(999) * 3]).astype(
        np.float32
    )
    got = forward(G.gelu, [x]).astype(np.float64)
    want = ref.gelu(x.astype(np.float64))
    err = np.abs(got - want) - GELU_RTOL * np.abs(want)
    worst = int(np.argmax(err))
    assert err[worst] <= GELU_ATOL, f"gelu({x[worst]}) = {got[worst]}, exact {want[worst]}"


@pytest.mark.parametrize(
    ("name", "fn", "lo", "hi"),
    [
        ("gelu_erf", ref.gelu_erf, -6, 6),
        ("silu", ref.silu, -8, 8),
        ("relu", ref.relu, -3, 3),
        ("tanh", ref.tanh, -4, 4),
        ("exp", np.exp, -5, 5),
        ("log", np.log, 0.01, 20),
        ("sqr", np.square, -5, 5),
        ("sqrt", np.sqrt, 0.0, 20),
        ("neg", np.negative, -5, 5),
    ],
)
def test_unary(name: str, fn, lo: float, hi: float) -> None:
    x = rng(25).uniform(lo, hi, (5, 33)).astype(np.float32)
    got = forward(getattr(G, name), [x])
    want = fn(x.astype(np.float64))
    # elementwise ops are accurate per element, not only relative to the largest value
    np.testing.assert_allclose(got, want, rtol=FWD_RTOL, atol=FWD_RTOL * 1e-2, err_msg=name)


def test_clamp() -> None:
    x = randn(4, 9, seed=26) * 3
    np.testing.assert_array_equal(
        forward(lambda t: G.clamp(t, -1.5, 0.25), [x]), np.clip(x, -1.5, 0.25)
    )


# ---- reductions ------
def test_sum_sum_rows_mean() -> None:
    x = randn(3, 4, 33, seed=27) + 0.5
    x64 = x.astype(np.float64)
    got = forward(G.sum, [x])
    assert got.shape == ()
    assert_close(got, x64.sum(), FWD_RTOL, "sum")
    assert_close(forward(G.sum_rows, [x]), ref.sum_rows(x64), FWD_RTOL, "sum_rows")
    assert_close(forward(G.mean, [x]), ref.mean(x64), FWD_RTOL, "mean")


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("shape", [(1001, 37), (2, 5, 7, 3), (5000,)])
def test_sum_on_threads(shape: tuple, threads: int) -> None:
    """Patch 0013 splits the rows of an f32 sum among the threads (uneven row counts, a
    single long row) and adds the per-thread partial sums."""
    x = randn(*shape, seed=29) + 0.25
    got = forward(G.sum, [x], threads)
    assert_close(got, x.astype(np.float64).sum(), FWD_RTOL, f"sum on {threads} threads")


# ---- softmax, masks, loss ------
def test_soft_max_plain() -> None:
    x = randn(3, 7, 13, seed=28) * 4
    assert_close(forward(G.soft_max, [x]), ref.soft_max(x.astype(np.float64)), FWD_RTOL, "soft_max")


@pytest.mark.parametrize("shape", [(7, 7), (2, 3, 6, 6), (3, 5, 9)])
def test_soft_max_with_causal_mask_and_scale(shape: tuple) -> None:
    t_q, t_k = shape[-2:]
    x = randn(*shape, seed=29) * 3
    mask = ref.causal_mask(t_q, t_k, t_k - t_q).astype(np.float32)
    s = 1.0 / math.sqrt(8.0)
    got = forward(lambda a, m: G.soft_max(a, m, scale=s), [x, mask])
    want = ref.soft_max(x.astype(np.float64), mask.astype(np.float64), s)
    assert_close(got, want, FWD_RTOL, "soft_max(mask, scale)")
    assert np.all(got[..., np.isinf(mask)] == 0.0)


def test_soft_max_per_head_mask_broadcast() -> None:
    # a (B, 1, T, T) mask, e.g. padding per sequence, applies to every head
    x = randn(2, 3, 5, 5, seed=30)
    mask = np.where(rng(31).random((2, 1, 5, 5)) < 0.3, -np.inf, 0.0).astype(np.float32)
    mask[..., 0] = 0.0  # keep a finite entry in every row
    got = forward(lambda a, m: G.soft_max(a, m, scale=0.7), [x, mask])
    want = ref.soft_max(x.astype(np.float64), mask.astype(np.float64), 0.7)
    assert_close(got, want, FWD_RTOL, "soft_max per-head mask")


@pytest.mark.parametrize("n_past", [0, 2])
def test_diag_mask_inf(n_past: int) -> None:
    x = randn(2, 5, 7, seed=32)
    got = forward(lambda t: G.diag_mask_inf(t, n_past), [x])
    np.testing.assert_array_equal(
        got, ref.diag_mask_inf(x.astype(np.float64), n_past).astype(np.float32)
    )


@pytest.mark.parametrize("shape", [(1, 5), (4, 33), (2, 3, 17)])
def test_cross_entropy_loss(shape: tuple) -> None:
    logits = randn(*shape, seed=33) * 2
    labels = rng(34).random(shape)
    labels = (labels / labels.sum(axis=-1, keepdims=True)).astype(np.float32)
    got = forward(G.cross_entropy_loss, [logits, labels])
    assert got.shape == ()
    want = ref.cross_entropy_loss(logits.astype(np.float64), labels.astype(np.float64))
    assert_close(got, want, FWD_RTOL, "cross_entropy_loss")


def test_cross_entropy_loss_one_hot() -> None:
    logits = randn(6, 11, seed=35)
    targets = rng(36).integers(0, 11, 6)
    onehot = np.eye(11, dtype=np.float32)[targets]
    got = forward(G.cross_entropy_loss, [logits, onehot])
    lsm = ref.log_softmax(logits.astype(np.float64))
    assert_close(got, -lsm[np.arange(6), targets].mean(), FWD_RTOL, "one-hot cross entropy")


# ---- backward ops used directly ------
@pytest.mark.parametrize("shape", [(4, 7), (3, 2, 33)])
def test_norm_back(shape: tuple) -> None:
    dy, x = randn(*shape, seed=37), randn(*shape, seed=38) * 2 + 1
    got = forward(lambda g, t: G.norm_back(g, t, 1e-5), [dy, x])
    want = ref.norm_grad(dy.astype(np.float64), x.astype(np.float64), 1e-5)
    assert_close(got, want, FWD_RTOL, "norm_back")


@pytest.mark.parametrize(
    ("name", "grad"), [("gelu_back", ref.gelu_grad), ("gelu_erf_back", ref.gelu_erf_grad)]
)
def test_gelu_backs(name: str, grad) -> None:
    dy = randn(5, 33, seed=39)
    x = rng(40).uniform(-6, 6, (5, 33)).astype(np.float32)
    got = forward(getattr(G, name), [dy, x])
    want = grad(dy.astype(np.float64), x.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=FWD_RTOL, atol=FWD_RTOL * 1e-2, err_msg=name)


# ---- optimizer steps ------
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("shape", [(5, 7), (3, 37)])  # SIMD blocks and a scalar tail
@pytest.mark.parametrize("grad_scale", [None, 0.37])  # 7 or 8 hyperparameters
def test_opt_step_adamw_several_steps(shape: tuple, grad_scale: float | None, threads: int) -> None:
    # the op receives f32 hyperparameters: 1 - f32(0.999) differs from 0.001 by 1.3e-5
    # relative, so the reference uses the same f32-rounded values
    lr, b1, b2, eps, wd = (float(np.float32(h)) for h in (1e-2, 0.9, 0.999, 1e-8, 0.1))
    w0 = randn(*shape, seed=41)
    grads = [randn(*shape, seed=42 + k) for k in range(5)]
    ctx = pg.Context(threads=threads)
    w = ctx.param(shape, init=w0)
    g = ctx.input(shape)
    m = ctx.tensor(shape).fill(0.0)
    v = ctx.tensor(shape).fill(0.0)
    extra = [] if grad_scale is None else [grad_scale]
    hp = ctx.input((7 + len(extra),))
    graph = ctx.graph(G.opt_step_adamw(w, g, m, v, hp))
    for t, grad in enumerate(grads, start=1):
        g.set(grad)
        corrections = [1 / (1 - b1**t), 1 / (1 - b2**t)]
        hp.set(np.array([lr, b1, b2, eps, wd, *corrections, *extra], np.float32))
        graph.compute()
    scale = 1.0 if grad_scale is None else float(np.float32(grad_scale))
    want_w, want_m, want_v = ref.adamw_steps(
        w0, [x.astype(np.float64) * scale for x in grads], lr, b1, b2, eps, wd
    )
    assert_close(w.numpy(), want_w, OPT_RTOL, "adamw weights")
    assert_close(m.numpy(), want_m, OPT_RTOL, "adamw first moment")
    assert_close(v.numpy(), want_v, OPT_RTOL, "adamw second moment")
    # the weights moved by more than the tolerance: the test would see a missing step
    assert np.abs(want_w - w0).max() > 100 * OPT_RTOL * np.abs(want_w).max()


def test_opt_step_sgd() -> None:
    lr, wd = 0.05, 0.01
    w0, g0 = randn(3, 4, seed=50), randn(3, 4, seed=51)
    ctx = pg.Context(threads=1)
    w = ctx.param((3, 4), init=w0)
    g = ctx.input((3, 4))
    hp = ctx.input((2,))
    graph = ctx.graph(G.opt_step_sgd(w, g, hp))
    g.set(g0)
    hp.set(np.array([lr, wd], np.float32))
    graph.compute()
    graph.compute()
    want = ref.sgd_step(ref.sgd_step(w0.astype(np.float64), g0, lr, wd), g0, lr, wd)
    assert_close(w.numpy(), want, OPT_RTOL, "sgd")


# ---- casts (mixed precision) ------
def _round_to_bf16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 (round to nearest even) -> float32, by bit manipulation."""
    bits = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return rounded.astype(np.uint32).view(np.float32)


def test_cast_rounds_like_numpy() -> None:
    x = randn(7, 33, seed=60) * 100
    bf16 = forward(lambda t: G.cast(t, "bf16"), [x])
    np.testing.assert_array_equal(bf16, _round_to_bf16(x))
    f16 = forward(lambda t: G.cast(t, "f16"), [x])
    np.testing.assert_array_equal(f16, x.astype(np.float16))
    with pytest.raises(ValueError, match="dtype must be"):
        G.cast(pg.Context().input((2,)), "i32")


@pytest.mark.parametrize("threads", [1, 2])
def test_gradients_through_a_bf16_weight(threads: int) -> None:
    """mul_mat(cast(w, 'bf16'), x) with an f32 master weight w: the forward and the input
    gradient run on bf16 operands, so they carry bf16's ~3 significant digits. The weight
    gradient is computed in f32 (exact to f32 rounding), or, where the packed bf16 GEMM runs
    (patch 0021: AMX tiles or AVX512-BF16), from x and the output gradient rounded to
    bf16 with f32 sums, as PyTorch's autocast does."""
    w0, x0, r0 = randn(48, 64, seed=61), randn(40, 64, seed=62), randn(40, 48, seed=63)
    ctx = pg.Context(threads=threads)
    w, x = ctx.param(w0.shape, init=w0), ctx.param(x0.shape, init=x0)
    r = ctx.input(r0.shape).set(r0)
    y = G.mul_mat(G.cast(w, "bf16"), x)  # (40, 48)
    y._h.set_output()
    loss = G.sum(G.mul(y, r)).set_loss()
    g = ctx.graph(loss, backward=True)
    g.compute()
    w64, x64, r64 = (a.astype(np.float64) for a in (w0, x0, r0))
    dw, dx = ref.mul_mat_grad(r64, w64, x64)
    assert_close(y.numpy(), ref.mul_mat(w64, x64), 2e-2, "bf16 forward")
    assert_close(g.grad(x), dx, 2e-2, "input gradient through bf16")
    if K.bf16_gemm_engine():
        dw = ref.mul_mat_grad(
            bf16_round(r0).astype(np.float64), w64, bf16_round(x0).astype(np.float64)
        )[0]
    assert_close(g.grad(w), dw, FWD_RTOL, "weight gradient")
