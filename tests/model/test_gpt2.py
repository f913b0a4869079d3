"""The ggml GPT-2 against the float64 numpy reference: logits, loss and every gradient.

Tolerances (f32 against float64): logits and loss to 1e-5 of their scale; each
parameter's gradient to 1e-4 of that gradient's largest magnitude.
"""

import numpy as np
import pytest
from reference import gpt2_numpy as ref

from pyggml_train import ggml as G
from pyggml_train.config import GPT2Config
from pyggml_train.gpt2 import GPT2
from pyggml_train.hf_gpt2 import init_params
from pyggml_train.io.hf import save_hf_checkpoint
from pyggml_train.models import load_model

GRAD_REL = 1e-4
VALUE_REL = 1e-5


def tiny_config(**kw) -> GPT2Config:
    base = dict(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=16)
    return GPT2Config(**{**base, **kw})


def random_params(config: GPT2Config, seed: int = 0) -> dict[str, np.ndarray]:
    """GPT-2 init plus noise, so LayerNorm and biases are not at their trivial values."""
    rng = np.random.default_rng(seed)
    params = init_params(config, seed)
    return {k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32) for k, v in params.items()}


def batch(config: GPT2Config, b: int, t: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    v = config.vocab_size
    return rng.integers(0, v, (b, t)), rng.integers(0, v, (b, t))


def assert_close(got: np.ndarray, want: np.ndarray, rel: float, what: str) -> None:
    scale = np.abs(want).max()
    err = np.abs(got - want).max()
    assert err <= rel * scale, f"{what}: max error {err:.3g} > {rel} * {scale:.3g}"


@pytest.fixture(scope="module")
def ctx():
    return G.Context("cpu", threads=2)


@pytest.mark.parametrize("attention", ["fused", "unfused"])
def test_logits_match_reference(ctx, attention):
    cfg = tiny_config(attention=attention)
    params = random_params(cfg)
    model = GPT2(cfg, params=params, ctx=ctx)
    idx, _ = batch(cfg, 3, 8)
    logits = model.forward(idx)
    assert logits.shape == (3, 8, cfg.vocab_size)
    assert_close(logits, ref.forward(params, idx, cfg), VALUE_REL, "logits")
    # a second length gets its own graph; the first stays cached
    idx2, _ = batch(cfg, 1, cfg.block_size, seed=5)
    assert_close(model.forward(idx2), ref.forward(params, idx2, cfg), VALUE_REL, "logits T=16")
    assert len(model._graphs) == 2


@pytest.mark.parametrize(
    ("loss_kind", "attention"),
    [("sparse", "fused"), ("sparse", "unfused"), ("dense", "fused"), ("gather", "unfused")],
)
def test_loss_and_every_gradient_match_reference(ctx, loss_kind, attention):
    cfg = tiny_config(loss_kind=loss_kind, attention=attention)
    params = random_params(cfg, seed=2)
    model = GPT2(cfg, params=params, ctx=ctx)
    idx, targets = batch(cfg, 3, 8)
    loss, grads = model.loss_and_grads(idx, targets)
    want_loss, want_grads = ref.loss_and_grads(params, idx, targets, cfg)
    assert abs(loss - want_loss) <= VALUE_REL * want_loss
    assert set(grads) == set(want_grads)
    for name, want in want_grads.items():
        assert grads[name].shape == want.shape, name
        assert_close(grads[name], want, GRAD_REL, name)
    # the forward-only loss agrees, and a second call does not accumulate gradients
    assert abs(model.loss(idx, targets) - want_loss) <= VALUE_REL * want_loss
    _, again = model.loss_and_grads(idx, targets)
    assert_close(
        again["transformer.wte.weight"], want_grads["transformer.wte.weight"], GRAD_REL, "again"
    )


def test_padded_vocab_excludes_padding_rows(ctx):
    cfg = tiny_config(padded_vocab_size=48)
    params = random_params(cfg, seed=3)
    model = GPT2(cfg, params=params, ctx=ctx)
    assert model.params["transformer.wte.weight"].shape == (48, cfg.n_embd)
    idx, targets = batch(cfg, 2, 8)
    assert_close(model.forward(idx), ref.forward(params, idx, cfg), VALUE_REL, "padded logits")
    loss, grads = model.loss_and_grads(idx, targets)
    want_loss, want_grads = ref.loss_and_grads(params, idx, targets, cfg)
    assert abs(loss - want_loss) <= VALUE_REL * want_loss
    for name, want in want_grads.items():
        assert_close(grads[name], want, GRAD_REL, name)
    padded_grad = model.graph(2, 8, "train").graph.grad(model.params["transformer.wte.weight"])
    assert np.all(padded_grad[cfg.vocab_size :] == 0)


def test_state_dict_round_trip_and_layout(ctx):
    cfg = tiny_config(padded_vocab_size=40)
    params = random_params(cfg, seed=4)
    model = GPT2(cfg, params=params, ctx=ctx)
    state = model.state_dict()
    assert set(state) == set(params)
    for name, value in params.items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)
    # Linear weights live transposed on the device: (out, in)
    w = "transformer.h.0.attn.c_attn.weight"
    np.testing.assert_array_equal(model.params[w].numpy(), params[w].T)
    other = GPT2(cfg, ctx=ctx, seed=9)
    other.load_state_dict(state)
    idx, _ = batch(cfg, 1, 5)
    np.testing.assert_array_equal(other.forward(idx), model.forward(idx))
    with pytest.raises(ValueError, match="expected shape"):
        other.load_state_dict({**state, w: params[w].T})


def test_from_pretrained_safetensors(ctx, tmp_path):
    cfg = tiny_config(n_embd=64, n_head=1)  # n_head inferred from GPT-2's 64-wide heads
    params = random_params(cfg, seed=5)
    file = save_hf_checkpoint(tmp_path / "model.safetensors", params, cfg)
    model = load_model(file, ctx=ctx)
    assert model.config.n_layer == cfg.n_layer and model.config.vocab_size == cfg.vocab_size
    idx, _ = batch(cfg, 2, 6)
    assert_close(model.forward(idx), ref.forward(params, idx, cfg), VALUE_REL, "pretrained logits")


def test_bad_options_are_refused(ctx):
    with pytest.raises(ValueError, match="dropout must be in"):
        tiny_config(dropout=1.0)
    with pytest.raises(ValueError, match="attention must be one of"):
        tiny_config(attention="flash")


def test_sequence_longer_than_context_is_refused(ctx):
    model = GPT2(tiny_config(), ctx=ctx)
    with pytest.raises(ValueError, match="block_size"):
        model.forward(np.zeros((1, 17), dtype=np.int32))
