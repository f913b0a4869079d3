"""The model spec: a JSON graph of nodes and links, its node types, and shape inference.

A spec is plain JSON (docs/spec.md)::

    {"version": 1, "name": "small GPT",
     "nodes": [{"id": "data", "type": "TextDataset", "params": {...}}, ...],
     "links": [{"from": ["data", 0], "to": ["emb", 0]}, ...]}

Node types are declared once, here (:data:`NODE_TYPES`): ports, parameters with their
type, default, range and doc, and a shape rule. The studio's palette is built from
:func:`node_types_json`; :func:`check_spec` validates a spec and infers the shape of
every link before anything runs, reporting each problem on the node that causes it
(``GPTBlock "block 2": d_model 256 but its input is 128 wide``) instead of raising.
Shapes are numpy order: tokens (B, T), activations (B, T, C).

The compiler turns a parsed spec into layers.py layers (:class:`SpecNet`), a trainable
model (:class:`SpecModel`, contract B) and a TrainConfig; :func:`train_spec` trains it
with the GPT-2 trainer, :func:`load_sampler` generates from its checkpoints and
:func:`script_for` writes a script that reproduces the run; :func:`as_gpt2` maps a
GPT-2-shaped spec onto GPT2's config and parameter names, so its checkpoints export.
"""

from __future__ import annotations

import functools
import math
import pprint
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import ggml as G
from . import layers as L
from .checkpoint import Checkpoint, load_checkpoint
from .config import GPT2Config, TrainConfig, train_config
from .data import cache_dir
from .model import Model
from .sample import KVCacheDecoder, WindowDecoder, decoder_for, generate
from .tokenizer import GPT2_VOCAB_SIZE, Tokenizer, tokenizer_from_dict

if TYPE_CHECKING:
    from .train import TrainResult

SPEC_VERSION = 1
MAX_ID_LENGTH = 40  # "<id>.attn.c_attn.weight" stays within ggml's 63-character tensor names
ID_PATTERN = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_ID_LENGTH}}}")
Shape = tuple[int, ...]

# what flows along a link: token ids (B, T) into an Embedding, next-token targets (B, T)
# into the Loss, and float activations (B, T, C) everywhere else
PORT_KINDS = {
    "tokens": "token ids (B, T), int",
    "targets": "next-token ids (B, T), int",
    "tensor": "activations (B, T, C), float",
}
CORPORA = {"tinyshakespeare": "tinyshakespeare.txt", "the-verdict": "the-verdict.txt"}


class SpecError(ValueError):
    """A spec problem, attributed to a node (``node`` is its id) or to the whole spec (None)."""

    def __init__(self, node: str | None, message: str, errors: list[dict] | None = None):
        super().__init__(message)
        self.node = node
        self.message = message
        self.errors = errors or [{"node": node, "message": message}]  # every problem found


# ---- declarations --------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """One node parameter, shown as a widget; ``type`` is int, float, bool, str or choice."""

    name: str
    type: str
    default: Any
    doc: str
    min: float | None = None
    max: float | None = None
    choices: tuple[str, ...] | None = None
    max_exclusive: bool = False  # e.g. dropout p in [0, 1)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type, "default": self.default}
        for key in ("min", "max"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.max_exclusive:
            out["max_exclusive"] = True
        if self.choices is not None:
            out["choices"] = list(self.choices)
        out["doc"] = self.doc
        return out

    def check(self, value: Any) -> Any:
        """The value, normalised (int-valued floats for ints), or ValueError saying why not."""
        if self.type == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{self.name} must be true or false, got {value!r}")
            return value
        if self.type in ("str", "choice"):
            if not isinstance(value, str):
                raise ValueError(f"{self.name} must be a string, got {value!r}")
            if self.choices is not None and value not in self.choices:
                raise ValueError(
                    f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}"
                )
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{self.name} must be a number, got {value!r}")
        if self.type == "int":
            if not float(value).is_integer():
                raise ValueError(f"{self.name} must be an integer, got {value!r}")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"{self.name} must be finite, got {value!r}")
        low_ok = self.min is None or value >= self.min
        high_ok = self.max is None or (
            value < self.max if self.max_exclusive else value <= self.max
        )
        if not (low_ok and high_ok):
            raise ValueError(f"{self.name} must be in {self.range_text()}, got {value!r}")
        return value

    def range_text(self) -> str:
        low = "-inf" if self.min is None else f"{self.min:g}"
        high = "inf" if self.max is None else f"{self.max:g}"
        return f"[{low}, {high}{')' if self.max_exclusive or self.max is None else ']'}"


@dataclass(frozen=True)
class Port:
    name: str
    kind: str  # a key of PORT_KINDS
    doc: str


@dataclass(frozen=True)
class NodeType:
    """A node type: what it takes, gives and is configured by, and how shapes flow through it."""

    name: str
    category: str  # "data", "layer" or "loss": where the palette lists it
    doc: str
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    params: tuple[Param, ...]
    # (node, input shapes, inference state) -> output shapes; raises SpecError
    infer: Callable[[Node, list[Shape], _State], list[Shape]] = field(repr=False)

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    def to_json(self) -> dict[str, Any]:
        port = lambda p: {"name": p.name, "kind": p.kind, "doc": p.doc}  # noqa: E731
        return {
            "category": self.category,
            "doc": self.doc,
            "inputs": [port(p) for p in self.inputs],
            "outputs": [port(p) for p in self.outputs],
            "params": [p.to_json() for p in self.params],
        }


