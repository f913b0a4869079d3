"""What runs outside the server process: training a spec, and generating text.

``train_run`` is the target of the run manager's worker process. It trains the spec in
RUN_DIR/spec.json into RUN_DIR (metrics.jsonl, checkpoint.npz, log.txt) with the same
trainer as ``pyggml-train train --model``, and leaves RUN_DIR/result.json saying how it
ended. A stop request (an Event) ends training after the current step, at a checkpoint.

``Generator`` keeps one spawned process that loads a run's latest checkpoint (cached until
the file changes) and samples from it, so a ggml failure there never takes the server down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import threading
import traceback
import zipfile
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from ..atomic import atomic_open
from ..train import CHECKPOINT_NAME

EXPORT_FORMATS = {"gguf": "model.gguf", "hf": "hf"}  # format -> name under RUN_DIR/exports
EXPORT_TIMEOUT_S = 600
ORPHAN_POLL_S = 1.0
EVALS = 10  # validation points per run, at least
MAX_EVAL_INTERVAL = 25  # steps between validation points, at most
EVAL_BATCHES = 5  # micro-batches per validation point (TrainConfig.eval_steps)
MAX_CHECKPOINT_INTERVAL = 50  # steps; a tenth of the run when that is fewer
DEFAULT_CADENCE_STEPS = 1000  # the cadence of an epochs run, whose steps the data decides
__all__ = ["CHECKPOINT_NAME", "EXPORT_FORMATS", "Generator", "train_run", "read_result"]


def _write_result(run_dir: Path, state: str, message: str = "") -> None:
    with atomic_open(run_dir / "result.json") as f:
        f.write(json.dumps({"state": state, "message": message}).encode())


def read_result(run_dir: Path) -> dict[str, Any]:
    """How the worker said it ended ({} when it died without saying)."""
    with contextlib.suppress(OSError, ValueError):
        return json.loads((run_dir / "result.json").read_text())
    return {}


def _redirect_output(log: Path) -> None:
    """The worker's stdout and stderr, Python's and C's, go to the run's log file."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = sys.stdout


