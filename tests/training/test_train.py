"""Training loop: checkpoints restore exactly, resuming repeats the same losses, and a
short run on real text learns well below the uniform baseline."""

import dataclasses
import importlib.util
import json
import math

import numpy as np
import pytest
from helpers.training import TEXT, configs, gpt2_trainer, small_data

from pyggml_train import ggml as G
from pyggml_train.checkpoint import load_checkpoint
from pyggml_train.config import GPT2Config, TrainConfig
from pyggml_train.gpt2 import GPT2
from pyggml_train.metrics import MetricsWriter, plot_losses, read_metrics
from pyggml_train.recipes import train_gpt2
from pyggml_train.train import Run, Trainer


@pytest.mark.slow
def test_checkpoint_round_trip(tmp_path):
    model_cfg, train_cfg = configs()
    data = small_data()
    trainer = gpt2_trainer(model_cfg, train_cfg, data)
    for _ in range(2):
        trainer.train_one_step()
    path = trainer.save(tmp_path / "ckpt.npz")
    ckpt = load_checkpoint(path)
    assert ckpt.step == 2 and ckpt.model_config == trainer.model.config
    for name, value in trainer.model.state_dict().items():
        np.testing.assert_array_equal(ckpt.params[name], value)
    restored = gpt2_trainer(ckpt.model_config, ckpt.train_config, data)
    restored.restore(ckpt)
    state, want = (
        restored.optimizer_step.optimizer.state(),
        trainer.optimizer_step.optimizer.state(),
    )
    assert state["steps"] == want["steps"] == 2
    for group in ("m", "v"):
        for name, value in want[group].items():
            np.testing.assert_array_equal(state[group][name], value, err_msg=f"{group} {name}")
    assert restored.loader.state() == trainer.loader.state()


@pytest.mark.slow
def test_resume_gives_identical_losses(tmp_path):
    model_cfg, train_cfg = configs()
    data = small_data()
    straight = gpt2_trainer(model_cfg, train_cfg, data)
    want = [straight.train_one_step()[0] for _ in range(6)]

    first = gpt2_trainer(model_cfg, train_cfg, data)
    got = [first.train_one_step()[0] for _ in range(3)]
    path = first.save(tmp_path / "ckpt.npz")
    del first
    ckpt = load_checkpoint(path)
    second = gpt2_trainer(ckpt.model_config, ckpt.train_config, data)
    second.restore(ckpt)
    got += [second.train_one_step()[0] for _ in range(3)]
    assert got == want  # bit-identical, not merely close
    for name, value in straight.model.state_dict().items():
        np.testing.assert_array_equal(second.model.state_dict()[name], value)


def test_trainer_takes_a_ready_model_object():
    """The seam spec models use: a Model built by the caller trains exactly as the GPT2
    the trainer builds from the same config and seed."""
    model_cfg, train_cfg = configs()
    data = small_data()
    from_config = gpt2_trainer(model_cfg, train_cfg, data)
    cfg = model_cfg.with_vocab_size(data.tokenizer.vocab_size)
    model = GPT2(cfg, ctx=G.Context(train_cfg.device, train_cfg.threads), seed=train_cfg.seed)
    given = Trainer(model, train_cfg, data)
    assert given.model is model and given.model.config == from_config.model.config
    assert [given.train_one_step()[0] for _ in range(2)] == [
        from_config.train_one_step()[0] for _ in range(2)
    ]
    small = GPT2(cfg.with_vocab_size(3), ctx=model.ctx)
    with pytest.raises(ValueError, match="model vocab_size 3 < tokenizer vocab_size"):
        Trainer(small, train_cfg, data)


