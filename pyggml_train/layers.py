"""The layer library that GPT2 and spec models compose; each layer owns its parameters.

A layer is a description (sizes, parameter names, init, layout), not a set of tensors.
``layer.params()`` lists its :class:`Param`s (children's included, in init order), and
``layer(g, x)`` appends its ops to the graph being built in ``g`` (a :class:`Build`),
looking its tensors up by name in ``g.params``. The same layer objects therefore build
the training graph for any (B, T), the validation graph and the KV-cache decoder's
one-token graph.

A :class:`Param` is the one place that knows a parameter's layout: ``shape`` is the
exchange layout (state_dict, checkpoints, Hugging Face files); the device may hold it
transposed (HF Conv1D (in, out) as ggml's linear (out, in)) or with zero padding rows
(a padded vocabulary). Shapes: B batch, T time, C channels (d_model), nh heads, hs head
size, F feed-forward width, V vocab, Vp padded vocab, Tmax cache length.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from . import ggml as G

INITS = ("normal", "zeros", "ones", "kaiming_uniform")
ACTIVATIONS = ("gelu", "relu")


@dataclass(frozen=True)
class Param:
    """One trainable tensor: its name, exchange shape, init and device layout."""

    name: str
    shape: tuple[int, ...]  # exchange layout (HF for GPT-2), numpy order
    init: str = "normal"  # 'normal' (N(0, std)), 'zeros', 'ones', 'kaiming_uniform' (see initial)
    std: float = 0.02
    transposed: bool = False  # the device holds the 2-D transpose: HF Conv1D (in, out) as (out, in)
    device_rows: int | None = None  # rows on the device when padded; the extra rows stay zero

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise ValueError(f"{self.name}: init must be one of {INITS}, got {self.init!r}")
        if self.transposed and len(self.shape) != 2:
            raise ValueError(f"{self.name}: only a 2-D parameter can be transposed: {self.shape}")
        if self.device_rows is not None and self.transposed:
            raise ValueError(f"{self.name}: a padded parameter can't also be transposed")
        if self.device_rows is not None and self.device_rows < self.shape[0]:
            raise ValueError(
                f"{self.name}: device_rows {self.device_rows} < {self.shape[0]} rows; "
                "padding only adds rows"
            )

    @property
    def device_shape(self) -> tuple[int, ...]:
        shape = self.shape[::-1] if self.transposed else self.shape
        return shape if self.device_rows is None else (self.device_rows, *shape[1:])

    @property
    def size(self) -> int:
        """Trainable entries (padding rows excluded)."""
        return math.prod(self.shape)

    def initial(self, rng: np.random.Generator) -> np.ndarray:
        """The initial value (exchange layout, float32); 'normal' and 'kaiming_uniform' draw
        from ``rng``. 'kaiming_uniform' is torch's default for a Linear weight (out, in), and
        PEFT's for LoRA's A: kaiming_uniform_(a=sqrt(5)), i.e. U(-1/sqrt(in), 1/sqrt(in))."""
        if self.init == "kaiming_uniform":
            bound = 1.0 / math.sqrt(self.shape[-1])
            return rng.uniform(-bound, bound, size=self.shape).astype(np.float32)
        if self.init == "ones":
            return np.ones(self.shape, dtype=np.float32)
        if self.init == "zeros":
            return np.zeros(self.shape, dtype=np.float32)
        return rng.normal(0.0, self.std, size=self.shape).astype(np.float32)

    def to_device(self, value: np.ndarray) -> np.ndarray:
        """An exchange-layout array as the device stores it (transposed, padded)."""
        value = np.asarray(value, dtype=np.float32)
        if value.shape != self.shape:
            raise ValueError(
                f"{self.name}: expected shape {self.shape} (exchange/HF layout), got {value.shape}"
            )
        if self.transposed:
            value = np.ascontiguousarray(value.T)  # (out, in)
        if self.device_rows is not None and self.device_rows != value.shape[0]:
            padded = np.zeros(self.device_shape, dtype=np.float32)  # (Vp, C)
            padded[: value.shape[0]] = value
            value = padded
        return value

    def from_device(self, value: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_device`: padding rows dropped, Conv1D layout restored."""
        if self.device_rows is not None:
            value = value[: self.shape[0]]  # (V, C)
        return np.ascontiguousarray(value.T) if self.transposed else value


def init_values(
    params: Iterable[Param], seed: int | Sequence[int]
) -> Iterator[tuple[Param, np.ndarray]]:
    """Initial values one parameter at a time from one RNG, drawn in ``params`` order (a
    caller that copies each away never holds a second copy of the model). ``seed`` may be
    a sequence, (seed, stream), for a stream of draws apart from the model's own."""
    rng = np.random.default_rng(seed)
    for p in params:
        yield p, p.initial(rng)