@dataclass
class Node:
    """A node of a parsed spec, with every parameter present (defaults filled in)."""

    id: str
    type: str
    title: str
    params: dict[str, Any]
    inputs: list[tuple[str, int] | None]  # per input: (from node id, output index)
    ui: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How messages name the node: ``GPTBlock "block 2"``."""
        return f'{self.type} "{self.title}"'

    def error(self, message: str) -> SpecError:
        return SpecError(self.id, f"{self.label}: {message}")


@dataclass
class Spec:
    """A valid spec: nodes in an order where every input comes first, and inferred shapes."""

    name: str
    nodes: dict[str, Node]  # topological order
    shapes: dict[tuple[str, int], Shape]  # (node id, output index) -> shape
    data: str  # id of the TextDataset node
    loss: str  # id of the Loss node
    vocab_size: int | None  # of the data's tokenizer; None if the corpus is not at hand yet
    source: dict[str, Any]  # the JSON the spec was parsed from

    def input_shapes(self, node: Node) -> list[Shape]:
        return [self.shapes[src] for src in node.inputs if src is not None]


# ---- shape rules ---------------------------------------------------------------------------
@dataclass
class _State:
    """What shape rules may consult beyond a node's inputs."""

    nodes: dict[str, Node]
    data_dir: Path | None
    vocab_size: int | None = None  # given (the tokenizer in use), or found by the data node's rule
    data_node: Node | None = None


def _width(node: Node, shape: Shape, param: str, what: str | None = None) -> None:
    """The input's last axis must equal the node's ``param``: the canonical mismatch error."""
    expected = node.params[param]
    if shape[-1] != expected:
        raise node.error(f"{what or param} {expected} but its input is {shape[-1]} wide")


def _heads(node: Node, width: str, heads: str) -> None:
    if node.params[width] % node.params[heads]:
        c, h = node.params[width], node.params[heads]
        fit = ", ".join(str(n) for n in range(1, min(c, 64) + 1) if c % n == 0)
        raise node.error(
            f"{width} {c} is not divisible by {heads} {h}, so heads would differ in width; "
            f"{heads} divisors of {c}: {fit}"
        )


def _infer_data(node: Node, ins: list[Shape], state: _State) -> list[Shape]:
    p = node.params
    state.data_node = node
    if state.vocab_size is None:  # else the tokenizer in use (a checkpoint's) says
        if p["tokenizer"] == "gpt2":
            state.vocab_size = GPT2_VOCAB_SIZE
        else:
            path = corpus_path(p["source"], p["path"], state.data_dir, node)
            state.vocab_size = _char_vocab(path) if path is not None else None
    bt = (p["batch_size"], p["block_size"])
    return [bt, bt]


def _infer_embedding(node: Node, ins: list[Shape], state: _State) -> list[Shape]:
    n = node.params["num_embeddings"]
    if state.vocab_size is not None and n < state.vocab_size:
        data = state.data_node.label if state.data_node else "the data"
        raise node.error(
            f"num_embeddings {n} but the tokenizer of {data} has {state.vocab_size} tokens; "
            f"set num_embeddings to at least {state.vocab_size}"
        )
    return [(*ins[0], node.params["embedding_dim"])]


def _infer_positional(node: Node, ins: list[Shape], state: _State) -> list[Shape]:
    t, max_len = ins[0][1], node.params["max_len"]
    if t > max_len:
        raise node.error(f"max_len {max_len} but its input has {t} positions (block_size)")
    return [ins[0]]


def _infer_gpt_block(node: Node, ins: list[Shape], state: _State) -> list[Shape]:
    _width(node, ins[0], "d_model")
    _heads(node, "d_model", "nhead")
    return [ins[0]]


def _infer_mha(node: Node, ins: list[Shape], state: _State) -> list[Shape]:
    _width(node, ins[0], "embed_dim")
    _heads(node, "embed_dim", "num_heads")
    return [ins[0]]


def _infer_layer_norm(node: Node, ins: list[Shape], state: _State) -> list[Shape]:
    _width(node, ins[0], "normalized_shape")
    return [ins[0]]


def _infer_linear(node: Node, ins: list[Shape], state: _State) -> list[Shape]:
    _width(node, ins[0], "in_features")
    tie = node.params["tie_weights"]
    if tie:
        other = state.nodes.get(tie)
        if other is None or other.type != "Embedding":
            raise node.error(
                f'tie_weights names "{tie}", which is not an Embedding node of this spec; give '
                "an Embedding's id, or an empty string for an untied weight"
            )
        want = (other.params["num_embeddings"], other.params["embedding_dim"])
        have = (node.params["out_features"], node.params["in_features"])
        if want != have:
            raise node.error(
                f"(out_features, in_features) {have} but the tied {other.label} weight is "
                f"(num_embeddings, embedding_dim) {want}"
            )
    return [(*ins[0][:-1], node.params["out_features"])]


def _infer_same(node: Node, ins: list[Shape], state: _State) -> list[Shape]:
    return [ins[0]]


def _infer_add(node: Node, ins: list[Shape], state: _State) -> list[Shape]:
    if ins[0] != ins[1]:
        raise node.error(f"input a is {list(ins[0])} but input b is {list(ins[1])}")
    return [ins[0]]


def _infer_loss(node: Node, ins: list[Shape], state: _State) -> list[Shape]:
    logits, targets = ins
    if logits[:-1] != targets:
        raise node.error(
            f"logits {list(logits)} do not line up with targets {list(targets)} (B, T)"
        )
    v = state.vocab_size
    if v is not None and logits[-1] < v:
        data = state.data_node.label if state.data_node else "the data"
        raise node.error(
            f"its logits are {logits[-1]} wide but the tokenizer of {data} has {v} tokens; "
            f"give the last Linear out_features >= {v}"
        )
    p = node.params
    if p["min_lr"] > p["lr"]:
        raise node.error(f"min_lr {p['min_lr']:g} exceeds lr {p['lr']:g}; lower min_lr")
    if p["epochs"] == 0 and p["warmup_steps"] > p["steps"]:
        raise node.error(f"warmup_steps {p['warmup_steps']} exceeds steps {p['steps']}")
    return []


# ---- the node types ------------------------------------------------------------------------
_X = Port("x", "tensor", "activations (B, T, C)")
_Y = Port("y", "tensor", "activations (B, T, C)")


