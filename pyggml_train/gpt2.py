"""GPT-2 as a ggml graph: parameters, the graph builder, and numpy-facing forward/grads.

Parameters live on the device in ggml-friendly layout (Linear weights (out, in), wte
padded to ``padded_vocab_size`` rows); :func:`hf_to_ggml` / :func:`ggml_to_hf` are the
one place that converts to and from Hugging Face names and shapes (Conv1D (in, out)).
Compiled graphs are cached per (B, T): the training loop only writes inputs and
computes. Shapes: B batch, T time, C channels, nh heads, hs head size, V vocab,
Vp padded vocab, N = B*T rows.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import ggml as G
from .config import LOSS_KINDS, GPT2Config
from .hf_gpt2 import PREFIX, iter_init_params, load_hf_checkpoint, param_shapes

# HF Conv1D weights stored (in, out); ggml's linear wants (out, in)
_CONV1D_SUFFIXES = (
    "attn.c_attn.weight",
    "attn.c_proj.weight",
    "mlp.c_fc.weight",
    "mlp.c_proj.weight",
)
WTE = PREFIX + "wte.weight"
GRAPH_CACHE_SIZE = 8  # graphs (their compute buffers) a model keeps, most recently used


def padded_vocab(config: GPT2Config) -> int:
    """Rows of wte and columns of the logits computed on the device."""
    return config.padded_vocab_size or config.require_vocab_size()


def is_conv1d(name: str) -> bool:
    return name.endswith(_CONV1D_SUFFIXES)


def hf_to_ggml(name: str, value: np.ndarray, config: GPT2Config) -> np.ndarray:
    """An HF-layout parameter as stored on the device (transposed Linear, padded wte)."""
    value = np.asarray(value, dtype=np.float32)
    if is_conv1d(name):
        return np.ascontiguousarray(value.T)  # (out, in)
    if name == WTE:
        padded = np.zeros((padded_vocab(config), value.shape[1]), dtype=np.float32)  # (Vp, C)
        padded[: value.shape[0]] = value
        return padded
    return value


def ggml_to_hf(name: str, value: np.ndarray, config: GPT2Config) -> np.ndarray:
    """Inverse of :func:`hf_to_ggml`: Conv1D (in, out) layout, wte without padding rows."""
    if is_conv1d(name):
        return np.ascontiguousarray(value.T)  # (in, out)
    if name == WTE:
        return value[: config.require_vocab_size()]  # (V, C)
    return value


def device_shape(name: str, hf_shape: tuple[int, ...], config: GPT2Config) -> tuple[int, ...]:
    if is_conv1d(name):
        return hf_shape[::-1]
    if name == WTE:
        return (padded_vocab(config), hf_shape[1])
    return hf_shape


# ---- the graph ---------------------------------------------------------------------------------
def _p(params: dict[str, G.Tensor], h: str, name: str) -> G.Tensor:
    return params[h + name]


def attention(
    x: G.Tensor, params: dict[str, G.Tensor], h: str, n_head: int, mask: G.Tensor | None
) -> G.Tensor:
    """Causal self-attention on ln_1(x) (B, T, C) through the fused c_attn projection.

    ``mask`` None: one ATTN_CAUSAL op (patch 0015) on views of the projection, whose
    backward recomputes the probabilities (no (B, nh, T, T) tensor is kept; CPU only).
    Otherwise ``mask`` (T, T) holds 0 on and below the diagonal, -inf above, and the
    attention is built from mul_mat and a masked soft_max (every backend)."""
    b, t, c = x.shape
    hs = c // n_head
    qkv = G.linear(x, _p(params, h, "attn.c_attn.weight"), _p(params, h, "attn.c_attn.bias"))
    # (B, T, 3C): q, k, v side by side in the last axis
    row = 3 * c  # elements per (b, t) row of qkv

    def heads(i: int, axes: tuple[int, ...]) -> G.Tensor:
        part = G.view(qkv, (b, t, n_head, hs), offset=i * c, strides=(t * row, row, hs, 1))
        return G.permute(part, axes)  # part (B, T, nh, hs), permuted without a copy

    if mask is None:
        q, k, v = (heads(i, (0, 2, 1, 3)) for i in range(3))  # each (B, nh, T, hs)
        y = G.attn_causal(q, k, v, scale=1.0 / math.sqrt(hs))  # (B, nh, T, hs)
    else:
        q = G.cont(heads(0, (0, 2, 1, 3)))  # (B, nh, T, hs)
        k = G.cont(heads(1, (0, 2, 1, 3)))  # (B, nh, T, hs)
        v_t = G.cont(heads(2, (0, 2, 3, 1)))  # (B, nh, hs, T)
        scores = G.mul_mat(k, q)  # (B, nh, T, T) = q @ k^T
        # one fused op: softmax(scores / sqrt(hs) + mask), no masked copy of the scores
        probs = G.soft_max(scores, mask=mask, scale=1.0 / math.sqrt(hs))  # (B, nh, T, T)
        y = G.mul_mat(v_t, probs)  # (B, nh, T, hs) = probs @ v
    y = G.reshape(G.cont(G.permute(y, (0, 2, 1, 3))), (b, t, c))  # (B, T, C)
    out = G.linear(y, _p(params, h, "attn.c_proj.weight"), _p(params, h, "attn.c_proj.bias"))
    assert out.shape == (b, t, c), out.shape
    return out  # (B, T, C)


def mlp(x: G.Tensor, params: dict[str, G.Tensor], h: str) -> G.Tensor:
    """c_fc -> tanh GELU -> c_proj on ln_2(x) (B, T, C)."""
    hidden = G.linear(x, _p(params, h, "mlp.c_fc.weight"), _p(params, h, "mlp.c_fc.bias"))
    hidden = G.gelu(hidden)  # (B, T, 4C)
    return G.linear(hidden, _p(params, h, "mlp.c_proj.weight"), _p(params, h, "mlp.c_proj.bias"))


def block(
    x: G.Tensor, params: dict[str, G.Tensor], h: str, config: GPT2Config, mask: G.Tensor | None
) -> G.Tensor:
    """Pre-LayerNorm transformer block: x + attn(ln_1(x)), then + mlp(ln_2(x))."""
    eps = config.ln_eps
    ln1 = G.layer_norm(x, _p(params, h, "ln_1.weight"), _p(params, h, "ln_1.bias"), eps)
    x = x + attention(ln1, params, h, config.n_head, mask)  # (B, T, C)
    ln2 = G.layer_norm(x, _p(params, h, "ln_2.weight"), _p(params, h, "ln_2.bias"), eps)
    return x + mlp(ln2, params, h)  # (B, T, C)


def causal_mask(t: int) -> np.ndarray:
    """(T, T) additive attention mask: 0 where a position may look, -inf at the future."""
    return np.triu(np.full((t, t), -np.inf, dtype=np.float32), k=1)


def matmul_weights(params: dict[str, G.Tensor], dtype: str) -> dict[str, G.Tensor]:
    """``params`` with every Linear weight cast to ``dtype`` for its matmul (mixed
    precision: the f32 tensors stay the master copies and receive f32 gradients)."""
    if dtype == "f32":
        return params
    return {n: G.cast(p, dtype) if is_conv1d(n) else p for n, p in params.items()}


def logits_graph(
    idx: G.Tensor,
    params: dict[str, G.Tensor],
    config: GPT2Config,
    mask: G.Tensor | None,
) -> G.Tensor:
    """Logits (N, Vp) for i32 token ids ``idx`` (B, T), padded vocab columns included (see
    :func:`vocab_logits`). ``mask``: ``causal_mask(T)`` as a tensor, or None for the fused
    attention op (see :func:`attention`). ``config.matmul_dtype`` 'bf16' runs the Linear and
    LM-head matmuls on bf16 casts of the weights."""
    b, t = idx.shape
    c = config.n_embd
    wte = params[WTE]  # (Vp, C)
    wpe = G.view(params[PREFIX + "wpe.weight"], (t, c))  # (T, C) first T positions
    x = G.get_rows(wte, idx) + wpe  # (B, T, C)
    matmul_dtype = config.matmul_dtype
    layer_params = matmul_weights(params, matmul_dtype)
    for i in range(config.n_layer):
        x = block(x, layer_params, f"{PREFIX}h.{i}.", config, mask)
    assert x.shape == (b, t, c), x.shape
    x = G.layer_norm(x, params[PREFIX + "ln_f.weight"], params[PREFIX + "ln_f.bias"], config.ln_eps)
    head = wte if matmul_dtype == "f32" else G.cast(wte, matmul_dtype)  # lm_head tied to wte
    return G.mul_mat(head, G.reshape(x, (b * t, c)))  # (N, Vp)


def vocab_logits(logits: G.Tensor, vocab_size: int) -> G.Tensor:
    """The (N, V) real-vocabulary columns of padded logits (N, Vp), as a contiguous copy."""
    n, vp = logits.shape
    if vp == vocab_size:
        return logits
    return G.cont(G.view(logits, (n, vocab_size)))  # (N, V)


class LossHead:
    """Mean cross-entropy of the padded logits (N, Vp) over the first V columns against
    next-token targets.

    ``sparse``: ggml_cross_entropy_loss_sparse (patch 0006) with the targets (N,) i32; the
    padded columns stay out of its softmax, so the logits need no cut-off copy.
    ``dense``: ggml's cross_entropy_loss with a one-hot (N, V) f32 label input, as large
    as the logits. ``gather``: -mean(log(softmax(logits)[n, target_n])) via get_rows on
    the flattened probabilities, fed with the flat indices n*V + target_n (N,) i32.
    docs/training.md compares their memory and speed.
    """

    def __init__(self, ctx: G.Context, logits: G.Tensor, vocab_size: int, kind: str):
        n, v = logits.shape[0], vocab_size
        self.kind, self.rows, self.vocab = kind, n, v
        if kind == "sparse":
            self.labels = ctx.input((n,), dtype="i32", name="targets")  # (N,)
            self.loss = G.cross_entropy_loss_sparse(logits, self.labels, n_classes=v)  # ()
            return
        logits = vocab_logits(logits, v)  # (N, V)
        if kind == "dense":
            self.labels = ctx.input((n, v), name="labels")  # (N, V) one-hot
            self.loss = G.cross_entropy_loss(logits, self.labels)  # ()
        elif kind == "gather":
            if n * v >= 2**31:
                raise ValueError(f"gather loss: N*V = {n * v} overflows the i32 flat index")
            self.labels = ctx.input((n,), dtype="i32", name="flat_targets")  # (N,)
            probs = G.reshape(G.soft_max(logits), (n * v, 1))  # (N*V, 1)
            picked = G.get_rows(probs, self.labels)  # (N, 1)
            self.loss = G.sum(G.log(picked)) * (-1.0 / n)  # ()
        else:
            raise ValueError(f"loss kind must be one of {LOSS_KINDS}, got {kind!r}")

    def set_targets(self, targets: np.ndarray) -> None:
        flat = np.asarray(targets).reshape(-1)  # (N,)
        if flat.size != self.rows:
            raise ValueError(f"targets have {flat.size} entries, the graph expects {self.rows}")
        if flat.min() < 0 or flat.max() >= self.vocab:
            raise ValueError(
                f"targets must lie in [0, {self.vocab}), got [{flat.min()}, {flat.max()}]"
            )
        if self.kind == "sparse":
            self.labels.set(flat)
        elif self.kind == "dense":
            onehot = np.zeros((self.rows, self.vocab), dtype=np.float32)  # (N, V)
            onehot[np.arange(self.rows), flat] = 1.0
            self.labels.set(onehot)
        else:
            self.labels.set(np.arange(self.rows, dtype=np.int64) * self.vocab + flat)


@dataclass
class StepGraph:
    """One compiled graph for a fixed (B, T) with its inputs and outputs."""

    graph: G.Graph
    idx: G.Tensor  # (B, T) i32 inputs
    logits: G.Tensor  # (N, V) in a logits graph; (N, Vp) with a loss head
    head: LossHead | None  # None for a logits-only graph

    def run(self, idx: np.ndarray, targets: np.ndarray | None = None) -> float | None:
        """Write the batch, compute, and return the loss (None without targets)."""
        self.idx.set(np.asarray(idx, dtype=np.int32))
        if self.head is not None:
            if targets is None:
                raise ValueError("this graph computes a loss: pass targets")
            self.head.set_targets(targets)
        self.graph.compute()
        return float(self.head.loss.numpy()) if self.head is not None else None


class GPT2:
    """GPT-2 on a ggml Context: HF-named parameters, cached graphs per (B, T)."""

    def __init__(
        self,
        config: GPT2Config,
        params: dict[str, np.ndarray] | None = None,
        ctx: G.Context | None = None,
        seed: int = 0,
    ):
        if config.dropout > 0:
            raise ValueError(
                f"dropout={config.dropout} is not supported (no dropout op in the graph); "
                "set dropout to 0"
            )
        self.config = config  # validated once in config.py, including the graph options below
        self.ctx = ctx or G.Context("cpu")
        # the fused op has CPU kernels only; other devices build attention from mul_mat
        self.fused_attention = config.attention == "fused" or (
            config.attention == "auto" and self.ctx.device == "cpu"
        )
        self.hf_shapes = param_shapes(config)
        self.params: dict[str, G.Tensor] = {
            name: self.ctx.param(device_shape(name, shape, config), name=name)
            for name, shape in self.hf_shapes.items()
        }
        if params is not None:
            self.load_state_dict(params)
        else:
            for name, value in iter_init_params(config, seed):  # one tensor resident at a time
                self._load_one(name, value)
        self._graphs: OrderedDict[tuple[str, int, int], StepGraph] = OrderedDict()

    @classmethod
    def from_pretrained(cls, path: str | Path, ctx: G.Context | None = None, **kwargs) -> GPT2:
        """Load HF GPT-2 weights from a model.safetensors file (or its directory)."""
        params, config = load_hf_checkpoint(path)
        return cls(config, params=params, ctx=ctx, **kwargs)

    # -- parameters ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        """All parameters as float32 numpy in HF names and shapes."""
        return {name: ggml_to_hf(name, t.numpy(), self.config) for name, t in self.params.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Set every parameter from HF-named, HF-shaped arrays."""
        missing = sorted(set(self.hf_shapes) - set(state))
        extra = sorted(set(state) - set(self.hf_shapes))
        if missing or extra:
            raise ValueError(f"state dict mismatch: missing {missing[:5]}, unexpected {extra[:5]}")
        for name in self.hf_shapes:
            self._load_one(name, state[name])

    def _load_one(self, name: str, value: np.ndarray) -> None:
        value = np.asarray(value)
        shape = self.hf_shapes[name]
        if value.shape != shape:
            raise ValueError(f"{name}: expected shape {shape} (HF layout), got {value.shape}")
        self.params[name].set(hf_to_ggml(name, value, self.config))

    def num_params(self) -> int:
        return sum(math.prod(s) for s in self.hf_shapes.values())

    # -- graphs ---------------------------------------------------------------------------------
    def build(self, batch: int, seq: int, mode: str) -> StepGraph:
        """A new graph for (B, T): mode 'logits', 'loss' (forward) or 'train' (+ backward)."""
        if not 1 <= seq <= self.config.block_size:
            raise ValueError(
                f"sequence length {seq} must be in [1, block_size={self.config.block_size}]"
            )
        idx = self.ctx.input((batch, seq), dtype="i32", name="idx")  # (B, T)
        mask = (
            None
            if self.fused_attention
            else self.ctx.constant(causal_mask(seq), name="causal_mask")  # (T, T)
        )
        logits = logits_graph(idx, self.params, self.config, mask)  # (N, Vp)
        vocab = self.config.require_vocab_size()
        if mode == "logits":
            logits = vocab_logits(logits, vocab)  # (N, V)
            return StepGraph(self.ctx.graph(logits), idx, logits, None)
        head = LossHead(self.ctx, logits, vocab, self.config.loss_kind)
        if mode == "loss":
            return StepGraph(self.ctx.graph(head.loss), idx, logits, head)
        if mode == "train":
            head.loss.set_loss()
            return StepGraph(self.ctx.graph(head.loss, backward=True), idx, logits, head)
        raise ValueError(f"mode must be 'logits', 'loss' or 'train', got {mode!r}")

    def graph(self, batch: int, seq: int, mode: str) -> StepGraph:
        """The cached graph for (mode, B, T), built on first use. The cache keeps the
        GRAPH_CACHE_SIZE most recently used graphs: each holds compute buffers, and callers
        such as sampling with a growing prompt ask for a new (B, T) at every token."""
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
        """Mean cross-entropy and its gradient for every parameter (HF names and shapes)."""
        b, t = np.shape(idx)
        step = self.graph(b, t, "train")
        from .step import accumulate  # the step protocol owns the loss scale and the reset

        loss = accumulate(step, [(idx, targets)])
        grads = {
            name: ggml_to_hf(name, step.graph.grad(p), self.config)
            for name, p in self.params.items()
        }
        return loss, grads
