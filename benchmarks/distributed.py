"""Data-parallel measurements for docs/cluster.md: ranks against threads, all-reduce, memory.

    python -m benchmarks.distributed            # all three, a markdown report on stdout
    python -m benchmarks.distributed --rounds 3 --steps 8

Every measurement runs under ``mpiexec`` in processes of its own (rank 0 prints one JSON line):

- throughput: the same global batch as 1 rank x 2 threads and as 2 ranks x 1 thread, in
  alternating rounds (this machine is shared: every round is reported, min/median/max);
- allreduce: Distributed.allreduce_sum over buffers of GPT-2 124M's gradient shapes, and
  the ZeRO-1 pair (reduce to the owner + broadcast from it);
- memory: persistent bytes per rank of GPT-2 124M training with zero=0 and zero=1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .configs import CONFIGS, BenchConfig
from .run import machine

ROOT = Path(__file__).resolve().parents[1]


def throughput(cfg: BenchConfig, threads: int, steps: int) -> dict:
    """Steps of ``cfg``'s global batch split over the ranks; rank 0 reports."""
    from pyggml_train import ggml as G
    from pyggml_train.distributed import Distributed
    from pyggml_train.gpt2 import GPT2
    from pyggml_train.step import OptimizerStep

    dist = Distributed.from_environment()
    if cfg.batch_size % dist.world_size:
        raise ValueError(f"batch {cfg.batch_size} does not split over {dist.world_size} ranks")
    b = cfg.batch_size // dist.world_size
    model = GPT2(cfg.gpt2_config(), ctx=G.Context("cpu", threads), seed=0)
    step = OptimizerStep(
        model.ctx, model.params, model.graph(b, cfg.block_size, "train"), sync=dist
    )
    rng = np.random.default_rng(dist.rank)
    times, sync = [], []
    for i in range(steps + 1):  # the first step allocates the graph: not measured
        tokens = rng.integers(0, cfg.vocab_size, (b, cfg.block_size + 1))
        t0 = time.perf_counter()
        stats = step([(tokens[:, :-1], tokens[:, 1:])], 3e-4)
        dt = time.perf_counter() - t0
        if i:
            times.append(dt)
            sync.append(stats.sync_s)
    med = statistics.median(times)
    return {
        "tokens_per_s": cfg.tokens_per_step / med,
        "step_ms": 1000 * med,
        "sync_ms": 1000 * statistics.median(sync),
    }


def allreduce(cfg: BenchConfig, repeats: int) -> dict:
    """Seconds to sum buffers of ``cfg``'s gradient shapes over the ranks, both ways."""
    from pyggml_train import ggml as G
    from pyggml_train.distributed import Distributed
    from pyggml_train.gpt2 import GPT2Net
    from pyggml_train.step import shard_owners

    dist = Distributed.from_environment()
    mc = cfg.gpt2_config()
    ctx = G.Context("cpu", 1)
    grads = {p.name: ctx.tensor(p.device_shape) for p in GPT2Net(mc).params()}
    ctx.allocate()
    for g in grads.values():
        g.fill(1.0)
    owners = shard_owners({n: g.size for n, g in grads.items()}, dist.world_size)
    full, zero = [], []
    for _ in range(repeats):
        dist.barrier()
        before = dist.grad_sync_calls
        t0 = time.perf_counter()
        dist.allreduce_sum(list(grads.values()))
        full.append(time.perf_counter() - t0)
        calls = dist.grad_sync_calls - before
        dist.barrier()
        t0 = time.perf_counter()
        for name, g in grads.items():
            dist.reduce_sum(g, owners[name])
        for name, g in grads.items():
            dist.broadcast(g, owners[name])
        zero.append(time.perf_counter() - t0)
    nbytes = sum(4 * g.size for g in grads.values())
    return {
        "bytes": nbytes,
        "tensors": len(grads),
        "calls": calls,
        "allreduce_s": sorted(full),
        "zero1_s": sorted(zero),
    }