def _dropout_param(doc: str = "dropout probability during training") -> Param:
    return Param("dropout", "float", 0.0, doc, min=0.0, max=1.0, max_exclusive=True)


def _width_param(name: str, default: int, doc: str) -> Param:
    return Param(name, "int", default, doc, min=1, max=65536)


NODE_TYPES: dict[str, NodeType] = {
    t.name: t
    for t in (
        NodeType(
            "TextDataset",
            "data",
            "A text corpus, tokenized and cut into (B, T) windows; targets are the next tokens.",
            (),
            (
                Port("tokens", "tokens", "input ids (B, T)"),
                Port("targets", "targets", "next-token ids (B, T)"),
            ),
            (
                Param(
                    "source",
                    "choice",
                    "tinyshakespeare",
                    "a bundled corpus, or 'file' for the text file at path",
                    choices=(*CORPORA, "file"),
                ),
                Param("path", "str", "", "text file (source 'file'), relative to the data dir"),
                Param(
                    "tokenizer",
                    "choice",
                    "char",
                    "'char': one token per distinct character; 'gpt2': GPT-2 BPE (50257)",
                    choices=("char", "gpt2"),
                ),
                Param("block_size", "int", 128, "tokens per sequence T", min=1, max=65536),
                Param("batch_size", "int", 16, "sequences per batch B", min=1, max=65536),
                Param(
                    "val_fraction",
                    "float",
                    0.1,
                    "tail fraction of the tokens held out for validation",
                    min=0.001,
                    max=0.5,
                ),
            ),
            _infer_data,
        ),
        NodeType(
            "Embedding",
            "layer",
            "A learned vector per token id: (B, T) ids -> (B, T, embedding_dim).",
            (Port("ids", "tokens", "token ids (B, T)"),),
            (_Y,),
            (
                Param(
                    "num_embeddings",
                    "int",
                    65,
                    "rows of the table; at least the tokenizer's vocabulary size",
                    min=1,
                    max=1 << 20,
                ),
                _width_param("embedding_dim", 128, "width C of each vector"),
            ),
            _infer_embedding,
        ),
        NodeType(
            "PositionalEncoding",
            "layer",
            "Adds a position vector to each time step: learned (GPT-2's wpe) or sinusoidal.",
            (_X,),
            (_Y,),
            (
                Param(
                    "kind",
                    "choice",
                    "learned",
                    "'learned': a trained (max_len, C) table; 'sinusoidal': fixed sin/cos",
                    choices=("learned", "sinusoidal"),
                ),
                Param("max_len", "int", 1024, "positions available (>= block_size)", min=1),
                _dropout_param("dropout applied after adding positions"),
            ),
            _infer_positional,
        ),
        NodeType(
            "GPTBlock",
            "layer",
            "Pre-LayerNorm GPT-2 block: x + attn(ln_1(x)), then + mlp(ln_2(x)); causal.",
            (_X,),
            (_Y,),
            (
                _width_param("d_model", 128, "residual width C (must match the input)"),
                _width_param("nhead", 4, "attention heads; d_model must be divisible by it"),
                _width_param("dim_feedforward", 512, "hidden width of the MLP (4 C in GPT-2)"),
                _dropout_param(),
            ),
            _infer_gpt_block,
        ),
        NodeType(
            "TransformerEncoderLayer",
            "layer",
            "PyTorch's encoder layer without a mask: ln(x + attn(x)), ln(x + ff(x)) (post-LN). "
            "Tokens see the future, so a language model built from it can cheat.",
            (_X,),
            (_Y,),
            (
                _width_param("d_model", 128, "residual width C (must match the input)"),
                _width_param("nhead", 4, "attention heads; d_model must be divisible by it"),
                _width_param("dim_feedforward", 512, "hidden width of the feed-forward part"),
                _dropout_param(),
                Param(
                    "activation",
                    "choice",
                    "relu",
                    "feed-forward nonlinearity",
                    choices=("relu", "gelu"),
                ),
                Param(
                    "norm_first",
                    "bool",
                    False,
                    "pre-LN (x + attn(ln(x))) instead of PyTorch's default post-LN",
                ),
            ),
            _infer_gpt_block,
        ),
        NodeType(
            "MultiheadAttention",
            "layer",
            "Self-attention with an output projection: (B, T, C) -> (B, T, C).",
            (_X,),
            (_Y,),
            (
                _width_param("embed_dim", 128, "width C (must match the input)"),
                _width_param("num_heads", 4, "heads; embed_dim must be divisible by it"),
                Param("causal", "bool", True, "mask the future (a language model needs it)"),
                _dropout_param("dropout on the attention output"),
            ),
            _infer_mha,
        ),
        NodeType(
            "LayerNorm",
            "layer",
            "Normalises the last axis, then scales and shifts it (learned).",
            (_X,),
            (_Y,),
            (
                _width_param("normalized_shape", 128, "width C (must match the input)"),
                Param("eps", "float", 1e-5, "added to the variance", min=1e-12, max=1.0),
            ),
            _infer_layer_norm,
        ),
        NodeType(
            "Linear",
            "layer",
            "y = x W^T + b over the last axis; as the LM head it may share the Embedding's table.",
            (_X,),
            (_Y,),
            (
                _width_param("in_features", 128, "input width (must match the input)"),
                Param("out_features", "int", 65, "output width", min=1, max=1 << 20),
                Param("bias", "bool", True, "add a learned bias"),
                Param(
                    "tie_weights",
                    "str",
                    "",
                    "id of an Embedding node whose table is this weight (GPT-2's LM head); "
                    "'' for a weight of its own",
                ),
            ),
            _infer_linear,
        ),
        NodeType(
            "Activation",
            "layer",
            "An elementwise nonlinearity: GELU (tanh approximation, as GPT-2) or ReLU.",
            (_X,),
            (_Y,),
            (Param("function", "choice", "gelu", "the nonlinearity", choices=("gelu", "relu")),),
            _infer_same,
        ),
        NodeType(
            "Dropout",
            "layer",
            "Zeroes each activation with probability p during training (scaled by 1/(1-p)).",
            (_X,),
            (_Y,),
            (Param("p", "float", 0.1, "drop probability", min=0.0, max=1.0, max_exclusive=True),),
            _infer_same,
        ),
        NodeType(
            "Add",
            "layer",
            "Elementwise sum of two equal shapes: a residual connection.",
            (Port("a", "tensor", "(B, T, C)"), Port("b", "tensor", "(B, T, C)")),
            (_Y,),
            (),
            _infer_add,
        ),
        NodeType(
            "Loss",
            "loss",
            "Mean cross-entropy of the logits against the next tokens, and how to minimise it.",
            (
                Port("logits", "tensor", "scores per token (B, T, V)"),
                Port("targets", "targets", "next-token ids (B, T)"),
            ),
            (),
            (
                Param(
                    "loss", "choice", "cross_entropy", "the objective", choices=("cross_entropy",)
                ),
                Param(
                    "optimizer",
                    "choice",
                    "adamw",
                    "AdamW (decoupled weight decay on matrices), Adam (no decay) or plain SGD",
                    choices=("adamw", "adam", "sgd"),
                ),
                Param("lr", "float", 1e-3, "peak learning rate", min=1e-9, max=10.0),
                Param(
                    "schedule",
                    "choice",
                    "cosine",
                    "after warmup: 'cosine' decay to min_lr, or 'constant' lr",
                    choices=("cosine", "constant"),
                ),
                Param("min_lr", "float", 1e-4, "floor of the cosine decay", min=0.0, max=10.0),
                Param("warmup_steps", "int", 10, "linear warmup steps", min=0),
                Param("steps", "int", 1000, "optimizer steps (when epochs is 0)", min=1),
                Param(
                    "epochs",
                    "float",
                    0.0,
                    "passes over the training tokens; 0 = use steps",
                    min=0.0,
                    max=1000.0,
                ),
                Param(
                    "weight_decay",
                    "float",
                    0.1,
                    "decay of matrices (AdamW, SGD); Adam ignores it",
                    min=0.0,
                    max=1.0,
                ),
                Param("grad_clip", "float", 1.0, "global gradient norm cap; 0 = none", min=0.0),
            ),
            _infer_loss,
        ),
    )
}


