"""Gradients of every differentiable op: ggml vs analytic float64 numpy vs finite differences.

Each case goes through ``gradcheck.gradcheck`` (``L = sum(R * op(inputs))`` with fixed random
``R``): shapes with odd sizes, both broadcasting rules (ggml's tiling and the numpy rules the
Python layer adds with ``repeat``), non-contiguous operands as attention produces them, and
graphs where a tensor has several consumers so that gradients must accumulate.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers.gradcheck import GRAD_RTOL, GRAD_RTOL_LOOSE, gradcheck
from reference import ops_numpy as ref

import pyggml_train as pg
from pyggml_train import _C
from pyggml_train import ggml as G


def randn(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape)


def away_from_zero(x: np.ndarray, gap: float = 0.05) -> np.ndarray:
    """Keep kinks (relu at 0) out of reach of the finite-difference step."""
    return np.where(np.abs(x) < gap, np.sign(x + 1e-12) * gap, x)


def raw(op: str):
    """The ggml binary op itself (second operand tiled), bypassing numpy broadcasting."""

    def build(a: G.Tensor, b: G.Tensor) -> G.Tensor:
        return G.Tensor(getattr(_C, op)(a._h, b._h), a.shape)

    return build


# ---- elementwise binary ops ------
TILED = {
    "add": (ref.add, ref.add_grad),
    "sub": (ref.sub, ref.sub_grad),
    "mul": (ref.mul, ref.mul_grad),
    "div": (ref.div, ref.div_grad),
}


def _operands(op: str, sa: tuple, sb: tuple, seed: int) -> list[np.ndarray]:
    a, b = randn(*sa, seed=seed), randn(*sb, seed=seed + 1)
    if op == "div":
        b = np.abs(b) + 0.5
    return [a, b]


@pytest.mark.parametrize("op", sorted(TILED))
@pytest.mark.parametrize(
    ("sa", "sb"),
    [
        ((7, 13), (7, 13)),
        ((4, 5, 6), (5, 1)),
        ((4, 5, 6), (6,)),
        ((3, 1, 33), (1, 33)),
        ((2, 3, 4, 5), (3, 1, 5)),
        ((4, 6, 6), (2, 3, 6)),  # ggml-only: dims divide, the second operand tiles
    ],
)
def test_binary_ggml_broadcast(op: str, sa: tuple, sb: tuple) -> None:
    fwd, grad = TILED[op]
    gradcheck(raw(op), fwd, _operands(op, sa, sb, 1), grad)


def _numpy_binary(op: str):
    """Forward and gradients with numpy broadcasting of both operands."""
    partial = {
        "add": lambda a, b: (1.0, 1.0),
        "sub": lambda a, b: (1.0, -1.0),
        "mul": lambda a, b: (b, a),
        "div": lambda a, b: (1.0 / b, -a / b**2),
    }[op]
    fn = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[op]

    def grad(dout: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ta, tb = ref.tile_to(a, dout.shape), ref.tile_to(b, dout.shape)
        da, db = partial(ta, tb)
        return ref.untile(dout * da, a.shape), ref.untile(dout * db, b.shape)

    return fn, grad


@pytest.mark.parametrize("op", sorted(TILED))
@pytest.mark.parametrize(("sa", "sb"), [((5, 1), (4, 5, 6)), ((4, 1, 6), (5, 1)), ((13,), (3, 13))])
def test_binary_numpy_broadcast(op: str, sa: tuple, sb: tuple) -> None:
    fwd, grad = _numpy_binary(op)
    gradcheck(getattr(G, op), fwd, _operands(op, sa, sb, 2), grad)


def test_same_tensor_twice() -> None:
    # x * x: both operands are the same parameter, the two gradients must add up
    x = randn(5, 7, seed=3)
    gradcheck(lambda t: G.mul(t, t), lambda a: a * a, [x], lambda d, a: [2 * a * d])


# ---- unary ops ------
UNARY = {
    "sqr": (np.square, ref.sqr_grad, lambda x: x),
    "sqrt": (np.sqrt, ref.sqrt_grad, lambda x: np.abs(x) + 0.5),
    "log": (np.log, ref.log_grad, lambda x: np.abs(x) + 0.5),
    "exp": (np.exp, ref.exp_grad, lambda x: x),
    "neg": (np.negative, lambda d, x: -d, lambda x: x),
    "relu": (ref.relu, ref.relu_grad, away_from_zero),
    "silu": (ref.silu, ref.silu_grad, lambda x: 3 * x),
    "gelu": (ref.gelu, ref.gelu_grad, lambda x: 3 * x),
    "gelu_erf": (ref.gelu_erf, ref.gelu_erf_grad, lambda x: 3 * x),
    "tanh": (np.tanh, ref.tanh_grad, lambda x: 2 * x),
}


@pytest.mark.parametrize("name", sorted(UNARY))
@pytest.mark.parametrize("shape", [(7,), (5, 13), (2, 3, 33)])
def test_unary(name: str, shape: tuple) -> None:
    fwd, grad, domain = UNARY[name]
    gradcheck(getattr(G, name), fwd, [domain(randn(*shape, seed=4))], lambda d, x: [grad(d, x)])


def test_scale() -> None:
    gradcheck(
        lambda t: G.scale(t, -2.5),
        lambda x: -2.5 * x,
        [randn(3, 7, seed=5)],
        lambda d, x: [-2.5 * d],
    )


# ---- reductions ------
@pytest.mark.parametrize("shape", [(7,), (5, 13), (2, 3, 33)])
def test_reductions(shape: tuple) -> None:
    x = randn(*shape, seed=6)
    gradcheck(
        lambda t: G.reshape(G.sum(t), (1,)),
        lambda a: a.sum(keepdims=True).reshape(1),
        [x],
        lambda d, a: [np.full(a.shape, d[0])],
    )
    gradcheck(G.sum_rows, ref.sum_rows, [x], lambda d, a: [ref.sum_rows_grad(d, a)])
    gradcheck(G.mean, ref.mean, [x], lambda d, a: [ref.mean_grad(d, a)])


@pytest.mark.parametrize("order", ["mean_last", "mean_first", "centered"])
def test_mean_with_another_consumer(order: str) -> None:
    """The input of mean also feeds another op: both gradient contributions must add up,
    whichever of them the backward pass reaches first."""
    x = randn(4, 13, seed=7)
    if order == "mean_last":  # x*x + mean(x): mean's backward runs first
        build = lambda t: G.mul(t, t) + G.mean(t)  # noqa: E731
        fwd = lambda a: a * a + ref.mean(a)  # noqa: E731
        grad = lambda d, a: [2 * a * d + ref.mean_grad(d.sum(-1, keepdims=True), a)]  # noqa: E731
    elif order == "mean_first":  # mean(x) - x*x: mean's node comes first, its backward last
        build = lambda t: G.mean(t) - G.mul(t, t)  # noqa: E731
        fwd = lambda a: ref.mean(a) - a * a  # noqa: E731
        grad = lambda d, a: [-2 * a * d + ref.mean_grad(d.sum(-1, keepdims=True), a)]  # noqa: E731
    else:  # x - mean(x): the centering step of layer norm
        build = lambda t: t - G.mean(t)  # noqa: E731
        fwd = lambda a: a - ref.mean(a)  # noqa: E731
        grad = lambda d, a: [d - ref.mean_grad(d.sum(-1, keepdims=True), a)]  # noqa: E731
    gradcheck(build, fwd, [x], grad)


# ---- products ------
@pytest.mark.parametrize(
    ("sa", "sb"),
    [
        ((7, 13), (5, 13)),
        ((33, 7), (1, 7)),
        ((13,), (3, 13)),
        ((3, 7, 13), (3, 5, 13)),
        ((1, 7, 13), (3, 5, 13)),  # a's batch broadcasts over dim 2 (numpy dim -3)
        ((2, 4, 5), (6, 3, 5)),  # blocks of 3
        ((2, 1, 4, 5), (2, 3, 3, 5)),  # over dim 2 with dim 3 matching
        ((1, 2, 4, 5), (2, 4, 3, 5)),  # over dims 2 and 3
    ],
)
def test_mul_mat(sa: tuple, sb: tuple) -> None:
    gradcheck(G.mul_mat, ref.mul_mat, [randn(*sa, seed=8), randn(*sb, seed=9)], ref.mul_mat_grad)


@pytest.mark.parametrize(("sa", "sb"), [((5, 13), (13, 7)), ((2, 3, 4), (2, 4, 5))])
def test_matmul(sa: tuple, sb: tuple) -> None:
    gradcheck(
        lambda a, b: a @ b,
        lambda a, b: a @ b,
        [randn(*sa, seed=10), randn(*sb, seed=11)],
        lambda d, a, b: [d @ np.swapaxes(b, -1, -2), np.swapaxes(a, -1, -2) @ d],
    )


@pytest.mark.parametrize("sx", [(5, 13), (2, 3, 13)])
def test_linear(sx: tuple) -> None:
    def fwd(x, w, b):
        return x @ w.T + b

    def grad(d, x, w, b):
        lead = tuple(range(x.ndim - 1))
        return [d @ w, np.tensordot(d, x, axes=(lead, lead)), d.sum(axis=lead)]

    gradcheck(
        lambda *t: G.linear(*t),
        fwd,
        [randn(*sx, seed=12), randn(7, 13, seed=13), randn(7, seed=14)],
        grad,
    )


def test_mul_mat_strided_operands() -> None:
    """Both operands are column slices of wider matrices: rows dense, not contiguous."""

    def build(a, b):
        va = G.view(a, (7, 13), offset=2, strides=(20, 1))
        vb = G.view(b, (5, 13), offset=1, strides=(16, 1))
        assert not va.is_contiguous and not vb.is_contiguous
        return G.mul_mat(va, vb)

    def fwd(a, b):
        return ref.mul_mat(a[:, 2:15], b[:, 1:14])

    def grad(d, a, b):
        da_s, db_s = ref.mul_mat_grad(d, a[:, 2:15], b[:, 1:14])
        da, db = np.zeros_like(a), np.zeros_like(b)
        da[:, 2:15], db[:, 1:14] = da_s, db_s
        return [da, db]

    gradcheck(build, fwd, [randn(7, 20, seed=15), randn(5, 16, seed=16)], grad)


def test_attention_scores_with_permuted_views() -> None:
    """q @ k^T where q, k are (B, T, H, hs) permuted to (B, H, T, hs) without a copy."""
    B, T, H, hs = 2, 5, 3, 4  # noqa: N806

    def fwd(q, k):
        qp, kp = q.transpose(0, 2, 1, 3), k.transpose(0, 2, 1, 3)
        return qp @ np.swapaxes(kp, -1, -2)

    def grad(d, q, k):
        qp, kp = q.transpose(0, 2, 1, 3), k.transpose(0, 2, 1, 3)
        return [(d @ kp).transpose(0, 2, 1, 3), (np.swapaxes(d, -1, -2) @ qp).transpose(0, 2, 1, 3)]

    def build(q, k):
        return G.mul_mat(G.permute(k, (0, 2, 1, 3)), G.permute(q, (0, 2, 1, 3)))

    gradcheck(build, fwd, [randn(B, T, H, hs, seed=17), randn(B, T, H, hs, seed=18)], grad)


@pytest.mark.parametrize(
    ("shape", "build", "fwd", "grad"),
    [
        (
            (4, 6),
            lambda t: G.cont(G.transpose(G.cont(t))),
            lambda a: a.T,
            lambda d, a: [d.T],
        ),
        (
            (2, 3, 4),
            lambda t: G.cont(G.permute(G.cont(G.permute(t, (1, 0, 2))), (2, 1, 0))),
            lambda a: a.transpose(1, 0, 2).transpose(2, 1, 0),
            lambda d, a: [d.transpose(2, 1, 0).transpose(1, 0, 2)],
        ),
    ],
    ids=["transpose", "permute"],
)
def test_cont_of_a_view_of_cont(shape: tuple, build, fwd, grad) -> None:
    """Attention's ``cont(transpose(v))`` where v is itself a cont() copy: the inner cont
    receives a transposed (non-contiguous) gradient."""
    gradcheck(build, fwd, [randn(*shape, seed=43)], grad)


def _split_heads_np(qkv: np.ndarray, which: int, n_head: int) -> np.ndarray:
    B, T, C3 = qkv.shape  # noqa: N806
    C = C3 // 3  # noqa: N806
    return (
        qkv[:, :, which * C : (which + 1) * C]
        .reshape(B, T, n_head, C // n_head)
        .transpose(0, 2, 1, 3)
    )


def _split_heads(qkv: G.Tensor, which: int, n_head: int) -> G.Tensor:
    """A (B, T, 3C) fused projection -> the (B, H, T, hs) q, k or v: view -> permute -> cont."""
    B, T, C3 = qkv.shape  # noqa: N806
    C = C3 // 3  # noqa: N806
    hs = C // n_head
    v = G.view(qkv, (B, T, n_head, hs), offset=which * C, strides=(T * C3, C3, hs, 1))
    return G.cont(G.permute(v, (0, 2, 1, 3)))


@pytest.mark.parametrize("which", [0, 1, 2])
def test_fused_qkv_split(which: int) -> None:
    qkv = randn(2, 3, 3 * 8, seed=19)

    def grad(d, x):
        g = np.zeros_like(x)
        B, T, C3 = x.shape  # noqa: N806
        C = C3 // 3  # noqa: N806
        g[:, :, which * C : (which + 1) * C] = d.transpose(0, 2, 1, 3).reshape(B, T, C)
        return [g]

    gradcheck(
        lambda t: _split_heads(t, which, 2), lambda x: _split_heads_np(x, which, 2), [qkv], grad
    )


def test_causal_self_attention_from_fused_qkv() -> None:
    """The whole attention core: every head of q, k, v is a view of one tensor, so three
    gradient contributions land in disjoint slices of it. Finite differences are the reference."""
    B, T, n_head, hs = 1, 4, 2, 3  # noqa: N806
    C = n_head * hs  # noqa: N806
    scale = 1.0 / math.sqrt(hs)
    mask = ref.causal_mask(T, T)

    def fwd(qkv, m):
        q, k, v = (_split_heads_np(qkv, i, n_head) for i in range(3))
        att = ref.soft_max(q @ np.swapaxes(k, -1, -2), m, scale)
        return (att @ v).transpose(0, 2, 1, 3).reshape(B, T, C)

    def build(qkv, m):
        q, k, v = (_split_heads(qkv, i, n_head) for i in range(3))
        att = G.soft_max(G.mul_mat(k, q), m, scale=scale)  # (B, H, T, T)
        y = G.mul_mat(G.cont(G.transpose(v)), att)  # (B, H, T, hs)
        return G.reshape(G.cont(G.permute(y, (0, 2, 1, 3))), (B, T, C))

    gradcheck(build, fwd, [randn(B, T, 3 * C, seed=20), mask.astype(np.float32)], None, wrt=[0])


# ---- gather ------
@pytest.mark.parametrize("idx_shape", [(9,), (2, 6)])
def test_get_rows_repeated_indices(idx_shape: tuple) -> None:
    table = randn(7, 5, seed=21)
    idx = np.random.default_rng(22).integers(0, 7, idx_shape).astype(np.int32)
    idx.flat[:3] = 4  # row 4 is picked three times, its gradients accumulate
    res = gradcheck(
        G.get_rows,
        ref.get_rows,
        [table, idx],
        lambda d, t, i: [ref.get_rows_grad(d, t.shape, i)],
        wrt=[0],
    )
    unused = sorted(set(range(7)) - set(idx.flat))
    assert np.all(res.grads[0][unused] == 0.0)


# ---- normalisation ------
@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 33), (3, 64)])
def test_norm(shape: tuple) -> None:
    x = randn(*shape, seed=23) * 2 + 0.5
    gradcheck(
        lambda t: G.norm(t, 1e-5),
        lambda a: ref.norm(a, 1e-5),
        [x],
        lambda d, a: [ref.norm_grad(d, a, 1e-5)],
    )


@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 33)])
def test_rms_norm(shape: tuple) -> None:
    x = randn(*shape, seed=24) + 0.3
    gradcheck(
        lambda t: G.rms_norm(t, 1e-6),
        lambda a: ref.rms_norm(a, 1e-6),
        [x],
        lambda d, a: [ref.rms_norm_grad(d, a, 1e-6)],
    )


@pytest.mark.parametrize("shape", [(5, 16), (2, 3, 13)])
def test_layer_norm(shape: tuple) -> None:
    c = shape[-1]
    x, w, b = randn(*shape, seed=25) * 3 + 1, randn(c, seed=26), randn(c, seed=27)
    gradcheck(
        lambda *t: G.layer_norm(*t, eps=1e-5),
        lambda *a: ref.layer_norm(*a, eps=1e-5),
        [x, w, b],
        lambda d, *a: ref.layer_norm_grad(d, *a, eps=1e-5),
    )


def test_norm_of_nearly_constant_rows() -> None:
    # rows with std ~1e-2 relative to the mean: the f32 cancellation costs accuracy
    x = 10.0 + 0.1 * randn(4, 33, seed=28)
    gradcheck(
        lambda t: G.norm(t, 1e-5),
        lambda a: ref.norm(a, 1e-5),
        [x],
        lambda d, a: [ref.norm_grad(d, a, 1e-5)],
        rtol=GRAD_RTOL_LOOSE,
        fwd_rtol=GRAD_RTOL_LOOSE,
    )


# ---- softmax, masks, loss ------
@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 13)])
def test_soft_max(shape: tuple) -> None:
    gradcheck(
        G.soft_max,
        ref.soft_max,
        [randn(*shape, seed=29) * 2],
        lambda d, x: [ref.soft_max_grad(d, x)],
    )


@pytest.mark.parametrize("shape", [(6, 6), (2, 3, 5, 5), (3, 4, 7)])
def test_soft_max_causal_mask_and_scale(shape: tuple) -> None:
    t_q, t_k = shape[-2:]
    mask = ref.causal_mask(t_q, t_k, t_k - t_q)
    s = 0.35
    gradcheck(
        lambda x, m: G.soft_max(x, m, scale=s),
        lambda x, m: ref.soft_max(x, m, s),
        [randn(*shape, seed=30) * 2, mask.astype(np.float32)],
        lambda d, x, m: [ref.soft_max_grad(d, x, m, s)],
        wrt=[0],
    )


def test_diag_mask_inf_then_soft_max() -> None:
    x = randn(2, 5, 5, seed=31)
    gradcheck(
        lambda t: G.soft_max(G.diag_mask_inf(t, 0), scale=0.5),
        lambda a: ref.soft_max(ref.diag_mask_inf(a), scale=0.5),
        [x],
        lambda d, a: [ref.soft_max_grad(d, ref.diag_mask_inf(a), scale=0.5)],
    )


@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 33)])
def test_cross_entropy_loss(shape: tuple) -> None:
    logits = randn(*shape, seed=32) * 2
    labels = np.random.default_rng(33).random(shape)
    labels /= labels.sum(axis=-1, keepdims=True)

    res = gradcheck(
        lambda z, y: G.reshape(G.cross_entropy_loss(z, y), (1,)),
        lambda z, y: ref.cross_entropy_loss(z, y).reshape(1),
        [logits, labels],
        lambda d, z, y: [ref.cross_entropy_loss_grad(d[0], z, y)],
        wrt=[0],
    )
    assert res.out.shape == (1,)


def test_cross_entropy_loss_directly_as_loss() -> None:
    """The usual training setup: the loss op itself is the graph's loss (seed 1)."""
    logits = randn(3, 11, seed=34)
    labels = np.eye(11)[[2, 5, 5]]
    ctx = pg.Context(threads=1)
    z = ctx.param((3, 11), init=logits.astype(np.float32))
    y = ctx.input((3, 11)).set(labels.astype(np.float32))
    g = ctx.graph(G.cross_entropy_loss(z, y).set_loss(), backward=True)
    g.compute()
    want = ref.cross_entropy_loss_grad(1.0, logits, labels)
    np.testing.assert_allclose(g.grad(z), want, rtol=0, atol=GRAD_RTOL * np.abs(want).max())


