"""The spec's Llama nodes (RMSNorm, RotaryAttention, SwiGLU, LlamaBlock): a Llama-shaped
spec computes what llama.Llama computes, bit for bit (logits, loss, every gradient), and
decodes with KV caches; the palette lists the nodes; the checker explains bad K/V heads.
"""

from __future__ import annotations

import numpy as np
import pytest

from pyggml_train import ggml as G
from pyggml_train.config import LlamaConfig
from pyggml_train.llama import Llama
from pyggml_train.sample import KVCacheDecoder
from pyggml_train.spec import SpecError, build_model, parse_spec
from pyggml_train.spec.nodes import node_types_json

V, C, T = 65, 32, 16


def node(id_: str, type_: str, **params) -> dict:
    return {"id": id_, "type": type_, "params": params}


def llama_spec(kv_heads: int = 2) -> dict:
    block = dict(d_model=C, nhead=4, num_kv_heads=kv_heads, dim_feedforward=48, eps=1e-5)
    nodes = [
        node("data", "TextDataset", tokenizer="char", block_size=T, batch_size=2),
        node("emb", "Embedding", num_embeddings=V, embedding_dim=C),
        node("b0", "LlamaBlock", **block),
        node("b1", "LlamaBlock", **block),
        node("norm", "RMSNorm", normalized_shape=C, eps=1e-5),
        node("head", "Linear", in_features=C, out_features=V, bias=False, tie_weights="emb"),
        node("loss", "Loss"),
    ]
    chain = ["data", "emb", "b0", "b1", "norm", "head", "loss"]
    links = [{"from": [a, 0], "to": [b, 0]} for a, b in zip(chain, chain[1:], strict=False)]
    links.append({"from": ["data", 1], "to": ["loss", 1]})
    return {"version": 1, "name": "llama", "nodes": nodes, "links": links}


def spec_name(name: str) -> str:
    """Our Llama's (HF) name -> the spec's node-id name."""
    name = name.replace("model.embed_tokens.", "emb.").replace("model.norm.", "norm.")
    return name.replace("model.layers.", "b")


def test_llama_shaped_spec_equals_the_llama_model_bit_for_bit():
    config = LlamaConfig(
        vocab_size=V, block_size=T, n_layer=2, n_head=4, n_kv_head=2, n_embd=C, d_ff=48,
        rope_theta=10000.0, norm_eps=1e-5,
    )  # fmt: skip
    llama = Llama(config, ctx=G.Context(threads=2), seed=3)
    weights = {spec_name(n): v for n, v in llama.state_dict().items()}
    spec = build_model(parse_spec(llama_spec(), vocab_size=V), G.Context(threads=2), params=weights)
    assert spec.num_params() == llama.num_params()
    rng = np.random.default_rng(0)
    idx, targets = rng.integers(0, V, (2, 2, T), dtype=np.int32)
    assert np.array_equal(spec.forward(idx), llama.forward(idx))
    loss, grads = spec.loss_and_grads(idx, targets)
    want_loss, want = llama.loss_and_grads(idx, targets)
    assert loss == want_loss
    for name, grad in want.items():
        assert np.array_equal(grads[spec_name(name)], grad), name
    decoder = KVCacheDecoder(spec)
    steps = np.stack([decoder.step(int(t)) for t in idx[0, :6]])
    assert np.abs(steps - spec.forward(idx[:1, :6])[0]).max() < 1e-5


def test_the_palette_lists_the_llama_nodes():
    types = node_types_json()["types"]
    for name in ("RMSNorm", "RotaryAttention", "SwiGLU", "LlamaBlock"):
        assert types[name]["category"] == "layer"


@pytest.mark.parametrize(("kv_heads", "message"), [(3, "does not divide nhead 4")])
def test_the_checker_explains_kv_heads_that_do_not_divide(kv_heads, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(llama_spec(kv_heads), vocab_size=V)