def node_types_json() -> dict[str, Any]:
    """The node type declarations as JSON: what the browser builds its palette from."""
    return {
        "version": SPEC_VERSION,
        "port_kinds": PORT_KINDS,
        "types": {name: t.to_json() for name, t in NODE_TYPES.items()},
    }


# ---- data the data node names --------------------------------------------------------------
def corpus_path(
    source: str, path: str, data_dir: str | Path | None, node: Node | None = None
) -> Path | None:
    """The text file a TextDataset reads, or None for a bundled corpus not yet at hand.

    A bundled corpus is looked up in data_dir, then in the download cache; tiny
    shakespeare missing there is fetched when training starts (data.resolve_text).
    A 'file' source must exist: relative paths are taken from data_dir.
    """
    where = (lambda m: node.error(m)) if node else (lambda m: SpecError(None, m))  # noqa: E731
    if source == "file":
        if not path:
            raise where("source 'file' needs a path to a text file")
        file = Path(path)
        if not file.is_absolute() and data_dir is not None:
            file = Path(data_dir) / file
        if not file.is_file():
            raise where(f"path {path!r} is not a file ({file})")
        return file
    name = CORPORA[source]
    dirs = [Path(d) for d in (data_dir, cache_dir()) if d is not None]
    for d in dirs:
        if (d / name).is_file():
            return d / name
    if source == "tinyshakespeare":
        return None
    raise where(
        f"{name} is not in {' or '.join(map(str, dirs))}; copy it there, or use source "
        "'file' with a path"
    )


@functools.lru_cache(maxsize=16)
def _char_vocab_cached(path: str, mtime_ns: int, size: int) -> int:
    return len(set(Path(path).read_text(encoding="utf-8")))


def _char_vocab(path: Path) -> int:
    """Distinct characters of a text file (the char tokenizer's vocabulary), cached."""
    st = path.stat()
    return _char_vocab_cached(str(path), st.st_mtime_ns, st.st_size)


# ---- parsing and checking ------------------------------------------------------------------
def _label(raw: dict, index: int) -> str:
    nid = raw.get("id") if isinstance(raw, dict) else None
    return f'node "{nid}"' if isinstance(nid, str) else f"node #{index}"


