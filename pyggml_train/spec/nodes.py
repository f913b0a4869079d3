"""The node types, each declared once: ports, parameters (the studio's widgets), its shape
rule, the layer it builds, its dropout streams and how it decodes.

Adding a node type is one :class:`NodeType` entry in :data:`NODE_TYPES` (with its shape
rule and build function beside it); the checker, the compiler and the studio's palette
read everything from here.
"""

from __future__ import annotations

import math
from typing import Any

from .. import ggml as G
from .. import layers as L
from ..config import OPTIMIZERS, TOKENIZERS
from ..tokenizer import GPT2_VOCAB_SIZE
from .corpus import SOURCES, char_vocab_size, corpus_files
from .schema import (
    PORT_KINDS,
    SPEC_VERSION,
    BuildContext,
    InferState,
    Node,
    NodeType,
    ParamSpec,
    Port,
    Shape,
)


# ---- shape rules ---------------------------------------------------------------------------
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


def _infer_data(node: Node, ins: list[Shape], state: InferState) -> list[Shape]:
    p = node.params
    state.data_node = node
    if state.vocab_size is None:  # else the tokenizer in use (a checkpoint's) says
        if p["tokenizer"] == "gpt2":
            state.vocab_size = GPT2_VOCAB_SIZE
        else:
            files = corpus_files(p["source"], p["path"], state.data_dir, node)
            state.vocab_size = char_vocab_size(p["source"], files) if files is not None else None
    bt = (p["batch_size"], p["block_size"])
    return [bt, bt]


def _infer_embedding(node: Node, ins: list[Shape], state: InferState) -> list[Shape]:
    n = node.params["num_embeddings"]
    if state.vocab_size is not None and n < state.vocab_size:
        data = state.data_node.label if state.data_node else "the data"
        raise node.error(
            f"num_embeddings {n} but the tokenizer of {data} has {state.vocab_size} tokens; "
            f"set num_embeddings to at least {state.vocab_size}"
        )
    return [(*ins[0], node.params["embedding_dim"])]


def _infer_positional(node: Node, ins: list[Shape], state: InferState) -> list[Shape]:
    t, max_len = ins[0][1], node.params["max_len"]
    if t > max_len:
        raise node.error(f"max_len {max_len} but its input has {t} positions (block_size)")
    return [ins[0]]


def _infer_gpt_block(node: Node, ins: list[Shape], state: InferState) -> list[Shape]:
    _width(node, ins[0], "d_model")
    _heads(node, "d_model", "nhead")
    return [ins[0]]


def _infer_mha(node: Node, ins: list[Shape], state: InferState) -> list[Shape]:
    _width(node, ins[0], "embed_dim")
    _heads(node, "embed_dim", "num_heads")
    return [ins[0]]


def _infer_rotary_attention(node: Node, ins: list[Shape], state: InferState) -> list[Shape]:
    _width(node, ins[0], "embed_dim")
    _heads(node, "embed_dim", "num_heads")
    _kv_heads(node, "embed_dim", "num_heads")
    return [ins[0]]


def _infer_llama_block(node: Node, ins: list[Shape], state: InferState) -> list[Shape]:
    _width(node, ins[0], "d_model")
    _heads(node, "d_model", "nhead")
    _kv_heads(node, "d_model", "nhead")
    return [ins[0]]


