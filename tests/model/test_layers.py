"""Every layer of layers.py against float64 numpy: forward, and the gradient of every float
input and parameter against central finite differences of the numpy forward.

Each check builds ``L = sum(R * layer(x))`` with fixed random ``R`` (errors in different
outputs cannot cancel), lets ggml differentiate it, and compares in the exchange layout
(gradients leave the device through ``Param.from_device``, so the layout conversion is
checked too). Tolerances as tests/helpers/gradcheck.py: forward 1e-5 and gradients 1e-4 of the
largest magnitude. The numpy forwards are tests/reference/gpt2_numpy.py's where GPT-2 has
the layer, else written here from the math.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from helpers.env import require
from helpers.gradcheck import FWD_RTOL, GRAD_RTOL, assert_close
from helpers.layers import FD_STEP, cached_attention, check_layer, randn, random_values
from reference import dropout_numpy as drop_ref
from reference import gpt2_numpy as gref
from reference import ops_numpy as ref

import pyggml_train as pg
from pyggml_train import ggml as G
from pyggml_train.config import GPT2Config
from pyggml_train.layers import (
    MLP,
    Build,
    Embedding,
    GPTBlock,
    LayerNorm,
    LearnedPositionalEncoding,
    Linear,
    Param,
    ReLU,
    SelfAttention,
    SinusoidalPositionalEncoding,
    TransformerEncoderLayer,
    activation,
    init_values,
)
from pyggml_train.model import Model


# ---- numpy forwards not in gpt2_numpy ----------------------------------------------------------
def layernorm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float = 1e-5) -> np.ndarray:
    return gref.layernorm_forward(x, w, b, eps)[0]


def attention(qkv: np.ndarray, n_head: int, causal: bool, prob_factor: Any = 1.0) -> np.ndarray:
    """softmax(q k^T / sqrt(hs) (+ causal mask)) v over heads, qkv (B, T, 3C) -> (B, T, C);
    ``prob_factor`` (not causal only) multiplies the probabilities (B, nh, T, T): dropout."""
    if causal:
        assert np.all(prob_factor == 1.0), "the causal reference has no dropout"
        return gref.attention_forward(qkv, n_head)[0]
    b, t, c3 = qkv.shape
    c = c3 // 3
    q, k, v = (
        qkv[..., i * c : (i + 1) * c].reshape(b, t, n_head, -1).transpose(0, 2, 1, 3)
        for i in range(3)
    )  # (B, nh, T, hs)
    probs = ref.soft_max(q @ k.transpose(0, 1, 3, 2), scale=1.0 / math.sqrt(c // n_head))
    return (probs * prob_factor @ v).transpose(0, 2, 1, 3).reshape(b, t, c)  # (B, T, C)


def self_attention(
    x: np.ndarray, v: dict, h: str, n_head: int, causal: bool, prob_factor: Any = 1.0
) -> np.ndarray:
    qkv = gref.linear_forward(x, v[h + "c_attn.weight"], v[h + "c_attn.bias"])  # (B, T, 3C)
    y = attention(qkv, n_head, causal, prob_factor)
    return gref.linear_forward(y, v[h + "c_proj.weight"], v[h + "c_proj.bias"])


def mlp(
    x: np.ndarray,
    v: dict,
    h: str,
    act: Callable[[np.ndarray], np.ndarray],
    hidden_factor: Any = 1.0,
) -> np.ndarray:
    """``hidden_factor`` multiplies the hidden layer after the activation: dropout."""
    hidden = act(gref.linear_forward(x, v[h + "c_fc.weight"], v[h + "c_fc.bias"])) * hidden_factor
    return gref.linear_forward(hidden, v[h + "c_proj.weight"], v[h + "c_proj.bias"])


def encoder_layer(
    x: np.ndarray, v: dict, n_head: int, norm_first: bool, drops: tuple = (1.0, 1.0, 1.0, 1.0)
) -> np.ndarray:
    """TransformerEncoderLayer "enc" (ReLU); ``drops``: dropout factors of the attention
    probabilities, the attention output, the feed-forward hidden layer and its output."""

    def ln(y, i):
        return layernorm(y, v[f"enc.ln_{i}.weight"], v[f"enc.ln_{i}.bias"])

    def sa(y):
        return self_attention(y, v, "enc.attn.", n_head, False, drops[0]) * drops[1]

    def ff(y):
        return mlp(y, v, "enc.mlp.", ref.relu, drops[2]) * drops[3]

    if norm_first:
        x = x + sa(ln(x, 1))
        return x + ff(ln(x, 2))
    x = ln(x + sa(x), 1)
    return ln(x + ff(x), 2)


# ---- Param: the one place of the layout --------------------------------------------------------
def test_param_layout_round_trips_and_refuses_wrong_shapes():
    conv = Param("w", (3, 5), transposed=True)
    padded = Param("wte", (7, 4), device_rows=9)
    assert conv.device_shape == (5, 3) and padded.device_shape == (9, 4)
    w, e = randn(3, 5, seed=1), randn(7, 4, seed=2)
    np.testing.assert_array_equal(conv.to_device(w), w.T)
    dev = padded.to_device(e)
    np.testing.assert_array_equal(dev[:7], e)
    assert np.all(dev[7:] == 0)
    np.testing.assert_array_equal(conv.from_device(conv.to_device(w)), w)
    np.testing.assert_array_equal(padded.from_device(dev), e)
    with pytest.raises(ValueError, match=r"expected shape \(3, 5\)"):
        conv.to_device(w.T)
    with pytest.raises(ValueError, match="init must be one of"):
        Param("p", (2,), init="uniform")


def test_init_draws_normal_params_in_order_from_one_rng():
    params = [Param("a", (2, 3)), Param("ln", (3,), init="ones"), Param("b", (4,), std=0.5)]
    got = dict((p.name, v) for p, v in init_values(params, seed=11))
    rng = np.random.default_rng(11)
    np.testing.assert_array_equal(got["a"], rng.normal(0, 0.02, (2, 3)).astype(np.float32))
    np.testing.assert_array_equal(got["ln"], np.ones(3, np.float32))
    np.testing.assert_array_equal(got["b"], rng.normal(0, 0.5, (4,)).astype(np.float32))


# ---- embeddings and positional encodings -------------------------------------------------------
def test_embedding_plus_learned_positions_with_repeated_tokens():
    emb = Embedding("wte", 11, 6, device_rows=16)
    pos = LearnedPositionalEncoding("wpe", 9, 6)
    idx = np.array([[3, 1, 3, 0, 10], [3, 3, 7, 2, 1]])  # repeats accumulate in the gradient

    def reference(x, v):
        return v["wte.weight"][x] + v["wpe.weight"][: x.shape[1]]

    grads = check_layer(lambda g, x: pos(g, emb(g, x)), emb.params() + pos.params(), reference, idx)
    assert np.all(grads["wpe.weight"][5:] == 0)  # positions past T get no gradient


def test_sinusoidal_table_is_the_formula_even_and_odd_widths():
    for dim in (6, 7):
        table = SinusoidalPositionalEncoding(5, dim).table()
        for p in range(5):
            for i in range(dim):
                angle = p / 10000 ** ((i - i % 2) / dim)
                want = math.sin(angle) if i % 2 == 0 else math.cos(angle)
                assert table[p, i] == pytest.approx(want, abs=1e-7), (p, i)


def test_sinusoidal_encoding_adds_the_table_at_given_or_leading_positions():
    pe = SinusoidalPositionalEncoding(8, 6)
    table = pe.table().astype(np.float64)
    x = randn(2, 5, 6, seed=3)
    check_layer(lambda g, t: pe(g, t), [], lambda t, v: t + table[:5], x)
    ctx = pg.Context(threads=1)
    xs, positions = ctx.input((1, 3, 6)), ctx.input((3,), dtype="i32")
    out = G.cont(pe(Build(ctx, {}), xs, positions)).set_output()
    graph = ctx.graph(out)
    xs.set(x[:1, :3])
    positions.set(np.array([6, 2, 7]))
    graph.compute()
    np.testing.assert_allclose(out.numpy(), x[:1, :3] + table[[6, 2, 7]], rtol=1e-6)


def test_positions_beyond_the_table_are_refused():
    ctx = pg.Context(threads=1)
    with pytest.raises(ValueError, match="exceeds the positional table's 4 rows"):
        SinusoidalPositionalEncoding(4, 6)(Build(ctx, {}), ctx.input((1, 5, 6)))


# ---- LayerNorm, Linear, activations ------------------------------------------------------------
def test_layer_norm():
    ln = LayerNorm("ln", 8, eps=1e-5)
    check_layer(
        ln,
        ln.params(),
        lambda x, v: layernorm(x, v["ln.weight"], v["ln.bias"]),
        randn(2, 3, 8, seed=4),
    )


@pytest.mark.parametrize("conv1d", [True, False])
def test_linear_in_both_exchange_layouts(conv1d):
    lin = Linear("fc", 5, 7, conv1d=conv1d)
    assert lin.weight.shape == ((5, 7) if conv1d else (7, 5))
    assert lin.weight.device_shape == (7, 5)

    def reference(x, v):
        w = v["fc.weight"] if conv1d else v["fc.weight"].T  # (in, out)
        return x @ w + v["fc.bias"]

    check_layer(lin, lin.params(), reference, randn(2, 3, 5, seed=5))


def test_linear_without_bias():
    lin = Linear("fc", 4, 3, bias=False)
    assert [p.name for p in lin.params()] == ["fc.weight"]
    check_layer(lin, lin.params(), lambda x, v: x @ v["fc.weight"].T, randn(3, 4, seed=6))


def test_weight_tying_sums_both_uses_and_pads_the_output():
    """An LM head tied to a padded embedding: (B, T, Vp) logits whose first V columns are
    x @ wte^T, padding columns 0, and the table's gradient holds both uses."""
    emb = Embedding("wte", 9, 6, device_rows=12)
    head = Linear("lm_head", 6, 9, bias=False, tied_to=emb.weight)
    assert head.params() == []
    idx = np.array([[1, 4, 4, 8], [0, 2, 1, 1]])

    def reference(x, v):
        wte = v["wte.weight"]  # (V, C)
        logits = wte[x] @ wte.T  # (B, T, V)
        return np.concatenate([logits, np.zeros((*x.shape, 3))], axis=-1)  # (B, T, Vp)

    check_layer(lambda g, x: head(g, emb(g, x)), emb.params(), reference, idx)
    with pytest.raises(ValueError, match="needs \\(5, 6\\)"):
        Linear("bad", 6, 5, tied_to=emb.weight)


