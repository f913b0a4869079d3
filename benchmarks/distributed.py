"""Data-parallel measurements for docs/cluster.md: ranks against threads, all-reduce, memory,
gradient sums overlapped with the backward.

    python -m benchmarks.distributed            # all four, a markdown report on stdout
    python -m benchmarks.distributed --rounds 3 --steps 8
    python -m benchmarks.distributed --skip throughput,allreduce,memory --overlap-configs B,C

Every measurement runs under ``mpiexec`` in processes of its own (rank 0 prints one JSON line):

- throughput: the same global batch as 1 rank x 2 threads and as 2 ranks x 1 thread, in
  alternating rounds (this machine is shared: every round is reported, min/median/max);
- allreduce: Distributed.allreduce_sum over buffers of GPT-2 124M's gradient shapes, and
  the ZeRO-1 pair (reduce to the owner + broadcast from it);
- memory: persistent bytes per rank of GPT-2 124M training with zero=0 and zero=1;
- overlap: 2 ranks x 1 thread of a recompute='blocks' model, the step with its gradient sums
  overlapped with the backward and not (alternating rounds), what the sums moved during the
  backward, and (1 rank x 1 thread) the compute of each backward graph, the figure the
  scaling model in docs/cluster.md takes.
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


def overlap(cfg: BenchConfig, on: bool, steps: int) -> dict:
    """Steps of ``cfg`` (recompute='blocks') on the ranks, gradient sums overlapped or not."""
    from pyggml_train import ggml as G
    from pyggml_train.distributed import Distributed
    from pyggml_train.gpt2 import GPT2
    from pyggml_train.step import OptimizerStep

    dist = Distributed.from_environment()
    b = cfg.batch_size // dist.world_size
    model = GPT2(cfg.gpt2_config(recompute="blocks"), ctx=G.Context("cpu", 1), seed=0)
    train = model.graph(b, cfg.block_size, "train")
    step = OptimizerStep(model.ctx, model.params, train, sync=dist, overlap=on)
    rng = np.random.default_rng(dist.rank)
    times, sync, moved = [], [], []
    for i in range(steps + 1):  # the first step allocates the graphs: not measured
        tokens = rng.integers(0, cfg.vocab_size, (b, cfg.block_size + 1))
        dist.barrier()
        t0 = time.perf_counter()
        stats = step([(tokens[:, :-1], tokens[:, 1:])], 3e-4)
        if i:
            times.append(time.perf_counter() - t0)
            sync.append(stats.sync_s)
            sums = dist.last_sums
            moved.append((sums.bytes, sums.started_early, sums.done_early, sums.peak_in_flight))
    return {
        "step_ms": 1000 * statistics.median(times),
        "sync_ms": 1000 * statistics.median(sync),
        "bytes": moved[-1][0],
        "started_early": statistics.median(m[1] for m in moved),
        "done_early": statistics.median(m[2] for m in moved),
        "peak_in_flight": max(m[3] for m in moved),
    }


def block_compute(cfg: BenchConfig, steps: int) -> dict:
    """Seconds of each graph of a recompute='blocks' micro-batch at cfg's per-rank batch."""
    from pyggml_train import ggml as G
    from pyggml_train.gpt2 import GPT2

    model = GPT2(cfg.gpt2_config(recompute="blocks"), ctx=G.Context("cpu", 1), seed=0)
    train = model.graph(cfg.batch_size // 2, cfg.block_size, "train")
    rng = np.random.default_rng(0)
    runs, marks = [], []

    def mark(names: list[str]) -> None:
        marks.append(time.perf_counter())

    for i in range(steps + 1):
        tokens = rng.integers(0, cfg.vocab_size, (cfg.batch_size // 2, cfg.block_size + 1))
        marks[:] = [time.perf_counter()]
        train.run_split(tokens[:, :-1], tokens[:, 1:], mark)
        if i:  # the first run allocates the graphs: not measured
            runs.append(np.diff(marks))  # forward + head, block n-1 .. 0, embeddings
    med = np.median(np.array(runs), axis=0)
    return {"forward_head_s": med[0], "blocks_s": list(med[1:-1]), "embed_s": med[-1]}


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
    ap.add_argument("--skip", default="", help="comma list of throughput,allreduce,memory,overlap")
    ap.add_argument("--overlap-configs", default="B", help="configs of the overlap rows")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--zero", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--on", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        from pyggml_train.distributed import Distributed

        cfg = CONFIGS[args.config]
        out = {
            "throughput": lambda: throughput(cfg, args.threads, args.steps),
            "allreduce": lambda: allreduce(cfg, args.steps),
            "memory": lambda: memory(cfg, args.zero),
            "overlap": lambda: overlap(cfg, bool(args.on), args.steps),
            "blocks": lambda: block_compute(cfg, args.steps),
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

    if "overlap" not in skip:
        print(
            "\n| config | overlap | step ms min | median | max | exposed sync ms (median) | "
            "MB summed | MB started / done during the backward | peak MB in flight | load |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for name in args.overlap_configs.split(","):
            rows = {"off": [], "on": []}
            loads = {"off": [], "on": []}
            for _ in range(args.rounds):
                for label in rows:
                    loads[label].append(os.getloadavg()[0])
                    extra = ["--config", name, "--steps", str(args.steps)]
                    extra += ["--on", str(int(label == "on"))]
                    rows[label].append(_child(2, "overlap", *extra))
            for label, runs in rows.items():
                step = sorted(r["step_ms"] for r in runs)
                last = runs[-1]
                print(
                    f"| {CONFIGS[name].name} | {label} | {step[0]:.0f} | "
                    f"{statistics.median(step):.0f} | {step[-1]:.0f} | "
                    f"{statistics.median(r['sync_ms'] for r in runs):.0f} | "
                    f"{last['bytes'] / 1e6:.1f} | {last['started_early'] / 1e6:.1f} / "
                    f"{last['done_early'] / 1e6:.1f} | {last['peak_in_flight'] / 1e6:.1f} | "
                    f"{min(loads[label]):.1f}-{max(loads[label]):.1f} |"
                )
            r = _child(1, "blocks", "--config", name, "--steps", str(args.steps))
            blocks = r["blocks_s"]
            print(
                f"\n{CONFIGS[name].name}, 1 rank x 1 thread at the per-rank batch: forward + "
                f"head {1000 * r['forward_head_s']:.0f} ms, each block's graph (recomputed "
                f"forward + backward) {1000 * min(blocks):.0f}-{1000 * max(blocks):.0f} ms "
                f"(median {1000 * statistics.median(blocks):.0f}), embeddings "
                f"{1000 * r['embed_s']:.0f} ms"
            )


if __name__ == "__main__":
    main()
