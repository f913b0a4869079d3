"""Data-parallel training under mpiexec on loopback, against one process at the global batch.

Tolerances: per-step losses of 2 ranks at batch B/2 against one process at batch B to 1e-5
relative over 20 steps, final weights to 1e-5 absolute (the ranks sum two half-batch
gradients where one process adds the same rows inside one matmul, so the float32 sums
round differently). A checkpoint resumed on the same ranks continues bit for bit.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.env import REPO_ROOT, SHARED, child_env, require

from pyggml_train.checkpoint import load_checkpoint
from pyggml_train.config import TrainConfig
from pyggml_train.data import BatchLoader
from pyggml_train.distributed import Distributed, launched_by_mpi

pytestmark = pytest.mark.slow  # runs ranks under mpiexec

TEXT = SHARED / "data" / "the-verdict.txt"
STEPS = 20
CWD = tempfile.gettempdir()  # where the runs start: not the source tree (no _C in a fresh clone)
# a tiny model; constant lr so that a run stopped at step 10 and resumed to 20 follows the
# same schedule as one run of 20 steps
TRAIN_ARGS = [
    "--data", str(TEXT), "--tokenizer", "char", "--block-size", "32", "--threads", "1",
    "--no-progress", "--seed", "7", "--lr", "1e-3",
]  # fmt: skip
SETS = [
    "n_layer=2", "n_embd=32", "n_head=2", "min_lr=1e-3", "warmup_steps=0", "eval_interval=0",
    "eval_steps=2", "sample_interval=0", "sample_tokens=8",
]  # fmt: skip


def _mpi_available() -> bool:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return shutil.which("mpiexec") is not None


def _need_mpi() -> None:
    require(_mpi_available(), "mpiexec and mpi4py are not installed: pip install '.[mpi]'")


def mpiexec(n: int) -> list[str]:
    # Open MPI refuses to run as root without the flag (CI runs as root); say it, not hide it
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    return ["mpiexec", *root, "--oversubscribe", "-n", str(n)]


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        cmd, env=child_env(), cwd=CWD, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}{proc.stderr}"
    return proc


def train_cmd(
    ranks: int, batch: int, out: Path, steps: int, *extra: str, sets: tuple[str, ...] = ()
) -> list[str]:
    cli = [sys.executable, "-m", "pyggml_train.cli", "train"]
    args = [*TRAIN_ARGS, "--batch-size", str(batch), "--max-steps", str(steps)]
    args += ["--out-dir", str(out), *extra, "--set", *SETS, *sets]
    return (mpiexec(ranks) if ranks > 1 else []) + cli + args


def losses(out: Path) -> list[float]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["train_loss"] for line in lines]


def params(out: Path) -> dict[str, np.ndarray]:
    return load_checkpoint(out / "checkpoint.npz").params


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run directories: one process at batch 4; 2 ranks at batch 2 for 20 steps, and for 10
    (started through examples/train_gpt2.py)."""
    _need_mpi()
    root = tmp_path_factory.mktemp("mpi")
    run(train_cmd(1, 4, root / "single", STEPS))
    run(train_cmd(2, 2, root / "mpi", STEPS))
    zero = run(train_cmd(2, 2, root / "zero", STEPS, "--zero", "1"))
    (root / "zero.log").write_text(zero.stdout)
    example = [sys.executable, str(REPO_ROOT / "examples" / "train_gpt2.py"), *TRAIN_ARGS]
    example += ["--batch-size", "2", "--max-steps", "10", "--out-dir", str(root / "mpi10")]
    example += ["--set", *SETS]
    proc = run(mpiexec(2) + example)
    assert proc.stdout.count("final val loss") == 1, "only rank 0 reports"
    return root


def test_two_ranks_match_one_process_at_the_global_batch(runs):
    want, got = losses(runs / "single"), losses(runs / "mpi")
    assert len(got) == len(want) == STEPS
    np.testing.assert_allclose(got, want, rtol=1e-5)
    single, mpi = params(runs / "single"), params(runs / "mpi")
    for name, w in single.items():
        err = np.abs(mpi[name] - w).max()
        assert err <= 1e-5, f"{name}: max weight difference {err:.3g} after {STEPS} steps"
    # the 2-rank run's checkpoint says so, and holds the per-rank batch
    ckpt = load_checkpoint(runs / "mpi" / "checkpoint.npz")
    assert ckpt.extra["world_size"] == 2 and ckpt.train_config.batch_size == 2