class _Checker:
    """Collects every problem of one spec; shapes are inferred where the inputs allow."""

    def __init__(self, data: Any, data_dir: str | Path | None, vocab_size: int | None):
        self.data = data
        self.errors: list[dict[str, Any]] = []
        self.nodes: dict[str, Node] = {}
        self.order: list[str] = []
        self.shapes: dict[tuple[str, int], Shape] = {}
        self.bad: set[str] = set()  # nodes with invalid parameters
        data_path = Path(data_dir) if data_dir is not None else None
        self.state = _State(self.nodes, data_path, vocab_size)

    def error(self, node: str | None, message: str) -> None:
        self.errors.append({"node": node, "message": message})

    def run(self) -> None:
        data = self.data
        if not isinstance(data, dict):
            self.error(None, f"a spec is a JSON object, got {type(data).__name__}")
            return
        unknown = sorted(set(data) - {"version", "name", "nodes", "links"})
        if unknown:
            self.error(
                None, f"unknown top-level key(s) {unknown}; expected version, name, nodes, links"
            )
        if data.get("version") != SPEC_VERSION:
            self.error(None, f"version must be {SPEC_VERSION}, got {data.get('version')!r}")
        if not isinstance(data.get("name", ""), str):
            self.error(None, f"name must be a string, got {data.get('name')!r}")
        nodes, links = data.get("nodes"), data.get("links", [])
        if not isinstance(nodes, list):
            self.error(None, "nodes must be a list of {id, type, params} objects")
            return
        if not isinstance(links, list):
            self.error(None, "links must be a list of {from: [id, output], to: [id, input]}")
            links = []
        for i, raw in enumerate(nodes):
            self._node(i, raw)
        for i, raw in enumerate(links):
            self._link(i, raw)
        self._dangling()
        self._order()
        self._roles()
        self._infer()

    def _node(self, index: int, raw: Any) -> None:
        where = _label(raw, index)
        if not isinstance(raw, dict):
            self.error(None, f"{where}: a node is an object {{id, type, params}}, got {raw!r}")
            return
        nid, ntype = raw.get("id"), raw.get("type")
        if not isinstance(nid, str) or not ID_PATTERN.fullmatch(nid):
            self.error(
                None,
                f"{where}: id must be 1 to {MAX_ID_LENGTH} letters, digits, '_' or '-' (it "
                f"prefixes the node's parameter names), got {nid!r}",
            )
            return
        if nid in self.nodes:
            self.error(nid, f"{where}: duplicate id; every node needs its own")
            return
        extra = sorted(set(raw) - {"id", "type", "title", "params", "ui"})
        if extra:
            self.error(
                nid, f"{where}: unknown key(s) {extra}; expected id, type, title, params, ui"
            )
        if not isinstance(ntype, str) or ntype not in NODE_TYPES:
            self.error(
                nid,
                f"{where}: unknown node type {ntype!r}; known types: {', '.join(NODE_TYPES)}",
            )
            return
        title = raw.get("title") or nid
        if not isinstance(title, str):
            title = nid
        spec_type = NODE_TYPES[ntype]
        ui = raw.get("ui") if isinstance(raw.get("ui"), dict) else {}
        node = Node(nid, ntype, title, {}, [None] * len(spec_type.inputs), ui)
        given = raw.get("params", {})
        if not isinstance(given, dict):
            self.error(nid, f"{node.label}: params must be an object, got {given!r}")
            given = {}
        valid = [p.name for p in spec_type.params]
        for name in sorted(set(given) - set(valid)):
            self.error(
                nid,
                f"{node.label}: unknown parameter {name!r}; valid: {', '.join(valid) or 'none'}",
            )
        bad = False
        for p in spec_type.params:
            try:
                node.params[p.name] = p.check(given[p.name]) if p.name in given else p.default
            except ValueError as exc:
                self.error(nid, f"{node.label}: {exc}")
                bad = True
        self.nodes[nid] = node
        if bad:
            self.bad.add(nid)  # its shapes can't be inferred

    def _endpoint(self, raw: Any, key: str, index: int) -> tuple[Node, int] | None:
        end = raw.get(key)
        if (
            not isinstance(end, list | tuple)
            or len(end) != 2
            or not isinstance(end[0], str)
            or isinstance(end[1], bool)
            or not isinstance(end[1], int)
        ):
            self.error(None, f"link #{index}: {key!r} must be [node_id, port_index], got {end!r}")
            return None
        nid, port = end
        node = self.nodes.get(nid)
        if node is None:
            self.error(None, f"link #{index}: {key} names node {nid!r}, which does not exist")
            return None
        ports = NODE_TYPES[node.type].outputs if key == "from" else NODE_TYPES[node.type].inputs
        if not 0 <= port < len(ports):
            what = "output" if key == "from" else "input"
            have = ", ".join(f"{i} ({p.name})" for i, p in enumerate(ports)) or "none"
            self.error(nid, f"{node.label}: has no {what} {port}; its {what}s: {have}")
            return None
        return node, port

    def _link(self, index: int, raw: Any) -> None:
        if not isinstance(raw, dict):
            self.error(None, f"link #{index}: a link is an object {{from, to}}, got {raw!r}")
            return
        src, dst = self._endpoint(raw, "from", index), self._endpoint(raw, "to", index)
        if src is None or dst is None:
            return
        (a, out), (b, inp) = src, dst
        out_port, in_port = NODE_TYPES[a.type].outputs[out], NODE_TYPES[b.type].inputs[inp]
        if out_port.kind != in_port.kind:
            self.error(
                b.id,
                f"{b.label}: input {inp} ({in_port.name}) takes {PORT_KINDS[in_port.kind]} "
                f"but {a.label} output {out} ({out_port.name}) gives {PORT_KINDS[out_port.kind]}",
            )
            return
        if b.inputs[inp] is not None:
            first = self.nodes[b.inputs[inp][0]]
            self.error(
                b.id,
                f"{b.label}: input {inp} ({in_port.name}) is linked twice, from {first.label} "
                f"and from {a.label}; an input takes one link",
            )
            return
        b.inputs[inp] = (a.id, out)

    def _dangling(self) -> None:
        used = {src[0] for n in self.nodes.values() for src in n.inputs if src is not None}
        for node in self.nodes.values():
            ports = NODE_TYPES[node.type].inputs
            for i, src in enumerate(node.inputs):
                if src is None:
                    self.error(
                        node.id, f"{node.label}: input {i} ({ports[i].name}) is not connected"
                    )
            if NODE_TYPES[node.type].category == "layer" and node.id not in used:
                self.error(
                    node.id, f"{node.label}: its output goes nowhere; connect it or delete it"
                )

    def _order(self) -> None:
        """Kahn's topological sort; nodes left over sit on (or behind) a cycle."""
        pending = {nid: {s[0] for s in n.inputs if s is not None} for nid, n in self.nodes.items()}
        while True:
            ready = [nid for nid, deps in pending.items() if not deps]
            if not ready:
                break
            for nid in ready:
                self.order.append(nid)
                del pending[nid]
            for deps in pending.values():
                deps.difference_update(ready)
        if pending:
            cycle = self._find_cycle(pending)
            path = " -> ".join(self.nodes[n].label for n in [*cycle, cycle[0]])
            for nid in cycle:
                self.error(nid, f"{self.nodes[nid].label}: is on a cycle: {path}")

    def _find_cycle(self, pending: dict[str, set[str]]) -> list[str]:
        """One cycle among the unsorted nodes: walk inputs until a node repeats."""
        walk, seen = [next(iter(pending))], set()
        while walk[-1] not in seen:
            seen.add(walk[-1])
            walk.append(next(iter(pending[walk[-1]])))
        start = walk.index(walk[-1])
        return walk[start:-1][::-1]  # in data-flow order

    def _roles(self) -> None:
        for category, what in (("data", "TextDataset"), ("loss", "Loss")):
            found = [n for n in self.nodes.values() if NODE_TYPES[n.type].category == category]
            if not found:
                self.error(None, f"the spec has no {what} node; add one")
            for extra in found[1:]:
                self.error(
                    extra.id, f"{extra.label}: a spec has one {what} node; {found[0].label} is it"
                )

    def _infer(self) -> None:
        for nid in self.order:
            node = self.nodes[nid]
            if nid in self.bad:
                continue
            sources = node.inputs
            if any(s is None or s not in self.shapes for s in sources):
                continue  # an input is missing or failed: reported already
            ins = [self.shapes[s] for s in sources]
            try:
                outs = NODE_TYPES[node.type].infer(node, ins, self.state)
            except SpecError as exc:
                self.error(exc.node, exc.message)
                continue
            for i, shape in enumerate(outs):
                self.shapes[(nid, i)] = shape


