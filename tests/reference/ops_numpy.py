"""Float64 numpy references for every ggml op the project uses: forward and analytic gradients.

Written from the math, not from ggml's sources, so that the tests compare two independent
implementations. Conventions follow the Python layer (``pyggml_train.ggml``): numpy shape
order, reductions over the last axis keep it as size 1. Gradient functions take ``dout``
(dL/d output) and return dL/d input(s) with the inputs' shapes.

Two kinds of broadcasting appear in ggml and both are modelled here:

* elementwise ops (add/sub/mul/div/repeat) *tile* the second operand: every dimension of it
  must divide the first's and index ``i`` reads ``b[i % b_dim]`` (numpy's rule when the
  dimension is 1);
* mul_mat/out_prod broadcast batch dimensions by *blocks*: batch ``i`` of the result uses
  batch ``i // (n_b / n_a)`` of the smaller operand (grouped-query style), not ``i % n_a``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Array = np.ndarray
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
GELU_COEF_A = 0.044715
_erf = np.vectorize(math.erf, otypes=[np.float64])


# ---- broadcasting helpers -------------------------------------------------------------------
def pad_shape(shape: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    """Prepend ones so ``shape`` has ``ndim`` dimensions (numpy's alignment rule)."""
    return (1,) * (ndim - len(shape)) + tuple(shape)


def tile_to(b: Array, shape: tuple[int, ...]) -> Array:
    """ggml's elementwise broadcast: tile ``b`` (each dim dividing ``shape``'s) up to ``shape``."""
    pb = pad_shape(b.shape, len(shape))
    if any(s % d for s, d in zip(shape, pb, strict=False)):
        raise ValueError(f"{b.shape} does not tile to {shape}")
    return np.tile(b.reshape(pb), tuple(s // d for s, d in zip(shape, pb, strict=False)))


def untile(g: Array, shape: tuple[int, ...]) -> Array:
    """Adjoint of :func:`tile_to`: sum the tiles of ``g`` back onto ``shape``."""
    pb = pad_shape(shape, g.ndim)
    split: list[int] = []
    for s, d in zip(g.shape, pb, strict=False):
        split += [s // d, d]
    summed = g.reshape(split).sum(axis=tuple(range(0, 2 * g.ndim, 2)))
    return summed.reshape(shape)


def block_batch(a: Array, batch: tuple[int, ...]) -> Array:
    """mul_mat's batch broadcast: repeat each batch entry of ``a (..., r, c)`` in a block."""
    pa = a.reshape(pad_shape(a.shape, len(batch) + 2))
    for ax, n in enumerate(batch):
        if n % pa.shape[ax]:
            raise ValueError(f"batch {a.shape[:-2]} does not divide {batch}")
        pa = np.repeat(pa, n // pa.shape[ax], axis=ax)
    return pa


def unblock_batch(g: Array, shape: tuple[int, ...]) -> Array:
    """Adjoint of :func:`block_batch`: sum each block back onto ``shape``."""
    ps = pad_shape(shape, g.ndim)
    split: list[int] = []
    for ax in range(g.ndim - 2):
        split += [ps[ax], g.shape[ax] // ps[ax]]
    split += list(g.shape[-2:])
    axes = tuple(range(1, 2 * (g.ndim - 2), 2))
    return g.reshape(split).sum(axis=axes).reshape(shape)


# ---- elementwise binary ops (second operand tiled) ---------------------------------------
def add(a: Array, b: Array) -> Array:
    return a + tile_to(b, a.shape)


def add_grad(dout: Array, a: Array, b: Array) -> tuple[Array, Array]:
    return dout, untile(dout, b.shape)


def sub(a: Array, b: Array) -> Array:
    return a - tile_to(b, a.shape)


def sub_grad(dout: Array, a: Array, b: Array) -> tuple[Array, Array]:
    return dout, -untile(dout, b.shape)


def mul(a: Array, b: Array) -> Array:
    return a * tile_to(b, a.shape)


def mul_grad(dout: Array, a: Array, b: Array) -> tuple[Array, Array]:
    bt = tile_to(b, a.shape)
    return dout * bt, untile(dout * a, b.shape)


def div(a: Array, b: Array) -> Array:
    return a / tile_to(b, a.shape)


def div_grad(dout: Array, a: Array, b: Array) -> tuple[Array, Array]:
    bt = tile_to(b, a.shape)
    return dout / bt, untile(-dout * a / bt**2, b.shape)


def scale(a: Array, s: float) -> Array:
    return a * s


# ---- matrix products -----------------------------------------------------------------------
def mul_mat(a: Array, b: Array) -> Array:
    """ggml_mul_mat: ``a (..., N, K)``, ``b (..., M, K)`` -> ``b @ a^T`` ``(..., M, N)``."""
    nd = max(a.ndim, b.ndim, 2)
    b4 = b.reshape(pad_shape(b.shape, nd))
    a4 = block_batch(a, b4.shape[:-2])
    return b4 @ np.swapaxes(a4, -1, -2)


def mul_mat_grad(dout: Array, a: Array, b: Array) -> tuple[Array, Array]:
    nd = max(a.ndim, b.ndim, 2)
    b4 = b.reshape(pad_shape(b.shape, nd))
    a4 = block_batch(a, b4.shape[:-2])
    da4 = np.swapaxes(dout, -1, -2) @ b4  # (..., N, K)
    db = dout @ a4  # (..., M, K)
    return unblock_batch(da4, a.shape), db.reshape(b.shape)


def out_prod(a: Array, b: Array) -> Array:
    """ggml_out_prod: ``a (..., K, M)``, ``b (..., K, P)`` -> ``b^T @ a`` ``(..., P, M)``."""
    nd = max(a.ndim, b.ndim, 2)
    b4 = b.reshape(pad_shape(b.shape, nd))
    a4 = block_batch(a, b4.shape[:-2])
    return np.swapaxes(b4, -1, -2) @ a4


# ---- layout ops ------------------------------------------------------------------------------
def transpose(a: Array) -> Array:
    return np.swapaxes(a.reshape(pad_shape(a.shape, 2)), -1, -2)


def get_rows(table: Array, idx: Array) -> Array:
    return table[idx]


def get_rows_grad(dout: Array, table_shape: tuple[int, ...], idx: Array) -> Array:
    """Rows picked several times accumulate their gradients."""
    g = np.zeros(table_shape)
    np.add.at(g, idx.reshape(-1), dout.reshape(-1, table_shape[-1]))
    return g


# ---- normalisation ---------------------------------------------------------------------------
def norm(x: Array, eps: float = 1e-5) -> Array:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps)


def norm_grad(dout: Array, x: Array, eps: float = 1e-5) -> Array:
    """d norm(x) / dx applied to dout: project out the mean and the xhat direction."""
    mu = x.mean(axis=-1, keepdims=True)
    rstd = 1.0 / np.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + eps)
    xhat = (x - mu) * rstd
    return rstd * (
        dout - dout.mean(axis=-1, keepdims=True) - xhat * (dout * xhat).mean(axis=-1, keepdims=True)
    )


def rms_norm(x: Array, eps: float = 1e-6) -> Array:
    return x / np.sqrt((x**2).mean(axis=-1, keepdims=True) + eps)


def rms_norm_grad(dout: Array, x: Array, eps: float = 1e-6) -> Array:
    n = x.shape[-1]
    ms = (x**2).mean(axis=-1, keepdims=True) + eps
    r = 1.0 / np.sqrt(ms)
    return r * dout - x * r**3 * (dout * x).sum(axis=-1, keepdims=True) / n


def layer_norm(x: Array, w: Array, b: Array, eps: float = 1e-5) -> Array:
    return norm(x, eps) * w + b


def layer_norm_grad(
    dout: Array, x: Array, w: Array, b: Array, eps: float = 1e-5
) -> tuple[Array, Array, Array]:
    xhat = norm(x, eps)
    lead = tuple(range(x.ndim - 1))
    return norm_grad(dout * w, x, eps), (dout * xhat).sum(axis=lead), dout.sum(axis=lead)


# ---- activations -------------------------------------------------------------------------------
def gelu(x: Array) -> Array:
    """GPT-2's GELU (tanh approximation)."""
    return 0.5 * x * (1.0 + np.tanh(SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)))


def gelu_grad(dout: Array, x: Array) -> Array:
    u = SQRT_2_OVER_PI * x * (1.0 + GELU_COEF_A * x * x)
    du = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_COEF_A * x * x)
    t = np.tanh(u)
    return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)


def gelu_erf(x: Array) -> Array:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def gelu_erf_grad(dout: Array, x: Array) -> Array:
    cdf = 0.5 * (1.0 + _erf(x / math.sqrt(2.0)))
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
    return dout * (cdf + x * pdf)


def silu(x: Array) -> Array:
    return x / (1.0 + np.exp(-x))


def silu_grad(dout: Array, x: Array) -> Array:
    s = 1.0 / (1.0 + np.exp(-x))
    return dout * s * (1.0 + x * (1.0 - s))


def relu(x: Array) -> Array:
    return np.maximum(x, 0.0)


def relu_grad(dout: Array, x: Array) -> Array:
    return dout * (x > 0)


def tanh(x: Array) -> Array:
    return np.tanh(x)


def tanh_grad(dout: Array, x: Array) -> Array:
    return dout * (1.0 - np.tanh(x) ** 2)


def exp_grad(dout: Array, x: Array) -> Array:
    return dout * np.exp(x)


def log_grad(dout: Array, x: Array) -> Array:
    return dout / x


def sqr_grad(dout: Array, x: Array) -> Array:
    return 2.0 * x * dout


def sqrt_grad(dout: Array, x: Array) -> Array:
    return 0.5 * dout / np.sqrt(x)


def clamp(x: Array, lo: float, hi: float) -> Array:
    return np.clip(x, lo, hi)


# ---- reductions ------------------------------------------------------------------------------
def sum_rows(x: Array) -> Array:
    return x.sum(axis=-1, keepdims=True)


def sum_rows_grad(dout: Array, x: Array) -> Array:
    return np.broadcast_to(dout, x.shape).copy()


def mean(x: Array) -> Array:
    return x.mean(axis=-1, keepdims=True)


def mean_grad(dout: Array, x: Array) -> Array:
    return np.broadcast_to(dout / x.shape[-1], x.shape).copy()


# ---- softmax, masks, loss ----------------------------------------------------------------
def causal_mask(t_q: int, t_k: int, n_past: int = 0) -> Array:
    """0 where key j <= query i + n_past, -inf above: the additive causal mask."""
    i = np.arange(t_q)[:, None]
    j = np.arange(t_k)[None, :]
    return np.where(j > i + n_past, -np.inf, 0.0)


def diag_mask_inf(x: Array, n_past: int = 0) -> Array:
    return x + causal_mask(x.shape[-2], x.shape[-1], n_past)


def soft_max(x: Array, mask: Array | None = None, scale: float = 1.0) -> Array:
    """softmax(scale * x + mask) over the last axis; ``mask`` tiles like an elementwise operand."""
    z = scale * x
    if mask is not None:
        z = z + tile_to(mask, x.shape)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def soft_max_grad(dout: Array, x: Array, mask: Array | None = None, scale: float = 1.0) -> Array:
    y = soft_max(x, mask, scale)
    return scale * y * (dout - (dout * y).sum(axis=-1, keepdims=True))


def attn_causal(q: Array, k: Array, v: Array, scale: float) -> Array:
    """Causal softmax attention over the last two axes: q (..., H, T, hs), k and v
    (..., H_kv, T, hs), each K/V head repeated for its group of H / H_kv consecutive query
    heads (Llama's repeat_kv); 2-D operands are one head."""
    if q.ndim > 2:
        r = q.shape[-3] // k.shape[-3]
        k, v = np.repeat(k, r, axis=-3), np.repeat(v, r, axis=-3)
    s = scale * (q @ np.swapaxes(k, -1, -2))
    t = s.shape[-1]
    s = s + np.triu(np.full((t, t), -np.inf), 1)
    p = np.exp(s - s.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)) @ v


