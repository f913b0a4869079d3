"""A run too large for the machine is a MemoryError that says what needed how much, what
the machine has and what to lower (issue 21): never a crash, on any allocation path."""

import re
import subprocess
import sys

import numpy as np
import pytest
from helpers.env import child_env

from pyggml_train import ggml as G
from pyggml_train.config import GPT2Config, TrainConfig
from pyggml_train.gpt2 import GPT2
from pyggml_train.memory import available_bytes, check_training_fits, estimate_training

pytestmark = pytest.mark.slow  # child processes


GGML_LOG = re.compile(r"^ggml_\w+: ", re.M)  # ggml's own log lines, e.g. ggml_aligned_malloc
HUGE = 2**17  # a (HUGE, HUGE) f32 tensor is 68.7 GB: more than this machine has


def test_a_parameter_too_large_is_a_memory_error_naming_sizes():
    ctx = G.Context("cpu", 1)
    ctx.param((HUGE, HUGE), name="huge")
    with pytest.raises(MemoryError) as err:
        ctx.allocate()
    message = str(err.value)
    assert "out of CPU memory" in message and "need 68719.5 MB" in message
    assert "available (MemAvailable" in message and "n_layer" in message


def test_a_compute_buffer_too_large_is_a_memory_error_and_the_context_lives_on():
    ctx = G.Context("cpu", 1)
    x, w = ctx.input((HUGE, 1)), ctx.param((HUGE, 1))
    outer = G.sum(G.linear(x, w))  # (HUGE, HUGE) products from two (HUGE, 1) vectors
    x.set(np.ones((HUGE, 1), np.float32))
    w.set(np.full((HUGE, 1), 0.5, np.float32))
    with pytest.raises(MemoryError) as err:
        ctx.graph(outer).compute()
    message = str(err.value)
    assert "compute buffers" in message and "need 68719.5 MB" in message
    assert "--batch-size, --block-size" in message
    small = ctx.input((3, 1))
    total = G.sum(G.linear(small, w))  # (3, HUGE) products: 1.5 MB
    small.set(np.ones((3, 1), np.float32))
    graph = ctx.graph(total)  # op results live as long as their graph
    graph.compute()
    assert float(total.numpy()) == pytest.approx(3 * HUGE * 0.5)


@pytest.mark.parametrize(
    ("n_layer", "n_embd", "vocab", "batch", "block", "recompute"),
    [(1, 64, 65, 4, 64, "none"), (2, 128, 2000, 8, 128, "none"), (2, 64, 65, 2, 512, "none"),
     (4, 128, 65, 16, 128, "blocks")],
)  # fmt: skip
def test_the_estimate_is_a_lower_bound_of_the_measured_buffers(
    n_layer, n_embd, vocab, batch, block, recompute
):
    cfg = GPT2Config(vocab_size=vocab, block_size=block, n_layer=n_layer, n_head=2,
                     n_embd=n_embd, recompute=recompute)  # fmt: skip
    model = GPT2(cfg, ctx=G.Context("cpu", 2), seed=0)
    step = model.graph(batch, block, "train")
    ids = np.random.default_rng(0).integers(0, vocab, (batch, block))
    step.run(ids, ids)
    graphs = step._graphs if recompute == "blocks" else [step.graph]
    measured = max(g.compute_buffer_bytes for g in graphs)
    if recompute == "blocks":  # the block inputs live outside the compute buffers
        measured += 4 * batch * block * n_embd * (n_layer + 1)
    estimate = estimate_training(cfg, TrainConfig(batch_size=batch, block_size=block))
    assert 0.6 * measured <= estimate.activations <= measured
    assert estimate.state == 16 * model.num_params()


def test_check_refuses_a_run_that_cannot_fit_before_building_anything():
    model = GPT2Config(vocab_size=65, block_size=100_000, n_layer=4, n_head=4, n_embd=128)
    train = TrainConfig(batch_size=16, block_size=100_000, warmup_steps=0)
    with pytest.raises(MemoryError) as err:
        check_training_fits(model, train, available=24 * 10**9)
    message = str(err.value)
    assert "this run needs at least 53,062.4 MB" in message
    assert "24,000.0 MB are available" in message
    assert "--batch-size or --block-size" in message
    small = TrainConfig(batch_size=16, block_size=128, warmup_steps=0)
    assert check_training_fits(GPT2Config(vocab_size=65, block_size=128, n_layer=4, n_head=4,
                               n_embd=128), small, available=24 * 10**9).total < 10**9  # fmt: skip
    assert available_bytes() > 0


def run(code: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *code], capture_output=True, text=True, env=child_env(), timeout=600
    )


def test_cli_too_large_block_size_is_one_line_without_a_signal(tmp_path):
    """The issue's command: refused by the estimate, before the corpus is even read."""
    done = run(["-m", "pyggml_train.cli", "train", "--max-steps", "5", "--no-progress",
                "--out-dir", str(tmp_path / "out-bad"), "--block-size", "100000"])  # fmt: skip
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith("pyggml-train train: error: this run needs")
    assert "Traceback" not in done.stderr and not GGML_LOG.search(done.stderr)


def test_training_past_the_estimate_raises_memory_error_not_a_segfault(tmp_path):
    """Without the CLI's check, the trainer's first step meets the binding's MemoryError."""
    code = (
        "from pyggml_train.config import load_preset\n"
        "from pyggml_train.recipes import train_gpt2\n"
        "from pyggml_train.train import Run\n"
        "m, t, tok = load_preset('char-tiny', block_size=100000, max_steps=2, warmup_steps=0)\n"
        f"train_gpt2(m, t, tok, run=Run({str(tmp_path)!r}, progress=False))\n"
    )
    done = run(["-c", code])
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    assert "MemoryError: out of CPU memory: the compute buffers" in done.stderr
    assert "--block-size" in done.stderr and not GGML_LOG.search(done.stderr)
