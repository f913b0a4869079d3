"""A LoRA adapter against its base model: which weights can carry one, whether an adapter
fits a base, and merging it in.

The adapter files (lora_gguf.py for llama.cpp, peft.py for PEFT) and ``--merge-lora`` all
ask this module, so "fits the base" means one thing everywhere: every adapted name is a
matrix-multiply weight of the base (not an embedding), A is (rank, in_features) and B is
(out_features, rank), whatever layout the base stores the weight in (GPT-2's Conv1D keeps
(in, out), so its merged update is transposed).
"""

from __future__ import annotations

import numpy as np

from ..adapters import LoraWeights
from ..config import GPT2Config, LlamaConfig
from ..gpt2 import GPT2Net
from ..layers import Linear, linear_layers
from ..llama import LlamaNet


def adaptable_weights(config: GPT2Config | LlamaConfig) -> dict[str, Linear]:
    """The base's Linear layers by weight name (HF), the weights an adapter may update:
    embeddings and a tied LM head own no Linear weight."""
    return linear_layers(LlamaNet(config) if isinstance(config, LlamaConfig) else GPT2Net(config))


def check_adapter(lora: LoraWeights, config: GPT2Config | LlamaConfig, source: str) -> None:
    """Refuse an adapter that names weights the base lacks or whose shapes differ."""
    weights = adaptable_weights(config)
    unknown = sorted(set(lora.a) - set(weights))
    if unknown:
        family = config.model_type if isinstance(config, LlamaConfig) else "gpt2"
        raise ValueError(
            f"{source}: the adapter names {unknown[:3]}{' ...' if len(unknown) > 3 else ''}, "
            f"which are not matrix weights of the {family} base (expected names like "
            f"{next(iter(weights))!r}); was it trained on another model?"
        )
    for name in lora.a:
        n_in, n_out = weights[name].in_features, weights[name].out_features
        a, b = lora.a[name].shape, lora.b[name].shape
        if a[1] != n_in or b[0] != n_out:
            raise ValueError(
                f"{source}: {name} is {n_in} -> {n_out} in the base, so A must be "
                f"(rank, {n_in}) and B ({n_out}, rank); got A {a}, B {b}: the adapter belongs "
                "to a base of another size"
            )


def merge_lora(
    params: dict[str, np.ndarray], lora: LoraWeights, config: GPT2Config | LlamaConfig
) -> dict[str, np.ndarray]:
    """Base weights with the adapter's updates added (float32, a new dict; ``params`` is
    not touched): what ``export --merge-lora`` writes in any format."""
    check_adapter(lora, config, "LoRA adapter")
    weights = adaptable_weights(config)
    merged = dict(params)
    for name in lora.a:
        if name not in params:
            raise ValueError(f"the base weights lack {name}, which the adapter updates")
        delta = lora.delta(name)  # (out, in), float64
        if weights[name].weight.transposed:
            delta = delta.T  # Conv1D stores (in, out)
        merged[name] = (np.asarray(params[name], dtype=np.float64) + delta).astype(np.float32)
    return merged
