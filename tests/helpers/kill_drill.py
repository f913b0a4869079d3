"""Kill drills: SIGKILL a training run or a checkpoint write at a random moment, then
check what docs/reliability.md promises.

- ``training_trial``: ``pyggml-train train`` saving a checkpoint every step is killed at a
  random time. The checkpoint left behind (if any) loads and is finite; a resumed run
  finishes with weights bit-identical to an uninterrupted reference run (CPU); no
  temporary file is left once the resumed run has written its checkpoints.
- ``write_trial``: a process rewriting one large checkpoint in a loop, alternating two
  contents, is killed at a random time: the file on disk is always one whole version
  (load succeeds and equals version A or B), and the next write removes the dead writer's
  temporary file.

    scripts/kill_drill.py --trials 20      # the full drill
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from helpers.env import SHARED, child_env

TEXT = SHARED / "data" / "the-verdict.txt"
CKPT = "checkpoint.npz"
STEPS = 8
TRAIN_ARGS = [
    "--preset",
    "char-tiny",
    "--max-steps",
    str(STEPS),
    "--batch-size",
    "4",
    "--block-size",
    "32",
    "--threads",
    "2",
    "--no-progress",
    "--set",
    "n_layer=2",
    "n_embd=64",
    "n_head=2",
    "warmup_steps=2",
    "checkpoint_interval=1",
    "eval_interval=0",
    "eval_steps=1",
    "sample_interval=0",
    "sample_tokens=4",
]


def _env() -> dict[str, str]:
    return child_env(OMP_NUM_THREADS="2")  # children import the same copy


def _train_cmd(out: Path, resume: bool) -> list[str]:
    cmd = [sys.executable, "-m", "pyggml_train.cli", "train", "--data", str(TEXT)]
    cmd += ["--out-dir", str(out), *TRAIN_ARGS]
    return cmd + (["--resume", str(out / CKPT)] if resume else [])


def run_training(out: Path, resume: bool = False) -> None:
    r = subprocess.run(
        _train_cmd(out, resume), env=_env(), capture_output=True, text=True, timeout=600
    )
    if r.returncode != 0:
        raise RuntimeError(f"training failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")


def final_params(out: Path) -> dict[str, np.ndarray]:
    from pyggml_train.checkpoint import load_checkpoint  # noqa: PLC0415

    ckpt = load_checkpoint(out / CKPT)
    assert ckpt.step == STEPS, f"{out / CKPT} is at step {ckpt.step}, expected {STEPS}"
    return ckpt.params


def temporaries(directory: Path) -> list[Path]:
    return sorted(directory.glob(f".{CKPT}.*.tmp"))


@dataclass
class Result:
    trials: int = 0
    killed_at_step: list[int | None] = field(default_factory=list)  # checkpoint step after kill
    killed_mid_write: int = 0  # kills that left a temporary file (caught inside a write)
    failures: list[str] = field(default_factory=list)


def training_trial(reference: dict[str, np.ndarray], work: Path, rng, res: Result) -> None:
    from pyggml_train.checkpoint import load_checkpoint  # noqa: PLC0415

    out = work / f"train{res.trials}"
    res.trials += 1
    p = subprocess.Popen(
        _train_cmd(out, False), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    # 0: inside a checkpoint write; 1: at a random time; 2: among the steps
    mode = (res.trials - 1) % 3
    if mode != 1:
        while not (out / CKPT).exists() and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.01)
    if mode == 0:  # the next checkpoint write: kill as soon as its temporary file appears
        while not temporaries(out) and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.0005)
    else:
        time.sleep(float(rng.uniform(0.0, 4.0)))
    p.send_signal(signal.SIGKILL)
    p.wait()
    if temporaries(out):
        res.killed_mid_write += 1
    step = None
    if (out / CKPT).exists():
        try:
            ckpt = load_checkpoint(out / CKPT)
        except Exception as exc:  # noqa: BLE001 - the drill reports any failure
            res.failures.append(f"trial {res.trials}: checkpoint after kill does not load: {exc}")
            return
        step = ckpt.step
        if not all(np.isfinite(a).all() for a in ckpt.params.values()):
            res.failures.append(f"trial {res.trials}: non-finite checkpoint at step {step}")
    res.killed_at_step.append(step)
    try:
        run_training(out, resume=step is not None)
        got = final_params(out)
    except Exception as exc:  # noqa: BLE001
        res.failures.append(f"trial {res.trials}: resume failed: {exc}")
        return
    diff = [n for n in reference if not np.array_equal(reference[n], got[n])]
    if diff:
        res.failures.append(
            f"trial {res.trials}: resumed from step {step}, weights differ from the "
            f"uninterrupted run in {diff[:3]}"
        )
    left = sorted(out.rglob("*.tmp"))
    if left:
        res.failures.append(f"trial {res.trials}: temporary files left: {left}")


WRITER = """
import sys, numpy as np
from pyggml_train.checkpoint import save_arrays
path, n = sys.argv[1], int(sys.argv[2])
versions = [{"w": np.full(n, v, np.float32)} for v in (1.0, 2.0)]
print("ready", flush=True)
i = 0
while True:
    save_arrays(path, versions[i % 2], {"version": i % 2})
    i += 1
