"""Non-finite values stop training cleanly (docs/reliability.md): the step that met a NaN
or Inf loss or gradient norm is named, the weights are not updated with it, no checkpoint
holds NaN/Inf, and ``skip_nonfinite`` skips a bounded number of such steps."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers.env import SHARED, require
from helpers.training import configs, gpt2_trainer, small_data

from pyggml_train.checkpoint import load_checkpoint
from pyggml_train.config import TrainConfig
from pyggml_train.train import NonFiniteError, Trainer


def poison(trainer: Trainer) -> None:
    """One NaN in the first layer's attention weight: every later loss is NaN."""
    name = "transformer.h.0.attn.c_attn.weight"
    p = trainer.model.params[name]
    value = p.numpy().copy()
    value.flat[0] = np.nan
    p.set(value)


def test_nan_stops_training_naming_the_step_and_keeps_weights(tmp_path):
    model_cfg, train_cfg = configs()
    data = small_data()
    trainer = gpt2_trainer(model_cfg, train_cfg, data)
    trainer.train_one_step()
    good = trainer.save(tmp_path / "ckpt.npz")
    saved = good.read_bytes()
    poison(trainer)
    before = trainer.model.state_dict()
    m_before = trainer.optimizer_step.state()["m"]
    with pytest.raises(NonFiniteError) as info:
        trainer.train_one_step()
    msg = str(info.value)
    assert "step 2" in msg and "loss nan" in msg
    assert "lower learning rate" in msg.replace("a lower", "lower") and "bf16" in msg
    # no AdamW update happened: weights and moments are exactly as before the step
    for name, value in trainer.model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])
    for name, value in trainer.optimizer_step.state()["m"].items():
        np.testing.assert_array_equal(value, m_before[name])
    # a NaN checkpoint is refused and the previous file is kept byte for byte
    with pytest.raises(NonFiniteError, match=r"not writing .*ckpt.npz at step 1: parameter"):
        trainer.save(good)
    assert good.read_bytes() == saved
    assert not list(tmp_path.glob(".ckpt.npz.*"))
    assert all(np.isfinite(v).all() for v in load_checkpoint(good).params.values())


def test_skip_nonfinite_skips_up_to_n_steps_then_stops():
    model_cfg, train_cfg = configs(skip_nonfinite=2)
    data = small_data()
    trainer = gpt2_trainer(model_cfg, train_cfg, data)
    poison(trainer)
    before = trainer.model.state_dict()
    for _ in range(2):
        loss, _, norm = trainer.train_one_step()
        assert np.isnan(loss) and np.isnan(norm)
    assert trainer.skipped_nonfinite == 2 and trainer.step == 2
    assert trainer.optimizer_step.state()["steps"] == 0  # no update was made
    with pytest.raises(NonFiniteError, match=r"step 3: .*2 earlier non-finite step\(s\) skipped"):
        trainer.train_one_step()
    for name, value in trainer.model.state_dict().items():
        np.testing.assert_array_equal(value, before[name])


@pytest.mark.slow
def test_skip_nonfinite_is_validated_and_reachable_from_the_cli():
    with pytest.raises(ValueError, match="skip_nonfinite must be >= 0, got -1"):
        TrainConfig(skip_nonfinite=-1)
    r = subprocess.run(
        [sys.executable, "-m", "pyggml_train.cli", "train", "--skip-nonfinite", "-1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0 and "skip_nonfinite must be >= 0, got -1" in r.stderr


@pytest.mark.slow
def test_cli_stops_with_a_clear_error_and_no_checkpoint(tmp_path):
    """lr 1e30 blows the weights up after one step: the run ends with exit status 2."""
    text = SHARED / "data" / "the-verdict.txt"
    require(text.is_file(), f"trains on {text} (shared data)")
    cmd = [sys.executable, "-m", "pyggml_train.cli", "train", "--data", str(text)]
    cmd += ["--out-dir", str(tmp_path), "--max-steps", "6", "--batch-size", "2"]
    cmd += ["--block-size", "16", "--lr", "1e30", "--no-progress", "--set", "n_layer=1"]
    cmd += ["n_embd=32", "n_head=2", "warmup_steps=0", "eval_interval=0", "sample_interval=0"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stderr[-2000:]
    assert "error: training stopped at step 2: the loss is not finite" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "checkpoint.npz").exists()