def test_gelu_and_relu():
    x = randn(2, 3, 7, seed=7)
    x[np.abs(x) < 0.05] = 0.5  # keep finite differences off ReLU's kink
    check_layer(activation("gelu"), [], lambda t, v: ref.gelu(t), x)
    check_layer(ReLU(), [], lambda t, v: ref.relu(t), x)
    with pytest.raises(ValueError, match="activation must be one of"):
        activation("swish")


# ---- attention ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("causal", "fused"), [(True, True), (True, False), (False, False)])
def test_self_attention(causal, fused):
    attn = SelfAttention("attn", 8, 2, causal=causal)
    check_layer(
        attn,
        attn.params(),
        lambda x, v: self_attention(x, v, "attn.", 2, causal),
        randn(2, 5, 8, seed=8),
        fused_attention=fused,
    )


def test_causal_mask_is_one_constant_per_graph_and_length():
    ctx = pg.Context(threads=1)
    g = Build(ctx, {})
    assert g.causal_mask(4) is g.causal_mask(4)
    assert g.causal_mask(4) is not g.causal_mask(3)


def test_kv_cache_attention_equals_full_causal_attention():
    """Tokens written into the cache one and three at a time attend exactly as the full
    causal attention over the sequence."""
    nh, hs, t_max = 2, 4, 8
    c = nh * hs
    attn = SelfAttention("attn", c, nh)
    values = random_values(attn.params(), seed=9)
    x = randn(1, 7, c, seed=10)
    want = self_attention(x.astype(np.float64), values, "attn.", nh, causal=True)  # (1, T, C)
    for chunk in (1, 3):
        got = cached_attention(attn, values, x, nh, t_max, chunk)  # (1, T', C)
        assert_close(got, want[:, : got.shape[1]], FWD_RTOL, f"cached attention, chunk {chunk}")


