"""The spec compiler: a spec's model against GPT2 with the same weights, and against numpy."""

import json

import numpy as np
import pytest
from helpers.env import REPO_ROOT
from helpers.specs import DATA_DIR, VOCAB, gpt2_spec, insert_encoder, node, tiny

from pyggml_train import ggml as G
from pyggml_train.config import GPT2Config
from pyggml_train.gpt2 import GPT2, GPT2Net
from pyggml_train.sample import KVCacheDecoder
from pyggml_train.spec import NODE_TYPES, SpecNet, as_gpt2, build_model, parse_spec


@pytest.mark.parametrize("fused, dropout", [(True, 0.0), (False, 0.0), (True, 0.2)])
def test_gpt2_shaped_spec_equals_gpt2(fused, dropout):
    """Same weights, same batch: the same loss and the same gradients, bit for bit (the
    spec compiles to the same layers, so the same ops in the same order)."""
    c, blocks, heads, t = 16, 2, 2, 8
    data = gpt2_spec(c, blocks, heads, t)
    for n in data["nodes"]:
        if n["type"] in ("PositionalEncoding", "GPTBlock"):
            n["params"]["dropout"] = dropout  # GPT-2's masks: same streams, same (seed, counter)
    spec = parse_spec(data, DATA_DIR)
    cfg = GPT2Config(
        vocab_size=VOCAB,
        block_size=t,
        n_layer=blocks,
        n_head=heads,
        n_embd=c,
        attention="fused" if fused else "unfused",
        dropout=dropout,
    )
    gpt = GPT2(cfg, ctx=G.Context("cpu", threads=2), seed=3)
    exported, names = as_gpt2(spec)  # spec name -> GPT-2's, spec.py's knowledge
    assert exported == GPT2Config(
        vocab_size=VOCAB, block_size=t, n_layer=blocks, n_head=heads, n_embd=c
    )
    spec_name = {hf: name for name, hf in names.items()}
    weights = {spec_name[k]: v for k, v in gpt.state_dict().items()}
    model = build_model(
        spec, G.Context("cpu", threads=2), seed=3, params=weights, fused_attention=fused
    )
    assert sorted(model.state_dict()) == sorted(weights)
    assert model.num_params() == gpt.num_params()
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, VOCAB, (2, t)), rng.integers(0, VOCAB, (2, t))
    loss_gpt, grads_gpt = gpt.loss_and_grads(x, y)
    loss_spec, grads_spec = model.loss_and_grads(x, y)
    assert loss_spec == loss_gpt
    for name, g in grads_gpt.items():
        np.testing.assert_array_equal(grads_spec[spec_name[name]], g, err_msg=name)
    np.testing.assert_array_equal(model.forward(x), gpt.forward(x))
    if dropout:  # masks in training graphs only: the validation loss sees the whole net
        assert model.loss(x, y) == gpt.loss(x, y) != loss_spec


# ---- a spec of every other node type, against numpy ----------------------------------------
def mixed_spec(t: int = 6) -> dict:
    """emb -> sinusoidal positions -> encoder layer (post-LN, relu) -> non-causal attention
    added back to its input -> LayerNorm -> ReLU -> Dropout(0) -> Linear with bias -> loss."""
    c = 8
    nodes = [
        {"id": "data", "type": "TextDataset", "params": {"block_size": t, "batch_size": 2}},
        {"id": "emb", "type": "Embedding", "params": {"num_embeddings": 70, "embedding_dim": c}},
        {"id": "pe", "type": "PositionalEncoding", "params": {"kind": "sinusoidal", "max_len": 9}},
        {
            "id": "enc",
            "type": "TransformerEncoderLayer",
            "params": {"d_model": c, "nhead": 2, "dim_feedforward": 12},
        },
        {
            "id": "mha",
            "type": "MultiheadAttention",
            "params": {"embed_dim": c, "num_heads": 4, "causal": False},
        },
        {"id": "res", "type": "Add"},
        {"id": "ln", "type": "LayerNorm", "params": {"normalized_shape": c, "eps": 1e-4}},
        {"id": "act", "type": "Activation", "params": {"function": "relu"}},
        {"id": "drop", "type": "Dropout", "params": {"p": 0.0}},
        {"id": "head", "type": "Linear", "params": {"in_features": c, "out_features": 70}},
        {"id": "loss", "type": "Loss"},
    ]
    pairs = [
        ("data", 0, "emb", 0),
        ("emb", 0, "pe", 0),
        ("pe", 0, "enc", 0),
        ("enc", 0, "mha", 0),
        ("enc", 0, "res", 0),
        ("mha", 0, "res", 1),
        ("res", 0, "ln", 0),
        ("ln", 0, "act", 0),
        ("act", 0, "drop", 0),
        ("drop", 0, "head", 0),
        ("head", 0, "loss", 0),
        ("data", 1, "loss", 1),
    ]
    links = [{"from": [a, i], "to": [b, j]} for a, i, b, j in pairs]
    return {"version": 1, "name": "mixed", "nodes": nodes, "links": links}


