"""LoRA from the console script, in subprocesses: a base run, LoRA on its frozen weights
(--init-from --lora), sampling the LoRA run, the same adapter applied to the base at
sampling time (--lora-from gives the same text), and a run that goes on from it."""

import re

import numpy as np
import pytest
from helpers.cli import VERDICT, cli

from pyggml_train.adapters import lora_names
from pyggml_train.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow  # each test runs the console script in subprocesses

TINY = ["--data", str(VERDICT), "--set", "n_layer=1", "n_embd=32", "n_head=2", "eval_interval=0",
        "eval_steps=2", "sample_interval=0", "sample_tokens=10", "--batch-size", "4",
        "--block-size", "32", "--threads", "2", "--no-progress"]  # fmt: skip
SAMPLE = ["--prompt", "I had", "--max-new-tokens", "40", "--temperature", "1", "--seed", "3"]


def test_lora_train_sample_and_go_on(tmp_path):
    base, lora, more = tmp_path / "base", tmp_path / "lora", tmp_path / "more"
    done = cli("train", "--max-steps", "3", "--out-dir", str(base), *TINY)
    assert done.returncode == 0, done.stderr
    base_ckpt = str(base / "checkpoint.npz")

    done = cli("train", "--init-from", base_ckpt, "--lora", "rank=4,alpha=8,targets=qkv,o",
               "--max-steps", "4", "--lr", "1e-2", "--out-dir", str(lora), *TINY)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(r"0\.\d+M trained: LoRA rank=4,alpha=8,dropout=0,targets=qkv,o on 2 "
                     r"weights", done.stdout), done.stdout  # fmt: skip
    ckpt = load_checkpoint(lora / "checkpoint.npz")
    adapters = lora_names(ckpt.params)
    assert adapters == {f"transformer.h.0.attn.{m}.lora_{x}.weight"
                        for m in ("c_attn", "c_proj") for x in "AB"}  # fmt: skip
    frozen = load_checkpoint(base_ckpt).params
    for name, value in frozen.items():  # the base went through unchanged
        assert np.array_equal(ckpt.params[name], value), name

    own = cli("sample", "--checkpoint", str(lora), *SAMPLE)
    assert own.returncode == 0, own.stderr
    applied = cli("sample", "--checkpoint", base_ckpt, "--lora-from", str(lora / "checkpoint.npz"),
                  *SAMPLE)  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    plain = cli("sample", "--checkpoint", base_ckpt, *SAMPLE)
    assert applied.stdout == own.stdout != plain.stdout

    done = cli("train", "--init-from", base_ckpt, "--lora-from", str(lora / "checkpoint.npz"),
               "--max-steps", "1", "--lr", "1e-9", "--out-dir", str(more), *TINY)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "LoRA adapters from" in done.stdout
    went_on = load_checkpoint(more / "checkpoint.npz")
    assert went_on.train_config.lora_config == ckpt.train_config.lora_config
    for name in adapters:  # started from the adapter: one step of lr 1e-9 barely moves it
        np.testing.assert_allclose(went_on.params[name], ckpt.params[name], atol=1e-6)


def test_lora_without_a_base_is_refused(tmp_path):
    done = cli("train", "--lora", "rank=4", "--max-steps", "1", "--out-dir", str(tmp_path), *TINY)
    assert done.returncode == 2
    assert "give them with --init-from" in done.stderr
    done = cli("train", "--lora", "rank=4,size=2", "--out-dir", str(tmp_path), *TINY)
    assert done.returncode == 2 and "unknown key 'size'" in done.stderr
