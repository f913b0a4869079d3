"""Llama's layers (layers.py) against float64 numpy (tests/reference/llama_numpy.py):
forward, and the gradient of the input and of every parameter against central finite
differences of the numpy forward, with test_layers' check (forward 1e-5, gradients 1e-4 of
the largest magnitude). RMSNorm, rotary embeddings in both pairings, grouped-query
attention (fused and unfused, 1, 2 and 4 K/V heads for 4 query heads, with and without
Q/K/V bias), its KV cache, the SwiGLU MLP and the block.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.gradcheck import FWD_RTOL, assert_close
from helpers.layers import cached_attention, check_layer, randn, random_values
from reference import llama_numpy as ref

from pyggml_train import ggml as G
from pyggml_train.layers import (
    Build,
    GatedMLP,
    GroupedQueryAttention,
    LlamaBlock,
    RMSNorm,
    RotaryEmbedding,
)


def test_rms_norm():
    norm = RMSNorm("norm", 8, eps=1e-5)
    check_layer(
        norm,
        norm.params(),
        lambda x, v: ref.rms_norm(x, v["norm.weight"], 1e-5),
        randn(2, 3, 8, seed=1),
    )


@pytest.mark.parametrize("mode", ["neox", "llama"])
@pytest.mark.parametrize("positions", [None, (5, 0, 17)])
def test_rotary_embedding(mode, positions):
    """Both pairings at leading and at given positions; theta away from the default."""
    rotary = RotaryEmbedding(8, theta=500.0, mode=mode)
    pos = np.arange(3) if positions is None else np.array(positions)

    def call(g: Build, x: G.Tensor) -> G.Tensor:
        given = None if positions is None else g.constant("pos", lambda: pos.astype(np.int32))
        return rotary(g, x, given)

    check_layer(call, [], lambda x, v: ref.rope(x, pos, 500.0, mode), randn(2, 3, 2, 8, seed=2))


def test_rotary_embedding_refuses_odd_heads_and_unknown_modes():
    with pytest.raises(ValueError, match="even head size"):
        RotaryEmbedding(7)
    with pytest.raises(ValueError, match="rope mode"):
        RotaryEmbedding(8, mode="gptj")


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize(("n_kv_head", "bias"), [(4, False), (2, True), (1, False)])
def test_grouped_query_attention(n_kv_head, bias, fused):
    attn = GroupedQueryAttention("attn", 16, 4, n_kv_head, qkv_bias=bias, rope_theta=1000.0)
    names = {p.name for p in attn.params()}
    assert ("attn.q_proj.bias" in names) == bias and "attn.o_proj.bias" not in names

    def want(x, v):
        return ref.attention(x, v, "attn.", 4, n_kv_head, 1000.0)

    check_layer(attn, attn.params(), want, randn(2, 5, 16, seed=3), fused_attention=fused)


def test_grouped_query_attention_with_wider_heads_than_the_model():
    """head_dim * n_head need not be d_model (e.g. Qwen2 shapes): o_proj maps back."""
    attn = GroupedQueryAttention("attn", 12, 4, 2, head_dim=6)
    check_layer(
        attn,
        attn.params(),
        lambda x, v: ref.attention(x, v, "attn.", 4, 2, 10000.0),
        randn(1, 4, 12, seed=4),
    )


def test_grouped_query_attention_refuses_uneven_groups():
    with pytest.raises(ValueError, match="multiple of n_kv_head"):
        GroupedQueryAttention("attn", 12, 4, 3)


def test_kv_cache_attention_with_shared_heads_equals_full_attention():
    """Tokens written into an nkv-head cache one and three at a time attend exactly as
    the full causal attention over the sequence."""
    nh, nkv, hs, t_max = 4, 2, 4, 8
    c = nh * hs
    attn = GroupedQueryAttention("attn", c, nh, nkv, qkv_bias=True)
    values = random_values(attn.params(), seed=5)
    x = randn(1, 7, c, seed=6)
    v64 = {k: v.astype(np.float64) for k, v in values.items()}
    want = ref.attention(x.astype(np.float64), v64, "attn.", nh, nkv, 10000.0)  # (1, T, C)
    for chunk in (1, 3):
        got = cached_attention(attn, values, x, nkv, t_max, chunk)  # (1, T', C)
        assert_close(got, want[:, : got.shape[1]], FWD_RTOL, f"cached attention, chunk {chunk}")


def test_gated_mlp():
    mlp = GatedMLP("mlp", 6, 10)
    assert [p.name for p in mlp.params()] == [
        "mlp.gate_proj.weight",
        "mlp.up_proj.weight",
        "mlp.down_proj.weight",
    ]
    check_layer(mlp, mlp.params(), lambda x, v: ref.gated_mlp(x, v, "mlp."), randn(2, 3, 6, seed=7))


@pytest.mark.parametrize("fused", [True, False])
def test_llama_block(fused):
    block = LlamaBlock("b", 16, 4, 2, 24, eps=1e-5, qkv_bias=True, rope_theta=1e6)
    check_layer(
        block,
        block.params(),
        lambda x, v: ref.block(x, v, "b.", 4, 2, 1e6, 1e-5),
        randn(2, 4, 16, seed=8),
        fused_attention=fused,
    )
