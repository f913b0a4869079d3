"""The model the trainer drives (contract B): a layer tree's parameters on a device, its
graphs cached per (B, T), and numpy entry points.

A network ("net") is any object with ``params() -> list[layers.Param]`` and
``net(g: layers.Build, idx: G.Tensor) -> G.Tensor`` mapping i32 token ids (B, T) to
logits (B, T, Vp), Vp >= V (padded vocabulary columns are cut off or kept out of the loss
here). :class:`Model` gives every such net the trainer's protocol::

    params: dict[str, G.Tensor]        # device tensors by name (HF names for GPT-2)
    trainable: dict[str, G.Tensor]     # those the optimizer updates (all, or LoRA's adapters)
    graph(batch, seq, mode) -> StepGraph   # 'logits' | 'loss' | 'train', cached per (B, T)
    state_dict() / load_state_dict(d)   # numpy, exchange layout (HF for GPT-2)
    num_params() -> int
    to_device(arrays) / from_device(arrays)  # any per-parameter arrays (optimizer moments)

GPT2 (gpt2.py) and the spec compiler's models are Models. Shapes: B batch, T time,
N = B*T rows, V vocab, Vp padded vocab.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from . import ggml as G
from . import kernels
from .adapters import LoraConfig, LoraWeights, from_lora_state, lora_state, select_targets
from .config import BASE_DTYPES, LOSS_KINDS, MATMUL_DTYPES
from .layers import Build, LoraAdapter, Param, init_values, linear_layers
from .loss import ChunkedLossHead, LossHead, vocab_logits
from .recompute import RecomputeStep
from .step import accumulate
from .tokenizer import Tokenizer

GRAPH_CACHE_SIZE = 8  # graphs a model keeps built, most recently used (buffers: the arena)
LORA_STREAM = 1 << 20  # first dropout stream of LoRA adapters, above any layer's own
LORA_SEED_STREAM = 1  # adapters draw their init from (seed, this), apart from the base's
FUSED_ATTENTION_DEVICES = ("cpu", "vulkan")  # where ATTN_CAUSAL has kernels (attention 'auto')


class Net(Protocol):
    def params(self) -> list[Param]: ...

    def __call__(self, g: Build, idx: G.Tensor) -> G.Tensor: ...


@dataclass
class DropoutRNG:
    """Where a model's dropout masks come from: (seed, counter) written into the state
    input of every training graph before each micro-batch, the counter then advanced. The
    masks are a function of these two numbers (docs/ops/dropout.md), so a checkpoint that
    keeps ``counter`` resumes with the masks the uninterrupted run would have drawn."""

    seed: int
    counter: int = 0

    def draw(self, state: G.Tensor) -> None:
        """Write (seed, counter) into ``state`` (i32 (2,)) and advance the counter."""
        words = np.array([self.seed, self.counter], dtype=np.uint32)  # both taken mod 2**32
        state.set(words.view(np.int32))
        self.counter += 1


@dataclass
class StepGraph:
    """One compiled graph for a fixed (B, T) with its inputs and outputs."""

    graph: G.Graph
    idx: G.Tensor  # (B, T) i32 inputs
    logits: G.Tensor | None  # (N, V) in a logits graph; (N, Vp) with a LossHead; None in chunks
    head: LossHead | ChunkedLossHead | None  # None for a logits-only graph
    dropout_state: G.Tensor | None = None  # i32 (2,) in a training graph
    dropout_rng: DropoutRNG | None = None

    def run(self, idx: np.ndarray, targets: np.ndarray | None = None) -> float | None:
        """Write the batch, compute, and return the loss (None without targets)."""
        self.idx.set(np.asarray(idx, dtype=np.int32))
        if self.head is not None:
            if targets is None:
                raise ValueError("this graph computes a loss: pass targets")
            self.head.set_targets(targets)
        if self.dropout_state is not None:
            self.dropout_rng.draw(self.dropout_state)
        self.graph.compute()
        return float(self.head.loss.numpy()) if self.head is not None else None


def graph_options(config: Any, ctx: G.Context) -> dict[str, Any]:
    """Model's keyword arguments for how a family's config says its graphs compute
    (config.GRAPH_OPTIONS): the fused causal attention op has CPU and Vulkan kernels, so
    'auto' takes it there and builds attention from mul_mat elsewhere (CUDA, Metal)."""
    attention = config.attention
    return {
        "loss_kind": config.loss_kind,
        "matmul_dtype": config.matmul_dtype,
        "fused_attention": attention == "fused"
        or (attention == "auto" and ctx.device in FUSED_ATTENTION_DEVICES),
        "recompute": config.recompute == "blocks",
        "loss_chunk_rows": config.loss_chunk_rows,
    }


class DeviceArrays(Mapping[str, np.ndarray]):
    """Per-parameter device tensors (weights, AdamW moments) in exchange layout, each read
    from the device when accessed: a checkpoint streams them to its file one at a time
    instead of holding host copies of them all (1.5 GB for GPT-2 124M with its moments).
    ``views``: hand out read-only views of host memory where the layout and type allow (no
    copy of an f32 tensor), valid only until the tensors change, for writing them out at
    once; a frozen bf16 or q8_0 base weight is read widened to f32, one tensor at a time."""

    def __init__(
        self, tensors: Mapping[str, G.Tensor], layout: Mapping[str, Param], views: bool = False
    ):
        self._tensors, self._layout, self._views = tensors, layout, views

    def __getitem__(self, name: str) -> np.ndarray:
        tensor = self._tensors[name]
        if self._views and tensor.dtype == "f32":  # a bf16 or q8_0 base widens: a copy
            value = tensor.host_view()
            value.flags.writeable = False
        else:
            value = tensor.numpy()
        return self._layout[name].from_device(value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)


class Model:
    """A net's parameters on ``ctx`` and its graphs (see the module docstring).

    ``params`` (exchange layout) sets the weights, else the layers' init from ``seed``
    (drawn in ``net.params()`` order). ``loss_kind``: see :class:`LossHead`;
    ``matmul_dtype`` and ``fused_attention``: see :class:`layers.Build`; ``matmul_dtype`` "auto"
    takes bf16 where the CPU multiplies it natively (:mod:`kernels`), else f32.
    ``loss_chunk_rows``: the sparse loss of 'loss' graphs and of recomputing 'train' graphs
    runs over chunks of this many rows (:class:`loss.ChunkedLossHead`; 0: all rows at once),
    for a net with ``embed``, ``blocks`` and ``head`` (as gpt2.GPT2Net). The net's
    :class:`layers.Dropout` layers act in 'train' graphs only, with masks from
    ``dropout_rng`` (seeded with ``seed``).

    ``config``, ``spec_source`` and ``tokenizer`` say what the model is, for checkpoints
    and logs: a GPT2Config-like config, or the JSON of the spec it was compiled from, and
    the tokenizer of the file it was loaded from (models.py), if any.

    ``lora``: LoRA fine-tuning (docs/lora.md). The Linear weights its targets name get an
    adapter (layers.LoraAdapter); the net's own parameters are frozen: plain tensors with
    no gradient accumulator and no optimizer state, unchanged by training. ``trainable``
    then holds the adapters only; ``params``, ``state_dict`` and checkpoints hold both.
    ``base_dtype`` 'bf16' or 'q8_0' (LoRA only) stores the frozen Linear weights so; they
    multiply in that type and read back (state_dict) as the f32 values they hold.
    """

    config: object | None = None
    spec_source: dict | None = None

    def __init__(
        self,
        net: Net,
        ctx: G.Context,
        vocab_size: int,
        block_size: int,
        *,
        params: dict[str, np.ndarray] | None = None,
        seed: int = 0,
        loss_kind: str = "sparse",
        matmul_dtype: str = "f32",
        fused_attention: bool = True,
        recompute: bool = False,
        lora: LoraConfig | None = None,
        base_dtype: str = "f32",
        loss_chunk_rows: int = 0,
    ):
        if loss_kind not in LOSS_KINDS:
            raise ValueError(f"loss_kind must be one of {LOSS_KINDS}, got {loss_kind!r}")
        if matmul_dtype not in MATMUL_DTYPES:
            raise ValueError(f"matmul_dtype must be one of {MATMUL_DTYPES}, got {matmul_dtype!r}")
        if matmul_dtype == "auto":  # the product kernels' rule for this CPU and build
            matmul_dtype = kernels.this_cpu().matmul_dtype if ctx.device == "cpu" else "f32"
        self.net, self.ctx = net, ctx
        self.vocab_size, self.block_size = vocab_size, block_size
        self.loss_kind, self.matmul_dtype = loss_kind, matmul_dtype
        self.fused_attention = fused_attention
        self.recompute = recompute  # train graphs recompute blocks in the backward (recompute.py)
        self.lora = lora
        self.adapters = self._adapters(net, lora) if lora is not None else {}
        adapter_params = [p for a in self.adapters.values() for p in a.params()]
        if loss_chunk_rows < 0:
            raise ValueError(f"loss_chunk_rows must be >= 0 (0: no chunks), got {loss_chunk_rows}")
        self.loss_chunk_rows = loss_chunk_rows
        self.layout: dict[str, Param] = {}  # name -> Param, in init order
        for p in [*net.params(), *adapter_params]:
            if p.name in self.layout:
                raise ValueError(f"two layers declare the parameter {p.name!r}; names must differ")
            self.layout[p.name] = p
        trained = {p.name for p in adapter_params} if lora is not None else set(self.layout)
        if base_dtype not in BASE_DTYPES or (base_dtype != "f32" and lora is None):
            raise ValueError(
                f"base_dtype must be one of {BASE_DTYPES}, and other than f32 only with LoRA "
                f"(the base is then frozen); got {base_dtype!r} with lora={lora}"
            )
        stored = set(linear_layers(net)) if base_dtype != "f32" else set()
        self.params: dict[str, G.Tensor] = {}
        for name, p in self.layout.items():
            if name in trained:
                self.params[name] = ctx.param(p.device_shape, name=name)
            else:
                dtype = base_dtype if name in stored else "f32"
                self.params[name] = ctx.tensor(p.device_shape, dtype, name=name)
        self.trainable = {name: t for name, t in self.params.items() if name in trained}
        for p, value in init_values(adapter_params, (seed, LORA_SEED_STREAM)):
            self.params[p.name].set(p.to_device(value))
        if params is None:  # the base draws as it would without LoRA
            for p, value in init_values(net.params(), seed):  # one tensor at a time
                self.params[p.name].set(p.to_device(value))
        else:  # a base's weights, or a LoRA model's with its adapters (a checkpoint)
            self.load_state_dict(params, adapters=any(p.name in params for p in adapter_params))
        self._graphs: OrderedDict[tuple[str, int, int], StepGraph | RecomputeStep] = OrderedDict()
        # every graph of the model (train, validation, logits, decoding) runs one at a time,
        # so on the CPU they share one set of compute buffers: a run peaks at its largest
        # graph, not at the sum of its train, validation and sampling graphs. On Vulkan two
        # graphs alternating in one arena corrupt the heap (docs/devices.md), so there each
        # graph keeps its own buffers (None: an arena of its own)
        self.arena: G.Arena | None = G.Arena() if ctx.device == "cpu" else None
        self.dropout_rng = DropoutRNG(seed)
        self.tokenizer: Tokenizer | None = None

    @staticmethod
    def _adapters(net: Net, lora: LoraConfig) -> dict[str, LoraAdapter]:
        """A LoRA adapter for each Linear weight ``lora.targets`` names."""
        linears = linear_layers(net)
        adapters = {}
        for i, name in enumerate(select_targets(list(linears), lora.targets)):
            layer = linears[name]
            adapters[name] = LoraAdapter(
                name.removesuffix(".weight"),
                layer.in_features,
                layer.out_features,
                lora.rank,
                lora.scale,
                lora.dropout,
                stream=LORA_STREAM + i,
            )
        return adapters

    def describe(self) -> str:
        """The model's shape in a few words, for the run's log."""
        return type(self.net).__name__

    def builder(
        self, dropout_state: G.Tensor | None = None, matmul_dtype: str | None = None
    ) -> Build:
        """A :class:`layers.Build` of this model's tensors and adapters."""
        return Build(
            self.ctx,
            self.params,
            matmul_dtype or self.matmul_dtype,
            self.fused_attention,
            dropout_state,
            self.adapters,
        )

    # -- parameters ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """All parameters as float32 numpy in exchange names and shapes."""
        return dict(self.device_arrays(self.params))

    def device_arrays(self, tensors: Mapping[str, G.Tensor], views: bool = False) -> DeviceArrays:
        """Per-parameter device tensors (e.g. ``params``, AdamW's moments) read one at a
        time, on access, in exchange layout; ``views``: without copies where the memory is
        the host's (the CPU), valid until the tensors change (see :class:`DeviceArrays`)."""
        return DeviceArrays(tensors, self.layout, views and self.ctx.device == "cpu")

    def load_state_dict(self, state: dict[str, np.ndarray], adapters: bool = True) -> None:
        """Set every parameter from exchange-layout arrays; ``adapters`` False: the base's
        only (a LoRA model's adapters keep their values), e.g. from a base model's file."""
        names = set(self.layout)
        if not adapters:
            names -= {p.name for a in self.adapters.values() for p in a.params()}
        missing = sorted(names - set(state))
        extra = sorted(set(state) - names)
        if missing or extra:
            hint = ""
            if not self.adapters and any(n.endswith(".lora_A.weight") for n in extra):
                hint = "; the state holds LoRA adapters: build the model with their lora config"
            raise ValueError(
                f"state dict mismatch: missing {missing[:5]}, unexpected {extra[:5]}{hint}"
            )
        for name in names:
            self.params[name].set(self.layout[name].to_device(state[name]))

    # -- LoRA -----------------------------------------------------------------------------------
    def lora_weights(self) -> LoraWeights:
        """The adapters' current values, keyed by the base weights' HF names."""
        if self.lora is None:
            raise ValueError("this model has no LoRA adapters (build it with lora=LoraConfig)")
        names = [p.name for a in self.adapters.values() for p in a.params()]
        return from_lora_state(self.lora, {n: self.params[n].numpy() for n in names})

    def load_lora(self, weights: LoraWeights) -> None:
        """Set the adapters from ``weights`` (trained here, or read from a file), which
        must adapt the same weights with the same rank and scale."""
        if self.lora is None:
            raise ValueError("this model has no LoRA adapters (build it with lora=LoraConfig)")
        mine, given = set(self.adapters), set(weights.a)
        if mine != given or weights.config.rank != self.lora.rank:
            raise ValueError(
                f"the LoRA adapters given (rank {weights.config.rank}, {len(given)} weights) "
                f"do not fit this model's (rank {self.lora.rank}, {len(mine)} weights): "
                f"missing {sorted(mine - given)[:3]}, unexpected {sorted(given - mine)[:3]}; "
                "build the model with the adapter's own LoraConfig"
            )
        if weights.config.scale != self.lora.scale:
            raise ValueError(
                f"the LoRA adapters given scale by alpha/rank = {weights.config.scale:g}, this "
                f"model's by {self.lora.scale:g}: build it with the adapter's LoraConfig"
            )
        for name, value in lora_state(weights).items():
            self.params[name].set(self.layout[name].to_device(value))

    def to_device(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-parameter arrays (e.g. AdamW moments) from exchange to device layout."""
        return {name: self.layout[name].to_device(a) for name, a in arrays.items()}

    def from_device(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-parameter arrays from device to exchange layout."""
        return {name: self.layout[name].from_device(a) for name, a in arrays.items()}

    def num_params(self) -> int:
        """Parameter entries, frozen included (a tied weight counted once, padding rows not
        at all)."""
        return sum(p.size for p in self.layout.values())

    def num_trainable(self) -> int:
        """Entries the optimizer updates (all of them, or LoRA's adapters)."""
        return sum(self.layout[name].size for name in self.trainable)

    # -- graphs ---------------------------------------------------------------------------------
    def build(self, batch: int, seq: int, mode: str) -> StepGraph | RecomputeStep:
        """A new graph for (B, T): mode 'logits', 'loss' (forward) or 'train' (+ backward)."""
        if not 1 <= seq <= self.block_size:
            raise ValueError(f"sequence length {seq} must be in [1, block_size={self.block_size}]")
        if mode == "train" and self.recompute:
            return RecomputeStep(self, batch, seq)
        idx = self.ctx.input((batch, seq), dtype="i32", name="idx")  # (B, T)
        # dropout in training graphs only: validation and sampling see the whole network
        state = self.ctx.input((2,), "i32", name="dropout_state") if mode == "train" else None
        g = self.builder(state)
        rows = batch * seq
        if mode == "loss" and self._chunks_loss(rows):  # a forward graph, one chunk at a time
            x = self.net.embed(g, idx)  # (B, T, C)
            for block in self.net.blocks:
                x = block(g, x)  # (B, T, C)
            hidden = G.reshape(x, (rows, x.shape[-1]))  # (N, C)
            head = ChunkedLossHead(
                self.ctx, hidden, lambda h: self.net.head(g, h), self.vocab_size,
                self.loss_chunk_rows,
            )  # fmt: skip
            return StepGraph(self.ctx.graph(head.loss, arena=self.arena), idx, None, head)
        logits = self.net(g, idx)  # (B, T, Vp)
        logits = G.reshape(logits, (batch * seq, logits.shape[-1]))  # (N, Vp)
        if mode == "logits":
            logits = vocab_logits(logits, self.vocab_size)  # (N, V)
            return StepGraph(self.ctx.graph(logits, arena=self.arena), idx, logits, None)
        head = LossHead(self.ctx, logits, self.vocab_size, self.loss_kind)
        if mode == "loss":
            return StepGraph(self.ctx.graph(head.loss, arena=self.arena), idx, logits, head)
        if mode == "train":
            head.loss.set_loss()
            graph = self.ctx.graph(head.loss, backward=True, arena=self.arena)
            return StepGraph(graph, idx, logits, head, state, self.dropout_rng)
        raise ValueError(f"mode must be 'logits', 'loss' or 'train', got {mode!r}")

    def _chunks_loss(self, rows: int) -> bool:
        """Whether a forward loss graph of ``rows`` rows runs its head in chunks."""
        staged = all(hasattr(self.net, stage) for stage in ("embed", "blocks", "head"))
        return staged and self.loss_kind == "sparse" and 0 < self.loss_chunk_rows < rows

    def graph(self, batch: int, seq: int, mode: str) -> StepGraph | RecomputeStep:
        """The cached graph for (mode, B, T), built on first use. The cache keeps the
        GRAPH_CACHE_SIZE most recently used graphs (their compute buffers are the model's
        one arena; callers such as sampling with a growing prompt ask for a new (B, T) at
        every token). An output is valid until another graph of the model computes."""
        key = (mode, batch, seq)
        if key in self._graphs:
            self._graphs.move_to_end(key)
        else:
            self._graphs[key] = self.build(batch, seq, mode)
            if len(self._graphs) > GRAPH_CACHE_SIZE:
                self._graphs.popitem(last=False)  # its buffers go with the last reference
        return self._graphs[key]

    # -- numpy entry points ---------------------------------------------------------------------
    def forward(self, idx: np.ndarray) -> np.ndarray:
        """Logits (B, T, V) for token ids (B, T)."""
        idx = np.asarray(idx)
        b, t = idx.shape
        step = self.graph(b, t, "logits")
        step.run(idx)
        return step.logits.numpy().reshape(b, t, -1)

    def loss(self, idx: np.ndarray, targets: np.ndarray) -> float:
        """Mean cross-entropy without gradients (validation)."""
        b, t = np.shape(idx)
        return self.graph(b, t, "loss").run(idx, targets)

    def loss_and_grads(
        self, idx: np.ndarray, targets: np.ndarray
    ) -> tuple[float, dict[str, np.ndarray]]:
        """Mean cross-entropy and its gradient for every trainable parameter (exchange layout)."""
        b, t = np.shape(idx)
        step = self.graph(b, t, "train")
        loss = accumulate(step, [(idx, targets)])  # step.py owns the loss scale and the reset
        return loss, self.from_device({n: step.graph.grad(p) for n, p in self.trainable.items()})
