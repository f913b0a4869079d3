"""GPT-2 parameters in Hugging Face layout: names, shapes, init, inferring the config.

HF's GPT-2 stores Linear weights as Conv1D, i.e. (in, out), so a layer is
``x @ W + b``. The ggml model, the numpy reference and checkpoints all speak this one
naming so weights can move between them (and to/from HF files, pyggml_train/io/) without
renames. The
names, shapes and init come from GPT-2's layers (gpt2.GPT2Net, layers.Param); the LM
head is tied to ``transformer.wte.weight`` and has no tensor of its own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import numpy as np

from .config import GPT2Config
from .gpt2 import PREFIX, GPT2Net
from .layers import init_values

# every GPT-2 size (124M..1.5B) uses 64-wide heads; lets n_head be inferred from C
GPT2_HEAD_DIM = 64


def param_shapes(config: GPT2Config) -> dict[str, tuple[int, ...]]:
    """All parameter names (in HF order) and shapes for config; vocab rows are unpadded."""
    return {p.name: p.shape for p in GPT2Net(config).params()}


def param_count(config: GPT2Config) -> int:
    """Number of trainable parameters (tied lm_head counted once)."""
    return sum(math.prod(s) for s in param_shapes(config).values())


def init_params(config: GPT2Config, seed: int = 0) -> dict[str, np.ndarray]:
    """GPT-2 initialisation, float32, HF layout (all at once; see iter_init_params)."""
    return dict(iter_init_params(config, seed))


def iter_init_params(config: GPT2Config, seed: int = 0) -> Iterator[tuple[str, np.ndarray]]:
    """GPT-2 initialisation one tensor at a time (each layer's Param.init, layers.py):
    weights and embeddings ~ N(0, 0.02), the residual projections (attn.c_proj,
    mlp.c_proj) 0.02/sqrt(2*n_layer), biases 0, LayerNorm weight 1."""
    for p, value in init_values(GPT2Net(config).params(), seed):
        yield p.name, value


def infer_config(tensors: dict[str, np.ndarray], source: str = "checkpoint") -> GPT2Config:
    """Read a GPT2Config off tensor shapes (n_head from GPT-2's 64-wide heads)."""
    for needed in ("wte.weight", "wpe.weight"):
        if PREFIX + needed not in tensors:
            raise ValueError(f"{source} has no {PREFIX}{needed}; is this a GPT-2 checkpoint?")
    vocab, c = tensors[PREFIX + "wte.weight"].shape
    layers = {int(m.group(1)) for n in tensors if (m := re.match(r"transformer\.h\.(\d+)\.", n))}
    if c % GPT2_HEAD_DIM != 0:
        raise ValueError(
            f"can't infer n_head for n_embd={c} (not a multiple of GPT-2's head width "
            f"{GPT2_HEAD_DIM}); pass config= explicitly"
        )
    return GPT2Config(
        vocab_size=vocab,
        block_size=tensors[PREFIX + "wpe.weight"].shape[0],
        n_layer=max(layers) + 1 if layers else 0,
        n_head=c // GPT2_HEAD_DIM,
        n_embd=c,
    )