def np_ln(x, w, b, eps):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def np_attention(x, p, prefix, nh, causal):
    """Self-attention with HF Conv1D weights c_attn (C, 3C), c_proj (C, C); x (B, T, C)."""
    b, t, c = x.shape
    hs = c // nh
    qkv = x @ p[f"{prefix}.c_attn.weight"] + p[f"{prefix}.c_attn.bias"]  # (B, T, 3C)
    q, k, v = (
        qkv[..., i * c : (i + 1) * c].reshape(b, t, nh, hs).transpose(0, 2, 1, 3) for i in range(3)
    )
    scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hs)  # (B, nh, T, T)
    if causal:
        scores = scores + np.triu(np.full((t, t), -np.inf), k=1)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    y = (probs @ v).transpose(0, 2, 1, 3).reshape(b, t, c)  # (B, T, C)
    return y @ p[f"{prefix}.c_proj.weight"] + p[f"{prefix}.c_proj.bias"]


def np_mixed_logits(idx, p, t):
    c = 8
    pos = np.arange(t)[:, None]
    rate = 10000.0 ** (-np.arange(0, c, 2) / c)
    pe = np.zeros((t, c))
    pe[:, 0::2], pe[:, 1::2] = np.sin(pos * rate), np.cos(pos * rate)
    x = p["emb.weight"][idx] + pe  # (B, T, C)
    x = np_ln(
        x + np_attention(x, p, "enc.attn", 2, False), p["enc.ln_1.weight"], p["enc.ln_1.bias"], 1e-5
    )
    hidden = np.maximum(x @ p["enc.mlp.c_fc.weight"] + p["enc.mlp.c_fc.bias"], 0)  # (B, T, F)
    ff = hidden @ p["enc.mlp.c_proj.weight"] + p["enc.mlp.c_proj.bias"]
    x = np_ln(x + ff, p["enc.ln_2.weight"], p["enc.ln_2.bias"], 1e-5)
    x = x + np_attention(x, p, "mha", 4, False)
    x = np.maximum(np_ln(x, p["ln.weight"], p["ln.bias"], 1e-4), 0)
    return x @ p["head.weight"].T + p["head.bias"]  # torch Linear layout (out, in)


def test_mixed_spec_forward_and_gradient():
    t = 6
    spec = parse_spec(mixed_spec(t), DATA_DIR)
    model = build_model(spec, G.Context("cpu", threads=2), seed=5)
    rng = np.random.default_rng(1)
    # LayerNorm gains and biases away from 1 and 0, so a mix-up of them would show
    weights = {
        n: (w + rng.normal(0, 0.3, w.shape)).astype(np.float32)
        for n, w in model.state_dict().items()
    }
    model.load_state_dict(weights)
    p = {n: w.astype(np.float64) for n, w in weights.items()}
    x, y = rng.integers(0, VOCAB, (2, t)), rng.integers(0, VOCAB, (2, t))
    # logits beyond the vocabulary (70 > 65) stay out of forward and of the loss's softmax
    expected = np_mixed_logits(x, p, t)[..., :VOCAB]  # (B, T, V)
    np.testing.assert_allclose(model.forward(x), expected, rtol=1e-4, atol=1e-4)

    # the gradient along a random direction against a central difference of the loss
    loss, grads = model.loss_and_grads(x, y)
    z = expected - expected.max(-1, keepdims=True)
    np_loss = -np.mean(
        np.take_along_axis(z - np.log(np.exp(z).sum(-1, keepdims=True)), y[..., None], -1)
    )
    assert loss == pytest.approx(np_loss, rel=1e-5)
    direction = {n: rng.normal(size=w.shape) for n, w in weights.items()}
    h = 1e-5

    def loss_at(sign):
        z = np_mixed_logits(x, {n: p[n] + sign * h * direction[n] for n in p}, t)[..., :VOCAB]
        z = z - z.max(-1, keepdims=True)
        return -np.mean(
            np.take_along_axis(z - np.log(np.exp(z).sum(-1, keepdims=True)), y[..., None], -1)
        )

    numeric = (loss_at(1) - loss_at(-1)) / (2 * h)  # float64: h this small is safe
    analytic = sum(float((grads[n].astype(np.float64) * direction[n]).sum()) for n in grads)
    assert analytic == pytest.approx(numeric, rel=1e-4)  # measured: 4e-6