# ---- ops without backward ------
@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("clamp", lambda p, q: G.clamp(p, -1.0, 1.0)),
        ("out_prod", lambda p, q: G.out_prod(p, q)),
    ],
)
def test_no_backward_raises_value_error(name: str, build) -> None:
    ctx = pg.Context(threads=1)
    p = ctx.param((4, 3))
    q = ctx.input((4, 5))
    loss = G.sum(build(p, q)).set_loss()
    with pytest.raises(ValueError, match=r"no backward pass for op .*" + name.upper()):
        ctx.graph(loss, backward=True)
    # the op is fine in a backward graph when nothing below it needs a gradient
    x = ctx.input((4, 3)).set(np.ones((4, 3), np.float32))
    q.set(np.ones((4, 5), np.float32))
    blocked = build(x, q)  # (4, 3), or (5, 3) for out_prod
    w = ctx.param((3,), init=np.zeros(3, np.float32))
    g = ctx.graph(G.sum(G.add(blocked, w)).set_loss(), backward=True)
    g.compute()
    np.testing.assert_array_equal(g.grad(w), np.full(3, blocked.shape[0], np.float32))


# ---- the checker itself ----------------------------------------------------------------------
def test_gradcheck_rejects_a_wrong_reference_gradient() -> None:
    """Finite differences vouch for the analytic formula: a wrong one cannot pass."""
    x = randn(4, 5, seed=40)
    with pytest.raises(AssertionError, match="finite differences"):
        gradcheck(G.sqr, np.square, [x], lambda d, a: [3.0 * a * d])