# ---- MLP, blocks -------------------------------------------------------------------------------
@pytest.mark.parametrize("act", ["gelu", "relu"])
def test_mlp(act):
    m = MLP("mlp", 6, 10, act=act)
    fn = gref.gelu_forward if act == "gelu" else ref.relu
    check_layer(m, m.params(), lambda x, v: mlp(x, v, "mlp.", fn), randn(2, 3, 6, seed=11))


def test_gpt_block_matches_the_gpt2_reference_block():
    cfg = GPT2Config(vocab_size=5, block_size=8, n_layer=1, n_head=2, n_embd=8)
    block = GPTBlock("h.0", 8, 2, 32)

    def reference(x, v):
        return gref.block_forward(x, v, "h.0.", cfg)[0]

    check_layer(block, block.params(), reference, randn(2, 5, 8, seed=12))


def test_gpt_block_init_and_width_check():
    block = GPTBlock("h.3", 8, 2, 32, proj_std=0.005)
    names = [p.name for p in block.params()]
    assert names[:4] == [
        "h.3.ln_1.weight",
        "h.3.ln_1.bias",
        "h.3.attn.c_attn.weight",
        "h.3.attn.c_attn.bias",
    ]
    stds = {p.name: p.std for p in block.params() if p.init == "normal"}
    assert stds == {
        "h.3.attn.c_attn.weight": 0.02,
        "h.3.attn.c_proj.weight": 0.005,
        "h.3.mlp.c_fc.weight": 0.02,
        "h.3.mlp.c_proj.weight": 0.005,
    }
    ctx = pg.Context(threads=1)
    with pytest.raises(ValueError, match=r"GPTBlock: expected input \(B, T, 8\), got \(2, 3, 6\)"):
        block(Build(ctx, {}), ctx.input((2, 3, 6)))


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_layer(norm_first):
    """Unmasked attention: the last position changes the first one's output (unlike a GPT
    block), post-LN (torch's default) or pre-LN, ReLU MLP."""
    layer = TransformerEncoderLayer("enc", 8, 2, 16, norm_first=norm_first)

    def reference(x, v):
        return encoder_layer(x, v, 2, norm_first)

    x = randn(2, 4, 8, seed=13)
    check_layer(layer, layer.params(), reference, x)
    values = random_values(layer.params(), seed=0)
    changed = x.astype(np.float64)
    changed[:, -1] += randn(2, 8, seed=14)  # not a constant shift, which LayerNorm removes
    before, after = reference(x.astype(np.float64), values), reference(changed, values)
    assert not np.allclose(before[:, 0], after[:, 0])  # the reference itself is not causal


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_layer_drops_where_torch_does(norm_first):
    """Training-graph dropout at torch's four places: the attention probabilities, the
    attention output, the feed-forward hidden layer after its ReLU and the feed-forward
    output, each with its own stream (from ``stream``); the reference applies the op's masks
    (tests/reference/dropout_numpy.py) to the same math."""
    p, seed, counter, stream = 0.3, 7, 2, 5
    b, t, c, f, nh = 2, 4, 8, 16, 2
    layer = TransformerEncoderLayer(
        "enc", c, nh, f, norm_first=norm_first, dropout=p, stream=stream
    )

    def factor(shape: tuple, i: int) -> np.ndarray:
        return drop_ref.keep_mask(shape, seed, counter, p, stream + i) * float(drop_ref.scale(p))

    drops = (
        factor((b, nh, t, t), 0),
        factor((b, t, c), 1),
        factor((b, t, f), 2),
        factor((b, t, c), 3),
    )

    def reference(x, v, dropped=True):
        return encoder_layer(x, v, nh, norm_first, drops if dropped else (1.0, 1.0, 1.0, 1.0))

    x = randn(b, t, c, seed=21)
    check_layer(layer, layer.params(), reference, x, dropout=(seed, counter))
    values = {n: w.astype(np.float64) for n, w in random_values(layer.params(), seed=0).items()}
    x64 = x.astype(np.float64)
    assert not np.allclose(reference(x64, values), reference(x64, values, dropped=False))


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder_layer_matches_torch(norm_first):
    """The same weights in torch.nn.TransformerEncoderLayer (batch_first, dropout 0, eval):
    in_proj = c_attn^T, out_proj = attn.c_proj^T, linear1/2 = mlp.c_fc^T/c_proj^T, norm1/2 =
    ln_1/2. Tolerance 1e-5 of the largest output (f32 on both sides)."""
    require(importlib.util.find_spec("torch") is not None, "torch is not installed (test extra)")
    import torch

    layer = TransformerEncoderLayer("enc", 8, 2, 12, norm_first=norm_first)
    values = random_values(layer.params(), seed=17)
    x = randn(2, 5, 8, seed=18)
    ctx = pg.Context(threads=2)
    tensors = {p.name: ctx.param(p.device_shape, name=p.name) for p in layer.params()}
    xs = ctx.input(x.shape)
    out = G.cont(layer(Build(ctx, tensors), xs)).set_output()
    graph = ctx.graph(out)
    for p in layer.params():
        tensors[p.name].set(p.to_device(values[p.name]))
    xs.set(x)
    graph.compute()

    theirs = torch.nn.TransformerEncoderLayer(
        8, 2, 12, dropout=0.0, batch_first=True, norm_first=norm_first
    ).eval()
    pairs = {
        theirs.self_attn.in_proj_weight: values["enc.attn.c_attn.weight"].T,
        theirs.self_attn.in_proj_bias: values["enc.attn.c_attn.bias"],
        theirs.self_attn.out_proj.weight: values["enc.attn.c_proj.weight"].T,
        theirs.self_attn.out_proj.bias: values["enc.attn.c_proj.bias"],
        theirs.linear1.weight: values["enc.mlp.c_fc.weight"].T,
        theirs.linear1.bias: values["enc.mlp.c_fc.bias"],
        theirs.linear2.weight: values["enc.mlp.c_proj.weight"].T,
        theirs.linear2.bias: values["enc.mlp.c_proj.bias"],
        theirs.norm1.weight: values["enc.ln_1.weight"],
        theirs.norm1.bias: values["enc.ln_1.bias"],
        theirs.norm2.weight: values["enc.ln_2.weight"],
        theirs.norm2.bias: values["enc.ln_2.bias"],
    }
    with torch.no_grad():
        for tensor, value in pairs.items():
            tensor.copy_(torch.from_numpy(np.ascontiguousarray(value)))
        want = theirs(torch.from_numpy(x)).numpy()
    assert_close(out.numpy(), want, FWD_RTOL, "encoder layer vs torch")


