#!/usr/bin/env python
"""Resident memory over 1000 training steps of a tiny GPT-2 (docs/reliability.md).

    scripts/rss_drift.py [--steps 1000] [--warmup 50]

Prints RSS every 50 steps and the drift after warm-up, relative to the RSS at the end of
warm-up; exit status 1 if it leaves +-2%.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from helpers.training import configs, gpt2_trainer, small_data  # noqa: E402


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=50)
    args = ap.parse_args()
    model_cfg, train_cfg = configs(max_steps=args.steps + args.warmup, warmup_steps=10)
    data = small_data()
    trainer = gpt2_trainer(model_cfg, train_cfg, data)
    for _ in range(args.warmup):
        trainer.train_one_step()
    start, samples = rss_mib(), []
    for step in range(1, args.steps + 1):
        trainer.train_one_step()
        if step % 50 == 0:
            samples.append(round(rss_mib(), 2))
    drift = max(abs(s - start) for s in samples) / start
    print(json.dumps({"steps": args.steps, "rss_start_mib": round(start, 2), "rss_mib": samples,
                      "max_drift": round(drift, 5)}))  # fmt: skip
    sys.exit(0 if drift <= 0.02 else 1)


if __name__ == "__main__":
    main()
