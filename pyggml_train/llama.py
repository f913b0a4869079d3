"""Llama and Qwen2: their layers (:class:`LlamaNet`) and the model the trainer drives
(:class:`Llama`), composed from layers.py like GPT-2 (gpt2.py).

Parameter names are Hugging Face's ``LlamaForCausalLM`` / ``Qwen2ForCausalLM`` names in
torch layout (Linear weights (out, in)), so state dicts move to and from HF files without
renames. Qwen2 differs only in its config (Q/K/V biases, rotary base; config.Qwen2Config).
Shapes: B batch, T time, C channels, V vocab.
"""

from __future__ import annotations

import numpy as np

from . import ggml as G
from .adapters import LoraConfig
from .config import LlamaConfig
from .layers import (
    Build,
    Embedding,
    GroupedQueryAttention,
    KVCache,
    Linear,
    LlamaBlock,
    Param,
    RMSNorm,
)
from .model import Model, graph_options

PREFIX = "model."


class LlamaNet:
    """embed_tokens, n_layer pre-RMSNorm blocks ``layers.{i}`` (rotary grouped-query
    attention, SwiGLU MLP), norm, and ``lm_head`` (its own weight, or embed_tokens when
    tied)."""

    def __init__(self, config: LlamaConfig):
        v, c, std = config.require_vocab_size(), config.n_embd, config.init_std
        self.embed_tokens = Embedding(PREFIX + "embed_tokens", v, c, std=std)
        self.layers = [
            LlamaBlock(
                f"{PREFIX}layers.{i}",
                c,
                config.n_head,
                config.n_kv_head,
                config.d_ff,
                config.norm_eps,
                qkv_bias=config.qkv_bias,
                rope_theta=config.rope_theta,
                std=std,
            )
            for i in range(config.n_layer)
        ]
        self.norm = RMSNorm(PREFIX + "norm", c, config.norm_eps)
        tied = self.embed_tokens.weight if config.tie_embeddings else None
        self.lm_head = Linear("lm_head", c, v, bias=False, std=std, tied_to=tied)

    def params(self) -> list[Param]:
        """Every parameter in HF order (the init draws in this order)."""
        blocks = [p for block in self.layers for p in block.params()]
        return self.embed_tokens.params() + blocks + self.norm.params() + self.lm_head.params()

    def attentions(self) -> list[GroupedQueryAttention]:
        """The attention layers, in the order :meth:`__call__` takes their KV caches."""
        return [block.self_attn for block in self.layers]

    def __call__(
        self,
        g: Build,
        idx: G.Tensor,
        positions: G.Tensor | None = None,
        caches: list[KVCache] | None = None,
    ) -> G.Tensor:
        """Logits (B, T, V) for i32 ids ``idx`` (B, T); with one KV cache per block,
        rotated at the caches' positions (decoding, sample.py; ``positions`` is the same
        tensor, taken for the decoder's protocol)."""
        x = self.embed(g, idx)  # (B, T, C)
        for i, block in enumerate(self.layers):
            x = block(g, x, caches[i] if caches is not None else None)  # (B, T, C)
        return self.head(g, x)  # (B, T, V)

    # the three stages activation recomputation (recompute.py) runs as graphs of their own
    @property
    def blocks(self) -> list[LlamaBlock]:
        return self.layers

    def embed(self, g: Build, idx: G.Tensor) -> G.Tensor:
        """The residual stream (B, T, C) entering the first block."""
        return self.embed_tokens(g, idx)

    def head(self, g: Build, x: G.Tensor) -> G.Tensor:
        """Logits (B, T, V) of the last block's output x (B, T, C)."""
        return self.lm_head(g, self.norm(g, x))


class Llama(Model):
    """A Llama or Qwen2 on a ggml Context (see Model); graph options from the config as
    GPT-2's (``attention``, ``matmul_dtype``, ``loss_kind``, ``recompute``)."""

    def __init__(
        self,
        config: LlamaConfig,
        params: dict[str, np.ndarray] | None = None,
        ctx: G.Context | None = None,
        seed: int = 0,
        lora: LoraConfig | None = None,
        base_dtype: str = "f32",
    ):
        self.config = config
        ctx = ctx or G.Context("cpu")
        super().__init__(
            LlamaNet(config),
            ctx,
            config.require_vocab_size(),
            config.block_size,
            params=params,
            seed=seed,
            lora=lora,
            base_dtype=base_dtype,
            **graph_options(config, ctx),
        )

    def describe(self) -> str:
        c = self.config
        return (
            f"{c.model_type}: {c.n_layer} layers, {c.n_head} heads ({c.n_kv_head} K/V), "
            f"C={c.n_embd}"
        )
