"""Float64 numpy forward of Llama/Qwen2 layers, written from the math (not from ggml or
transformers): RMSNorm, rotary embeddings in both pairings, grouped-query causal
attention, the SwiGLU MLP and the block. Parameters are HF-named arrays in
torch layout (Linear weight (out, in)); ``prefix`` ends with a dot.
Shapes: B batch, T time, C width, nh query heads, nkv key/value heads, hs head size.
"""

from __future__ import annotations

import numpy as np

Array = np.ndarray
Params = dict[str, Array]


def rms_norm(x: Array, w: Array, eps: float) -> Array:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x: Array, positions: Array, theta: float, mode: str) -> Array:
    """x (B, T, nh, hs) rotated at ``positions`` (T,): pair i turns by p * theta^(-2i/hs);
    'neox' pairs element i with i + hs/2, 'llama' 2i with 2i+1."""
    hs = x.shape[-1]
    angle = positions[:, None] * theta ** (-np.arange(0, hs, 2) / hs)  # (T, hs/2)
    cos, sin = np.cos(angle)[None, :, None], np.sin(angle)[None, :, None]  # (1, T, 1, hs/2)
    if mode == "neox":
        a, b = x[..., : hs // 2], x[..., hs // 2 :]
    else:
        a, b = x[..., 0::2], x[..., 1::2]
    ra, rb = a * cos - b * sin, a * sin + b * cos
    if mode == "neox":
        return np.concatenate([ra, rb], axis=-1)
    return np.stack([ra, rb], axis=-1).reshape(x.shape)


def linear(x: Array, p: Params, name: str) -> Array:
    y = x @ p[name + ".weight"].T
    return y + p[name + ".bias"] if name + ".bias" in p else y


def attention(
    x: Array,
    p: Params,
    prefix: str,
    n_head: int,
    n_kv_head: int,
    theta: float,
    mode: str = "neox",
    positions: Array | None = None,
) -> Array:
    """Causal grouped-query attention, x (B, T, C) -> (B, T, C); K/V head j serves query
    heads j*r .. j*r+r-1 (r = nh / nkv)."""
    b, t, _ = x.shape
    positions = np.arange(t) if positions is None else positions
    q = linear(x, p, prefix + "q_proj").reshape(b, t, n_head, -1)
    k = linear(x, p, prefix + "k_proj").reshape(b, t, n_kv_head, -1)
    v = linear(x, p, prefix + "v_proj").reshape(b, t, n_kv_head, -1)
    hs = q.shape[-1]
    q, k = rope(q, positions, theta, mode), rope(k, positions, theta, mode)
    r = n_head // n_kv_head
    q = q.transpose(0, 2, 1, 3)  # (B, nh, T, hs)
    k = np.repeat(k.transpose(0, 2, 1, 3), r, axis=1)  # (B, nh, T, hs)
    v = np.repeat(v.transpose(0, 2, 1, 3), r, axis=1)  # (B, nh, T, hs)
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hs)  # (B, nh, T, T)
    scores = np.where(np.tril(np.ones((t, t), dtype=bool)), scores, -np.inf)
    scores = scores - scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=-1, keepdims=True)
    y = (probs @ v).transpose(0, 2, 1, 3).reshape(b, t, n_head * hs)  # (B, T, nh*hs)
    return linear(y, p, prefix + "o_proj")


def gated_mlp(x: Array, p: Params, prefix: str) -> Array:
    gate = linear(x, p, prefix + "gate_proj")
    silu = gate / (1.0 + np.exp(-gate))
    return linear(silu * linear(x, p, prefix + "up_proj"), p, prefix + "down_proj")


def block(
    x: Array, p: Params, prefix: str, n_head: int, n_kv_head: int, theta: float, eps: float
) -> Array:
    h = rms_norm(x, p[prefix + "input_layernorm.weight"], eps)
    x = x + attention(h, p, prefix + "self_attn.", n_head, n_kv_head, theta)
    h = rms_norm(x, p[prefix + "post_attention_layernorm.weight"], eps)
    return x + gated_mlp(h, p, prefix + "mlp.")
