"""The run manager: one training run at a time, in a worker process, watched from the server.

Training never runs on the event loop: ``start`` spawns a worker process (worker.train_run)
that trains the spec into DATA_DIR/runs/<id>/. The worker sends each metrics record over a queue
as the trainer writes it to RUN_DIR/metrics.jsonl (the history a browser gets on connect),
and its output goes to RUN_DIR/log.txt, which the server tails.

Events sent to every WebSocket subscriber are small JSON objects with a ``type``:

    {"type": "run", "run": {id, name, state, step, max_steps, message, ...}}  state changes
    {"type": "metrics", "run": id, "step", "max_steps", "progress", "train_loss",
     "val_loss", "lr", "tokens_per_s", "elapsed_s"}                         one per step
    {"type": "log", "run": id, "line": str}                                  worker output
    {"type": "deleted", "run": id}                                           a run removed

States: "starting" -> "running" -> "finished" | "stopped" | "failed"; a stopped or failed
run with a checkpoint can be resumed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import queue
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import atomic_open
from ..metrics import read_metrics
from . import worker
from .datadir import DataDir

ACTIVE = ("starting", "running", "stopping")
STOP_GRACE_S = 120.0  # a stop waits this long for the step in flight and the checkpoint


class Busy(RuntimeError):
    """A run is active; the studio trains one at a time (and keeps an active run's files)."""


class RunNotFound(KeyError):
    pass


class NotResumable(ValueError):
    pass


MAX_NAME = 100  # characters of a run's name


def check_run_name(name: Any) -> str:
    """A run's display name, stripped; ValueError saying what a name may be."""
    if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME:
        raise ValueError(
            f"a run's name is 1 to {MAX_NAME} characters of text, got {name!r}; type a name"
        )
    return name.strip()


@dataclass
class RunInfo:
    """What DATA_DIR/runs/<id>/run.json holds: the run's name and latest known state."""

    id: str
    name: str
    state: str
    max_steps: int
    step: int = 0  # optimizer steps completed (last metrics line)
    created: float = field(default_factory=time.time)
    message: str = ""  # why it failed or stopped

    def save(self, run_dir: Path) -> None:
        with atomic_open(run_dir / "run.json") as f:
            f.write(json.dumps(asdict(self), indent=1).encode())


def new_id() -> str:
    """A run's or sweep's id: the local time to the millisecond, sortable as text."""
    return time.strftime("%Y%m%d-%H%M%S") + f"-{int(time.time() * 1000) % 1000:03d}"


def _load_info(run_dir: Path) -> RunInfo:
    return RunInfo(**json.loads((run_dir / "run.json").read_text()))


class _Tail:
    """New complete lines of a growing text file."""

    def __init__(self, path: Path, offset: int = 0):
        self.path, self.offset = path, offset

    def lines(self) -> list[str]:
        if not self.path.is_file():
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a partly written last line waits for its newline
        self.offset += end
        return data[:end].decode("utf-8", "replace").splitlines()


class _Stamp:
    """Notices a file appearing or being replaced (a new checkpoint)."""

    def __init__(self, path: Path):
        self.path = path
        self.seen = self._now()

    def _now(self) -> int | None:
        with contextlib.suppress(OSError):
            return self.path.stat().st_mtime_ns
        return None

    def changed(self) -> bool:
        now = self._now()
        changed, self.seen = now != self.seen, now
        return changed


def _drain(q: Any) -> list[dict[str, Any]]:
    """Everything already in a multiprocessing queue, without waiting."""
    out = []
    with contextlib.suppress(queue.Empty):
        while True:
            out.append(q.get_nowait())
    return out


def metrics_event(run_id: str, record: dict[str, Any], max_steps: int) -> dict[str, Any]:
    keys = ("step", "train_loss", "val_loss", "lr", "tokens_per_s", "elapsed_s")
    event = {"type": "metrics", "run": run_id, **{k: record.get(k) for k in keys}}
    event["max_steps"] = max_steps
    event["progress"] = min(1.0, record["step"] / max_steps) if max_steps else None
    return event


class RunManager:
    """Starts, stops and resumes runs; broadcasts their events to subscribers."""

    def __init__(self, datadir: DataDir, poll_s: float = 0.2):
        self.datadir = datadir
        self.poll_s = poll_s
        self._mp = mp.get_context("spawn")  # a fresh interpreter: no forked ggml threads
        self._proc: mp.process.BaseProcess | None = None
        self._stop_event: Any = None
        self._active: RunInfo | None = None
        self._watch: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self._subscribers: set[asyncio.Queue] = set()
        self._recover()

    def _recover(self) -> None:
        """Runs a previous server left active have no worker any more: mark them stopped."""
        for info in self._all():
            if info.state in ACTIVE:
                info.state, info.message = "stopped", "the studio server stopped during the run"
                info.save(self.datadir.run_dir(info.id))

    # -- queries ------------------------------------------------------------------------------
    def _all(self) -> list[RunInfo]:
        infos = []
        for d in sorted(self.datadir.runs.iterdir()):
            if (d / "run.json").is_file():
                with contextlib.suppress(ValueError, TypeError, OSError):
                    infos.append(_load_info(d))
        return infos

    def list_runs(self) -> list[dict[str, Any]]:
        return [self._public(i) for i in sorted(self._all(), key=lambda i: i.created)]

    def get(self, run_id: str) -> RunInfo:
        run_dir = self.datadir.run_dir(run_id)
        if not (run_dir / "run.json").is_file():
            raise RunNotFound(f"no run {run_id!r}; GET /api/runs lists them")
        if self._active is not None and self._active.id == run_id:
            return self._active
        return _load_info(run_dir)

    def run_dir(self, run_id: str) -> Path:
        self.get(run_id)
        return self.datadir.run_dir(run_id)

    def detail(self, run_id: str) -> dict[str, Any]:
        """The run, its metrics so far and its spec."""
        info = self.get(run_id)
        run_dir = self.datadir.run_dir(run_id)
        out = self._public(info)
        records = read_metrics(run_dir / "metrics.jsonl")
        out["metrics"] = [metrics_event(run_id, r, info.max_steps) for r in records]
        out["spec"] = json.loads((run_dir / "spec.json").read_text())
        return out

    def _public(self, info: RunInfo) -> dict[str, Any]:
        run_dir = self.datadir.run_dir(info.id)
        out = asdict(info)
        out["checkpoint"] = (run_dir / worker.CHECKPOINT_NAME).is_file()
        out["resumable"] = info.state in ("stopped", "failed") and out["checkpoint"]
        return out

    @property
    def active(self) -> RunInfo | None:
        return self._active

    # -- events -------------------------------------------------------------------------------
    def subscribe(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=10_000)
        self._subscribers.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue) -> None:
        self._subscribers.discard(q)

    def broadcast(self, event: dict[str, Any]) -> None:
        for q in list(self._subscribers):
            if q.full():  # a client that stopped reading loses old events, not the server
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
            q.put_nowait(event)

    def _set_state(self, info: RunInfo, state: str, message: str = "") -> None:
        info.state, info.message = state, message
        info.save(self.datadir.run_dir(info.id))
        self.broadcast({"type": "run", "run": self._public(info)})

    # -- control ------------------------------------------------------------------------------
    def _check_idle(self) -> None:
        a = self._active
        if a is not None:
            raise Busy(
                f"busy: run {a.id} ({a.name!r}) is {a.state} at step {a.step}/{a.max_steps}; "
                "the studio trains one run at a time: stop it first"
            )

    async def start(self, spec: dict[str, Any], max_steps: int) -> dict[str, Any]:
        """A new run of a checked spec; Busy if one is active."""
        async with self._lock:
            self._check_idle()
            run_id = new_id()
            run_dir = self.datadir.run_dir(run_id)
            run_dir.mkdir()
            with atomic_open(run_dir / "spec.json") as f:
                f.write(json.dumps(spec, indent=1).encode())
            info = RunInfo(run_id, spec.get("name") or "untitled", "starting", max_steps)
            await self._launch(info, resume=False)
            return self._public(info)

    async def resume(self, run_id: str) -> dict[str, Any]:
        """Continue a stopped or failed run from its checkpoint; Busy if one is active."""
        async with self._lock:
            self._check_idle()
            info = self.get(run_id)
            if not self._public(info)["resumable"]:
                raise NotResumable(
                    f"run {run_id} is {info.state}"
                    + ("" if self._public(info)["checkpoint"] else " and has no checkpoint yet")
                    + "; only a stopped or failed run with a checkpoint resumes"
                )
            await self._launch(info, resume=True)
            return self._public(info)

    async def _launch(self, info: RunInfo, resume: bool) -> None:
        run_dir = self.datadir.run_dir(info.id)
        log = run_dir / "log.txt"
        self._stop_event = self._mp.Event()
        updates = self._mp.Queue()
        self._proc = self._mp.Process(
            target=worker.train_run,
            args=(str(run_dir), str(self.datadir.data), resume, self._stop_event, updates),
            name=f"pyggml-studio-run-{info.id}",
            daemon=True,
        )
        self._active = info
        self._set_state(info, "starting")
        await asyncio.to_thread(self._proc.start)
        log_tail = _Tail(log, log.stat().st_size if log.is_file() else 0)
        self._watch = asyncio.create_task(self._follow(info, updates, log_tail))

    async def stop(self, run_id: str) -> dict[str, Any]:
        """Ask the active run to checkpoint and stop; kill it if it does not within the grace."""
        info = self.get(run_id)
        if self._active is None or self._active.id != run_id:
            raise NotResumable(f"run {run_id} is {info.state}, not running; nothing to stop")
        if info.state != "stopping":
            self._stop_event.set()
            self._set_state(info, "stopping")
            asyncio.create_task(self._kill_after(self._proc, STOP_GRACE_S))
        return self._public(info)

    def rename(self, run_id: str, name: str) -> dict[str, Any]:
        """Give a run another display name (its id and directory stay)."""
        info = self.get(run_id)
        info.name = check_run_name(name)
        info.save(self.datadir.run_dir(run_id))
        self.broadcast({"type": "run", "run": self._public(info)})
        return self._public(info)

    async def delete(self, run_id: str) -> dict[str, Any]:
        """Remove a run's directory; the active run must be stopped first."""
        info = self.get(run_id)
        if self._active is not None and self._active.id == run_id:
            raise Busy(f"run {run_id} is {info.state}; stop it before deleting it")
        await asyncio.to_thread(shutil.rmtree, self.datadir.run_dir(run_id))
        self.broadcast({"type": "deleted", "run": run_id})
        return {"deleted": run_id}

    async def _kill_after(self, proc: mp.process.BaseProcess, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if proc.is_alive():
            proc.kill()

    async def _follow(self, info: RunInfo, updates: Any, log: _Tail) -> None:
        """Follow the worker; whatever goes wrong here, the run ends in a final state."""
        try:
            await self._events_until_exit(info, updates, log)
        except Exception as exc:  # a bug here must not leave the studio busy forever
            self._proc.kill()
            self._active = None
            self._set_state(info, "failed", f"the studio lost the worker: {exc!r}")
            raise

    async def _events_until_exit(self, info: RunInfo, updates: Any, log: _Tail) -> None:
        """Turn the worker's metrics and log lines into events until it exits."""
        proc = self._proc
        run_dir = self.datadir.run_dir(info.id)
        checkpoint = _Stamp(run_dir / worker.CHECKPOINT_NAME)
        while True:
            alive = proc.is_alive()
            for line in log.lines():
                self.broadcast({"type": "log", "run": info.id, "line": line})
            for record in _drain(updates):
                info.step, info.max_steps = record["step"], record["max_steps"]
                if info.state == "starting":
                    self._set_state(info, "running")
                self.broadcast(metrics_event(info.id, record, info.max_steps))
            if checkpoint.changed():  # generation and export now have something to read
                self.broadcast({"type": "run", "run": self._public(info)})
            if not alive:
                break
            await asyncio.sleep(self.poll_s)
        await asyncio.to_thread(proc.join)
        result = worker.read_result(run_dir)
        if proc.exitcode == 0 and result.get("state") in ("finished", "stopped"):
            state, message = result["state"], result.get("message", "")
        elif info.state == "stopping":
            state, message = "stopped", "killed after the stop grace period"
        else:
            state = "failed"
            message = result.get("message") or f"worker exited with code {proc.exitcode}"
        self._active = None
        self._set_state(info, state, message)

    async def close(self) -> None:
        """Stop the active worker (server shutdown); killed after 5 s, it ends "stopped" at
        its last checkpoint, not "failed"."""
        proc = self._proc
        if proc is not None and proc.is_alive():
            self._stop_event.set()
            if self._active is not None and self._active.state != "stopping":
                self._set_state(self._active, "stopping")
            await asyncio.to_thread(proc.join, 5.0)
            if proc.is_alive():
                proc.kill()
                await asyncio.to_thread(proc.join)
        if self._watch is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._watch, 5.0)
