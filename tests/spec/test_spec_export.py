"""A GPT-2-shaped spec's checkpoint exports as a GPT-2 (HF, GGUF) with the same logits; any
other spec is refused, naming the node that differs."""

import numpy as np
import pytest
from helpers.specs import DATA_DIR, VOCAB, gpt2_spec, node, tiny

from pyggml_train import cli
from pyggml_train import ggml as G
from pyggml_train.checkpoint import load_checkpoint
from pyggml_train.models import from_checkpoint, load_model
from pyggml_train.recipes import train_spec
from pyggml_train.spec import SpecError, as_gpt2, parse_spec

FAST = {"eval_interval": 4, "eval_steps": 1, "sample_interval": 0, "threads": 2}
T = 16


def trained(tmp_path, data: dict):
    """A checkpoint of data trained a few steps (so the weights are no longer the init)."""
    node(data, "data")["params"]["batch_size"] = 4
    node(data, "loss")["params"].update(steps=4, warmup_steps=1, lr=1e-2)
    return train_spec(data, tmp_path / "run", DATA_DIR, overrides=FAST, log=lambda _: None)


@pytest.fixture(scope="module")
def gpt2_shaped(tmp_path_factory):
    return trained(tmp_path_factory.mktemp("spec"), gpt2_spec(16, 2, 2, T)).checkpoint


@pytest.mark.parametrize("fmt, name", [("hf", "hf"), ("gguf", "model.gguf")])
def test_gpt2_shaped_spec_exports_with_the_same_logits(tmp_path, gpt2_shaped, fmt, name):
    """Exported f32 by `pyggml-train export`, read back by models.load_model: the logits
    equal the spec model's on the same ids within 1e-5 (absolute; the same weights and ops)."""
    out = tmp_path / name
    args = ["export", "--checkpoint", str(gpt2_shaped), "--format", fmt, "--out", str(out)]
    assert cli.main(args) == 0
    ctx = G.Context("cpu", threads=2)
    ckpt = load_checkpoint(gpt2_shaped)
    spec_model = from_checkpoint(ckpt, ctx)
    gpt = load_model(out, ctx=ctx)
    assert (gpt.config.n_layer, gpt.config.n_embd, gpt.config.vocab_size) == (2, 16, VOCAB)
    assert gpt.tokenizer.to_dict() == ckpt.tokenizer
    ids = np.random.default_rng(0).integers(0, VOCAB, (2, T))
    np.testing.assert_allclose(gpt.forward(ids), spec_model.forward(ids), rtol=0, atol=1e-5)


def test_other_specs_are_refused_naming_what_differs(tmp_path, capsys):
    ckpt = trained(tmp_path, tiny(c=16, blocks=1, heads=2, t=T)).checkpoint  # untied head
    out = tmp_path / "m.gguf"
    args = ["export", "--checkpoint", str(ckpt), "--format", "gguf", "--out", str(out)]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert 'Linear "head": not tied to the embedding; only GPT-2-shaped specs export' in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    "nid, change, message",
    [
        ("pos", {"kind": "sinusoidal"}, "PositionalEncoding \"pos\": kind 'sinusoidal'"),
        ("b1", {"dim_feedforward": 32}, 'GPTBlock "block 1": dim_feedforward 32, GPT-2\'s is 4 C'),
        ("b1", {"nhead": 4}, 'GPTBlock "block 1": nhead 4 but the first block has 2'),
        ("ln", {"eps": 1e-6}, 'LayerNorm "ln": eps 1e-06'),
        ("head", {"bias": True}, 'Linear "head": has a bias'),
    ],
)
def test_as_gpt2_names_the_node_that_differs(nid, change, message):
    data = gpt2_spec(16, 2, 2, T)
    node(data, nid)["params"].update(change)
    with pytest.raises(SpecError, match="only GPT-2-shaped specs export") as e:
        as_gpt2(parse_spec(data, DATA_DIR))
    assert message in e.value.message


def test_as_gpt2_refuses_other_layer_chains():
    data = gpt2_spec(16, 2, 2, T)
    node(data, "b1")["type"] = "TransformerEncoderLayer"
    with pytest.raises(SpecError, match="GPTBlock -> TransformerEncoderLayer -> LayerNorm"):
        as_gpt2(parse_spec(data, DATA_DIR))
