"""Peak resident memory of each phase of a whole training run (issue 26, item 1).

A run is more than its step: it builds its graphs, steps, validates, writes a checkpoint
and samples. This runs those phases in the order ``train`` runs them (two steps, then
validation, the checkpoint and a sample) in one process, and reports each phase's peak
RSS: Linux's high-water mark (VmHWM) reset before the phase (``/proc/self/clear_refs``),
read after it. The peak of the whole process is the largest of them.

    python -m benchmarks.phases --preset gpt2 --block-size 1024 --batch-size 4 \\
        --set recompute=blocks

Linux only. Memory figures do not depend on the machine's load; the times printed beside
them do.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHAKESPEARE = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


def reset_peak() -> None:
    """Make the high-water mark the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def status_mb(key: str) -> float:
    """A /proc/self/status memory line (VmRSS, VmHWM) in MB of 2**20 bytes, the unit of
    benchmarks/run.py's peak RSS (getrusage's ru_maxrss / 1024)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(key)


def cpu_name() -> str:
    """The CPU as /proc/cpuinfo names it, with its family and model numbers."""
    info: dict[str, str] = {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    return f"{info.get('model name')}, family {info.get('cpu family')} model {info.get('model')}"


def measure(name: str, phase: Callable[[], object], rows: list[tuple[str, float, float, float]]):
    """Run ``phase``; append (name, peak MB, RSS after MB, seconds) to ``rows``."""
    reset_peak()
    t0 = time.perf_counter()
    out = phase()
    seconds = time.perf_counter() - t0
    rows.append((name, status_mb("VmHWM"), status_mb("VmRSS"), seconds))
    print(f"{name}: peak {rows[-1][1]:.0f} MB, after {rows[-1][2]:.0f} MB, {seconds:.1f} s")
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="gpt2")
    ap.add_argument("--block-size", type=int, default=1024)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2, help="training steps before validation")
    ap.add_argument("--data", default=str(SHAKESPEARE))
    ap.add_argument("--out-dir", default="out-phases")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)

    from pyggml_train.config import load_preset
    from pyggml_train.models import new_model
    from pyggml_train.train import Trainer, load_data

    overrides = dict(item.split("=", 1) for item in args.set)
    overrides.update(batch_size=args.batch_size, block_size=args.block_size)
    overrides.update(threads=args.threads, max_steps=args.steps, warmup_steps=1)
    model_config, train_config, tokenizer = load_preset(args.preset, **overrides)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(args.data, tokenizer, out, train_config.val_fraction)
    rows: list[tuple[str, float, float, float]] = []
    start = status_mb("VmRSS")
    trainer = measure(
        "model and graphs",
        lambda: Trainer(
            new_model(model_config, train_config, data.tokenizer.vocab_size), train_config, data
        ),  # fmt: skip
        rows,
    )
    for step in range(args.steps):
        measure(f"step {step + 1}", trainer.train_one_step, rows)
    measure(f"validation ({train_config.eval_steps} batches)", trainer.evaluate, rows)
    measure("checkpoint", lambda: trainer.save(out / "checkpoint.npz"), rows)
    measure(f"sample ({train_config.sample_tokens} tokens)", trainer.sample, rows)

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{cpu_name()}; load average {load}; RSS before the model {start:.0f} MB")
    print("| phase | peak RSS MB | RSS after MB | s |\n|---|---:|---:|---:|")
    for name, peak, after, seconds in rows:
        print(f"| {name} | {peak:.0f} | {after:.0f} | {seconds:.1f} |")
    print(f"| whole run | {max(r[1] for r in rows):.0f} | | |")


if __name__ == "__main__":
    main()
