"""Training a spec with the GPT-2 trainer: metrics, checkpoints, exact resume, stop, optimizers,
sampling, the CLI and the exported script."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from helpers.env import child_env
from helpers.specs import DATA_DIR, node, tiny

from pyggml_train import cli
from pyggml_train import ggml as G
from pyggml_train.checkpoint import load_checkpoint
from pyggml_train.metrics import read_metrics
from pyggml_train.models import load_sampler
from pyggml_train.recipes import script_for, train_spec
from pyggml_train.sample import KVCacheDecoder, WindowDecoder, decoder_for
from pyggml_train.spec import build_model, parse_spec, train_config_for

FAST = {"eval_interval": 4, "eval_steps": 2, "sample_interval": 0, "sample_tokens": 8, "threads": 2}


def small(optimizer: str = "adamw", steps: int = 8, **loss) -> dict:
    data = tiny(c=16, blocks=1, heads=2, t=16)
    node(data, "data")["params"]["batch_size"] = 4
    defaults = {"warmup_steps": 2, "lr": 1e-2, "min_lr": 1e-3}
    node(data, "loss")["params"].update(optimizer=optimizer, steps=steps, **{**defaults, **loss})
    return data


def run(tmp_path, name, data, **kwargs):
    overrides = {**FAST, **kwargs.pop("overrides", {})}
    return train_spec(
        data, tmp_path / name, DATA_DIR, overrides=overrides, log=lambda _: None, **kwargs
    )


@pytest.mark.slow
def test_train_spec_writes_metrics_checkpoint_and_learns(tmp_path):
    records = []
    result = run(tmp_path, "a", small(steps=20), on_metrics=records.append)
    assert result.steps == 20 and len(result.train_losses) == 20
    assert [r["step"] for r in records] == list(range(1, 21))
    assert [r["train_loss"] for r in records] == result.train_losses
    assert [r["step"] for r in read_metrics(result.metrics)] == list(range(1, 21))
    # from the uniform guess (ln 65 = 4.17) towards character statistics
    assert result.train_losses[0] > 3.9 and np.mean(result.train_losses[-5:]) < 3.4
    assert result.val_loss < 3.5
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.model_config is None and ckpt.spec == small(steps=20)
    assert ckpt.train_config.optimizer == "adamw" and ckpt.train_config.max_steps == 20
    assert set(ckpt.params) == set(ckpt.adam_m) and "b0.attn.c_attn.weight" in ckpt.params
    assert result.sample


@pytest.mark.parametrize("dropout", [0.0, 0.1])
@pytest.mark.slow
def test_resume_continues_exactly(tmp_path, dropout):
    spec = small(steps=8)
    node(spec, "b0")["params"]["dropout"] = dropout  # its masks resume too
    whole = run(tmp_path, "whole", spec)
    seen = []  # stop after step 4 (max_steps stays 8, so the lr schedule is the same)
    run(
        tmp_path,
        "split",
        spec,
        on_metrics=seen.append,
        should_stop=lambda: len(seen) == 4,
    )
    rest = run(tmp_path, "split", spec, resume=tmp_path / "split" / "checkpoint.npz")
    assert rest.steps == 8
    split = [r["train_loss"] for r in read_metrics(tmp_path / "split" / "metrics.jsonl")]
    assert split == whole.train_losses  # bit-identical, not just close
    assert rest.val_loss == whole.val_loss


@pytest.mark.slow
def test_should_stop_ends_at_a_checkpoint(tmp_path):
    steps = []
    result = run(
        tmp_path,
        "s",
        small(steps=8),
        on_metrics=lambda r: steps.append(r["step"]),
        should_stop=lambda: len(steps) >= 3,
    )
    assert result.steps == 3 and steps == [1, 2, 3]
    assert load_checkpoint(result.checkpoint).step == 3
    done = run(tmp_path, "s", small(steps=8), resume=result.checkpoint)
    assert done.steps == 8


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.slow
def test_other_optimizers_train(tmp_path, optimizer):
    lr = {"lr": 0.3, "min_lr": 0.03} if optimizer == "sgd" else {}  # plain SGD needs a big step
    result = run(tmp_path, optimizer, small(optimizer, steps=12, **lr))
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.train_config.optimizer == optimizer
    assert ckpt.train_config.weight_decay == (0.0 if optimizer == "adam" else 0.1)
    assert all(math.isfinite(x) for x in result.train_losses)
    assert np.mean(result.train_losses[-3:]) < result.train_losses[0] - 0.2


def test_train_config_from_the_loss_and_data_nodes():
    spec = parse_spec(small(steps=50, epochs=0.5, schedule="constant", grad_clip=0.0), DATA_DIR)
    tc = train_config_for(spec, train_tokens=1000)
    assert tc.max_steps == math.ceil(0.5 * 1000 / (4 * 16))  # epochs over B*T-token steps
    assert (tc.batch_size, tc.block_size, tc.lr, tc.min_lr) == (4, 16, 1e-2, 1e-2)
    assert tc.grad_clip is None and tc.warmup_steps == 2
    tc = train_config_for(spec, 1000, {"max_steps": "1", "threads": "1"})  # CLI strings
    assert (tc.max_steps, tc.warmup_steps, tc.threads) == (1, 1, 1)
    with pytest.raises(ValueError, match="epochs need"):
        train_config_for(spec)
    with pytest.raises(ValueError, match="eval_steps"):
        train_config_for(spec, 1000, {"eval_steps": 0})


@pytest.mark.slow
def test_sampling_from_a_checkpoint_and_window_decoding(tmp_path):
    result = run(tmp_path, "g", small(steps=2))
    sampler = load_sampler(result.checkpoint, threads=2)
    assert isinstance(sampler.decoder, KVCacheDecoder)
    text = sampler.generate("ROMEO:", max_new_tokens=20, temperature=0.8, top_k=5, seed=3)
    assert text.startswith("ROMEO:") and len(text) == 26
    assert sampler.generate("ROMEO:", 20, 0.8, 5, seed=3) == text
    # recomputing a window gives the KV cache's logits for a causal spec
    window = WindowDecoder(sampler.model)
    kv = KVCacheDecoder(sampler.model)
    tokens = [int(t) for t in sampler.tokenizer.encode("First Citizen")]
    np.testing.assert_allclose(window.prefill(tokens), kv.prefill(tokens), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(window.step(7), kv.step(7), rtol=1e-4, atol=1e-5)


def test_non_causal_spec_decodes_through_a_window():
    data = tiny(c=16, blocks=0, t=8)
    data["nodes"].append(
        {
            "id": "enc",
            "type": "TransformerEncoderLayer",
            "params": {"d_model": 16, "nhead": 2, "dim_feedforward": 32},
        }
    )
    data["links"] = [lk for lk in data["links"] if lk["to"] != ["ln", 0]]
    data["links"] += [{"from": ["pos", 0], "to": ["enc", 0]}, {"from": ["enc", 0], "to": ["ln", 0]}]
    model = build_model(parse_spec(data, DATA_DIR), G.Context("cpu", threads=2), seed=1)
    decoder = decoder_for(model)
    assert isinstance(decoder, WindowDecoder)
    tokens = [5, 9, 1]
    full = model.forward(np.array([tokens + [0] * 5]))[0]  # (T, V): the window, zero-padded
    np.testing.assert_allclose(decoder.prefill(tokens), full[2], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_cli_trains_a_spec_file_and_samples(tmp_path, capsys):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(small(steps=3)))
    out = tmp_path / "out"
    args = ["train", "--model", str(path), "--data-dir", str(DATA_DIR), "--out-dir", str(out)]
    sets = ["--set", "eval_steps=1", "sample_interval=0", "sample_tokens=4", "threads=2"]
    assert cli.main([*args, "--no-progress", *sets]) == 0
    assert load_checkpoint(out / "checkpoint.npz").step == 3
    assert cli.main([*args, "--no-progress", "--max-steps", "5", "--resume", *sets]) == 0
    assert load_checkpoint(out / "checkpoint.npz").step == 5
    capsys.readouterr()
    sample = ["sample", "--checkpoint", str(out / "checkpoint.npz"), "--prompt", "AB"]
    assert cli.main([*sample, "--max-new-tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("AB")
    bad = small()
    node(bad, "b0")["params"]["d_model"] = 32
    path.write_text(json.dumps(bad))
    assert cli.main([*args, "--no-progress"]) == 2
    assert 'GPTBlock "block 0": d_model 32 but its input is 16 wide' in capsys.readouterr().err


@pytest.mark.slow
def test_exported_script_reproduces_the_run(tmp_path):
    data = small(steps=4)
    script = tmp_path / "run_spec.py"
    script.write_text(script_for(data, DATA_DIR))
    assert "b0: GPTBlock(d_model=16, nhead=2" in script.read_text()
    sets = [f"{k}={v}" for k, v in FAST.items()]
    # the script imports the package these tests import (installed, or a dev build)
    env = child_env()
    out = tmp_path / "script_out"
    cmd = [sys.executable, str(script), "--out-dir", str(out), "--data-dir", str(DATA_DIR)]
    done = subprocess.run([*cmd, "--set", *sets], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    direct = run(tmp_path, "direct", data)
    by_script = [r["train_loss"] for r in read_metrics(out / "metrics.jsonl")]
    assert by_script == direct.train_losses
    assert f"final val loss: {direct.val_loss:.4f}" in done.stdout