"""

# an export: a GGUF of a small GPT-2 whose every weight is 1.0 or 2.0 (the version)
EXPORTER = """
import sys, numpy as np
from pyggml_train.config import GPT2Config
from pyggml_train.hf_gpt2 import init_params
from pyggml_train.io.gguf import save_gguf
from pyggml_train.tokenizer import CharTokenizer
tok = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz ")
cfg = GPT2Config(vocab_size=tok.vocab_size, block_size=64, n_layer=4, n_head=4, n_embd=256)
shapes = {k: v.shape for k, v in init_params(cfg, seed=0).items()}
versions = [{k: np.full(s, v, np.float32) for k, s in shapes.items()} for v in (1.0, 2.0)]
print("ready", flush=True)
i = 0
while True:
    save_gguf(sys.argv[1], versions[i % 2], cfg, tok)
    i += 1
"""


def write_trial(work: Path, rng, res: Result, n: int = 8_000_000) -> None:
    """Every other trial kills a GGUF export instead of a checkpoint write."""
    from pyggml_train.atomic import atomic_open  # noqa: PLC0415
    from pyggml_train.checkpoint import load_arrays  # noqa: PLC0415
    from pyggml_train.io.gguf import load_gguf  # noqa: PLC0415

    export = res.trials % 2 == 1
    path = work / (f"export{res.trials}.gguf" if export else f"write{res.trials}.npz")
    res.trials += 1
    script = [EXPORTER, str(path)] if export else [WRITER, str(path), str(n)]
    p = subprocess.Popen(
        [sys.executable, "-c", *script],
        env=_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(float(rng.uniform(0.0, 0.5)))
    p.send_signal(signal.SIGKILL)
    p.wait()
    p.stdout.close()
    if list(work.glob(f".{path.name}.*.tmp")):
        res.killed_mid_write += 1
    try:
        if export:
            params = load_gguf(path)[0]
            values = {float(np.unique(a)[0]) for a in params.values()}
            whole = len(values) == 1 and all(len(np.unique(a)) == 1 for a in params.values())
        else:
            arrays, meta = load_arrays(path)
            w = arrays["w"]
            whole = w.shape == (n,) and bool((w == 1.0 + meta["version"]).all())
    except Exception as exc:  # noqa: BLE001
        res.failures.append(f"write trial: {path.name} does not load after the kill: {exc}")
        return
    if not whole:
        res.failures.append(f"write trial: {path.name} mixes versions")
    with atomic_open(path) as f:  # the next write cleans up after the dead writer
        f.write(b"x")
    left = list(work.glob(f".{path.name}.*.tmp"))
    if left:
        res.failures.append(f"write trial: temporary files left after the next write: {left}")


def drill(trials: int, seed: int = 0, work: Path | None = None) -> dict:
    """``trials`` kills, half during training and half during checkpoint writes."""
    rng = np.random.default_rng(seed)
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="kill_drill_")) if work is None else work
    t0 = time.perf_counter()
    try:
        ref_dir = work / "reference"
        run_training(ref_dir)
        reference = final_params(ref_dir)
        train_res, write_res = Result(), Result()
        for i in range(trials):
            if i % 2 == 0:
                training_trial(reference, work, rng, train_res)
            else:
                write_trial(work, rng, write_res)
        return {
            "training_trials": train_res.trials,
            "checkpoint_step_after_kill": train_res.killed_at_step,
            "training_kills_inside_a_checkpoint_write": train_res.killed_mid_write,
            "write_trials": write_res.trials,
            "write_kills_inside_a_write": write_res.killed_mid_write,
            "failures": train_res.failures + write_res.failures,
            "seconds": round(time.perf_counter() - t0, 1),
        }
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the result here")
    args = ap.parse_args()
    result = drill(args.trials, args.seed)
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)
    sys.exit(1 if result["failures"] else 0)


if __name__ == "__main__":
    main()