def cadence(max_steps: int) -> dict[str, int]:
    """TrainConfig overrides for a studio run: curves need validation points along the way,
    generation needs checkpoints, and text samples in the log are not needed."""
    return {
        "eval_interval": max(1, min(max_steps // EVALS, MAX_EVAL_INTERVAL)),
        "eval_steps": EVAL_BATCHES,
        "checkpoint_interval": max(1, min(MAX_CHECKPOINT_INTERVAL, max_steps // 10)),
        "sample_interval": 0,
    }


def planned_steps(spec: Any, run_dir: Path | None = None) -> int:
    """Optimizer steps of the run: the Loss node's steps, or its epochs over the prepared
    tokens (0 while they are not prepared yet)."""
    from .. import spec as S
    from ..data import read_tokens

    loss = spec.nodes[spec.loss].params
    if not loss["epochs"]:
        return int(loss["steps"])
    train_bin = run_dir / "data" / "train.bin" if run_dir else None
    if train_bin is None or not train_bin.is_file():
        return 0
    return S.train_config_for(spec, read_tokens(train_bin).size).max_steps


def _stop_when_orphaned(stop: Any, updates: Any) -> None:
    """A server killed outright leaves its worker behind: the worker then stops by itself
    (at a checkpoint) instead of training on unwatched, and exits without waiting to flush
    ``updates`` to a reader that is gone (a full pipe would block its exit forever)."""
    parent = os.getppid()

    def watch() -> None:
        while not stop.wait(ORPHAN_POLL_S):
            if os.getppid() != parent:
                print("the studio server is gone: stopping at a checkpoint", flush=True)
                updates.cancel_join_thread()
                stop.set()

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def train_run(run_dir: str, data_dir: str, resume: bool, stop: Any, updates: Any) -> None:
    """Worker process: train RUN_DIR/spec.json (resuming from its checkpoint if asked);
    each metrics record also goes to ``updates`` with the run's max_steps."""
    from .. import spec as S
    from ..recipes import train_spec

    run = Path(run_dir)
    (run / "result.json").unlink(missing_ok=True)
    _redirect_output(run / "log.txt")
    _stop_when_orphaned(stop, updates)
    max_steps = 0

    def on_metrics(record: dict[str, Any]) -> None:
        nonlocal max_steps
        max_steps = max_steps or planned_steps(parsed, run)
        updates.put({**record, "max_steps": max_steps})

    try:
        parsed = S.parse_spec(json.loads((run / "spec.json").read_text()), data_dir)
        steps = planned_steps(parsed) or DEFAULT_CADENCE_STEPS
        train_spec(
            parsed,
            run,
            data_dir=data_dir,
            resume=run / CHECKPOINT_NAME if resume else None,
            overrides=cadence(steps),
            on_metrics=on_metrics,
            should_stop=stop.is_set,
            progress=False,
        )
    except (S.SpecError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", flush=True)
        _write_result(run, "failed", str(exc))
        sys.exit(1)
    except BaseException as exc:  # noqa: BLE001 - the log keeps the traceback
        traceback.print_exc()
        _write_result(run, "failed", f"{type(exc).__name__}: {exc}")
        sys.exit(1)
    if stop.is_set():
        _write_result(run, "stopped", "stopped on request at a checkpoint; Resume continues it")
    else:
        _write_result(run, "finished")


def _zip_dir(directory: Path) -> Path:
    """DIRECTORY.zip beside it, holding DIRECTORY/... (a browser downloads files, not folders)."""
    out = directory.with_name(directory.name + ".zip")
    with atomic_open(out) as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
        for file in sorted(directory.rglob("*")):
            if file.is_file():
                z.write(file, (Path(directory.name) / file.relative_to(directory)).as_posix())
    return out


def export(run_dir: Path, fmt: str) -> dict[str, Any]:
    """The run's checkpoint written by ``pyggml-train export`` into RUN_DIR/exports/
    (model.gguf, or the directory hf/ and hf.zip); ``download`` is the file to fetch.
    ValueError with the command's own message if it fails."""
    out = run_dir / "exports" / EXPORT_FORMATS[fmt]
    out.parent.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "pyggml_train.cli", "export", "--format", fmt]
    cmd += ["--checkpoint", str(run_dir / CHECKPOINT_NAME), "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S)
    if proc.returncode != 0:
        raise ValueError(f"pyggml-train export failed: {(proc.stderr or proc.stdout).strip()}")
    download = _zip_dir(out) if out.is_dir() else out
    return {
        "format": fmt,
        "path": out.relative_to(run_dir).as_posix(),
        "download": download.relative_to(run_dir).as_posix(),
        "log": proc.stdout.strip(),
    }


# ---- generation -------------------------------------------------------------------------------
GENERATION_THREADS = 1  # the other core is the training worker's
_loaded: dict[tuple[str, int], Any] = {}  # in the generation process: (run, mtime) -> sampler


def _generate(run_dir: str, settings: dict[str, Any]) -> str:
    """In the generation process: text from RUN_DIR's checkpoint (prompt included)."""
    from ..models import load_sampler

    ckpt = Path(run_dir) / CHECKPOINT_NAME
    key = (run_dir, ckpt.stat().st_mtime_ns)
    if key not in _loaded:
        _loaded.clear()  # one model at a time
        _loaded[key] = load_sampler(ckpt, threads=GENERATION_THREADS)
    return _loaded[key].generate(
        settings["prompt"],
        settings["max_new_tokens"],
        settings["temperature"],
        settings["top_k"],
        None,
        settings["seed"],
    )


class Generator:
    """Text generation in a process of its own (restarted if it dies)."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        import multiprocessing as mp

        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"))
            return self._pool

    async def generate(self, run_dir: Path, settings: dict[str, Any]) -> str:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor(), _generate, str(run_dir), settings)
        except BrokenProcessPool:
            self.close()
            raise RuntimeError("the generation process died; try again") from None

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
