"""Float64 numpy GPT-2, forward and backward, on the HF-layout parameter dict.

The yardstick for the ggml model: written independently of it, one forward/backward
pair per layer, every buffer's shape in a comment (B batch, T time, C channels,
nh heads, hs head size, V vocab). tests/model/test_gpt2_reference.py proves the backward
functions against central finite differences.
"""

from __future__ import annotations

import numpy as np

from pyggml_train.config import GPT2Config

P = "transformer."
GELU_SCALE = np.sqrt(2.0 / np.pi)


# ---- embeddings: token + position ---------------------------------------------------------
def embedding_forward(idx: np.ndarray, wte: np.ndarray, wpe: np.ndarray) -> np.ndarray:
    t = idx.shape[1]
    return wte[idx] + wpe[:t]  # (B, T, C)


def embedding_backward(
    dout: np.ndarray, idx: np.ndarray, wte_shape: tuple, wpe_shape: tuple
) -> tuple[np.ndarray, np.ndarray]:
    dwte = np.zeros(wte_shape)  # (V, C)
    np.add.at(dwte, idx, dout)  # repeated tokens accumulate
    dwpe = np.zeros(wpe_shape)  # (block_size, C)
    dwpe[: idx.shape[1]] = dout.sum(axis=0)
    return dwte, dwpe


# ---- layernorm over the last axis ---------------------------------------------------------
def layernorm_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float):
    mean = x.mean(axis=-1, keepdims=True)  # (B, T, 1)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)  # (B, T, 1) biased, as GPT-2
    rstd = 1.0 / np.sqrt(var + eps)  # (B, T, 1)
    xhat = (x - mean) * rstd  # (B, T, C)
    out = xhat * w + b  # (B, T, C)
    return out, (xhat, rstd, w)


def layernorm_backward(dout: np.ndarray, cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xhat, rstd, w = cache
    dw = (dout * xhat).sum(axis=(0, 1))  # (C,)
    db = dout.sum(axis=(0, 1))  # (C,)
    dxhat = dout * w  # (B, T, C)
    # d/dx of (x - mean) * rstd: remove the mean component and the xhat-projection
    dx = rstd * (
        dxhat
        - dxhat.mean(axis=-1, keepdims=True)
        - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)
    )  # (B, T, C)
    return dx, dw, db


# ---- linear in Conv1D layout: x @ W + b, W (in, out) ----------------------------------------
def linear_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return x @ w + b  # (B, T, out)


def linear_backward(
    dout: np.ndarray, x: np.ndarray, w: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dx = dout @ w.T  # (B, T, in)
    dw = x.reshape(-1, x.shape[-1]).T @ dout.reshape(-1, dout.shape[-1])  # (in, out)
    db = dout.sum(axis=(0, 1))  # (out,)
    return dx, dw, db


# ---- causal multi-head self-attention on the fused qkv ------------------------------------
def _split_heads(x: np.ndarray, n_head: int) -> np.ndarray:
    b, t, c = x.shape
    return x.reshape(b, t, n_head, c // n_head).transpose(0, 2, 1, 3)  # (B, nh, T, hs)


def _merge_heads(x: np.ndarray) -> np.ndarray:
    b, nh, t, hs = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, t, nh * hs)  # (B, T, C)


def attention_forward(qkv: np.ndarray, n_head: int):
    c = qkv.shape[-1] // 3
    q, k, v = (_split_heads(qkv[..., i * c : (i + 1) * c], n_head) for i in range(3))  # (B,nh,T,hs)
    scale = 1.0 / np.sqrt(q.shape[-1])
    t = qkv.shape[1]
    future = np.triu(np.ones((t, t), dtype=bool), k=1)  # (T, T) True where key is after query
    scores = (q @ k.transpose(0, 1, 3, 2)) * scale  # (B, nh, T, T)
    scores = np.where(future, -np.inf, scores)
    scores = scores - scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores)
    probs /= probs.sum(axis=-1, keepdims=True)  # (B, nh, T, T), zeros on future keys
    y = _merge_heads(probs @ v)  # (B, T, C)
    return y, (q, k, v, probs, scale)