def _run_checker(data: Any, data_dir: str | Path | None, vocab_size: int | None) -> _Checker:
    checker = _Checker(data, data_dir, vocab_size)
    checker.run()
    return checker


def check_spec(data: Any, data_dir: str | Path | None = None) -> dict[str, Any]:
    """Validate a spec and infer its shapes without raising for any bad spec.

    Returns {"ok": bool, "errors": [{"node": id | None, "message": str}],
    "shapes": {"<from_id>:<output_index>": [dims...]}} with the shape of every output
    that could be inferred (also when other parts of the spec have errors).
    """
    checker = _run_checker(data, data_dir, None)
    return {
        "ok": not checker.errors,
        "errors": checker.errors,
        "shapes": {f"{nid}:{i}": list(s) for (nid, i), s in checker.shapes.items()},
    }


def parse_spec(
    data: Any, data_dir: str | Path | None = None, vocab_size: int | None = None
) -> Spec:
    """A checked :class:`Spec`, or SpecError with the first problem (``.errors`` has all).

    vocab_size: that of the tokenizer in use (e.g. a checkpoint's), instead of the one
    the data node's corpus gives.
    """
    checker = _run_checker(data, data_dir, vocab_size)
    if checker.errors:
        first = checker.errors[0]
        raise SpecError(first["node"], first["message"], checker.errors)
    roles = {NODE_TYPES[n.type].category: n.id for n in checker.nodes.values()}
    return Spec(
        name=data.get("name", ""),
        nodes={nid: checker.nodes[nid] for nid in checker.order},
        shapes=checker.shapes,
        data=roles["data"],
        loss=roles["loss"],
        vocab_size=checker.state.vocab_size,
        source=data,
    )


def load_spec(path: str | Path, data_dir: str | Path | None = None) -> Spec:
    """Parse a spec file; JSON syntax errors become SpecError too."""
    import json

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(None, f"{path} is not valid JSON (truncated or garbled?): {exc}") from None
    try:
        return parse_spec(data, data_dir)
    except SpecError as exc:  # say which file the problem is in
        raise SpecError(exc.node, f"{path}: {exc.message}", exc.errors) from None


# ---- the compiler: a spec as layers, a Model, a training config ------------------------------
class _ThenDropout:
    """A layer whose output goes through dropout (PositionalEncoding, MultiheadAttention);
    extra arguments (positions, a KV cache) go to the layer."""

    def __init__(self, layer: Any, dropout: L.Dropout):
        self.layer, self.dropout = layer, dropout

    def params(self) -> list[L.Param]:
        return self.layer.params()

    def __call__(self, g: L.Build, x: G.Tensor, *extra: Any) -> G.Tensor:
        return self.dropout(g, self.layer(g, x, *extra))


# dropout streams a node type draws (each stream its own mask): GPT blocks drop the
# attention and the MLP outputs; encoder layers where torch does (attention probabilities
# and output, feed-forward hidden layer and output); the Dropout node, positions and
# attention their output
STREAMS = {
    "GPTBlock": 2,
    "TransformerEncoderLayer": 4,
    "PositionalEncoding": 1,
    "MultiheadAttention": 1,
    "Dropout": 1,
}


class _Add:
    """The Add node: a + b, no parameters."""

    def params(self) -> list[L.Param]:
        return []

    def __call__(self, g: L.Build, a: G.Tensor, b: G.Tensor) -> G.Tensor:
        return a + b