def _kv_heads(node: Node, width: str, heads: str) -> None:
    """K/V heads that divide the query heads, and an even head size (rotary pairs)."""
    h, kv = node.params[heads], node.params["num_kv_heads"]
    if h % kv:
        fit = ", ".join(str(n) for n in range(1, h + 1) if h % n == 0)
        raise node.error(f"num_kv_heads {kv} does not divide {heads} {h}; divisors: {fit}")
    if (node.params[width] // h) % 2:
        raise node.error(f"head size {node.params[width] // h} is odd; rotary pairs need it even")


def _infer_swiglu(node: Node, ins: list[Shape], state: InferState) -> list[Shape]:
    _width(node, ins[0], "d_model")
    return [ins[0]]


def _infer_layer_norm(node: Node, ins: list[Shape], state: InferState) -> list[Shape]:
    _width(node, ins[0], "normalized_shape")
    return [ins[0]]


def _infer_linear(node: Node, ins: list[Shape], state: InferState) -> list[Shape]:
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


def _infer_same(node: Node, ins: list[Shape], state: InferState) -> list[Shape]:
    return [ins[0]]


def _infer_add(node: Node, ins: list[Shape], state: InferState) -> list[Shape]:
    if ins[0] != ins[1]:
        raise node.error(f"input a is {list(ins[0])} but input b is {list(ins[1])}")
    return [ins[0]]


def _infer_loss(node: Node, ins: list[Shape], state: InferState) -> list[Shape]:
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


# ---- what each node builds (layers.py objects) ---------------------------------------------
class _ThenDropout:
    """A layer whose output goes through dropout (PositionalEncoding, MultiheadAttention);
    extra arguments (positions, a KV cache) go to the layer."""

    def __init__(self, layer: Any, dropout: L.Dropout):
        self.layer, self.dropout = layer, dropout

    def params(self) -> list[L.Param]:
        return self.layer.params()

    def __call__(self, g: L.Build, x: G.Tensor, *extra: Any) -> G.Tensor:
        return self.dropout(g, self.layer(g, x, *extra))


class _Add:
    """The Add node: a + b, no parameters."""

    def params(self) -> list[L.Param]:
        return []

    def __call__(self, g: L.Build, a: G.Tensor, b: G.Tensor) -> G.Tensor:
        return a + b


def _build_embedding(node: Node, at: BuildContext) -> L.Embedding:
    return L.Embedding(node.id, node.params["num_embeddings"], node.params["embedding_dim"])


def _build_positional(node: Node, at: BuildContext) -> _ThenDropout:
    p = node.params
    if p["kind"] == "learned":
        pe = L.LearnedPositionalEncoding(node.id, p["max_len"], at.width)
    else:
        pe = L.SinusoidalPositionalEncoding(p["max_len"], at.width)
    return _ThenDropout(pe, L.Dropout(p["dropout"], at.stream))


def _build_gpt_block(node: Node, at: BuildContext) -> L.GPTBlock:
    p = node.params
    # GPT-2's init: residual projections shrink with depth so the stream's variance stays put
    proj_std = 0.02 / math.sqrt(2 * at.n_blocks)
    return L.GPTBlock(
        node.id,
        p["d_model"],
        p["nhead"],
        p["dim_feedforward"],
        proj_std=proj_std,
        dropout=p["dropout"],
        stream=at.stream,
    )


def _build_encoder_layer(node: Node, at: BuildContext) -> L.TransformerEncoderLayer:
    p = node.params
    return L.TransformerEncoderLayer(
        node.id,
        p["d_model"],
        p["nhead"],
        p["dim_feedforward"],
        act=p["activation"],
        norm_first=p["norm_first"],
        dropout=p["dropout"],
        stream=at.stream,
    )


def _build_mha(node: Node, at: BuildContext) -> _ThenDropout:
    p = node.params
    attn = L.SelfAttention(node.id, p["embed_dim"], p["num_heads"], causal=p["causal"])
    return _ThenDropout(attn, L.Dropout(p["dropout"], at.stream))


def _build_layer_norm(node: Node, at: BuildContext) -> L.LayerNorm:
    return L.LayerNorm(node.id, node.params["normalized_shape"], node.params["eps"])


def _build_rotary_attention(node: Node, at: BuildContext) -> L.GroupedQueryAttention:
    p = node.params
    return L.GroupedQueryAttention(
        node.id,
        p["embed_dim"],
        p["num_heads"],
        p["num_kv_heads"],
        qkv_bias=p["qkv_bias"],
        rope_theta=p["rope_theta"],
    )


def _build_llama_block(node: Node, at: BuildContext) -> L.LlamaBlock:
    p = node.params
    return L.LlamaBlock(
        node.id,
        p["d_model"],
        p["nhead"],
        p["num_kv_heads"],
        p["dim_feedforward"],
        p["eps"],
        qkv_bias=p["qkv_bias"],
        rope_theta=p["rope_theta"],
    )


def _build_linear(node: Node, at: BuildContext) -> L.Linear:
    p = node.params
    tied = at.layers[p["tie_weights"]].weight if p["tie_weights"] else None
    return L.Linear(node.id, p["in_features"], p["out_features"], p["bias"], tied_to=tied)


# ---- the node types ------------------------------------------------------------------------
_X = Port("x", "tensor", "activations (B, T, C)")
_Y = Port("y", "tensor", "activations (B, T, C)")


def _dropout_param(doc: str = "dropout probability during training") -> ParamSpec:
    return ParamSpec("dropout", "float", 0.0, doc, min=0.0, max=1.0, max_exclusive=True)


def _width_param(name: str, default: int, doc: str) -> ParamSpec:
    return ParamSpec(name, "int", default, doc, min=1, max=65536)


_ROTARY_PARAMS = (
    _width_param("num_kv_heads", 2, "key/value heads, each shared by a group of query heads"),
    ParamSpec("rope_theta", "float", 10000.0, "rotary base (Qwen2: 1e6)", min=1.0, max=1e9),
    ParamSpec("qkv_bias", "bool", False, "biases on the q, k, v projections (Qwen2)"),
)
_RMS_EPS = ParamSpec("eps", "float", 1e-5, "added to the mean square", min=1e-12, max=1.0)


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
                ParamSpec(
                    "source",
                    "choice",
                    "tinyshakespeare",
                    "a named dataset (fetched and checked on first use), or 'file' for the "
                    "text file at path",
                    choices=SOURCES,
                ),
                ParamSpec("path", "str", "", "text file (source 'file'), relative to the data dir"),
                ParamSpec(
                    "tokenizer",
                    "choice",
                    "char",
                    "'char': one token per distinct character; 'gpt2': GPT-2 BPE (50257)",
                    choices=TOKENIZERS,
                ),
                ParamSpec("block_size", "int", 128, "tokens per sequence T", min=1, max=65536),
                ParamSpec("batch_size", "int", 16, "sequences per batch B", min=1, max=65536),
                ParamSpec(
                    "val_fraction",
                    "float",
                    0.1,
                    "tail fraction of the tokens held out for validation (a dataset with its "
                    "own validation split, e.g. wikitext-2, uses that instead)",
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
                ParamSpec(
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
            build=_build_embedding,
        ),
        NodeType(
            "PositionalEncoding",
            "layer",
            "Adds a position vector to each time step: learned (GPT-2's wpe) or sinusoidal.",
            (_X,),
            (_Y,),
            (
                ParamSpec(
                    "kind",
                    "choice",
                    "learned",
                    "'learned': a trained (max_len, C) table; 'sinusoidal': fixed sin/cos",
                    choices=("learned", "sinusoidal"),
                ),
                ParamSpec("max_len", "int", 1024, "positions available (>= block_size)", min=1),
                _dropout_param("dropout applied after adding positions"),
            ),
            _infer_positional,
            build=_build_positional,
            streams=1,
            takes_positions=True,
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
            build=_build_gpt_block,
            streams=2,  # the attention and the MLP outputs
            attention=lambda block: block.attn,
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
                ParamSpec(
                    "activation",
                    "choice",
                    "relu",
                    "feed-forward nonlinearity",
                    choices=L.ACTIVATIONS,
                ),
                ParamSpec(
                    "norm_first",
                    "bool",
                    False,
                    "pre-LN (x + attn(ln(x))) instead of PyTorch's default post-LN",
                ),
            ),
            _infer_gpt_block,
            build=_build_encoder_layer,
            streams=4,  # as torch: attention probabilities and output, FF hidden and output
            causal=lambda node: False,
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
                ParamSpec("causal", "bool", True, "mask the future (a language model needs it)"),
                _dropout_param("dropout on the attention output"),
            ),
            _infer_mha,
            build=_build_mha,
            streams=1,
            attention=lambda then_dropout: then_dropout.layer,
            causal=lambda node: node.params["causal"],
        ),
        NodeType(
            "LayerNorm",
            "layer",
            "Normalises the last axis, then scales and shifts it (learned).",
            (_X,),
            (_Y,),
            (
                _width_param("normalized_shape", 128, "width C (must match the input)"),
                ParamSpec("eps", "float", 1e-5, "added to the variance", min=1e-12, max=1.0),
            ),
            _infer_layer_norm,
            build=_build_layer_norm,
        ),
        NodeType(
            "RMSNorm",
            "layer",
            "Scales the last axis to unit root mean square, then by a learned weight (Llama).",
            (_X,),
            (_Y,),
            (_width_param("normalized_shape", 128, "width C (must match the input)"), _RMS_EPS),
            _infer_layer_norm,
            build=lambda node, at: L.RMSNorm(
                node.id, node.params["normalized_shape"], node.params["eps"]
            ),
        ),
        NodeType(
            "RotaryAttention",
            "layer",
            "Causal self-attention with rotary positions and grouped K/V heads (Llama's).",
            (_X,),
            (_Y,),
            (
                _width_param("embed_dim", 128, "width C (must match the input)"),
                _width_param("num_heads", 4, "query heads; embed_dim must be divisible by it"),
                *_ROTARY_PARAMS,
            ),
            _infer_rotary_attention,
            build=_build_rotary_attention,
            attention=lambda layer: layer,
        ),
        NodeType(
            "SwiGLU",
            "layer",
            "Gated feed-forward: down(silu(gate(x)) * up(x)), no biases (Llama's MLP).",
            (_X,),
            (_Y,),
            (
                _width_param("d_model", 128, "width C (must match the input)"),
                _width_param("dim_feedforward", 352, "hidden width"),
            ),
            _infer_swiglu,
            build=lambda node, at: L.GatedMLP(
                node.id, node.params["d_model"], node.params["dim_feedforward"]
            ),
        ),
        NodeType(
            "LlamaBlock",
            "layer",
            "Pre-RMSNorm block: x + rotary attention(norm(x)), then + SwiGLU(norm(x)); causal.",
            (_X,),
            (_Y,),
            (
                _width_param("d_model", 128, "residual width C (must match the input)"),
                _width_param("nhead", 4, "query heads; d_model must be divisible by it"),
                _width_param("dim_feedforward", 352, "hidden width of the SwiGLU MLP"),
                *_ROTARY_PARAMS,
                _RMS_EPS,
            ),
            _infer_llama_block,
            build=_build_llama_block,
            attention=lambda block: block.self_attn,
        ),
        NodeType(
            "Linear",
            "layer",
            "y = x W^T + b over the last axis; as the LM head it may share the Embedding's table.",
            (_X,),
            (_Y,),
            (
                _width_param("in_features", 128, "input width (must match the input)"),
                ParamSpec("out_features", "int", 65, "output width", min=1, max=1 << 20),
                ParamSpec("bias", "bool", True, "add a learned bias"),
                ParamSpec(
                    "tie_weights",
                    "str",
                    "",
                    "id of an Embedding node whose table is this weight (GPT-2's LM head); "
                    "'' for a weight of its own",
                    node_ref=True,
                ),
            ),
            _infer_linear,
            build=_build_linear,
        ),
        NodeType(
            "Activation",
            "layer",
            "An elementwise nonlinearity: GELU (tanh approximation, as GPT-2) or ReLU.",
            (_X,),
            (_Y,),
            (ParamSpec("function", "choice", "gelu", "the nonlinearity", choices=L.ACTIVATIONS),),
            _infer_same,
            build=lambda node, at: L.activation(node.params["function"]),
        ),
        NodeType(
            "Dropout",
            "layer",
            "Zeroes each activation with probability p during training (scaled by 1/(1-p)).",
            (_X,),
            (_Y,),
            (
                ParamSpec(
                    "p", "float", 0.1, "drop probability", min=0.0, max=1.0, max_exclusive=True
                ),
            ),
            _infer_same,
            build=lambda node, at: L.Dropout(node.params["p"], at.stream),
            streams=1,
        ),
        NodeType(
            "Add",
            "layer",
            "Elementwise sum of two equal shapes: a residual connection.",
            (Port("a", "tensor", "(B, T, C)"), Port("b", "tensor", "(B, T, C)")),
            (_Y,),
            (),
            _infer_add,
            build=lambda node, at: _Add(),
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
                ParamSpec(
                    "loss", "choice", "cross_entropy", "the objective", choices=("cross_entropy",)
                ),
                ParamSpec(
                    "optimizer",
                    "choice",
                    "adamw",
                    "AdamW (decoupled weight decay on matrices), Adam (no decay) or plain SGD",
                    choices=OPTIMIZERS,
                ),
                ParamSpec("lr", "float", 1e-3, "peak learning rate", min=1e-9, max=10.0),
                ParamSpec(
                    "schedule",
                    "choice",
                    "cosine",
                    "after warmup: 'cosine' decay to min_lr, or 'constant' lr",
                    choices=("cosine", "constant"),
                ),
                ParamSpec("min_lr", "float", 1e-4, "floor of the cosine decay", min=0.0, max=10.0),
                ParamSpec("warmup_steps", "int", 10, "linear warmup steps", min=0),
                ParamSpec("steps", "int", 1000, "optimizer steps (when epochs is 0)", min=1),
                ParamSpec(
                    "epochs",
                    "float",
                    0.0,
                    "passes over the training tokens; 0 = use steps",
                    min=0.0,
                    max=1000.0,
                ),
                ParamSpec(
                    "weight_decay",
                    "float",
                    0.1,
                    "decay of matrices (AdamW, SGD); Adam ignores it",
                    min=0.0,
                    max=1.0,
                ),
                ParamSpec("grad_clip", "float", 1.0, "global gradient norm cap; 0 = none", min=0.0),
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