def attention_backward(dy: np.ndarray, cache) -> np.ndarray:
    q, k, v, probs, scale = cache
    dyh = _split_heads(dy, q.shape[1])  # (B, nh, T, hs)
    dprobs = dyh @ v.transpose(0, 1, 3, 2)  # (B, nh, T, T)
    dv = probs.transpose(0, 1, 3, 2) @ dyh  # (B, nh, T, hs)
    # softmax backward; masked entries have probs == 0 so get no gradient
    dscores = probs * (dprobs - (dprobs * probs).sum(axis=-1, keepdims=True))  # (B, nh, T, T)
    dq = (dscores @ k) * scale  # (B, nh, T, hs)
    dk = (dscores.transpose(0, 1, 3, 2) @ q) * scale  # (B, nh, T, hs)
    return np.concatenate(
        [_merge_heads(dq), _merge_heads(dk), _merge_heads(dv)], axis=-1
    )  # (B,T,3C)


# ---- GELU, tanh approximation (GPT-2's "gelu_new") -----------------------------------------
def gelu_forward(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + np.tanh(GELU_SCALE * (x + 0.044715 * x**3)))  # same shape as x


def gelu_backward(dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    th = np.tanh(GELU_SCALE * (x + 0.044715 * x**3))
    dinner = GELU_SCALE * (1.0 + 3 * 0.044715 * x**2)
    return dout * (0.5 * (1.0 + th) + 0.5 * x * (1.0 - th**2) * dinner)


# ---- MLP: c_fc -> GELU -> c_proj ------------------------------------------------------------
def mlp_forward(x: np.ndarray, params: dict, h: str):
    pre = linear_forward(x, params[h + "mlp.c_fc.weight"], params[h + "mlp.c_fc.bias"])  # (B,T,4C)
    act = gelu_forward(pre)  # (B, T, 4C)
    out = linear_forward(act, params[h + "mlp.c_proj.weight"], params[h + "mlp.c_proj.bias"])
    return out, (x, pre, act)  # out (B, T, C)


def mlp_backward(dout: np.ndarray, cache, params: dict, h: str, grads: dict) -> np.ndarray:
    x, pre, act = cache
    dact, grads[h + "mlp.c_proj.weight"], grads[h + "mlp.c_proj.bias"] = linear_backward(
        dout, act, params[h + "mlp.c_proj.weight"]
    )  # dact (B, T, 4C)
    dpre = gelu_backward(dact, pre)  # (B, T, 4C)
    dx, grads[h + "mlp.c_fc.weight"], grads[h + "mlp.c_fc.bias"] = linear_backward(
        dpre, x, params[h + "mlp.c_fc.weight"]
    )
    return dx  # (B, T, C)


# ---- transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)) ---------------------------
def block_forward(x: np.ndarray, params: dict, h: str, config: GPT2Config, drop=(1.0, 1.0)):
    """``drop``: dropout factors (mask / (1 - p)) of the attention and the MLP outputs."""
    ln1, ln1_c = layernorm_forward(
        x, params[h + "ln_1.weight"], params[h + "ln_1.bias"], config.ln_eps
    )
    qkv = linear_forward(ln1, params[h + "attn.c_attn.weight"], params[h + "attn.c_attn.bias"])
    att, att_c = attention_forward(qkv, config.n_head)  # (B, T, C)
    proj = linear_forward(att, params[h + "attn.c_proj.weight"], params[h + "attn.c_proj.bias"])
    x2 = x + proj * drop[0]  # (B, T, C)
    ln2, ln2_c = layernorm_forward(
        x2, params[h + "ln_2.weight"], params[h + "ln_2.bias"], config.ln_eps
    )
    mlp, mlp_c = mlp_forward(ln2, params, h)
    return x2 + mlp * drop[1], (ln1, ln1_c, qkv, att, att_c, ln2_c, mlp_c, drop)  # (B, T, C)


def block_backward(dout: np.ndarray, cache, params: dict, h: str, grads: dict) -> np.ndarray:
    ln1, ln1_c, qkv, att, att_c, ln2_c, mlp_c, drop = cache
    dln2 = mlp_backward(dout * drop[1], mlp_c, params, h, grads)  # (B, T, C)
    dx2_ln, grads[h + "ln_2.weight"], grads[h + "ln_2.bias"] = layernorm_backward(dln2, ln2_c)
    dx2 = dout + dx2_ln  # (B, T, C) residual path + through ln_2
    datt, grads[h + "attn.c_proj.weight"], grads[h + "attn.c_proj.bias"] = linear_backward(
        dx2 * drop[0], att, params[h + "attn.c_proj.weight"]
    )
    dqkv = attention_backward(datt, att_c)  # (B, T, 3C)
    dln1, grads[h + "attn.c_attn.weight"], grads[h + "attn.c_attn.bias"] = linear_backward(
        dqkv, ln1, params[h + "attn.c_attn.weight"]
    )
    dx_ln, grads[h + "ln_1.weight"], grads[h + "ln_1.bias"] = layernorm_backward(dln1, ln1_c)
    return dx2 + dx_ln  # (B, T, C)


# ---- cross-entropy, mean over B*T positions --------------------------------------------------
def cross_entropy_forward(logits: np.ndarray, targets: np.ndarray):
    shifted = logits - logits.max(axis=-1, keepdims=True)  # (B, T, V)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # (B, T, V)
    picked = np.take_along_axis(log_probs, targets[..., None], axis=-1)[..., 0]  # (B, T)
    return -picked.mean(), log_probs


def cross_entropy_backward(log_probs: np.ndarray, targets: np.ndarray) -> np.ndarray:
    dlogits = np.exp(log_probs)  # (B, T, V) softmax
    np.put_along_axis(
        dlogits, targets[..., None], np.take_along_axis(dlogits, targets[..., None], -1) - 1, -1
    )
    return dlogits / targets.size  # (B, T, V)


# ---- whole model ---------------------------------------------------------------------------
def _as_f64(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.asarray(value, dtype=np.float64) for name, value in params.items()}


def _forward(params: dict, idx: np.ndarray, config: GPT2Config, drop=None):
    """``drop``: dropout factors by stream (0 embeddings, 1 + 2i and 2 + 2i block i's
    attention and MLP outputs), or None for none."""
    f = (lambda s: 1.0) if drop is None else drop.__getitem__
    x = embedding_forward(idx, params[P + "wte.weight"], params[P + "wpe.weight"])  # (B, T, C)
    x = x * f(0)
    caches = []
    for i in range(config.n_layer):
        x, cache = block_forward(x, params, f"{P}h.{i}.", config, (f(1 + 2 * i), f(2 + 2 * i)))
        caches.append(cache)
    xf, lnf_c = layernorm_forward(
        x, params[P + "ln_f.weight"], params[P + "ln_f.bias"], config.ln_eps
    )
    logits = xf @ params[P + "wte.weight"].T  # (B, T, V) tied lm_head
    return logits, (caches, xf, lnf_c)


def forward(params: dict[str, np.ndarray], idx: np.ndarray, config: GPT2Config) -> np.ndarray:
    """Logits (B, T, V) in float64 for token ids idx (B, T)."""
    return _forward(_as_f64(params), np.asarray(idx), config)[0]


def loss_and_grads(
    params: dict[str, np.ndarray],
    idx: np.ndarray,
    targets: np.ndarray,
    config: GPT2Config,
    drop: dict[int, np.ndarray] | None = None,
) -> tuple[float, dict[str, np.ndarray]]:
    """Mean cross-entropy of targets (B, T) and its gradient for every parameter (float64);
    ``drop``: dropout factors by stream, as in :func:`_forward`."""
    params = _as_f64(params)
    idx, targets = np.asarray(idx), np.asarray(targets)
    logits, (caches, xf, lnf_c) = _forward(params, idx, config, drop)
    loss, log_probs = cross_entropy_forward(logits, targets)
    grads: dict[str, np.ndarray] = {}
    dlogits = cross_entropy_backward(log_probs, targets)  # (B, T, V)
    wte = params[P + "wte.weight"]
    dwte_head = dlogits.reshape(-1, dlogits.shape[-1]).T @ xf.reshape(-1, xf.shape[-1])  # (V, C)
    dxf = dlogits @ wte  # (B, T, C)
    dx, grads[P + "ln_f.weight"], grads[P + "ln_f.bias"] = layernorm_backward(dxf, lnf_c)
    for i in reversed(range(config.n_layer)):
        dx = block_backward(dx, caches[i], params, f"{P}h.{i}.", grads)
    dx = dx if drop is None else dx * drop[0]
    dwte_emb, grads[P + "wpe.weight"] = embedding_backward(
        dx, idx, wte.shape, params[P + "wpe.weight"].shape
    )
    grads[P + "wte.weight"] = dwte_head + dwte_emb  # tied: head and embedding both use wte
    return float(loss), {name: grads[name] for name in params}