class Build:
    """One graph under construction: the parameter tensors, and what every layer of this
    graph shares: the matmul dtype, the attention kind, per-length causal masks and
    constants.

    ``matmul_dtype`` 'bf16' runs every Linear on bf16 casts of its weight (mixed precision:
    the f32 tensors stay the master copies and receive f32 gradients).
    ``fused_attention``: causal attention as one ATTN_CAUSAL op (patch 0016; CPU, Vulkan)
    instead of mul_mat + masked soft_max (every backend).
    ``dropout_state``: the i32 (2,) (seed, counter) input of a training graph's
    :class:`Dropout` layers; None (validation, sampling) leaves them out.
    ``adapters``: LoRA adapters by the name of the Linear weight they adapt (Model.adapters).
    """

    def __init__(
        self,
        ctx: G.Context,
        params: dict[str, G.Tensor],
        matmul_dtype: str = "f32",
        fused_attention: bool = True,
        dropout_state: G.Tensor | None = None,
        adapters: dict[str, LoraAdapter] | None = None,
    ):
        self.ctx, self.params = ctx, params
        self.matmul_dtype, self.fused_attention = matmul_dtype, fused_attention
        self.dropout_state = dropout_state
        self.adapters = adapters or {}
        self.used: set[str] = set()  # the parameters the graph reads, by name
        self._constants: dict[str, G.Tensor] = {}

    def __getitem__(self, name: str) -> G.Tensor:
        self.used.add(name)
        return self.params[name]

    def matmul_weight(self, name: str) -> G.Tensor:
        """Parameter ``name`` as a matmul operand, in ``matmul_dtype``; a weight stored in
        bf16 or q8_0 (a frozen LoRA base) multiplies as it is stored."""
        w = self[name]
        return w if self.matmul_dtype == "f32" or w.dtype != "f32" else G.cast(w, self.matmul_dtype)

    def constant(self, key: str, make: Callable[[], np.ndarray]) -> G.Tensor:
        """A constant leaf shared by the layers of this graph, ``make()`` on first use."""
        if key not in self._constants:
            self._constants[key] = self.ctx.constant(make(), name=key)
        return self._constants[key]

    def causal_mask(self, t: int) -> G.Tensor:
        """(T, T) additive mask: 0 where a query may look, -inf at future keys."""
        return self.constant(f"causal_mask_{t}", lambda: causal_mask(t))

    def positions(self, t: int) -> G.Tensor:
        """(T,) i32 positions 0..T-1 (what rotary embeddings of a whole sequence read)."""
        return self.constant(f"positions_{t}", lambda: np.arange(t, dtype=np.int32))


def causal_mask(t: int) -> np.ndarray:
    """(T, T) additive attention mask: 0 on and below the diagonal, -inf above."""
    return np.triu(np.full((t, t), -np.inf, dtype=np.float32), k=1)


# ---- embeddings ---------------------------------------------------------------------------------
class Embedding:
    """Token table ``weight`` (V, C), HF ``wte``; ``device_rows`` pads it to Vp zero rows."""

    def __init__(
        self,
        prefix: str,
        num_embeddings: int,
        embedding_dim: int,
        device_rows: int | None = None,
        std: float = 0.02,
    ):
        self.weight = Param(
            f"{prefix}.weight", (num_embeddings, embedding_dim), std=std, device_rows=device_rows
        )

    def params(self) -> list[Param]:
        return [self.weight]

    def __call__(self, g: Build, idx: G.Tensor) -> G.Tensor:
        """Rows of the table for i32 ids ``idx`` (B, T) -> (B, T, C)."""
        return G.get_rows(g[self.weight.name], idx)


class LearnedPositionalEncoding:
    """x + wpe[position]: a trained table ``weight`` (max_len, C), HF ``wpe``."""

    def __init__(self, prefix: str, max_len: int, dim: int, std: float = 0.02):
        self.max_len, self.dim = max_len, dim
        self.weight = Param(f"{prefix}.weight", (max_len, dim), std=std)

    def params(self) -> list[Param]:
        return [self.weight]

    def __call__(self, g: Build, x: G.Tensor, positions: G.Tensor | None = None) -> G.Tensor:
        """x (B, T, C) plus the rows of positions 0..T-1, or of the i32 ``positions`` (T,)."""
        return x + _position_rows(g[self.weight.name], x, positions, self.max_len)