def test_gradcheck_rejects_a_wrong_forward() -> None:
    x = randn(4, 5, seed=41)
    with pytest.raises(AssertionError, match="forward"):
        gradcheck(G.sqr, lambda a: a**2 * (1 + 1e-3), [x], lambda d, a: [2.0 * (1 + 1e-3) * a * d])


def test_gradcheck_rejects_a_wrong_ggml_gradient() -> None:
    """A ggml gradient 1% off fails, even with the forward check relaxed to let it through."""
    x = randn(4, 5, seed=42)
    with pytest.raises(AssertionError, match="gradient of operand 0"):
        gradcheck(
            lambda t: G.scale(t, 1.01),
            lambda a: a,
            [x],
            lambda d, a: [d],
            fwd_rtol=0.1,
        )


# ---- fused causal attention (patch 0016) ------
@pytest.mark.parametrize(
    ("shape", "threads"),
    [((2, 3, 7, 5), 1), ((2, 3, 20, 16), 2), ((1, 2, 33, 16), 3), ((9, 4), 1)],
)
def test_attn_causal(shape: tuple, threads: int) -> None:
    """Finite differences at every entry are the reference (the op's backward recomputes
    the probabilities; a wrong recomputation would show here)."""
    inputs = [randn(*shape, seed=70 + i) for i in range(3)]
    gradcheck(
        lambda q, k, v: G.attn_causal(q, k, v, 0.3),
        lambda q, k, v: ref.attn_causal(q, k, v, 0.3),
        inputs,
        threads=threads,
    )