def test_train_function_resumes_and_keeps_one_metrics_history(tmp_path):
    model_cfg, train_cfg = configs(max_steps=3, eval_interval=2, sample_tokens=8)
    text = tmp_path / "text.txt"
    text.write_text(TEXT.read_text(encoding="utf-8"))

    def run() -> Run:
        return Run(tmp_path / "run", progress=False, log=lambda _: None)

    first = train_gpt2(model_cfg, train_cfg, "char", str(text), run())
    assert first.steps == 3 and len(first.train_losses) == 3 and first.sample
    second = train_gpt2(
        model_cfg, train_cfg, "char", str(text), run(), first.checkpoint, overrides={"max_steps": 5}
    )
    assert second.steps == 5 and len(second.train_losses) == 2
    records = read_metrics(first.metrics)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert records[1]["val_loss"] is not None and records[0]["val_loss"] is None
    assert set(records[0]) == {
        "step",
        "train_loss",
        "val_loss",
        "lr",
        "grad_norm",
        "tokens_per_s",
        "elapsed_s",
    }
    json.dumps(records)  # plain JSON values only


@pytest.mark.slow
def test_log_interval_writes_train_loss_lines(tmp_path):
    model_cfg, train_cfg = configs(max_steps=5, eval_interval=0, log_interval=2, sample_tokens=4)
    text = tmp_path / "text.txt"
    text.write_text(TEXT.read_text(encoding="utf-8"))
    lines: list[str] = []
    train_gpt2(model_cfg, train_cfg, "char", str(text), Run(tmp_path / "run", progress=False,
               log=lines.append))  # fmt: skip
    steps = [line.split(":")[0] for line in lines if line.startswith("step ")]
    assert steps == ["step 2", "step 4", "step 5"]  # every 2nd step, and the final evaluation
    assert "lr" in lines[[ln.startswith("step 2") for ln in lines].index(True)]


def test_graph_options_come_from_the_model_config_and_its_checkpoint(tmp_path):
    model_cfg, train_cfg = configs()
    model_cfg = dataclasses.replace(model_cfg, loss_kind="dense", attention="unfused")
    data = small_data()
    trainer = gpt2_trainer(model_cfg, train_cfg, data)
    assert not trainer.model.fused_attention and trainer.train_step.head.kind == "dense"
    trainer.train_one_step()
    ckpt = load_checkpoint(trainer.save(tmp_path / "ckpt.npz"))
    assert (ckpt.model_config.loss_kind, ckpt.model_config.attention) == ("dense", "unfused")


@pytest.mark.slow
def test_short_run_on_real_text_beats_uniform_baseline():
    model_cfg = GPT2Config(vocab_size=None, block_size=64, n_layer=2, n_head=2, n_embd=64)
    train_cfg = TrainConfig(
        batch_size=8,
        block_size=64,
        max_steps=150,
        warmup_steps=10,
        lr=3e-3,
        min_lr=3e-4,
        eval_steps=4,
        threads=2,
    )
    data = small_data()
    trainer = gpt2_trainer(model_cfg, train_cfg, data)
    before = trainer.evaluate()
    baseline = math.log(data.tokenizer.vocab_size)
    assert before == pytest.approx(baseline, abs=0.3)  # random init is near uniform
    for _ in range(train_cfg.max_steps):
        trainer.train_one_step()
    after = trainer.evaluate()
    assert after < baseline - 1.3, (before, after, baseline)


def test_metrics_nan_is_null_and_plot(tmp_path):
    writer = MetricsWriter(tmp_path / "m.jsonl")
    writer.write(step=1, train_loss=3.0, val_loss=None, lr=1e-3, grad_norm=float("nan"),
                 tokens_per_s=10.0, elapsed_s=0.1)  # fmt: skip
    writer.write(step=2, train_loss=2.5, val_loss=2.7, lr=1e-3, grad_norm=1.0,
                 tokens_per_s=10.0, elapsed_s=0.2)  # fmt: skip
    writer.close()
    records = read_metrics(tmp_path / "m.jsonl")
    assert records[0]["grad_norm"] is None and records[1]["val_loss"] == 2.7
    png = plot_losses(records, tmp_path / "loss.png")
    if importlib.util.find_spec("matplotlib") is None:
        assert png is None  # optional dependency: the run says so instead
    else:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