def log_softmax(x: Array) -> Array:
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def cross_entropy_loss(logits: Array, labels: Array) -> Array:
    """Mean over rows of ``-sum(labels * log_softmax(logits))`` (a 0-d array)."""
    rows = math.prod(logits.shape[:-1])
    return np.asarray(-(labels * log_softmax(logits)).sum() / rows)


def cross_entropy_loss_grad(dout: float | Array, logits: Array, labels: Array) -> Array:
    rows = math.prod(logits.shape[:-1])
    p = np.exp(log_softmax(logits))
    return float(dout) * (p * labels.sum(axis=-1, keepdims=True) - labels) / rows


# ---- optimizers -------------------------------------------------------------------------------
def adamw_steps(
    w: Array,
    grads: list[Array],
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
) -> tuple[Array, Array, Array]:
    """Decoupled-weight-decay Adam (Loshchilov & Hutter) with bias correction, one step per grad.

    Returns (w, m, v) after the last step.
    """
    w = w.astype(np.float64).copy()
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, g in enumerate(grads, start=1):
        w = w * (1.0 - lr * weight_decay)
        m = beta1 * m + (1.0 - beta1) * g
        v = beta2 * v + (1.0 - beta2) * g * g
        m_hat = m / (1.0 - beta1**t)
        v_hat = v / (1.0 - beta2**t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w, m, v


def sgd_step(w: Array, g: Array, lr: float, weight_decay: float) -> Array:
    return w * (1.0 - lr * weight_decay) - lr * g


# ---- finite differences --------------------------------------------------------------------
def central_diff(
    f: Callable[[Array], float], x: Array, h: float = 1e-6, indices: Array | None = None
) -> Array:
    """d f / d x by central differences in float64 (at ``indices`` of x.flat, others 0)."""
    x = x.astype(np.float64).copy()
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size) if indices is None else indices:
        old = flat[i]
        flat[i] = old + h
        fp = f(x)
        flat[i] = old - h
        fm = f(x)
        flat[i] = old
        gflat[i] = (fp - fm) / (2.0 * h)
    return g
