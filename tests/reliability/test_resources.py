"""Resources (docs/reliability.md): resident memory stays flat while training, the graph
cache stays bounded when (B, T) vary, and a full disk while writing a checkpoint gives a
clear error and keeps the old checkpoint. The 1000-step RSS measurement is
scripts/rss_drift.py; here a shorter run in CI."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from helpers.env import child_env
from helpers.training import configs, gpt2_trainer, small_data

from pyggml_train.checkpoint import load_arrays, load_checkpoint, save_arrays
from pyggml_train.config import GPT2Config
from pyggml_train.gpt2 import GPT2
from pyggml_train.model import GRAPH_CACHE_SIZE


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads RSS from /proc (Linux)")
@pytest.mark.slow
def test_rss_flat_while_training():
    model_cfg, train_cfg = configs(max_steps=200, warmup_steps=10)
    data = small_data()
    trainer = gpt2_trainer(model_cfg, train_cfg, data)
    for _ in range(30):  # warm up: buffers, allocator arenas
        trainer.train_one_step()
    start = rss_bytes()
    samples = []
    for _ in range(5):
        for _ in range(20):
            trainer.train_one_step()
        samples.append(rss_bytes())
    drift = (max(samples) - start) / start
    assert abs(drift) <= 0.02, f"RSS {start / 2**20:.1f} MiB -> {np.array(samples) / 2**20} MiB"


def test_graph_cache_bounded_when_shapes_vary():
    """Sampling with a growing prompt asks for a new (B, T) at each token."""
    cfg = GPT2Config(vocab_size=64, block_size=48, n_layer=1, n_head=2, n_embd=32)
    model = GPT2(cfg, seed=0)
    rng = np.random.default_rng(0)
    prompt = rng.integers(0, 64, size=(1, 48))
    first = model.forward(prompt[:, :1])
    for t in range(2, 49):
        model.forward(prompt[:, :t])
        assert len(model._graphs) <= GRAPH_CACHE_SIZE
    # the evicted (1, 1) graph is rebuilt and computes the same logits
    np.testing.assert_array_equal(model.forward(prompt[:, :1]), first)


FULL_DISK = """
import resource, signal, sys
import numpy as np
from pyggml_train.checkpoint import save_arrays
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG instead of a signal
resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))  # a 1 MiB "disk"
try:
    save_arrays(sys.argv[1], {"w": np.ones(1 << 20, np.float32)}, {"version": 2})
except OSError as e:
    print("RAISED", type(e).__name__, e)
"""


@pytest.mark.slow
def test_full_disk_keeps_the_old_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.npz"
    save_arrays(path, {"w": np.zeros(1000, np.float32)}, {"version": 1})
    old = path.read_bytes()
    r = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FULL_DISK), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
    )
    assert r.returncode == 0, r.stderr
    assert "RAISED OSError" in r.stdout and f"could not write {path}" in r.stdout, r.stdout
    assert "previous checkpoint.npz, if any, is unchanged" in r.stdout
    assert path.read_bytes() == old
    assert load_arrays(path)[1] == {"version": 1}
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


PHASE_PEAK = textwrap.dedent(
    """
    import resource, sys
    from pathlib import Path
    import numpy as np
    from pyggml_train.config import GPT2Config, TrainConfig
    from pyggml_train.models import new_model
    from pyggml_train.tokenizer import CharTokenizer
    from pyggml_train.train import TrainData, Trainer

    vocab = 4096  # a wide LM head: the logits are the largest buffers, as in GPT-2
    tok = CharTokenizer([chr(0x4E00 + i) for i in range(vocab)])
    ids = np.random.default_rng(0).integers(0, vocab, 200_000)
    data = TrainData(ids[:180_000], ids[180_000:], tok, "random ids")
    cfg = GPT2Config(vocab_size=vocab, block_size=256, n_layer=2, n_head=2, n_embd=64,
                     recompute=sys.argv[2])
    tc = TrainConfig(batch_size=8, block_size=256, max_steps=10, warmup_steps=1,
                     eval_steps=2, sample_tokens=4, threads=1)
    trainer = Trainer(new_model(cfg, tc, vocab), tc, data)
    trainer.train_one_step()
    if sys.argv[1] == "run":  # what a run adds to its steps: validation, checkpoint, sample
        trainer.evaluate()
        trainer.save(Path(sys.argv[3]) / "checkpoint.npz")
        trainer.sample()
        trainer.train_one_step()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("recompute", ["none", "blocks"])
def test_a_run_peaks_at_its_training_steps_peak(recompute, tmp_path):
    """Validation and sampling reuse the training graph's compute buffers (the model's
    arena) and the checkpoint streams its tensors: a run that validates, saves and samples
    peaks within 3% of one that only steps. Before the arena, the validation graph's logits
    alone added a step's logits again."""

    def peak(phases: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", PHASE_PEAK, phases, recompute, str(tmp_path)],
            capture_output=True, text=True, env=child_env(), timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return int(done.stdout.split()[-1])

    step, run = peak("step"), peak("run")
    assert run <= step * 1.03, f"step alone {step / 2**20:.0f} MiB, whole run {run / 2**20:.0f} MiB"


def test_a_checkpoint_holds_one_tensor_at_a_time(tmp_path):
    """Saving streams each parameter and AdamW moment from the device to the file: the
    host memory it allocates (numpy's, traced) peaks at a few copies of the largest tensor
    (measured 2.4x: its device copy, its exchange layout, the bytes written), where host
    copies of the weights and both moments took 62x here. Bound: 4x the largest."""
    model_cfg, train_cfg = configs()
    model_cfg = dataclasses.replace(model_cfg, n_layer=4, n_embd=128, n_head=4)
    trainer = gpt2_trainer(model_cfg, train_cfg, small_data())
    trainer.train_one_step()  # moments that are not zero
    sizes = [4 * p.size for p in trainer.model.params.values()]
    tracemalloc.start()
    try:
        trainer.save(tmp_path / "checkpoint.npz")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 4 * max(sizes), f"{peak / 1e6:.2f} MB traced, largest {max(sizes) / 1e6:.2f} MB"
    assert 3 * sum(sizes) >= 10 * max(sizes)  # the test tells streaming from copying all
    saved = load_checkpoint(tmp_path / "checkpoint.npz")
    state = trainer.optimizer_step.state()
    for name, value in trainer.model.state_dict().items():
        np.testing.assert_array_equal(saved.params[name], value, err_msg=name)
        want_m = trainer.model.from_device({name: state["m"][name]})[name]
        np.testing.assert_array_equal(saved.adam_m[name], want_m, err_msg=name)
