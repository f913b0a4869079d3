"""Text generation with a KV cache: one single-token graph, built once, reused per token.

The graph is the model's own net (the same layers as training) called with a position
input and one KVCache per attention layer: each layer keeps persistent K and V caches
(nh, Tmax, hs); feeding token x at position ``pos`` writes its k and v rows with set_rows
at ``pos`` and attends over the whole cache through a (1, Tmax) additive mask input that
is 0 up to ``pos`` and -inf after it, so positions not yet written never count. Prompt
tokens go through the same graph one at a time (prefill), then each new token costs one
graph compute, not a full recompute.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import ggml as G
from .layers import KVCache
from .loss import vocab_logits
from .model import Model
from .tokenizer import Tokenizer


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


# One-token graphs of models below this many parameters decode on one thread: their
# matmuls take about a millisecond, less than waking a second thread at each of the graph's
# node barriers costs (char-tiny, 0.8M parameters: 0.55 s for 200 tokens on 1 thread,
# 1.0 s on 2; docs/benchmarks.md, "Threads on a busy machine").
ONE_THREAD_DECODE_PARAMS = 16_000_000


def decode_threads(model: Model) -> int:
    """Threads for one-token decoding: one for a small model, else the context's."""
    return 1 if model.num_params() < ONE_THREAD_DECODE_PARAMS else model.ctx.threads


class KVCacheDecoder:
    """Decoding one token per compute against per-layer K/V caches (batch 1), through the
    model's own layers. The model's net lists its causal attention layers with
    ``attentions()`` (each with ``n_kv_head`` cached heads of ``head_size``) and takes
    ``net(g, idx, positions, caches)``, one cache per attention layer in that order (as
    gpt2.GPT2Net and llama.LlamaNet do)."""

    def __init__(self, model: Model):
        net, ctx = model.net, model.ctx
        self.model, self.max_len = model, model.block_size
        t_max = model.block_size
        self.token = ctx.input((1, 1), dtype="i32", name="kv_token")  # (B=1, T=1)
        positions = ctx.input((1,), dtype="i32", name="kv_pos")  # (T=1,)
        self.mask = ctx.input((1, t_max), name="kv_mask")  # (T=1, Tmax) 0 or -inf
        caches = [
            KVCache(
                ctx.tensor((a.n_kv_head, t_max, a.head_size), name=f"k_cache{i}"),
                ctx.tensor((a.n_kv_head, t_max, a.head_size), name=f"v_cache{i}"),
                positions,
                self.mask,
            )
            for i, a in enumerate(net.attentions())
        ]
        self.positions = positions
        ctx.allocate()
        for cache in caches:
            cache.keys.fill(0.0)
            cache.values.fill(0.0)
        # f32 matmuls: a bf16 model would re-cast every weight for each token
        g = model.builder(matmul_dtype="f32")
        logits = net(g, self.token, positions, caches)  # (1, 1, Vp)
        self.logits = vocab_logits(G.reshape(logits, (1, logits.shape[-1])), model.vocab_size)
        # self.logits (1, V)
        self.graph = ctx.graph(self.logits, arena=model.arena)  # the model's buffers
        self.threads = decode_threads(model)
        self.length = 0  # positions filled in the caches

    def reset(self) -> None:
        """Forget the cached prefix (old rows stay but are masked until overwritten)."""
        self.length = 0

    def step(self, token: int) -> np.ndarray:
        """Append token at the next position; logits (V,) for the token after it."""
        if self.length >= self.max_len:
            raise ValueError(f"KV cache is full ({self.max_len} positions); reset() it first")
        pos = self.length
        self.token.set(np.array([[token]], dtype=np.int32))
        self.positions.set(np.array([pos], dtype=np.int32))
        mask = np.full((1, self.max_len), -np.inf, dtype=np.float32)  # (1, Tmax)
        mask[0, : pos + 1] = 0.0
        self.mask.set(mask)
        ctx = self.model.ctx
        shared = ctx.threads  # compute(threads=) sets the context's count: give it back
        self.graph.compute(self.threads)
        ctx.threads = shared
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


class WindowDecoder:
    """Decoding for any model with ``graph(1, T, 'logits')`` (a spec's) without a KV cache.

    Each call computes one (1, T) logits graph, T the model's block_size, over the tokens so
    far, zero-padded on the right, and reads the logits at the last real position. That is
    exact for causal models (no position sees the padding after it); a non-causal one (an
    encoder) sees the padding, as it sees any future. Same protocol as KVCacheDecoder.
    """

    def __init__(self, model):
        self.max_len = model.block_size
        self.graph = model.graph(1, self.max_len, "logits")
        self.tokens: list[int] = []

    @property
    def length(self) -> int:
        return len(self.tokens)

    def reset(self) -> None:
        self.tokens = []

    def _logits(self) -> np.ndarray:
        idx = np.zeros((1, self.max_len), dtype=np.int32)  # (1, T)
        idx[0, : self.length] = self.tokens
        self.graph.run(idx)
        return self.graph.logits.numpy()[self.length - 1]  # (V,)

    def step(self, token: int) -> np.ndarray:
        """Append token; logits (V,) for the token after it."""
        if self.length >= self.max_len:
            raise ValueError(f"the window is full ({self.max_len} positions); reset() it first")
        self.tokens.append(int(token))
        return self._logits()

    def prefill(self, tokens: list[int]) -> np.ndarray:
        """Start over from tokens (at most max_len); logits (V,) after the last one."""
        if not 0 < len(tokens) <= self.max_len:
            raise ValueError(f"prefill takes 1 to {self.max_len} tokens, got {len(tokens)}")
        self.tokens = [int(t) for t in tokens]
        return self._logits()


def decoder_for(model) -> KVCacheDecoder | WindowDecoder:
    """KV-cache decoding when every attention of the model's net is causal, else a window."""
    return KVCacheDecoder(model) if getattr(model.net, "causal", True) else WindowDecoder(model)


@dataclass
class Sampler:
    """A trained model, its tokenizer and a decoder: text in, text out."""

    model: Model
    tokenizer: Tokenizer
    decoder: KVCacheDecoder | WindowDecoder

    def generate(
        self,
        prompt: str = "",
        max_new_tokens: int = 200,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 0,
    ) -> str:
        """The prompt and its continuation; an empty prompt starts from token 0."""
        ids = [int(t) for t in self.tokenizer.encode(prompt)] if prompt else [0]
        out = generate(self.decoder, ids, max_new_tokens, temperature, top_k, top_p, seed)
        return self.tokenizer.decode(out)
