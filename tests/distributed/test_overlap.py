"""Gradient sums behind the backward (step.py's overlap) on 2 real MPI ranks, and the Llama
family on 2 ranks against one process.

A small GPT-2 and a small Llama (untied LM head), with recompute='blocks', take 4 optimizer
steps of 2 micro-batches per rank (accumulation: the sums run once, during the last one),
replicated and under ZeRO-1, once with the sums overlapped and once after the backward
(tests/helpers/mpi_steps.py). Tolerances: overlapped against blocking, and rank 0 against
rank 1, bit for bit (the same MPI calls on the same buckets); against one process at the
global batch, losses to 1e-5 relative and weights to 1e-5 absolute, as in
test_distributed.py (the ranks' half-batch gradients round differently from one matmul).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from helpers.env import REPO_ROOT, child_env, require

from pyggml_train import ggml as G
from pyggml_train.config import GPT2Config, LlamaConfig
from pyggml_train.gpt2 import GPT2
from pyggml_train.llama import Llama

SCRIPT = REPO_ROOT / "tests" / "helpers" / "mpi_steps.py"
# the parameters whose gradients only the last backward graph (the embeddings') finishes,
# and the prefix of block i's
LAST = {"gpt2": ["transformer.wte.weight", "transformer.wpe.weight"],
        "llama": ["model.embed_tokens.weight"]}  # fmt: skip
BLOCK = {"gpt2": "transformer.h.{}.", "llama": "model.layers.{}."}
N_LAYER = 3  # mpi_steps.py's models


def backward_groups(family: str, names: list[str]) -> list[list[str]]:
    """The parameters each backward graph of recompute='blocks' finishes, in the order they
    run: the head (what no block and not the embeddings own), the blocks from the last, the
    embeddings."""
    blocks = [
        [n for n in names if n.startswith(BLOCK[family].format(i))]
        for i in reversed(range(N_LAYER))
    ]
    owned = {n for group in [*blocks, LAST[family]] for n in group}
    return [[n for n in names if n not in owned], *blocks, LAST[family]]


def mpi_steps(out, family: str, recompute: str, zero: int, accum: int) -> None:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        require(False, "mpi4py is not installed: pip install '.[mpi]'")
    require(shutil.which("mpiexec") is not None, "mpiexec is not installed: pip install '.[mpi]'")
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    cmd = ["mpiexec", *root, "--oversubscribe", "-n", "2", sys.executable, str(SCRIPT)]
    cmd += [str(out), family, recompute, str(zero), str(accum)]
    proc = subprocess.run(
        cmd, env=child_env(), cwd=tempfile.gettempdir(), capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr}"


@pytest.mark.slow  # runs ranks under mpiexec
@pytest.mark.parametrize(
    "family, zero", [("gpt2", 0), ("gpt2", 1), ("llama", 0), ("llama", 1)]
)  # fmt: skip
def test_overlapped_sums_give_the_blocking_bits_and_the_one_process_result(family, zero, tmp_path):
    mpi_steps(tmp_path, family, "blocks", zero, accum=2)
    runs = {
        name: dict(np.load(tmp_path / f"{name}.npz"))
        for name in ("overlap_rank0", "overlap_rank1", "blocking_rank0", "blocking_rank1", "single")
    }
    want = runs["overlap_rank0"]
    for name in ("overlap_rank1", "blocking_rank0", "blocking_rank1"):
        assert runs[name].keys() == want.keys()
        for key, value in want.items():
            np.testing.assert_array_equal(runs[name][key], value, err_msg=f"{name} {key}")
    single = runs["single"]
    np.testing.assert_allclose(want["_losses"], single["_losses"], rtol=1e-5)
    for key, value in single.items():
        err = np.abs(want[key] - value).max()
        assert err <= 1e-5, f"{key}: max weight difference {err:.3g} from one process"
    # the overlap happened: each backward graph handed MPI the gradients it finished, one
    # call per parameter (none is above a 25 MiB bucket)
    sums = json.loads((tmp_path / "sums.json").read_text())
    params = [k for k in want if k != "_losses"]
    assert (sums["calls"], sums["bytes"]) == (len(params), sum(4 * want[k].size for k in params))
    groups = backward_groups(family, params)
    assert all(groups[1 : 1 + N_LAYER]) and groups[0]  # every block and the head own some
    assert sums["added"] == [sum(4 * want[k].size for k in group) for group in groups]


@pytest.mark.slow  # runs ranks under mpiexec
def test_llama_on_two_ranks_matches_one_process(tmp_path):
    """Issue 23's leftover, on the whole-model backward (no recompute, nothing to overlap)
    and one micro-batch per rank."""
    mpi_steps(tmp_path, "llama", "none", 0, accum=1)
    single = dict(np.load(tmp_path / "single.npz"))
    for rank in (0, 1):
        got = dict(np.load(tmp_path / f"blocking_rank{rank}.npz"))
        np.testing.assert_allclose(got["_losses"], single["_losses"], rtol=1e-5)
        for key, value in single.items():
            assert np.abs(got[key] - value).max() <= 1e-5, key


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_a_gradient_reported_final_is_final(family):
    """What makes the overlap safe: run_split reports each parameter once, in the backward's
    order, and its gradient never changes after the report (over 2 accumulated micro-batches,
    where only the second reports)."""
    ctx = G.Context("cpu", threads=1)
    shape = dict(vocab_size=64, block_size=8, n_layer=N_LAYER, n_embd=16, recompute="blocks")
    if family == "gpt2":
        model = GPT2(GPT2Config(n_head=2, **shape), ctx=ctx, seed=1)
    else:
        config = LlamaConfig(n_head=2, n_kv_head=1, d_ff=32, tie_embeddings=False, **shape)
        model = Llama(config, ctx=ctx, seed=1)
    train = model.graph(2, 8, "train")
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 64, (2, 2, 9))
    train.graph.set_loss_scale(0.5)
    train.graph.reset_grads()
    train.run(tokens[0, :, :-1], tokens[0, :, 1:])
    reported: list[list[str]] = []
    at_report: dict[str, np.ndarray] = {}

    def done(names: list[str]) -> None:
        reported.append(names)
        at_report.update({n: train.grad(model.params[n]) for n in names})

    train.run_split(tokens[1, :, :-1], tokens[1, :, 1:], done)
    assert reported == backward_groups(family, list(model.params))
    for name, grad in at_report.items():
        np.testing.assert_array_equal(train.grad(model.params[name]), grad, err_msg=name)
        assert np.any(grad != 0), name  # a real gradient, not an untouched accumulator