def memory(cfg: BenchConfig, zero: int) -> dict:
    """Persistent bytes (parameters, gradients, optimizer state) per rank of cfg's training."""
    from pyggml_train import ggml as G
    from pyggml_train.distributed import Distributed
    from pyggml_train.gpt2 import GPT2
    from pyggml_train.step import OptimizerStep

    dist = Distributed.from_environment()
    model = GPT2(cfg.gpt2_config(), ctx=G.Context("cpu", 1), seed=0)
    train = model.graph(1, 64, "train")
    step = OptimizerStep(model.ctx, model.params, train, sync=dist, zero=zero)
    model.ctx.allocate()
    mine = (model.ctx.persistent_bytes, step.optimizer_state_bytes)
    per_rank = dist.comm.gather(mine, root=0) if dist.comm is not None else [mine]
    return {
        "persistent_bytes": [p[0] for p in per_rank or []],
        "optimizer_bytes": [p[1] for p in per_rank or []],
    }


# ---- the parent --------------------------------------------------------------------------------
def _mpiexec(n: int) -> list[str]:
    root = ["--allow-run-as-root"] if os.geteuid() == 0 else []
    return ["mpiexec", *root, "--oversubscribe", "-n", str(n)]


def _child(ranks: int, *args: str) -> dict:
    boot = (
        f"import sys; sys.path.append({str(ROOT)!r}); "
        "from benchmarks.distributed import main; main()"
    )
    cmd = _mpiexec(ranks) + [sys.executable, "-c", boot, "--child", *args]
    # started in $HOME, not the source tree, so that an installed pyggml_train wins (run.py)
    proc = subprocess.run(cmd, cwd=Path.home(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} on {ranks} ranks failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="A,B", help="throughput configs (benchmarks/configs.py)")
    ap.add_argument("--steps", type=int, default=5, help="measured steps per run")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per layout")
    ap.add_argument("--skip", default="", help="comma list of throughput,allreduce,memory")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--zero", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        from pyggml_train.distributed import Distributed

        cfg = CONFIGS[args.config]
        out = {
            "throughput": lambda: throughput(cfg, args.threads, args.steps),
            "allreduce": lambda: allreduce(cfg, args.steps),
            "memory": lambda: memory(cfg, args.zero),
        }[args.child]()
        if Distributed.from_environment().is_master:
            print(json.dumps(out))
        return

    skip = set(args.skip.split(","))
    m = machine()
    print(f"CPU: {m['cpu']} ({m['cores']} cores; SIMD: {m['simd']})\n")
    if "throughput" not in skip:
        print("| config | layout | tokens/s min | median | max | sync ms (median) |")
        print("|---|---|---:|---:|---:|---:|")
        for name in args.configs.split(","):
            rows: dict[str, list[dict]] = {"1 rank x 2 threads": [], "2 ranks x 1 thread": []}
            for _ in range(args.rounds):
                for layout, (ranks, threads) in zip(rows, [(1, 2), (2, 1)], strict=True):
                    extra = [
                        "--config",
                        name,
                        "--threads",
                        str(threads),
                        "--steps",
                        str(args.steps),
                    ]
                    rows[layout].append(_child(ranks, "throughput", *extra))
            for layout, runs in rows.items():
                rate = sorted(r["tokens_per_s"] for r in runs)
                sync = statistics.median(r["sync_ms"] for r in runs)
                print(
                    f"| {CONFIGS[name].name} | {layout} | {rate[0]:.0f} | "
                    f"{statistics.median(rate):.0f} | {rate[-1]:.0f} | {sync:.1f} |"
                )
        print()
    if "allreduce" not in skip:
        r = _child(2, "allreduce", "--config", "C", "--steps", str(max(3, args.steps)))
        print(
            f"GPT-2 124M gradients, 2 ranks: {r['bytes'] / 1e6:.0f} MB in {r['tensors']} tensors, "
            f"{r['calls']} MPI_Allreduce calls; all-reduce "
            + ", ".join(f"{1000 * s:.0f}" for s in r["allreduce_s"])
            + " ms; ZeRO-1 reduce + broadcast "
            + ", ".join(f"{1000 * s:.0f}" for s in r["zero1_s"])
            + " ms\n"
        )
    if "memory" not in skip:
        for zero in (0, 1):
            r = _child(2, "memory", "--config", "C", "--zero", str(zero))
            print(
                f"GPT-2 124M, 2 ranks, zero={zero}: persistent MB per rank "
                + ", ".join(f"{b / 1e6:.0f}" for b in r["persistent_bytes"])
                + "; optimizer state MB per rank "
                + ", ".join(f"{b / 1e6:.0f}" for b in r["optimizer_bytes"])
            )


if __name__ == "__main__":
    main()
