"""Checking one layer: its forward against a numpy reference and every gradient against
central differences (the layer tests of GPT-2's and Llama's layers share it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from reference import ops_numpy as ref

import pyggml_train as pg
from helpers.gradcheck import FWD_RTOL, GRAD_RTOL, _readable, assert_close
from pyggml_train import ggml as G
from pyggml_train.layers import Build, KVCache, Param

FD_STEP = 1e-6  # float64 central differences


def randn(*shape: int, seed: int, scale: float = 1.0) -> np.ndarray:
    return (scale * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def random_values(params: list[Param], seed: int) -> dict[str, np.ndarray]:
    """Exchange-layout values away from init (LayerNorm weights != 1, biases != 0)."""
    rng = np.random.default_rng(seed)
    out = {}
    for p in params:
        base = 1.0 if p.init == "ones" else 0.0
        out[p.name] = (base + 0.3 * rng.standard_normal(p.shape)).astype(np.float32)
    return out


def check_layer(
    call: Callable[[Build, G.Tensor], G.Tensor],
    params: list[Param],
    reference: Callable[[np.ndarray, dict[str, np.ndarray]], np.ndarray],
    x: np.ndarray,
    seed: int = 0,
    fused_attention: bool = True,
    values: dict[str, np.ndarray] | None = None,
    dropout: tuple[int, int] | None = None,
) -> dict[str, np.ndarray]:
    """Forward and every gradient of ``call(g, x)`` against ``reference(x, values)`` (float64,
    exchange layout). ``x`` of integer dtype is an i32 input, not differentiated. ``dropout``
    (seed, counter) builds a training graph whose Dropout layers draw the masks of that
    state (the reference applies the same ones). Returns ggml's gradients (exchange layout,
    key 'x' for the input)."""
    values = random_values(params, seed) if values is None else values
    ctx = pg.Context(threads=2)
    float_x = np.issubdtype(x.dtype, np.floating)
    x_leaf = ctx.param(x.shape, name="x") if float_x else ctx.input(x.shape, dtype="i32")
    tensors = {p.name: ctx.param(p.device_shape, name=p.name) for p in params}
    state = ctx.input((2,), dtype="i32") if dropout is not None else None
    g = Build(ctx, tensors, fused_attention=fused_attention, dropout_state=state)
    out = _readable(call(g, x_leaf))
    weights = np.random.default_rng(100 + seed).standard_normal(out.shape)
    r = ctx.input(out.shape)
    graph = ctx.graph(G.sum(G.mul(out, r)).set_loss(), backward=True)
    x_leaf.set(x)
    for p in params:
        tensors[p.name].set(p.to_device(values[p.name]))
    r.set(weights.astype(np.float32))
    if state is not None:
        state.set(np.array(dropout, dtype=np.int32))
    graph.compute()

    x64 = x.astype(np.float64) if float_x else x
    v64 = {n: v.astype(np.float64) for n, v in values.items()}
    assert_close(out.numpy(), reference(x64, v64), FWD_RTOL, "forward")

    got = {p.name: p.from_device(graph.grad(tensors[p.name])) for p in params}
    wants = {}
    if float_x:
        got["x"] = graph.grad(x_leaf)
        wants["x"] = ref.central_diff(lambda xi: np.sum(weights * reference(xi, v64)), x64, FD_STEP)
    for name, value in v64.items():

        def loss(vi: np.ndarray, name: str = name) -> float:
            return float(np.sum(weights * reference(x64, {**v64, name: vi})))

        wants[name] = ref.central_diff(loss, value, FD_STEP)
    for name, want in wants.items():
        assert got[name].shape == want.shape, name
        assert_close(got[name], want, GRAD_RTOL, f"gradient of {name}")
    return got


def cached_attention(
    attn: Any, values: dict[str, np.ndarray], x: np.ndarray, kv_heads: int, t_max: int, chunk: int
) -> np.ndarray:
    """An attention layer's output for x (1, T, C) fed ``chunk`` tokens per compute through a
    KVCache of ``kv_heads`` heads and ``t_max`` positions: (1, T', C), T' the whole chunks."""
    c = x.shape[-1]
    ctx = pg.Context(threads=2)
    tensors = {p.name: ctx.param(p.device_shape, name=p.name) for p in attn.params()}
    xs = ctx.input((1, chunk, c))
    hs = attn.head_size
    cache = KVCache(
        ctx.tensor((kv_heads, t_max, hs)),
        ctx.tensor((kv_heads, t_max, hs)),
        ctx.input((chunk,), dtype="i32"),
        ctx.input((chunk, t_max)),
    )
    out = attn(Build(ctx, tensors), xs, cache).set_output()  # (1, chunk, C)
    graph = ctx.graph(out)
    for p in attn.params():
        tensors[p.name].set(p.to_device(values[p.name]))
    cache.keys.fill(0.0)
    cache.values.fill(0.0)
    got = []
    for start in range(0, x.shape[1] - chunk + 1, chunk):
        pos = np.arange(start, start + chunk)
        mask = np.where(np.arange(t_max)[None] <= pos[:, None], 0.0, -np.inf)  # (T, Tmax)
        xs.set(x[:, start : start + chunk])
        cache.positions.set(pos)
        cache.mask.set(mask.astype(np.float32))
        graph.compute()
        got.append(out.numpy())
    return np.concatenate(got, axis=1)  # (1, T', C)