def _layer(node: Node, spec: Spec, layers: dict[str, Any], n_blocks: int, stream: int) -> Any:
    """The layers.py object a node stands for (None for the data and loss nodes); its
    dropout masks use streams from ``stream`` on (STREAMS says how many)."""
    p, nid = node.params, node.id
    width = spec.input_shapes(node)[0][-1] if node.inputs else 0
    if node.type in ("TextDataset", "Loss"):
        return None
    if node.type == "Embedding":
        return L.Embedding(nid, p["num_embeddings"], p["embedding_dim"])
    if node.type == "PositionalEncoding":
        if p["kind"] == "learned":
            pe = L.LearnedPositionalEncoding(nid, p["max_len"], width)
        else:
            pe = L.SinusoidalPositionalEncoding(p["max_len"], width)
        return _ThenDropout(pe, L.Dropout(p["dropout"], stream))
    if node.type == "GPTBlock":
        # GPT-2's init: residual projections shrink with depth so the stream's variance stays put
        proj_std = 0.02 / math.sqrt(2 * n_blocks)
        return L.GPTBlock(
            nid,
            p["d_model"],
            p["nhead"],
            p["dim_feedforward"],
            proj_std=proj_std,
            dropout=p["dropout"],
            stream=stream,
        )
    if node.type == "TransformerEncoderLayer":
        return L.TransformerEncoderLayer(
            nid,
            p["d_model"],
            p["nhead"],
            p["dim_feedforward"],
            act=p["activation"],
            norm_first=p["norm_first"],
            dropout=p["dropout"],
            stream=stream,
        )
    if node.type == "MultiheadAttention":
        attn = L.SelfAttention(nid, p["embed_dim"], p["num_heads"], causal=p["causal"])
        return _ThenDropout(attn, L.Dropout(p["dropout"], stream))
    if node.type == "LayerNorm":
        return L.LayerNorm(nid, p["normalized_shape"], p["eps"])
    if node.type == "Linear":
        tied = layers[p["tie_weights"]].weight if p["tie_weights"] else None
        return L.Linear(nid, p["in_features"], p["out_features"], p["bias"], tied_to=tied)
    if node.type == "Activation":
        return L.activation(p["function"])
    if node.type == "Add":
        return _Add()
    if node.type == "Dropout":
        return L.Dropout(p["p"], stream)
    raise node.error("has no layer")


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
            self.layers[node.id] = _layer(node, spec, self.layers, n_blocks, stream)
            stream += STREAMS.get(node.type, 0)
        self.causal = all(
            n.type != "TransformerEncoderLayer"
            and (n.type != "MultiheadAttention" or n.params["causal"])
            for n in spec.nodes.values()
        )

    def params(self) -> list[L.Param]:
        return [p for layer in self.layers.values() if layer is not None for p in layer.params()]

    def attentions(self) -> list[L.SelfAttention]:
        """The attention layers, in the order :meth:`__call__` takes their KV caches."""
        found = []
        for node in self.spec.nodes.values():
            layer = self.layers[node.id]
            if node.type == "GPTBlock":
                found.append(layer.attn)
            elif node.type == "MultiheadAttention":
                found.append(layer.layer)
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
            if node.type == "TextDataset":
                values[(node.id, 0)] = idx  # (B, T); the targets feed the loss head, not the net
                continue
            if node.type == "Loss":
                return values[node.inputs[0]]  # (B, T, V')
            layer = self.layers[node.id]
            ins = [values[src] for src in node.inputs]
            if node.type == "PositionalEncoding":
                out = layer(g, ins[0], positions)
            elif node.type in ("GPTBlock", "MultiheadAttention") and caches is not None:
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


def build_model(
    spec: Spec,
    ctx: G.Context | None = None,
    seed: int = 0,
    params: dict[str, np.ndarray] | None = None,
    fused_attention: bool | None = None,
) -> SpecModel:
    """The model of a parsed spec, initialised from ``seed`` or set to ``params``.

    The vocabulary must be known (a spec parsed with its corpus at hand); the context is
    the data node's block_size. fused_attention None: the fused causal op on the CPU.
    """
    if spec.vocab_size is None:
        raise SpecError(
            spec.data,
            "the corpus is not at hand, so the vocabulary size is unknown; "
            "resolve the data first (train_spec does)",
        )
    ctx = ctx or G.Context("cpu")
    fused = ctx.device == "cpu" if fused_attention is None else fused_attention
    return SpecModel(spec, ctx, params=params, seed=seed, fused_attention=fused)


_GPT2_SHAPE = (
    "data -> Embedding -> PositionalEncoding -> GPTBlock x N -> LayerNorm -> Linear -> Loss"
)


def as_gpt2(spec: Spec) -> tuple[GPT2Config, dict[str, str]]:
    """The GPT2Config of a GPT-2-shaped spec and its parameter names -> GPT-2's (HF) names.

    GPT-2-shaped: a chain data -> Embedding -> learned PositionalEncoding -> GPTBlock x N
    (dim_feedforward 4 C, GPT2Config has no MLP width) -> LayerNorm (eps 1e-5, the blocks')
    -> Linear tied to the embedding, no bias -> Loss. Such a spec computes GPT2's math with
    GPT2's parameters (tests/test_spec_model.py), so its weights export as a GPT-2's.
    Raises SpecError naming the node that differs.
    """
    nodes = list(spec.nodes.values())
    layers = [n for n in nodes if n.type not in ("TextDataset", "Loss")]
    types = [n.type for n in layers]
    n_blocks = types.count("GPTBlock")
    expected = (
        ["Embedding", "PositionalEncoding"] + ["GPTBlock"] * n_blocks + ["LayerNorm", "Linear"]
    )
    if types != expected or not n_blocks:
        raise SpecError(
            None,
            f"the spec's layers are {' -> '.join(types)}; only GPT-2-shaped specs export "
            f"({_GPT2_SHAPE})",
        )
    emb, pos, *blocks, ln, head = layers

    def refuse(node: Node, why: str) -> SpecError:
        return node.error(f"{why}; only GPT-2-shaped specs export ({_GPT2_SHAPE})")

    for prev, node in zip([spec.nodes[spec.data], *layers], layers, strict=False):
        if node.inputs[0] != (prev.id, 0):
            raise refuse(node, f"its input is not {prev.label}'s output (a chain is expected)")
    if spec.nodes[spec.loss].inputs[0] != (head.id, 0):
        raise refuse(spec.nodes[spec.loss], f"its logits do not come from {head.label}")
    c, vocab = emb.params["embedding_dim"], emb.params["num_embeddings"]
    if spec.vocab_size is not None and vocab != spec.vocab_size:
        raise refuse(emb, f"{vocab} rows but the tokenizer has {spec.vocab_size} tokens")
    if pos.params["kind"] != "learned":
        raise refuse(pos, f"kind {pos.params['kind']!r}, GPT-2's positions are 'learned'")
    heads = blocks[0].params["nhead"]
    for b in blocks:
        if b.params["nhead"] != heads:
            raise refuse(b, f"nhead {b.params['nhead']} but the first block has {heads}")
        if b.params["dim_feedforward"] != 4 * c:
            raise refuse(
                b, f"dim_feedforward {b.params['dim_feedforward']}, GPT-2's is 4 C = {4 * c}"
            )
    if ln.params["eps"] != GPT2Config.ln_eps:
        raise refuse(ln, f"eps {ln.params['eps']}, GPT-2's is {GPT2Config.ln_eps}")
    if head.params["tie_weights"] != emb.id:
        raise refuse(head, "not tied to the embedding")
    if head.params["bias"]:
        raise refuse(head, "has a bias, GPT-2's LM head has none")
    config = GPT2Config(
        vocab_size=vocab, block_size=pos.params["max_len"], n_layer=n_blocks, n_head=heads, n_embd=c
    )
    prefixes = {emb.id: "wte", pos.id: "wpe", ln.id: "ln_f"}
    prefixes.update({b.id: f"h.{i}" for i, b in enumerate(blocks)})
    names = {}
    for p in SpecNet(spec).params():
        nid, rest = p.name.split(".", 1)
        names[p.name] = f"transformer.{prefixes[nid]}.{rest}"
    return config, names


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
            raise SpecError(spec.loss, "epochs need the corpus's token count (train_spec has it)")
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