def test_zero1_shards_adamw_and_trains_as_the_replicated_step(runs):
    np.testing.assert_allclose(losses(runs / "zero"), losses(runs / "mpi"), rtol=1e-5)
    zero, mpi = load_checkpoint(runs / "zero" / "checkpoint.npz"), params(runs / "mpi")
    for name, w in mpi.items():
        assert np.abs(zero.params[name] - w).max() <= 1e-5, name
    # the master gathered every shard's moments into the one checkpoint
    full = load_checkpoint(runs / "mpi" / "checkpoint.npz")
    assert set(zero.adam_m) == set(zero.adam_v) == set(mpi)
    for group in ("adam_m", "adam_v"):
        for name, want in getattr(full, group).items():
            got = getattr(zero, group)[name]
            assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max() + 1e-12, (group, name)
    log = (runs / "zero.log").read_text()
    assert "(ZeRO-1)" in log


def test_lora_on_two_ranks_matches_one_process_and_sums_only_the_adapters(runs, tmp_path):
    """LoRA on the frozen weights of the single run: the ranks all-reduce the adapters'
    gradients (nothing else has one), and train as one process at the global batch."""
    base = str(runs / "single" / "checkpoint.npz")
    lora = ["--init-from", base, "--lora", "rank=4,alpha=8,targets=qkv,o,up,down"]
    logs = {}
    for ranks, batch in ((1, 4), (2, 2)):
        out = tmp_path / f"lora{ranks}"
        logs[ranks] = run(train_cmd(ranks, batch, out, 10, *lora)).stdout
    np.testing.assert_allclose(losses(tmp_path / "lora2"), losses(tmp_path / "lora1"), rtol=1e-5)
    one, two = params(tmp_path / "lora1"), params(tmp_path / "lora2")
    frozen = params(runs / "single")
    for name, w in one.items():
        assert np.abs(two[name] - w).max() <= 1e-5, name
        if name in frozen:  # the base went through both runs bit for bit
            assert np.array_equal(two[name], frozen[name]) and np.array_equal(w, frozen[name])
    ckpt = load_checkpoint(tmp_path / "lora2" / "checkpoint.npz")
    assert set(ckpt.adam_m) == set(one) - set(frozen)  # AdamW state of the adapters only
    assert "trained: LoRA" in logs[2]


def test_a_checkpoint_of_two_ranks_resumes_exactly_on_two_ranks(runs, tmp_path):
    out = tmp_path / "resumed"
    shutil.copytree(runs / "mpi10", out)
    run(train_cmd(2, 2, out, STEPS, "--resume"))
    assert losses(out) == losses(runs / "mpi")  # bit for bit, steps 1-10 kept, 11-20 rerun
    for name, w in params(runs / "mpi").items():
        np.testing.assert_array_equal(params(out)[name], w, err_msg=name)


def test_a_checkpoint_of_two_ranks_goes_on_in_one_process_by_accumulation(runs, tmp_path):
    out = tmp_path / "one"
    shutil.copytree(runs / "mpi10", out)
    proc = run(train_cmd(1, 2, out, STEPS, "--resume"))
    assert "2 x (2 x 32) tokens per step" in proc.stdout  # 2 micro-batches of the rank's 2
    np.testing.assert_allclose(losses(out), losses(runs / "mpi"), rtol=1e-5)
    for name, w in params(runs / "mpi").items():
        assert np.abs(params(out)[name] - w).max() <= 1e-5, name