# ---- the model protocol over a net that is not GPT-2 -------------------------------------------
class EncoderNet:
    """Embedding -> sinusoidal positions -> encoder layer -> Linear head (torch layout)."""

    def __init__(self):
        self.emb = Embedding("emb", 7, 8)
        self.pos = SinusoidalPositionalEncoding(6, 8)
        self.enc = TransformerEncoderLayer("enc", 8, 2, 12)
        self.head = Linear("head", 8, 7)

    def params(self) -> list[Param]:
        return self.emb.params() + self.enc.params() + self.head.params()

    def __call__(self, g: Build, idx: G.Tensor) -> G.Tensor:
        return self.head(g, self.enc(g, self.pos(g, self.emb(g, idx))))  # (B, T, V)


def encoder_net_loss(v: dict[str, np.ndarray], idx: np.ndarray, targets: np.ndarray) -> float:
    x = v["emb.weight"][idx] + SinusoidalPositionalEncoding(6, 8).table()[: idx.shape[1]]
    x = layernorm(x + self_attention(x, v, "enc.attn.", 2, causal=False), *ln(v, 1))
    x = layernorm(x + mlp(x, v, "enc.mlp.", ref.relu), *ln(v, 2))
    logits = x @ v["head.weight"].T + v["head.bias"]  # (B, T, V)
    return float(gref.cross_entropy_forward(logits, targets)[0])


