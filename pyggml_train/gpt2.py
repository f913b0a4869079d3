"""GPT-2: its layers (:class:`GPT2Net`) and the model the trainer drives (:class:`GPT2`).

The parameter layout (HF names and shapes, the device's transposed Linear weights and
padded wte, init) is the layers' own (layers.py); the graphs, state dicts and numpy entry
points are model.py's. Shapes: B batch, T time, C channels, V vocab, Vp padded vocab.
"""

from __future__ import annotations

import math

import numpy as np

from . import ggml as G
from .adapters import LoraConfig
from .config import GPT2Config
from .layers import (
    Build,
    Dropout,
    Embedding,
    GPTBlock,
    KVCache,
    LayerNorm,
    LearnedPositionalEncoding,
    Linear,
    Param,
    SelfAttention,
)
from .model import Model, graph_options

PREFIX = "transformer."


class GPT2Net:
    """GPT-2's layers as Hugging Face's ``GPT2LMHeadModel`` names them: wte + wpe, n_layer
    pre-LN blocks ``h.{i}`` (MLP 4C wide, tanh GELU), ln_f, and an LM head tied to wte."""

    def __init__(self, config: GPT2Config):
        v, c = config.require_vocab_size(), config.n_embd
        self.wte = Embedding(PREFIX + "wte", v, c, device_rows=config.padded_vocab_size)
        self.wpe = LearnedPositionalEncoding(PREFIX + "wpe", config.block_size, c)
        self.drop = Dropout(config.dropout, stream=0)  # on wte + wpe
        residual_std = 0.02 / math.sqrt(2 * config.n_layer)
        self.h = [
            GPTBlock(
                f"{PREFIX}h.{i}",
                c,
                config.n_head,
                4 * c,
                config.ln_eps,
                residual_std,
                dropout=config.dropout,
                stream=1 + 2 * i,  # attention output 1 + 2i, MLP output 2 + 2i
            )
            for i in range(config.n_layer)
        ]
        self.ln_f = LayerNorm(PREFIX + "ln_f", c, config.ln_eps)
        self.lm_head = Linear("lm_head", c, v, bias=False, tied_to=self.wte.weight)

    def params(self) -> list[Param]:
        """Every parameter in HF order (the init draws in this order)."""
        blocks = [p for block in self.h for p in block.params()]
        return self.wte.params() + self.wpe.params() + blocks + self.ln_f.params()

    def attentions(self) -> list[SelfAttention]:
        """The attention layers, in the order :meth:`__call__` takes their KV caches."""
        return [block.attn for block in self.h]

    def __call__(
        self,
        g: Build,
        idx: G.Tensor,
        positions: G.Tensor | None = None,
        caches: list[KVCache] | None = None,
    ) -> G.Tensor:
        """Logits (B, T, Vp) for i32 ids ``idx`` (B, T) at positions 0..T-1, or at the i32
        ``positions`` (T,) with one KV cache per block (decoding, see sample.py)."""
        x = self.embed(g, idx, positions)  # (B, T, C)
        for i, block in enumerate(self.h):
            x = block(g, x, caches[i] if caches is not None else None)  # (B, T, C)
        return self.head(g, x)  # (B, T, Vp)

    # the three stages activation recomputation (recompute.py) runs as graphs of their own
    @property
    def blocks(self) -> list[GPTBlock]:
        return self.h

    def embed(self, g: Build, idx: G.Tensor, positions: G.Tensor | None = None) -> G.Tensor:
        """The residual stream (B, T, C) entering the first block: dropout(wte + wpe)."""
        return self.drop(g, self.wpe(g, self.wte(g, idx), positions))

    def head(self, g: Build, x: G.Tensor) -> G.Tensor:
        """Logits (B, T, Vp) of the last block's output x (B, T, C)."""
        return self.lm_head(g, self.ln_f(g, x))


class GPT2(Model):
    """GPT-2 on a ggml Context: HF-named parameters, cached graphs per (B, T) (see Model).

    The graph options are config fields (validated in config.py): ``attention`` 'fused'
    (one ATTN_CAUSAL op, CPU and Vulkan kernels), 'unfused' (mul_mat and a masked soft_max)
    or 'auto' (fused on the CPU and Vulkan); ``matmul_dtype`` 'bf16' (mixed precision, f32 master
    weights); ``loss_kind`` (loss.LossHead); ``recompute`` 'blocks' (recompute.py).
    """

    def __init__(
        self,
        config: GPT2Config,
        params: dict[str, np.ndarray] | None = None,
        ctx: G.Context | None = None,
        seed: int = 0,
        lora: LoraConfig | None = None,
        base_dtype: str = "f32",
    ):
        self.config = config  # validated once in config.py, including the graph options below
        ctx = ctx or G.Context("cpu")
        super().__init__(
            GPT2Net(config),
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
        return f"{c.n_layer} layers, {c.n_head} heads, C={c.n_embd}"
