"""Text generation with a KV cache: one single-token graph, built once, reused per token.

Each layer keeps persistent K and V caches (nh, Tmax, hs). Feeding token x at position
pos writes its k and v rows with set_rows at ``pos`` and attends over the whole cache
through a (1, Tmax) additive mask input that is 0 up to ``pos`` and -inf after it, so
positions not yet written never count. Prompt tokens go through the same graph one at
a time (prefill), then each new token costs one graph compute, not a full recompute.
"""

from __future__ import annotations

import math

import numpy as np

from . import ggml as G
from .gpt2 import GPT2, WTE, mlp, vocab_logits
from .hf_gpt2 import PREFIX


def pick_token(
    logits: np.ndarray,
    rng: np.random.Generator,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> int:
    """Next token from logits (V,): greedy if temperature == 0, else sampled after
    temperature scaling, then keeping the top_k most likely, then the smallest set whose
    probability reaches top_p (nucleus)."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if temperature == 0:
        return int(np.argmax(logits))
    z = np.asarray(logits, dtype=np.float64) / temperature  # (V,)
    if top_k is not None:
        if top_k <= 0:
            raise ValueError(f"top_k must be > 0, got {top_k}")
        if top_k < z.size:
            kth = np.partition(z, -top_k)[-top_k]
            z = np.where(z < kth, -np.inf, z)
    probs = np.exp(z - z.max())
    probs /= probs.sum()  # (V,)
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        order = np.argsort(-probs, kind="stable")  # (V,) most likely first
        cumulative = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cumulative, top_p)) + 1]  # always >= 1 token
        kept = np.zeros_like(probs)
        kept[keep] = probs[keep]
        probs = kept / kept.sum()
    return int(rng.choice(probs.size, p=probs))


class KVCacheDecoder:
    """GPT-2 decoding one token per compute against per-layer K/V caches (batch 1)."""

    def __init__(self, model: GPT2):
        cfg = model.config
        self.model, self.max_len = model, cfg.block_size
        c, nh = cfg.n_embd, cfg.n_head
        hs, t_max, v = c // nh, cfg.block_size, cfg.require_vocab_size()
        ctx, params = model.ctx, model.params
        self.token = ctx.input((1,), dtype="i32", name="kv_token")  # (1,)
        self.pos = ctx.input((1,), dtype="i32", name="kv_pos")  # (1,)
        self.mask = ctx.input((1, t_max), name="kv_mask")  # (1, Tmax) 0 or -inf
        self.k_cache = [ctx.tensor((nh, t_max, hs), name=f"k_cache{i}") for i in range(cfg.n_layer)]
        self.v_cache = [ctx.tensor((nh, t_max, hs), name=f"v_cache{i}") for i in range(cfg.n_layer)]
        ctx.allocate()
        for t in self.k_cache + self.v_cache:
            t.fill(0.0)

        x = G.get_rows(params[WTE], self.token) + G.get_rows(
            params[PREFIX + "wpe.weight"], self.pos
        )
        # x (1, C)
        for i in range(cfg.n_layer):
            h = f"{PREFIX}h.{i}."
            ln1 = G.layer_norm(x, params[h + "ln_1.weight"], params[h + "ln_1.bias"], cfg.ln_eps)
            qkv = G.linear(ln1, params[h + "attn.c_attn.weight"], params[h + "attn.c_attn.bias"])
            # qkv (1, 3C): one (nh, 1, hs) view per q, k, v
            heads = [
                G.view(qkv, (nh, 1, hs), offset=j * c, strides=(hs, 3 * c, 1)) for j in range(3)
            ]
            keys = G.set_rows(self.k_cache[i], heads[1], self.pos)  # (nh, Tmax, hs) after the write
            values = G.set_rows(self.v_cache[i], heads[2], self.pos)  # (nh, Tmax, hs)
            scores = G.mul_mat(keys, G.cont(heads[0]))  # (nh, 1, Tmax)
            probs = G.soft_max(scores, self.mask, scale=1.0 / math.sqrt(hs))  # (nh, 1, Tmax)
            y = G.mul_mat(G.cont(G.transpose(values)), probs)  # (nh, 1, hs)
            y = G.reshape(G.cont(G.permute(y, (1, 0, 2))), (1, c))  # (1, C)
            x = x + G.linear(y, params[h + "attn.c_proj.weight"], params[h + "attn.c_proj.bias"])
            ln2 = G.layer_norm(x, params[h + "ln_2.weight"], params[h + "ln_2.bias"], cfg.ln_eps)
            x = x + mlp(ln2, params, h)  # (1, C)
        assert x.shape == (1, c), x.shape
        x = G.layer_norm(
            x, params[PREFIX + "ln_f.weight"], params[PREFIX + "ln_f.bias"], cfg.ln_eps
        )
        self.logits = vocab_logits(G.mul_mat(params[WTE], x), v)  # (1, V)
        self.graph = ctx.graph(self.logits)
        self.length = 0  # positions filled in the caches

    def reset(self) -> None:
        """Forget the cached prefix (old rows stay but are masked until overwritten)."""
        self.length = 0

    def step(self, token: int) -> np.ndarray:
        """Append token at the next position; logits (V,) for the token after it."""
        if self.length >= self.max_len:
            raise ValueError(f"KV cache is full ({self.max_len} positions); reset() it first")
        pos = self.length
        self.token.set(np.array([token], dtype=np.int32))
        self.pos.set(np.array([pos], dtype=np.int32))
        mask = np.full((1, self.max_len), -np.inf, dtype=np.float32)  # (1, Tmax)
        mask[0, : pos + 1] = 0.0
        self.mask.set(mask)
        self.graph.compute()
        self.length = pos + 1
        return self.logits.numpy()[0]

    def prefill(self, tokens: list[int]) -> np.ndarray:
        """Reset and feed tokens; logits (V,) after the last one."""
        if not tokens:
            raise ValueError("prefill needs at least one token")
        self.reset()
        logits = None
        for tok in tokens:
            logits = self.step(int(tok))
        return logits


def generate(
    decoder: KVCacheDecoder,
    prompt: list[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
) -> list[int]:
    """prompt + max_new_tokens generated ids. Past block_size tokens the cache restarts
    on the last block_size // 2 tokens (a sliding window, re-prefilled)."""
    rng = np.random.default_rng(seed)
    tokens = [int(t) for t in prompt]
    logits = decoder.prefill(tokens[-decoder.max_len :])
    for i in range(max_new_tokens):
        nxt = pick_token(logits, rng, temperature, top_k, top_p)
        tokens.append(nxt)
        if i == max_new_tokens - 1:
            break
        if decoder.length >= decoder.max_len:
            logits = decoder.prefill(tokens[-(decoder.max_len // 2) :])
        else:
            logits = decoder.step(nxt)
    return tokens