def ln(v: dict[str, np.ndarray], i: int) -> tuple[np.ndarray, np.ndarray]:
    return v[f"enc.ln_{i}.weight"], v[f"enc.ln_{i}.bias"]


def test_model_protocol_trains_a_non_gpt_net():
    """model.Model over an encoder net: state dict round trip, parameter count, and the
    loss and every gradient against numpy and finite differences."""
    net = EncoderNet()
    model = Model(net, pg.Context(threads=2), vocab_size=7, block_size=6, seed=3)
    values = random_values(net.params(), seed=15)
    model.load_state_dict(values)
    state = model.state_dict()
    assert list(state) == [p.name for p in net.params()]
    for name, value in values.items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)
    assert model.num_params() == sum(v.size for v in values.values())
    rng = np.random.default_rng(16)
    idx, targets = rng.integers(0, 7, (2, 5)), rng.integers(0, 7, (2, 5))
    loss, grads = model.loss_and_grads(idx, targets)
    v64 = {n: v.astype(np.float64) for n, v in values.items()}
    want = encoder_net_loss(v64, idx, targets)
    assert abs(loss - want) <= FWD_RTOL * want
    for name, value in v64.items():

        def f(vi: np.ndarray, name: str = name) -> float:
            return encoder_net_loss({**v64, name: vi}, idx, targets)

        assert_close(grads[name], ref.central_diff(f, value, FD_STEP), GRAD_RTOL, name)
