"""What the one-step benchmarks share (llama_step, lora_step): timing a training step, and
running each framework's row in a process of its own so that its peak RSS is its own."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np


def timed_row(framework: str, step: Callable[[], None], steps: int, tokens: int) -> dict:
    """One warm-up step (graphs built, buffers allocated), then the median of ``steps``."""
    step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    median = float(np.median(times))
    return {
        "framework": framework,
        "step_s": median,
        "tokens_per_s": tokens / median,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(module: str, measure: Callable[..., dict], frameworks: tuple[str, ...], doc: str) -> None:
    """The command line of ``module``: each framework's row (``measure(framework, seq,
    batch, threads, steps)``) in a child process, printed as one JSON line."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--frameworks", default=",".join(frameworks))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.seq, args.batch, args.threads, args.steps)))
        return
    for fw in args.frameworks.split(","):
        cmd = [sys.executable, "-m", module, "--child", fw]
        cmd += ["--seq", str(args.seq), "--batch", str(args.batch)]
        cmd += ["--threads", str(args.threads), "--steps", str(args.steps)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        print(out.strip().splitlines()[-1], flush=True)
