"""The compiler: a parsed spec as layers (:class:`SpecNet`), a trainable model
(:class:`SpecModel`) and the run's TrainConfig. What each node builds is its node type's
own (nodes.py); nothing here names a node type."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import ggml as G
from .. import layers as L
from ..config import TrainConfig, train_config
from ..model import FUSED_ATTENTION_DEVICES, Model
from .nodes import NODE_TYPES
from .schema import BuildContext, Spec, SpecError


class SpecNet:
    """A spec's layers wired as its links say: token ids (B, T) -> logits (B, T, V').

    Parameter names are ``<node id>.<layer's name>`` (``block0.attn.c_attn.weight``), in
    the order of the nodes, so the same spec and seed give the same initial weights.
    With every attention causal (no TransformerEncoderLayer, no MultiheadAttention with
    causal false), the net decodes with KV caches like GPT-2 (sample.KVCacheDecoder).
    """

    def __init__(self, spec: Spec):
        self.spec = spec
        n_blocks = sum(n.type == "GPTBlock" for n in spec.nodes.values())
        self.layers: dict[str, Any] = {}
        stream = 0
        for node in spec.nodes.values():
            kind = NODE_TYPES[node.type]
            width = spec.input_shapes(node)[0][-1] if node.inputs else 0
            at = BuildContext(spec, self.layers, width, stream, n_blocks)
            self.layers[node.id] = kind.build(node, at) if kind.build is not None else None
            stream += kind.streams
        self.causal = all(NODE_TYPES[n.type].causal(n) for n in spec.nodes.values())

    def params(self) -> list[L.Param]:
        return [p for layer in self.layers.values() if layer is not None for p in layer.params()]

    def attentions(self) -> list[L.SelfAttention]:
        """The attention layers, in the order :meth:`__call__` takes their KV caches."""
        found = []
        for node in self.spec.nodes.values():
            attention = NODE_TYPES[node.type].attention
            if attention is not None:
                found.append(attention(self.layers[node.id]))
        return found

    def __call__(
        self,
        g: L.Build,
        idx: G.Tensor,
        positions: G.Tensor | None = None,
        caches: list[L.KVCache] | None = None,
    ) -> G.Tensor:
        """Logits (B, T, V') for i32 ids ``idx`` (B, T) at positions 0..T-1, or at the i32
        ``positions`` (T,) with one KV cache per attention layer (decoding)."""
        if caches is not None and not self.causal:
            raise ValueError("a spec with non-causal attention can't decode with a KV cache")
        pending = iter(caches or [])
        values: dict[tuple[str, int], G.Tensor] = {}
        for node in self.spec.nodes.values():
            kind = NODE_TYPES[node.type]
            if kind.category == "data":
                values[(node.id, 0)] = idx  # (B, T); the targets feed the loss head, not the net
                continue
            if kind.category == "loss":
                return values[node.inputs[0]]  # (B, T, V')
            layer = self.layers[node.id]
            ins = [values[src] for src in node.inputs]
            if kind.takes_positions:
                out = layer(g, ins[0], positions)
            elif kind.attention is not None and caches is not None:
                out = layer(g, ins[0], next(pending))
            else:
                out = layer(g, *ins)
            values[(node.id, 0)] = out
        raise SpecError(None, "the spec has no Loss node")  # parse_spec rules this out


class SpecModel(Model):
    """The trainable model of a spec (contract B): ``config`` is None, the spec says it all."""

    config = None

    def __init__(self, spec: Spec, ctx: G.Context, **kwargs: Any):
        block_size = spec.nodes[spec.data].params["block_size"]
        super().__init__(SpecNet(spec), ctx, spec.vocab_size, block_size, **kwargs)
        self.spec = spec
        self.spec_source = spec.source

    def describe(self) -> str:
        return f"spec {self.spec.name!r}, {len(self.spec.nodes)} nodes"


def build_model(
    spec: Spec,
    ctx: G.Context | None = None,
    seed: int = 0,
    params: dict[str, np.ndarray] | None = None,
    fused_attention: bool | None = None,
) -> SpecModel:
    """The model of a parsed spec, initialised from ``seed`` or set to ``params``.

    The vocabulary must be known (a spec parsed with its corpus at hand); the context is
    the data node's block_size. fused_attention None: the fused causal op where it has
    kernels (model.FUSED_ATTENTION_DEVICES).
    """
    if spec.vocab_size is None:
        raise SpecError(
            spec.data,
            "the corpus is not at hand, so the vocabulary size is unknown; "
            "resolve the data first (recipes.train_spec does)",
        )
    ctx = ctx or G.Context("cpu")
    fused = ctx.device in FUSED_ATTENTION_DEVICES if fused_attention is None else fused_attention
    return SpecModel(spec, ctx, params=params, seed=seed, fused_attention=fused)


def train_config_for(
    spec: Spec, train_tokens: int | None = None, overrides: dict[str, Any] | None = None
) -> TrainConfig:
    """The run's TrainConfig: batch and block size from the data node, the optimizer and
    schedule from the Loss node, then ``overrides`` (TrainConfig fields, e.g. from --set).

    Epochs become steps over ``train_tokens``; the 'constant' schedule is the cosine with
    its floor at lr; Adam is AdamW without weight decay.
    """
    d, p = spec.nodes[spec.data].params, spec.nodes[spec.loss].params
    tokens_per_step = d["batch_size"] * d["block_size"]
    steps = p["steps"]
    if p["epochs"]:
        if train_tokens is None:
            raise SpecError(
                spec.loss, "epochs need the corpus's token count (recipes.train_spec has it)"
            )
        steps = max(1, math.ceil(p["epochs"] * train_tokens / tokens_per_step))
    values: dict[str, Any] = {
        "batch_size": d["batch_size"],
        "block_size": d["block_size"],
        "val_fraction": d["val_fraction"],
        "max_steps": steps,
        "optimizer": p["optimizer"],
        "lr": p["lr"],
        "min_lr": p["lr"] if p["schedule"] == "constant" else p["min_lr"],
        "warmup_steps": p["warmup_steps"],
        "weight_decay": 0.0 if p["optimizer"] == "adam" else p["weight_decay"],
        "grad_clip": p["grad_clip"] or None,
    }
    values.update(overrides or {})
    if "warmup_steps" not in (overrides or {}):
        # a run shortened by epochs or an override keeps a valid warmup
        values["warmup_steps"] = min(values["warmup_steps"], int(values["max_steps"]))
    try:
        return train_config(values, f"spec {spec.name!r}")
    except ValueError as exc:
        raise SpecError(spec.loss, f"{spec.nodes[spec.loss].label}: {exc}") from None


def summary(spec: Spec) -> list[str]:
    """One line per node: its id, type, parameters and output shape."""
    lines = []
    for node in spec.nodes.values():
        args = ", ".join(f"{k}={v!r}" for k, v in node.params.items())
        shapes = [
            list(spec.shapes[(node.id, i)]) for i in range(len(NODE_TYPES[node.type].outputs))
        ]
        out = f" -> {', '.join(map(str, shapes))}" if shapes else ""
        lines.append(f"{node.id}: {node.type}({args}){out}")
    return lines