def train_spec(
    spec: Spec | dict[str, Any],
    out_dir: str | Path = "out",
    data_dir: str | Path | None = None,
    resume: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    on_metrics: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    log: Callable[[str], None] = print,
    progress: bool = False,
) -> TrainResult:
    """Train (or resume) a spec with the GPT-2 trainer: metrics, checkpoints, samples.

    The corpus is tokenized into out_dir/data. ``on_metrics`` gets each metrics record
    (step, train_loss, val_loss, lr, grad_norm, tokens_per_s, elapsed_s) as it is
    written; ``should_stop`` is asked after every step and ends the run early with a
    checkpoint to resume from. A resumed run takes the spec from its checkpoint.
    """
    from .data import load_prepared, prepare, resolve_text
    from .train import train

    out = Path(out_dir)
    if resume is not None:
        ckpt = load_checkpoint(resume)
        if ckpt.spec is None:
            raise SpecError(None, f"{resume} is a GPT-2 checkpoint, not a spec's")
        spec = ckpt.spec
    raw = spec.source if isinstance(spec, Spec) else spec
    first = parse_spec(raw, data_dir)  # the vocabulary is checked again once tokenized
    d = first.nodes[first.data].params
    text = corpus_path(d["source"], d["path"], data_dir, first.nodes[first.data])
    if text is None:  # tiny shakespeare not at hand: fetched (or an offline stand-in)
        text, source = resolve_text(None)
        log(f"data: {source}")
    prepared = prepare(text, out / "data", d["tokenizer"], d["val_fraction"])
    tokenizer = load_prepared(prepared.train_path.parent)[2]
    spec = parse_spec(raw, data_dir, vocab_size=tokenizer.vocab_size)
    tc = train_config_for(spec, prepared.train_tokens, overrides)
    return train(
        None,
        tc,
        d["tokenizer"],
        data=str(prepared.train_path.parent),
        out_dir=out,
        resume=resume,
        progress=progress,
        log=log,
        spec=spec,
        on_metrics=on_metrics,
        should_stop=should_stop,
    )


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


SCRIPT = """\
#!/usr/bin/env python3
\"\"\"Reproduce the pyggml_train run of the spec {name!r}.

Written by pyggml_train.spec.script_for. The model, one node per line (output shapes):
{summary}

    python {{script}} [--out-dir OUT] [--data-dir DIR] [--set max_steps=10 ...] [--resume]
\"\"\"

import argparse

from pyggml_train.spec import train_spec

SPEC = {spec}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\\n")[0])
    parser.add_argument("--out-dir", default="out", help="checkpoint, metrics, data")
    parser.add_argument("--data-dir", help="where the corpus files are (see docs/spec.md)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config fields")
    parser.add_argument("--resume", action="store_true", help="continue OUT_DIR/checkpoint.npz")
    args = parser.parse_args()
    overrides = dict(item.split("=", 1) for item in args.set)
    resume = f"{{args.out_dir}}/checkpoint.npz" if args.resume else None
    result = train_spec(SPEC, args.out_dir, args.data_dir, resume=resume, overrides=overrides)
    print(f"final val loss: {{result.val_loss:.4f}}")


if __name__ == "__main__":
    main()
"""


def script_for(spec: Spec | dict[str, Any], data_dir: str | Path | None = None) -> str:
    """A Python script that reproduces the run of ``spec`` through train_spec.

    The spec is embedded as a literal, and its layers are listed in the docstring when the
    spec is valid (a dict is parsed with data_dir for that).
    """
    if not isinstance(spec, Spec):
        spec = parse_spec(spec, data_dir)
    lines = "\n".join(f"    {line}" for line in summary(spec))
    literal = pprint.pformat(spec.source, indent=1, width=100, sort_dicts=False)
    return SCRIPT.format(name=spec.name, summary=lines, spec=literal)


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


def load_model(ckpt: Checkpoint, ctx: G.Context) -> Model:
    """The model of a checkpoint, a spec's or a GPT-2, with its trained weights."""
    if ckpt.spec is None:
        from .gpt2 import GPT2

        return GPT2(ckpt.model_config, params=ckpt.params, ctx=ctx)
    tokenizer = tokenizer_from_dict(ckpt.tokenizer)
    spec = parse_spec(ckpt.spec, vocab_size=tokenizer.vocab_size)
    return build_model(spec, ctx, params=ckpt.params)


def load_sampler(
    checkpoint: str | Path, threads: int | None = None, device: str | None = None
) -> Sampler:
    """A Sampler for a training checkpoint (a spec's or a GPT-2's)."""
    ckpt = load_checkpoint(checkpoint)
    tc = ckpt.train_config
    model = load_model(ckpt, G.Context(device or tc.device, threads or tc.threads))
    return Sampler(model, tokenizer_from_dict(ckpt.tokenizer), decoder_for(model))
