"""Dropout in GPT-2 (layers.Dropout on the embeddings and each block's attention and MLP
outputs): a training graph's loss and every gradient match the float64 numpy reference
applying the same masks; validation and sampling graphs have no dropout; a resumed run
draws the masks of the uninterrupted one, so it ends bit-identical.

Tolerances as tests/model/test_gpt2.py: loss to 1e-5 of its value, gradients to 1e-4 of each
gradient's largest magnitude."""

import numpy as np
import pytest
from helpers.training import gpt2_trainer, small_data
from reference import dropout_numpy as drop_ref
from reference import gpt2_numpy as ref

from pyggml_train import ggml as G
from pyggml_train.checkpoint import load_checkpoint
from pyggml_train.config import GPT2Config, TrainConfig, load_preset
from pyggml_train.gpt2 import GPT2
from pyggml_train.hf_gpt2 import init_params
from pyggml_train.layers import Dropout

GRAD_REL = 1e-4
VALUE_REL = 1e-5


def config(**kw) -> GPT2Config:
    base = dict(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.25)
    return GPT2Config(**{**base, **kw})


def params_for(cfg: GPT2Config, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = init_params(cfg, seed)
    return {k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32) for k, v in params.items()}


def batch(cfg: GPT2Config, b: int, t: int):
    rng = np.random.default_rng(1)
    return rng.integers(0, cfg.vocab_size, (b, t)), rng.integers(0, cfg.vocab_size, (b, t))


def factors(cfg: GPT2Config, shape: tuple, seed: int, counter: int) -> dict[int, np.ndarray]:
    """Each dropout stream's mask / (1 - p) as GPT2Net numbers them."""
    scale = float(drop_ref.scale(cfg.dropout))
    return {
        s: drop_ref.keep_mask(shape, seed, counter, cfg.dropout, s) * scale
        for s in range(1 + 2 * cfg.n_layer)
    }


@pytest.mark.parametrize("attention", ["fused", "unfused"])
def test_training_graph_matches_the_reference_with_the_same_masks(attention: str) -> None:
    cfg = config(attention=attention)
    params = params_for(cfg)
    model = GPT2(cfg, params=params, ctx=G.Context("cpu", threads=2), seed=11)
    model.dropout_rng.counter = 5
    idx, targets = batch(cfg, 3, 8)
    loss, grads = model.loss_and_grads(idx, targets)
    assert model.dropout_rng.counter == 6  # one micro-batch drew one set of masks
    drop = factors(cfg, (3, 8, cfg.n_embd), seed=11, counter=5)
    want_loss, want = ref.loss_and_grads(params, idx, targets, cfg, drop)
    assert abs(loss - want_loss) <= VALUE_REL * want_loss
    plain_loss, _ = ref.loss_and_grads(params, idx, targets, cfg)
    assert abs(loss - plain_loss) > 100 * VALUE_REL * want_loss  # the masks did act
    for name, g in want.items():
        err = np.abs(grads[name] - g).max()
        assert err <= GRAD_REL * np.abs(g).max(), f"{name}: {err:.3g}"
    # the next micro-batch draws new masks
    loss2, _ = model.loss_and_grads(idx, targets)
    assert loss2 != loss


def test_validation_and_sampling_graphs_have_no_dropout() -> None:
    params = params_for(config())
    ctx = G.Context("cpu", threads=2)
    with_drop = GPT2(config(), params=params, ctx=ctx)
    without = GPT2(config(dropout=0.0), params=params, ctx=ctx)
    idx, targets = batch(config(), 2, 8)
    assert with_drop.loss(idx, targets) == without.loss(idx, targets)
    np.testing.assert_array_equal(with_drop.forward(idx), without.forward(idx))
    assert with_drop.dropout_rng.counter == 0  # no training graph ran


def test_dropout_is_a_preset_and_cli_field() -> None:
    model_cfg, _, _ = load_preset("char-tiny", dropout="0.1")  # the form --set passes
    assert model_cfg.dropout == 0.1
    with pytest.raises(ValueError, match="dropout must be in"):
        load_preset("char-tiny", dropout="1.0")
    with pytest.raises(ValueError, match="dropout p must be in"):
        Dropout(1.0, stream=0)


def test_resume_draws_the_same_masks_and_ends_bit_identical(tmp_path) -> None:
    model_cfg = GPT2Config(
        vocab_size=None, block_size=32, n_layer=1, n_head=2, n_embd=32, dropout=0.2
    )
    train_cfg = TrainConfig(batch_size=4, block_size=32, max_steps=6, warmup_steps=2, lr=3e-3,
                            min_lr=3e-4, tokens_per_step=256, eval_steps=2, threads=2)  # fmt: skip
    data = small_data()
    straight = gpt2_trainer(model_cfg, train_cfg, data)
    want = [straight.train_one_step()[0] for _ in range(6)]

    first = gpt2_trainer(model_cfg, train_cfg, data)
    got = [first.train_one_step()[0] for _ in range(3)]
    path = first.save(tmp_path / "ckpt.npz")
    del first
    ckpt = load_checkpoint(path)
    assert ckpt.extra["dropout_counter"] == 3 * train_cfg.grad_accum_steps
    second = gpt2_trainer(ckpt.model_config, ckpt.train_config, data)
    second.restore(ckpt)
    got += [second.train_one_step()[0] for _ in range(3)]
    assert got == want  # bit-identical, not merely close
    for name, value in straight.model.state_dict().items():
        np.testing.assert_array_equal(second.model.state_dict()[name], value)

    # the counter is what makes it so: restarting the masks changes the run
    third = gpt2_trainer(ckpt.model_config, ckpt.train_config, data)
    third.restore(ckpt)
    third.model.dropout_rng.counter = 0
    assert [third.train_one_step()[0] for _ in range(3)] != want[3:]