@pytest.mark.parametrize(
    ("b", "nh", "nkv", "t", "hs", "threads"),
    [(2, 4, 2, 7, 5, 1), (1, 4, 1, 20, 16, 2), (2, 6, 3, 9, 4, 3), (1, 8, 2, 33, 16, 2)],
)
def test_attn_causal_grouped_query(
    b: int, nh: int, nkv: int, t: int, hs: int, threads: int
) -> None:
    """K/V with fewer heads than q, shared without a copy: finite differences at every
    entry (dk, dv sum over each K/V head's group of query heads)."""
    inputs = [randn(b, nh, t, hs, seed=90)] + [randn(b, nkv, t, hs, seed=91 + i) for i in range(2)]
    gradcheck(
        lambda q, k, v: G.attn_causal(q, k, v, 0.4),
        lambda q, k, v: ref.attn_causal(q, k, v, 0.4),
        inputs,
        threads=threads,
    )


def test_attn_causal_on_views_of_a_fused_projection() -> None:
    """q, k, v as permuted views of one (B, T, 3C) tensor, as GPT-2 builds them."""
    b, t, nh, hs = 2, 6, 2, 4
    c = nh * hs

    def split(x):
        return [
            x[..., i * c : (i + 1) * c].reshape(b, t, nh, hs).transpose(0, 2, 1, 3)
            for i in range(3)
        ]

    def build(x):
        row = 3 * c
        views = [
            G.permute(
                G.view(x, (b, t, nh, hs), offset=i * c, strides=(t * row, row, hs, 1)),
                (0, 2, 1, 3),
            )
            for i in range(3)
        ]
        return G.attn_causal(*views, scale=0.5)

    gradcheck(build, lambda x: ref.attn_causal(*split(x), 0.5), [randn(b, t, 3 * c, seed=80)])


def test_attn_causal_shapes_are_checked() -> None:
    ctx = pg.Context()
    with pytest.raises(ValueError, match="one shape"):
        G.attn_causal(ctx.input((2, 4, 3)), ctx.input((2, 4, 3)), ctx.input((2, 5, 3)), 1.0)
    with pytest.raises(ValueError, match="H_kv dividing H"):  # 3 query heads, 2 K/V heads
        kv = ctx.input((1, 2, 4, 3))
        G.attn_causal(ctx.input((1, 3, 4, 3)), kv, kv, 1.0)
    with pytest.raises(ValueError, match="number of heads that divides"):  # the binding's own check
        kv = ctx.input((1, 2, 4, 3))
        _C.attn_causal(ctx.input((1, 3, 4, 3))._h, kv._h, kv._h, 1.0)