def _rank_pid(marker: str, rank: int) -> int | None:
    """The pid of MPI rank ``rank`` among processes whose command line contains marker."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in cmdline and f"OMPI_COMM_WORLD_RANK={rank}".encode() in environ:
            return int(proc.name)
    return None


def test_killing_one_rank_ends_the_others_naming_it_and_the_run_resumes(tmp_path):
    _need_mpi()
    out = tmp_path / "killed"
    cmd = train_cmd(2, 2, out, 100000, sets=("checkpoint_interval=5",))
    job = subprocess.Popen(
        cmd, env=child_env(), cwd=CWD, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.npz").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (out / "checkpoint.npz").is_file(), "no checkpoint within 120 s"
        victim = _rank_pid(str(out), 1)
        assert victim is not None, "rank 1 not found"
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        output, _ = job.communicate(timeout=60)  # raises if the other rank hangs
        took = time.monotonic() - killed
    finally:
        if job.poll() is None:
            job.kill()
            job.wait()
    text = output.decode(errors="replace")
    assert job.returncode != 0
    assert "rank 1" in text, text[-2000:]
    assert took < 60
    step = load_checkpoint(out / "checkpoint.npz").step
    run(train_cmd(2, 2, out, step + 3, "--resume", sets=("checkpoint_interval=5",)))
    assert load_checkpoint(out / "checkpoint.npz").step == step + 3
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["step"] == step + 3


# ---- without mpiexec -------------------------------------------------------------------------
def test_ranks_read_disjoint_shares_that_make_up_the_single_process_batch():
    tokens = np.arange(10_000)
    for mode in ("random", "sequential"):
        one = BatchLoader(tokens, 6, 16, mode, seed=3)
        ranks = [BatchLoader(tokens, 2, 16, mode, seed=3, rank=r, world_size=3) for r in range(3)]
        for _ in range(4):
            x, y = one.next_batch()
            parts = [loader.next_batch() for loader in ranks]
            np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), x)
            np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y)
        assert all(loader.state() == one.state() for loader in ranks)


def test_n_draws_of_b_rows_are_one_draw_of_n_b_rows():
    """What lets a checkpoint of N ranks go on in one process with N micro-batches."""
    tokens = np.arange(10_000)
    for mode in ("random", "sequential"):
        wide = BatchLoader(tokens, 4, 16, mode, seed=5, rank=0, world_size=2)
        narrow = BatchLoader(tokens, 4, 16, mode, seed=5)
        for _ in range(3):
            x, _ = wide.next_batch()
            np.testing.assert_array_equal(narrow.next_batch()[0], x)
            narrow.next_batch()  # rank 1's rows
        assert wide.state() == narrow.state()


def test_the_global_batch_must_divide_into_ranks_and_micro_batches():
    tc = TrainConfig(batch_size=4, block_size=8, tokens_per_step=96)  # 3 micro-batches of 32
    assert tc.accum_steps(1) == 3 and tc.accum_steps(3) == 1
    with pytest.raises(ValueError, match=r"multiple of batch_size \* block_size \* world_size"):
        tc.accum_steps(2)
    assert TrainConfig(batch_size=4, block_size=8).accum_steps(8) == 1  # one micro-batch each


def test_one_process_needs_no_mpi():
    assert not launched_by_mpi({})
    assert launched_by_mpi({"OMPI_COMM_WORLD_SIZE": "2"})
    assert not launched_by_mpi({"PMI_SIZE": "1"})
    dist = Distributed(None)
    assert (dist.rank, dist.world_size, dist.is_master) == (0, 1, True)
    assert dist.sum(2.5) == 2.5


def test_host_view_is_the_tensors_own_memory():
    from pyggml_train import ggml as G

    ctx = G.Context("cpu", threads=1)
    t = ctx.param((3, 4))
    t.set(np.arange(12, dtype=np.float32).reshape(3, 4))
    view = t.host_view()
    view[1, 2] = -1.0  # MPI writes the sum through such a view
    assert t.numpy()[1, 2] == -1.0
    del ctx, t
    assert view.sum() == np.arange(12).sum() - 6 - 1  # the view keeps the memory alive


def test_zero1_owners_balance_whole_parameters_over_the_ranks():
    from pyggml_train.step import shard_owners

    sizes = {"wte": 100, "a": 60, "b": 50, "c": 10, "d": 1}
    owners = shard_owners(sizes, 2)
    load = [sum(s for n, s in sizes.items() if owners[n] == r) for r in range(2)]
    assert owners["wte"] == 0 and sorted(load) == [110, 111]
    assert set(shard_owners(sizes, 5).values()) == set(range(5))  # every rank owns one
    with pytest.raises(ValueError, match="cannot be shared by 6 ranks"):
        shard_owners(sizes, 6)


def test_a_global_batch_the_ranks_cannot_divide_stops_every_rank_at_start(tmp_path):
    _need_mpi()
    # 192 tokens = 3 micro-batches of 2 x 32: fine for one process, not for 2 ranks
    cmd = train_cmd(2, 2, tmp_path / "bad", 5, "--tokens-per-step", "192")
    proc = subprocess.run(
        cmd, env=child_env(), cwd=CWD, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert "rank 0 of 2 failed" in proc.stderr or "rank 1 of 2 failed" in proc.stderr
    assert "multiple of batch_size * block_size * world_size (2 * 32 * 2 = 128)" in proc.stderr
    assert not (tmp_path / "bad" / "metrics.jsonl").exists()


def test_the_distributed_benchmark_runs():
    _need_mpi()
    boot = f"import sys; sys.path.append({str(REPO_ROOT)!r}); "
    boot += "from benchmarks.distributed import main; main()"
    cmd = [sys.executable, "-c", boot, "--configs", "smoke", "--steps", "1", "--rounds", "1"]
    cmd += ["--skip", "allreduce,memory", "--overlap-configs", "smoke"]
    proc = subprocess.run(
        cmd, env=child_env(), cwd=CWD, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| smoke")]
    layouts = ["1 rank x 2 threads", "2 ranks x 1 thread", "off", "on"]  # throughput, overlap
    assert [r.split("|")[2].strip() for r in rows] == layouts
