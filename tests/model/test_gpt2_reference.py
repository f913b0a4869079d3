"""Proves the float64 numpy GPT-2 reference: every gradient vs central finite differences.

The ggml model is compared against this reference, so the reference itself must be
checked against something that shares none of its backward code: the loss function.
"""

import numpy as np
import pytest
from reference.gpt2_numpy import forward, loss_and_grads

from pyggml_train.config import GPT2Config
from pyggml_train.hf_gpt2 import param_shapes

CONFIG = GPT2Config(vocab_size=11, block_size=6, n_layer=2, n_head=2, n_embd=8)
B, T = 2, 5
STEP = 1e-5  # central differences: O(h^2) truncation ~1e-10, round-off ~1e-11
ENTRIES_PER_TENSOR = 6
ROUND_OFF = 1e-10  # ~ machine eps * |loss| / STEP: the noise floor of the numeric gradient


def random_params(seed: int) -> dict[str, np.ndarray]:
    """Params far from init (non-zero biases, LN weights != 1) so every path carries gradient."""
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in param_shapes(CONFIG).items():
        if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
            params[name] = 1.0 + 0.2 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            params[name] = 0.2 * rng.standard_normal(shape)
        else:
            params[name] = 0.4 * rng.standard_normal(shape)
    return params


def batch(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, CONFIG.vocab_size, size=(B, T))
    idx[0, :2] = 3  # a repeated token exercises gradient accumulation in the embedding
    targets = rng.integers(0, CONFIG.vocab_size, size=(B, T))
    return idx, targets


def loss_only(params: dict, idx: np.ndarray, targets: np.ndarray) -> float:
    logits = forward(params, idx, CONFIG)  # (B, T, V)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logz = np.log(np.exp(shifted).sum(axis=-1))  # (B, T)
    picked = np.take_along_axis(shifted, targets[..., None], axis=-1)[..., 0]  # (B, T)
    return float((logz - picked).mean())


def entries(value: np.ndarray, rng: np.random.Generator, every: bool) -> list[tuple]:
    flat = range(value.size) if every else rng.choice(value.size, ENTRIES_PER_TENSOR, replace=False)
    return [np.unravel_index(j, value.shape) for j in flat]


@pytest.mark.parametrize(
    ("seed", "every"), [pytest.param(0, True, marks=pytest.mark.slow), (1, False), (2, False)]
)
def test_every_gradient_matches_finite_differences(seed: int, every: bool) -> None:
    """All entries for one seed, a random handful per tensor for two more."""
    params = random_params(seed)
    idx, targets = batch(seed)
    loss, grads = loss_and_grads(params, idx, targets, CONFIG)
    assert loss == pytest.approx(loss_only(params, idx, targets), rel=1e-12)
    assert set(grads) == set(params)
    rng = np.random.default_rng(100 + seed)
    for name, value in params.items():
        assert grads[name].shape == value.shape, name
        for pos in entries(value, rng, every):
            original = value[pos]
            value[pos] = original + STEP
            up = loss_only(params, idx, targets)
            value[pos] = original - STEP
            down = loss_only(params, idx, targets)
            value[pos] = original
            numeric, analytic = (up - down) / (2 * STEP), grads[name][pos]
            error = abs(numeric - analytic)
            # relative 1e-6; gradients that are ~0 (e.g. key biases) are held to FD round-off
            ok = error < 1e-6 * max(abs(numeric), abs(analytic)) or error < ROUND_OFF
            assert ok, f"{name}{pos}: analytic {analytic:.6e} vs numeric {numeric:.6e}"


def test_key_bias_gradient_vanishes() -> None:
    """Softmax ignores a per-query constant, and q.b_k is one: the key bias gets no gradient."""
    params = random_params(7)
    _, grads = loss_and_grads(params, *batch(7), CONFIG)
    c = CONFIG.n_embd
    for i in range(CONFIG.n_layer):
        key_bias_grad = grads[f"transformer.h.{i}.attn.c_attn.bias"][c : 2 * c]
        np.testing.assert_allclose(key_bias_grad, 0.0, atol=1e-15)


def test_unused_positions_get_zero_gradient_and_wpe_rows_beyond_t() -> None:
    params = random_params(3)
    idx, targets = batch(3)
    _, grads = loss_and_grads(params, idx, targets, CONFIG)
    assert np.all(grads["transformer.wpe.weight"][T:] == 0)  # block_size 6 > T 5


def test_zero_weights_give_uniform_prediction() -> None:
    params = {name: np.zeros(shape) for name, shape in param_shapes(CONFIG).items()}
    idx, targets = batch(4)
    loss, _ = loss_and_grads(params, idx, targets, CONFIG)
    assert loss == pytest.approx(np.log(CONFIG.vocab_size), rel=1e-12)


def test_attention_is_causal() -> None:
    params = random_params(5)
    idx, _ = batch(5)
    changed = idx.copy()
    changed[:, -1] = (changed[:, -1] + 1) % CONFIG.vocab_size
    before, after = forward(params, idx, CONFIG), forward(params, changed, CONFIG)
    np.testing.assert_array_equal(before[:, :-1], after[:, :-1])
    assert not np.allclose(before[:, -1], after[:, -1])


def test_single_token_matches_hand_computation() -> None:
    """With T=1 attention returns v exactly: write the whole 1-layer net out by hand."""
    cfg = GPT2Config(vocab_size=7, block_size=3, n_layer=1, n_head=2, n_embd=4)
    rng = np.random.default_rng(6)
    p = {n: rng.standard_normal(s) for n, s in param_shapes(cfg).items()}
    h = "transformer.h.0."

    def ln(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (x - x.mean()) / np.sqrt(x.var() + cfg.ln_eps) * w + b

    def gelu(x: np.ndarray) -> np.ndarray:
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))

    tok = 5
    x = p["transformer.wte.weight"][tok] + p["transformer.wpe.weight"][0]  # (C,)
    qkv = ln(x, p[h + "ln_1.weight"], p[h + "ln_1.bias"]) @ p[h + "attn.c_attn.weight"]
    v = (qkv + p[h + "attn.c_attn.bias"])[8:]  # (C,) value part
    x = x + v @ p[h + "attn.c_proj.weight"] + p[h + "attn.c_proj.bias"]
    hidden = gelu(
        ln(x, p[h + "ln_2.weight"], p[h + "ln_2.bias"]) @ p[h + "mlp.c_fc.weight"]
        + p[h + "mlp.c_fc.bias"]
    )
    x = x + hidden @ p[h + "mlp.c_proj.weight"] + p[h + "mlp.c_proj.bias"]
    expected = (
        ln(x, p["transformer.ln_f.weight"], p["transformer.ln_f.bias"])
        @ p["transformer.wte.weight"].T
    )
    np.testing.assert_allclose(forward(p, np.array([[tok]]), cfg)[0, 0], expected, rtol=1e-12)