def test_spec_model_init_follows_the_seed_and_gpt2_scheme():
    spec = parse_spec(gpt2_spec(16, 3, 2, 8), DATA_DIR)
    a = build_model(spec, seed=7).state_dict()
    b = build_model(spec, seed=7).state_dict()
    c = build_model(spec, seed=8).state_dict()
    for n in a:
        np.testing.assert_array_equal(a[n], b[n])
    assert not np.array_equal(a["emb.weight"], c["emb.weight"])
    assert np.all(a["b0.ln_1.weight"] == 1) and np.all(a["b0.ln_1.bias"] == 0)
    # residual projections: std 0.02 / sqrt(2 * n_blocks), the rest 0.02
    assert a["b1.attn.c_proj.weight"].std() == pytest.approx(0.02 / np.sqrt(6), rel=0.1)
    assert a["b1.mlp.c_fc.weight"].std() == pytest.approx(0.02, rel=0.1)


def test_unknown_vocabulary_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("PYGGML_DATASETS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    data = tiny()
    spec = parse_spec(data, tmp_path)  # tiny shakespeare not at hand: vocabulary unknown
    assert spec.vocab_size is None
    with pytest.raises(ValueError, match="vocabulary size is unknown"):
        build_model(spec)


def test_causal_spec_decodes_with_kv_caches_as_its_forward():
    data = tiny(c=16, blocks=1, heads=2, t=8)
    node(data, "pos")["params"].update(kind="sinusoidal", max_len=8)
    data["nodes"].append(
        {"id": "mha", "type": "MultiheadAttention", "params": {"embed_dim": 16, "num_heads": 4}}
    )
    data["links"] = [lk for lk in data["links"] if lk["to"] != ["ln", 0]]
    data["links"] += [{"from": ["b0", 0], "to": ["mha", 0]}, {"from": ["mha", 0], "to": ["ln", 0]}]
    model = build_model(parse_spec(data, DATA_DIR), G.Context("cpu", threads=2), seed=2)
    assert model.net.causal and len(model.net.attentions()) == 2
    tokens = [3, 14, 15, 9, 2, 6]
    full = model.forward(np.array([tokens]))[0]  # (T, V)
    decoder = KVCacheDecoder(model)
    steps = [decoder.step(tok) for tok in tokens]
    np.testing.assert_allclose(np.stack(steps), full, rtol=1e-4, atol=1e-5)


def test_small_gpt_example_starts_at_the_uniform_loss():
    data = json.loads((REPO_ROOT / "examples" / "specs" / "small-gpt.json").read_text())
    spec = parse_spec(data, DATA_DIR)
    model = build_model(spec, G.Context("cpu", threads=2), seed=0)
    # 3 blocks of (12 C^2 + 13 C) + 65 C + 1024 C + 2 C, C = 128: the tied head adds nothing
    c = 128
    assert model.num_params() == 3 * (12 * c * c + 13 * c) + 65 * c + 1024 * c + 2 * c
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, VOCAB, (2, 128)), rng.integers(0, VOCAB, (2, 128))
    assert model.loss(x, y) == pytest.approx(np.log(VOCAB), abs=0.05)  # small init: ~uniform


def test_gpt2_124m_example_has_gpt2s_parameters():
    """The example's layout equals GPT-2 124M's, name for name and shape for shape (without
    allocating it: the equality of loss and gradients is tested on a small copy above)."""
    data = json.loads((REPO_ROOT / "examples" / "specs" / "gpt2-124m.json").read_text())
    spec = parse_spec(data, DATA_DIR)
    ours = {p.name: (p.shape, p.transposed) for p in SpecNet(spec).params()}

    def example_name(hf: str) -> str:  # node ids wte, wpe, block<i>, ln_f, lm_head
        name = hf.removeprefix("transformer.")
        if name.startswith("h."):
            _, i, rest = name.split(".", 2)
            return f"block{i}.{rest}"
        return name

    gpt = {example_name(p.name): (p.shape, p.transposed) for p in GPT2Net(GPT2Config()).params()}
    assert ours == gpt
    assert sum(np.prod(s) for s, _ in ours.values()) == 124_439_808


def _dropouts(obj: object) -> list:
    """The Dropout layers that drop something (p > 0) inside a layer object, however deep."""
    from pyggml_train.layers import Dropout

    if isinstance(obj, Dropout):
        return [obj] if obj.p > 0 else []
    if not type(obj).__module__.startswith("pyggml_train"):
        return []
    return [d for value in vars(obj).values() for d in _dropouts(value)]


def test_every_dropout_of_a_spec_draws_its_own_stream():
    """STREAMS reserves as many streams as each node's layer has Dropout layers, so no two
    masks of one graph coincide: here positions, a GPT block and an encoder layer."""

    data = tiny(c=16, blocks=1)
    node(data, "pos")["params"]["dropout"] = 0.1
    node(data, "b0")["params"]["dropout"] = 0.1
    insert_encoder(data, after="b0", dropout=0.1)
    net = SpecNet(parse_spec(data, DATA_DIR))
    streams = []
    for nid, layer in net.layers.items():
        own = [d.stream for d in _dropouts(layer)]
        assert len(own) == NODE_TYPES[net.spec.nodes[nid].type].streams, nid
        streams += own
    assert len(streams) == 1 + 2 + 4
    assert sorted(streams) == list(range(len(streams)))