class SinusoidalPositionalEncoding:
    """x + pe[position], pe the fixed sin/cos table of "Attention is all you need":
    pe[p, 2i] = sin(p / 10000^(2i/C)), pe[p, 2i+1] = cos(p / 10000^(2i/C)). No parameters."""

    def __init__(self, max_len: int, dim: int):
        self.max_len, self.dim = max_len, dim

    def params(self) -> list[Param]:
        return []

    def table(self) -> np.ndarray:
        """(max_len, C) float32."""
        pos = np.arange(self.max_len, dtype=np.float64)[:, None]  # (max_len, 1)
        rate = 10000.0 ** (-np.arange(0, self.dim, 2, dtype=np.float64) / self.dim)  # (ceil(C/2),)
        pe = np.zeros((self.max_len, self.dim))
        pe[:, 0::2] = np.sin(pos * rate)
        pe[:, 1::2] = np.cos(pos * rate[: self.dim // 2])
        return pe.astype(np.float32)

    def __call__(self, g: Build, x: G.Tensor, positions: G.Tensor | None = None) -> G.Tensor:
        """x (B, T, C) plus the table rows of positions 0..T-1 or of i32 ``positions`` (T,)."""
        pe = g.constant(f"sinusoidal_pe_{self.max_len}x{self.dim}", self.table)
        return x + _position_rows(pe, x, positions, self.max_len)


def _position_rows(
    table: G.Tensor, x: G.Tensor, positions: G.Tensor | None, max_len: int
) -> G.Tensor:
    t, c = x.shape[-2], x.shape[-1]
    if t > max_len:
        raise ValueError(f"sequence length {t} exceeds the positional table's {max_len} rows")
    if positions is None:
        return G.view(table, (t, c))  # (T, C) the first T rows, no copy
    return G.get_rows(table, positions)  # (T, C)


# ---- LayerNorm, Linear, activations -------------------------------------------------------------
class LayerNorm:
    """Affine LayerNorm over the last axis: ``weight`` (C,) init 1, ``bias`` (C,) init 0."""

    def __init__(self, prefix: str, dim: int, eps: float = 1e-5):
        self.eps = eps
        self.weight = Param(f"{prefix}.weight", (dim,), init="ones")
        self.bias = Param(f"{prefix}.bias", (dim,), init="zeros")

    def params(self) -> list[Param]:
        return [self.weight, self.bias]

    def __call__(self, g: Build, x: G.Tensor) -> G.Tensor:
        return G.layer_norm(x, g[self.weight.name], g[self.bias.name], self.eps)


class RMSNorm:
    """x / sqrt(mean(x^2) + eps) * weight over the last axis: ``weight`` (C,) init 1, no
    bias, no mean subtracted (Llama's and Qwen2's norm)."""

    def __init__(self, prefix: str, dim: int, eps: float = 1e-6):
        self.eps = eps
        self.weight = Param(f"{prefix}.weight", (dim,), init="ones")

    def params(self) -> list[Param]:
        return [self.weight]

    def __call__(self, g: Build, x: G.Tensor) -> G.Tensor:
        return G.mul(G.rms_norm(x, self.eps), g[self.weight.name])


class Linear:
    """x @ W^T + b: (..., in) -> (..., out). The device holds ``weight`` as (out, in).

    ``conv1d``: the exchange layout is HF's Conv1D (in, out) (GPT-2's c_attn, c_proj, c_fc),
    else torch's Linear (out, in). ``tied_to`` an :class:`Embedding` table (V, C): the layer
    owns no weight and multiplies by that table (GPT-2's LM head), giving (..., Vp) with the
    table's padding rows as extra columns.
    """

    def __init__(
        self,
        prefix: str,
        in_features: int,
        out_features: int,
        bias: bool = True,
        std: float = 0.02,
        conv1d: bool = False,
        tied_to: Param | None = None,
    ):
        self.in_features, self.out_features = in_features, out_features
        if tied_to is not None:
            if tied_to.shape != (out_features, in_features):
                raise ValueError(
                    f"{prefix}: tied weight {tied_to.name} has shape {tied_to.shape}, a Linear "
                    f"{in_features} -> {out_features} needs ({out_features}, {in_features})"
                )
            self.weight, self.tied = tied_to, True
        else:
            shape = (in_features, out_features) if conv1d else (out_features, in_features)
            self.weight = Param(f"{prefix}.weight", shape, std=std, transposed=conv1d)
            self.tied = False
        self.bias = Param(f"{prefix}.bias", (out_features,), init="zeros") if bias else None

    def params(self) -> list[Param]:
        own = [] if self.tied else [self.weight]
        return own + ([self.bias] if self.bias is not None else [])

    def __call__(self, g: Build, x: G.Tensor) -> G.Tensor:
        bias = g[self.bias.name] if self.bias is not None else None
        y = G.linear(x, g.matmul_weight(self.weight.name), bias)  # (..., out)
        adapter = g.adapters.get(self.weight.name)
        return y if adapter is None else y + adapter(g, x)


class LoraAdapter:
    """LoRA beside a frozen Linear weight W (out, in): adds ``scale * B @ A`` to it without
    forming it, as ``scale * (dropout(x) @ A^T) @ B^T``. ``lora_A`` (rank, in) starts
    Kaiming-uniform and ``lora_B`` (out, rank) at zero, so training starts from the base
    (PEFT's init and names, under the adapted module's prefix). ``dropout`` acts on the
    adapter's input in training graphs, stream ``stream``."""

    def __init__(
        self,
        module: str,
        in_features: int,
        out_features: int,
        rank: int,
        scale: float,
        dropout: float = 0.0,
        stream: int = 0,
    ):
        self.rank, self.scale = rank, scale
        self.a = Param(f"{module}.lora_A.weight", (rank, in_features), init="kaiming_uniform")
        self.b = Param(f"{module}.lora_B.weight", (out_features, rank), init="zeros")
        self.dropout = Dropout(dropout, stream)

    def params(self) -> list[Param]:
        return [self.a, self.b]

    def __call__(self, g: Build, x: G.Tensor) -> G.Tensor:
        """x (..., in) -> the update's output (..., out)."""
        h = G.linear(self.dropout(g, x), g.matmul_weight(self.a.name))  # (..., rank)
        return G.linear(h, g.matmul_weight(self.b.name)) * self.scale  # (..., out)


def linear_layers(root: object) -> dict[str, Linear]:
    """Every Linear with a weight of its own in a layer tree, by weight name, in the order
    the tree's attributes hold them (tied LM heads own none and are left out)."""
    found: dict[str, Linear] = {}
    seen: set[int] = set()

    def walk(node: object) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, Linear):
            if not node.tied:
                found[node.weight.name] = node
        elif isinstance(node, (list, tuple)):
            for child in node:
                walk(child)
        elif isinstance(node, dict):
            for child in node.values():
                walk(child)
        elif hasattr(node, "params"):  # a layer: its attributes hold its children
            for child in vars(node).values():
                walk(child)

    walk(root)
    return found


class Dropout:
    """Inverted dropout with probability ``p`` in training graphs (``g.dropout_state`` set),
    the identity elsewhere. The mask is a hash of the graph's (seed, counter), this layer's
    ``stream`` and the element index (patch 0018, docs/ops/dropout.md): nothing is stored,
    the backward regenerates it. Layers of one model need distinct streams."""

    def __init__(self, p: float, stream: int):
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout p must be in [0, 1), got {p}")
        self.p, self.stream = p, stream

    def params(self) -> list[Param]:
        return []

    def acts(self, g: Build) -> bool:
        """Whether this layer drops anything in the graph ``g`` builds."""
        return self.p > 0.0 and g.dropout_state is not None

    def __call__(self, g: Build, x: G.Tensor) -> G.Tensor:
        if not self.acts(g):
            return x
        return G.dropout(x, g.dropout_state, self.p, self.stream)


class GELU:
    """tanh-approximated GELU (GPT-2's 'gelu_new')."""

    def params(self) -> list[Param]:
        return []

    def __call__(self, g: Build, x: G.Tensor) -> G.Tensor:
        return G.gelu(x)


class ReLU:
    def params(self) -> list[Param]:
        return []

    def __call__(self, g: Build, x: G.Tensor) -> G.Tensor:
        return G.relu(x)


def activation(name: str) -> GELU | ReLU:
    """The activation layer called ``name`` ('gelu' or 'relu')."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {name!r}")
    return GELU() if name == "gelu" else ReLU()


# ---- attention ----------------------------------------------------------------------------------
@dataclass
class KVCache:
    """One attention layer's keys and values for batch-1 decoding, persistent across
    computes, and the inputs every layer shares: the positions being written and the
    additive mask over the cache (0 up to the newest position, -inf after), so rows not
    yet written (or left from an earlier prompt) never count."""

    keys: G.Tensor  # (nh, Tmax, hs)
    values: G.Tensor  # (nh, Tmax, hs)
    positions: G.Tensor  # (T,) i32, where this call's tokens go
    mask: G.Tensor  # (T, Tmax)


class SelfAttention:
    """Multi-head self-attention through one fused projection ``c_attn`` (C -> 3C: q, k, v
    side by side) and an output projection ``c_proj`` (HF GPT-2 names and Conv1D layout).

    ``causal``: queries see only keys at or before them. Built as one ATTN_CAUSAL op when
    ``g.fused_attention`` (its backward recomputes the probabilities, so no (B, nh, T, T)
    tensor is kept), else from mul_mat and a soft_max with ``g.causal_mask``. Not causal
    (an encoder): mul_mat and an unmasked soft_max. With a :class:`KVCache` (batch 1,
    causal only) the new keys and values are written into the cache and the queries
    attend over it. ``prob_dropout``: dropout on the attention probabilities in training
    graphs (torch's MultiheadAttention ``dropout``), stream ``stream``; such a graph takes
    the mul_mat path, as the fused op has no dropout.
    """

    def __init__(
        self,
        prefix: str,
        d_model: int,
        n_head: int,
        causal: bool = True,
        proj_std: float = 0.02,
        prob_dropout: float = 0.0,
        stream: int = 0,
    ):
        if d_model % n_head:
            raise ValueError(f"{prefix}: d_model {d_model} is not divisible by n_head {n_head}")
        self.d_model, self.n_head, self.head_size = d_model, n_head, d_model // n_head
        self.n_kv_head = n_head  # heads a KV cache holds (every head has its own K and V)
        self.causal = causal
        self.prob_dropout = Dropout(prob_dropout, stream)
        self.c_attn = Linear(f"{prefix}.c_attn", d_model, 3 * d_model, conv1d=True)
        self.c_proj = Linear(f"{prefix}.c_proj", d_model, d_model, std=proj_std, conv1d=True)

    def params(self) -> list[Param]:
        return self.c_attn.params() + self.c_proj.params()

    def __call__(self, g: Build, x: G.Tensor, cache: KVCache | None = None) -> G.Tensor:
        """x (B, T, C) -> (B, T, C)."""
        b, t, c = x.shape
        qkv = self.c_attn(g, x)  # (B, T, 3C): q, k, v side by side in the last axis
        if cache is not None:
            y = self._cached(qkv, cache)
        elif self.causal and g.fused_attention and not self.prob_dropout.acts(g):
            q, k, v = (G.permute(self._heads(qkv, i), (0, 2, 1, 3)) for i in range(3))
            y = G.attn_causal(q, k, v, scale=1.0 / math.sqrt(self.head_size))  # (B, nh, T, hs)
        else:
            q = G.cont(G.permute(self._heads(qkv, 0), (0, 2, 1, 3)))  # (B, nh, T, hs)
            k = G.cont(G.permute(self._heads(qkv, 1), (0, 2, 1, 3)))  # (B, nh, T, hs)
            v_t = G.cont(G.permute(self._heads(qkv, 2), (0, 2, 3, 1)))  # (B, nh, hs, T)
            scores = G.mul_mat(k, q)  # (B, nh, T, T) = q @ k^T
            mask = g.causal_mask(t) if self.causal else None
            # one fused op: softmax(scores / sqrt(hs) + mask), no masked copy of the scores
            probs = G.soft_max(scores, mask=mask, scale=1.0 / math.sqrt(self.head_size))
            probs = self.prob_dropout(g, probs)
            y = G.mul_mat(v_t, probs)  # (B, nh, T, hs) = probs @ v
        y = G.reshape(G.cont(G.permute(y, (0, 2, 1, 3))), (b, t, c))  # (B, T, C)
        out = self.c_proj(g, y)
        assert out.shape == (b, t, c), out.shape
        return out  # (B, T, C)

    def _heads(self, qkv: G.Tensor, i: int) -> G.Tensor:
        """Part i (0 q, 1 k, 2 v) of qkv (B, T, 3C) as a (B, T, nh, hs) view."""
        b, t, c3 = qkv.shape
        nh, hs = self.n_head, self.head_size
        return G.view(qkv, (b, t, nh, hs), offset=i * self.d_model, strides=(t * c3, c3, hs, 1))

    def _cached(self, qkv: G.Tensor, cache: KVCache) -> G.Tensor:
        """Attention of qkv (1, T, 3C) over the cache after writing its keys and values."""
        b, t, c3 = qkv.shape
        if b != 1 or not self.causal:
            raise ValueError(f"a KV cache decodes one causal sequence, got batch {b}")
        nh, hs = self.n_head, self.head_size
        q, k, v = (
            G.view(qkv, (nh, t, hs), offset=i * self.d_model, strides=(hs, c3, 1)) for i in range(3)
        )  # each (nh, T, hs)
        keys = G.set_rows(cache.keys, k, cache.positions)  # (nh, Tmax, hs) after the write
        values = G.set_rows(cache.values, v, cache.positions)  # (nh, Tmax, hs)
        scores = G.mul_mat(keys, G.cont(q))  # (nh, T, Tmax)
        probs = G.soft_max(scores, cache.mask, scale=1.0 / math.sqrt(hs))  # (nh, T, Tmax)
        y = G.mul_mat(G.cont(G.transpose(values)), probs)  # (nh, T, hs)
        return G.reshape(y, (1, nh, t, hs))  # (B, nh, T, hs)


class RotaryEmbedding:
    """Rotates each head's (query or key) pairs by position-dependent angles: pair i at
    position p turns by p * theta^(-2i / hs). ``mode`` 'neox' pairs element i with i + hs/2
    (Hugging Face's rotate_half, the layout of HF Llama and Qwen2 weights); 'llama' pairs
    2i with 2i+1 (llama.cpp's, whose converter permutes the Q and K rows of HF Llama
    weights to suit it). No parameters."""

    def __init__(self, head_dim: int, theta: float = 10000.0, mode: str = "neox"):
        if mode not in G.ROPE_MODES:
            raise ValueError(f"rope mode must be one of {sorted(G.ROPE_MODES)}, got {mode!r}")
        if head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head size, got {head_dim}")
        self.head_dim, self.theta, self.mode = head_dim, theta, mode

    def params(self) -> list[Param]:
        return []

    def __call__(self, g: Build, x: G.Tensor, positions: G.Tensor | None = None) -> G.Tensor:
        """x (B, T, nh, hs) at positions 0..T-1, or at the i32 ``positions`` (T,)."""
        positions = g.positions(x.shape[1]) if positions is None else positions
        return G.rope(x, positions, self.mode, self.theta)


class GroupedQueryAttention:
    """Causal self-attention with rotary positions and n_kv_head <= n_head key/value heads,
    each shared by n_head / n_kv_head consecutive query heads (grouped-query attention;
    multi-head when equal). HF Llama's names and torch layout: ``q_proj`` (C -> nh*hs),
    ``k_proj`` and ``v_proj`` (C -> nkv*hs), with biases when ``qkv_bias`` (Qwen2),
    ``o_proj`` (nh*hs -> C) without.

    Paths: one ATTN_CAUSAL op when ``g.fused_attention`` (query head h reads K/V head
    h // (nh / nkv) inside the op, no copy; its backward sums dK/dV over each group); else
    mul_mat, which broadcasts each K/V head over its group of query heads without a copy
    (forward and backward), and a masked soft_max. With a :class:`KVCache` (batch 1) of
    nkv heads: rotate at the cache positions, write, attend over the cache.
    """

    def __init__(
        self,
        prefix: str,
        d_model: int,
        n_head: int,
        n_kv_head: int,
        head_dim: int | None = None,
        qkv_bias: bool = False,
        rope_theta: float = 10000.0,
        rope_mode: str = "neox",
        std: float = 0.02,
    ):
        if n_kv_head < 1 or n_head % n_kv_head:
            raise ValueError(
                f"{prefix}: n_head {n_head} must be a multiple of n_kv_head {n_kv_head}"
            )
        if head_dim is None:
            if d_model % n_head:
                raise ValueError(f"{prefix}: d_model {d_model} is not divisible by n_head {n_head}")
            head_dim = d_model // n_head
        self.d_model, self.n_head, self.n_kv_head, self.head_size = (
            d_model,
            n_head,
            n_kv_head,
            head_dim,
        )
        self.rotary = RotaryEmbedding(head_dim, rope_theta, rope_mode)
        q, kv = n_head * head_dim, n_kv_head * head_dim
        self.q_proj = Linear(f"{prefix}.q_proj", d_model, q, bias=qkv_bias, std=std)
        self.k_proj = Linear(f"{prefix}.k_proj", d_model, kv, bias=qkv_bias, std=std)
        self.v_proj = Linear(f"{prefix}.v_proj", d_model, kv, bias=qkv_bias, std=std)
        self.o_proj = Linear(f"{prefix}.o_proj", q, d_model, bias=False, std=std)

    def params(self) -> list[Param]:
        projections = (self.q_proj, self.k_proj, self.v_proj, self.o_proj)
        return [p for proj in projections for p in proj.params()]

    def __call__(self, g: Build, x: G.Tensor, cache: KVCache | None = None) -> G.Tensor:
        """x (B, T, C) -> (B, T, C)."""
        b, t, c = x.shape
        nh, nkv, hs = self.n_head, self.n_kv_head, self.head_size
        positions = cache.positions if cache is not None else None
        q = self.rotary(g, G.reshape(self.q_proj(g, x), (b, t, nh, hs)), positions)
        k = self.rotary(g, G.reshape(self.k_proj(g, x), (b, t, nkv, hs)), positions)
        v = G.reshape(self.v_proj(g, x), (b, t, nkv, hs))  # q, k, v (B, T, heads, hs)
        scale = 1.0 / math.sqrt(hs)
        if cache is not None:
            y = self._cached(q, k, v, cache, scale)
        elif g.fused_attention:
            q, k, v = (G.permute(a, (0, 2, 1, 3)) for a in (q, k, v))  # (B, heads, T, hs)
            y = G.attn_causal(q, k, v, scale)  # (B, nh, T, hs); K/V head j serves heads j*r..
        else:
            q = G.cont(G.permute(q, (0, 2, 1, 3)))  # (B, nh, T, hs)
            k = G.cont(G.permute(k, (0, 2, 1, 3)))  # (B, nkv, T, hs)
            v_t = G.cont(G.permute(v, (0, 2, 3, 1)))  # (B, nkv, hs, T)
            scores = G.mul_mat(k, q)  # (B, nh, T, T); K/V head j serves query heads j*r..
            probs = G.soft_max(scores, mask=g.causal_mask(t), scale=scale)
            y = G.mul_mat(v_t, probs)  # (B, nh, T, hs)
        y = G.reshape(G.cont(G.permute(y, (0, 2, 1, 3))), (b, t, nh * hs))  # (B, T, nh*hs)
        out = self.o_proj(g, y)
        assert out.shape == (b, t, c), out.shape
        return out  # (B, T, C)

    def _cached(
        self, q: G.Tensor, k: G.Tensor, v: G.Tensor, cache: KVCache, scale: float
    ) -> G.Tensor:
        """Attention of q (1, T, nh, hs) over the cache after writing k, v (1, T, nkv, hs)."""
        b, t, nh, hs = q.shape
        if b != 1:
            raise ValueError(f"a KV cache decodes one sequence, got batch {b}")
        q, k, v = (G.cont(G.permute(G.reshape(a, a.shape[1:]), (1, 0, 2))) for a in (q, k, v))
        keys = G.set_rows(cache.keys, k, cache.positions)  # (nkv, Tmax, hs) after the write
        values = G.set_rows(cache.values, v, cache.positions)  # (nkv, Tmax, hs)
        scores = G.mul_mat(keys, q)  # (nh, T, Tmax), K/V heads broadcast over their groups
        probs = G.soft_max(scores, cache.mask, scale=scale)  # (nh, T, Tmax)
        y = G.mul_mat(G.cont(G.transpose(values)), probs)  # (nh, T, hs)
        return G.reshape(y, (1, nh, t, hs))  # (B, nh, T, hs)


# ---- MLP and blocks -----------------------------------------------------------------------------
class MLP:
    """c_fc (C -> F) -> activation -> c_proj (F -> C), HF GPT-2 names and Conv1D layout.
    ``hidden_dropout``: dropout after the activation in training graphs (torch's encoder
    layer has it; GPT-2 does not), stream ``stream``."""

    def __init__(
        self,
        prefix: str,
        d_model: int,
        d_ff: int,
        act: str = "gelu",
        proj_std: float = 0.02,
        hidden_dropout: float = 0.0,
        stream: int = 0,
    ):
        self.c_fc = Linear(f"{prefix}.c_fc", d_model, d_ff, conv1d=True)
        self.act = activation(act)
        self.hidden_dropout = Dropout(hidden_dropout, stream)
        self.c_proj = Linear(f"{prefix}.c_proj", d_ff, d_model, std=proj_std, conv1d=True)

    def params(self) -> list[Param]:
        return self.c_fc.params() + self.c_proj.params()

    def __call__(self, g: Build, x: G.Tensor) -> G.Tensor:
        hidden = self.hidden_dropout(g, self.act(g, self.c_fc(g, x)))  # (B, T, F)
        return self.c_proj(g, hidden)  # (B, T, C)


class GatedMLP:
    """SwiGLU feed-forward: down_proj(silu(gate_proj(x)) * up_proj(x)), C -> F -> C, no
    biases (HF Llama's ``mlp.gate_proj``, ``up_proj``, ``down_proj``, torch layout)."""

    def __init__(self, prefix: str, d_model: int, d_ff: int, std: float = 0.02):
        self.gate_proj = Linear(f"{prefix}.gate_proj", d_model, d_ff, bias=False, std=std)
        self.up_proj = Linear(f"{prefix}.up_proj", d_model, d_ff, bias=False, std=std)
        self.down_proj = Linear(f"{prefix}.down_proj", d_ff, d_model, bias=False, std=std)

    def params(self) -> list[Param]:
        return self.gate_proj.params() + self.up_proj.params() + self.down_proj.params()

    def __call__(self, g: Build, x: G.Tensor) -> G.Tensor:
        hidden = G.silu(self.gate_proj(g, x)) * self.up_proj(g, x)  # (B, T, F)
        return self.down_proj(g, hidden)  # (B, T, C)


class GPTBlock:
    """Pre-LayerNorm causal block: x + attn(ln_1(x)), then + mlp(ln_2(x)) (GPT-2's
    ``h.{i}``). ``proj_std``: init std of the two residual projections (GPT-2 uses
    0.02/sqrt(2 * n_layer), so the residual stream's variance does not grow with depth).
    ``dropout``: on the attention and the MLP outputs before each residual add (GPT-2's
    resid_dropout and mlp dropout), with dropout streams ``stream`` and ``stream + 1``."""

    def __init__(
        self,
        prefix: str,
        d_model: int,
        n_head: int,
        d_ff: int,
        eps: float = 1e-5,
        proj_std: float = 0.02,
        act: str = "gelu",
        dropout: float = 0.0,
        stream: int = 0,
    ):
        self.d_model = d_model
        self.ln_1 = LayerNorm(f"{prefix}.ln_1", d_model, eps)
        self.attn = SelfAttention(f"{prefix}.attn", d_model, n_head, proj_std=proj_std)
        self.ln_2 = LayerNorm(f"{prefix}.ln_2", d_model, eps)
        self.mlp = MLP(f"{prefix}.mlp", d_model, d_ff, act, proj_std)
        self.attn_dropout = Dropout(dropout, stream)
        self.mlp_dropout = Dropout(dropout, stream + 1)

    def params(self) -> list[Param]:
        return self.ln_1.params() + self.attn.params() + self.ln_2.params() + self.mlp.params()

    def __call__(self, g: Build, x: G.Tensor, cache: KVCache | None = None) -> G.Tensor:
        """x (B, T, C) -> (B, T, C); ``cache`` for KV-cache decoding (see SelfAttention)."""
        _check_width(x, self.d_model, "GPTBlock")
        h = self.attn_dropout(g, self.attn(g, self.ln_1(g, x), cache))  # (B, T, C)
        x = x + h
        h = self.mlp_dropout(g, self.mlp(g, self.ln_2(g, x)))  # (B, T, C)
        return x + h


class LlamaBlock:
    """Pre-RMSNorm causal block with rotary grouped-query attention and a SwiGLU MLP:
    x + self_attn(input_layernorm(x)), then + mlp(post_attention_layernorm(x)) (HF Llama's
    and Qwen2's ``model.layers.{i}``)."""

    def __init__(
        self,
        prefix: str,
        d_model: int,
        n_head: int,
        n_kv_head: int,
        d_ff: int,
        eps: float = 1e-6,
        head_dim: int | None = None,
        qkv_bias: bool = False,
        rope_theta: float = 10000.0,
        std: float = 0.02,
    ):
        self.d_model = d_model
        self.input_layernorm = RMSNorm(f"{prefix}.input_layernorm", d_model, eps)
        self.self_attn = GroupedQueryAttention(
            f"{prefix}.self_attn",
            d_model,
            n_head,
            n_kv_head,
            head_dim,
            qkv_bias,
            rope_theta,
            std=std,
        )
        self.post_attention_layernorm = RMSNorm(f"{prefix}.post_attention_layernorm", d_model, eps)
        self.mlp = GatedMLP(f"{prefix}.mlp", d_model, d_ff, std)

    def params(self) -> list[Param]:
        return (
            self.input_layernorm.params()
            + self.self_attn.params()
            + self.post_attention_layernorm.params()
            + self.mlp.params()
        )

    def __call__(self, g: Build, x: G.Tensor, cache: KVCache | None = None) -> G.Tensor:
        """x (B, T, C) -> (B, T, C); ``cache`` for KV-cache decoding."""
        _check_width(x, self.d_model, "LlamaBlock")
        x = x + self.self_attn(g, self.input_layernorm(g, x), cache)  # (B, T, C)
        return x + self.mlp(g, self.post_attention_layernorm(g, x))  # (B, T, C)


class TransformerEncoderLayer:
    """torch.nn.TransformerEncoderLayer without a mask: every position sees every other.

    ``norm_first`` False (torch's default, post-LN): x = ln_1(x + attn(x)), then
    ln_2(x + mlp(x)); True (pre-LN): x + attn(ln_1(x)), then + mlp(ln_2(x)). Parameter
    names and layouts are the GPT block's (ln_1, attn.c_attn, attn.c_proj, ln_2, mlp.c_fc,
    mlp.c_proj); ``act`` 'relu' is torch's default. ``dropout`` where torch applies it, in
    training graphs: the attention probabilities (stream ``stream``), the attention output
    before its residual add (``stream + 1``), the feed-forward hidden layer after the
    activation (``stream + 2``) and the feed-forward output before its add (``stream + 3``).
    """

    def __init__(
        self,
        prefix: str,
        d_model: int,
        n_head: int,
        d_ff: int,
        eps: float = 1e-5,
        act: str = "relu",
        norm_first: bool = False,
        dropout: float = 0.0,
        stream: int = 0,
    ):
        self.d_model, self.norm_first = d_model, norm_first
        self.ln_1 = LayerNorm(f"{prefix}.ln_1", d_model, eps)
        self.attn = SelfAttention(
            f"{prefix}.attn", d_model, n_head, causal=False, prob_dropout=dropout, stream=stream
        )
        self.attn_dropout = Dropout(dropout, stream + 1)
        self.ln_2 = LayerNorm(f"{prefix}.ln_2", d_model, eps)
        self.mlp = MLP(
            f"{prefix}.mlp", d_model, d_ff, act, hidden_dropout=dropout, stream=stream + 2
        )
        self.mlp_dropout = Dropout(dropout, stream + 3)

    def params(self) -> list[Param]:
        return self.ln_1.params() + self.attn.params() + self.ln_2.params() + self.mlp.params()

    def __call__(self, g: Build, x: G.Tensor) -> G.Tensor:
        """x (B, T, C) -> (B, T, C)."""
        _check_width(x, self.d_model, "TransformerEncoderLayer")

        def sa(y: G.Tensor) -> G.Tensor:
            return self.attn_dropout(g, self.attn(g, y))

        def ff(y: G.Tensor) -> G.Tensor:
            return self.mlp_dropout(g, self.mlp(g, y))

        if self.norm_first:
            x = x + sa(self.ln_1(g, x))
            return x + ff(self.ln_2(g, x))
        x = self.ln_1(g, x + sa(x))
        return self.ln_2(g, x + ff(x))


def _check_width(x: G.Tensor, d_model: int, what: str) -> None:
    if x.ndim != 3 or x.shape[-1] != d_model:
        raise ValueError(f"{what}: expected input (B, T, {d_model}), got {x.shape}")
