"""Sweeps: one or two node parameters, each over a list of values (e.g. lr x d_model). The
studio trains every combination, one run at a time through the RunManager (a run started
by hand meanwhile is waited for), and marks the run with the lowest validation loss.

A sweep lives in DATA_DIR/sweeps/<id>.json, rewritten atomically at every change, so a
reloaded page shows it and a restarted server carries it on (the run the shutdown stopped
resumes from its checkpoint, or trains anew if it had none). Stop stops the current run and
cancels the runs not started.

Sweep states: "running" -> "finished" | "failed", or "running" -> "stopping" -> "stopped".
A combination is "pending", "running", then its run's final state, or "cancelled".
Every change is sent to WebSocket subscribers as ``{"type": "sweep", "sweep": {...}}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from .. import spec as S
from ..atomic import atomic_open
from ..metrics import read_metrics
from .compare import summary
from .datadir import DataDir
from .runs import ACTIVE, Busy, NotResumable, RunManager, RunNotFound, new_id

MAX_AXES = 2
MAX_VALUES = 16  # per axis
MAX_RUNS = 32  # per sweep
DONE = ("finished", "stopped", "failed", "cancelled", "deleted")  # a combination's end


class SweepError(ValueError):
    """A sweep request that cannot be run: says what was expected and what was given."""


class SweepNotFound(KeyError):
    pass


class SweepConflict(RuntimeError):
    """Another sweep is running, or this one is not running any more."""


@dataclass
class Axis:
    node: str  # node id in the spec
    param: str  # one of its type's parameters
    values: list[Any]

    @property
    def field(self) -> str:
        return f"{self.node}.{self.param}"


@dataclass
class Item:
    """One combination of values and the run that trains it."""

    values: dict[str, Any]  # "<node>.<param>" -> value
    max_steps: int
    run: str | None = None
    state: str = "pending"


@dataclass
class Sweep:
    id: str
    name: str
    spec: dict[str, Any]
    axes: list[Axis]
    items: list[Item]
    state: str = "running"
    message: str = ""
    created: float = field(default_factory=time.time)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Sweep:
        return cls(
            **{
                **data,
                "axes": [Axis(**a) for a in data["axes"]],
                "items": [Item(**i) for i in data["items"]],
            }
        )


# ---- what a request asks for ------------------------------------------------------------------
def parse_axes(spec: dict[str, Any], raw: Any) -> list[Axis]:
    """The axes of a sweep request, checked against the spec's nodes and their types."""
    example = '{"node": "loss", "param": "lr", "values": [0.001, 0.003]}'
    if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_AXES:
        given = len(raw) if isinstance(raw, list) else type(raw).__name__
        raise SweepError(
            f"a sweep varies one or two node parameters: expected 'axes' as a list of 1 or 2 "
            f"axes like {example}, got {given}"
        )
    nodes = {n.get("id"): n for n in spec.get("nodes", []) if isinstance(n, dict)}
    axes = []
    for i, a in enumerate(raw, 1):
        if not isinstance(a, dict) or not {"node", "param", "values"} <= set(a):
            raise SweepError(f"axis {i}: expected an object like {example}, got {a!r}")
        node, param, values = a["node"], a["param"], a["values"]
        if node not in nodes:
            raise SweepError(f"axis {i}: the spec has no node {node!r}; its nodes: {list(nodes)}")
        names = _param_names(spec, nodes[node])
        if param not in names:
            raise SweepError(
                f"axis {i}: node {node!r} ({nodes[node].get('type')}) has no parameter "
                f"{param!r}; its parameters: {names}"
            )
        if not isinstance(values, list) or not values:
            raise SweepError(
                f"axis {i} ({node}.{param}) has no values: give a list of at least one, "
                f"e.g. [0.001, 0.003], got {values!r}"
            )
        if len(values) > MAX_VALUES:
            raise SweepError(f"axis {i}: at most {MAX_VALUES} values, got {len(values)}")
        if any(isinstance(v, dict | list) or v is None for v in values):
            raise SweepError(f"axis {i}: values are numbers, strings or booleans, got {values!r}")
        if len({json.dumps(v) for v in values}) < len(values):
            raise SweepError(f"axis {i} ({node}.{param}) repeats a value: {values!r}")
        axes.append(Axis(node, param, list(values)))
    if len({a.field for a in axes}) < len(axes):
        raise SweepError(f"both axes vary {axes[0].field}; choose two different parameters")
    runs = len(list(itertools.product(*(a.values for a in axes))))
    if runs > MAX_RUNS:
        raise SweepError(f"the sweep would train {runs} runs; at most {MAX_RUNS}: fewer values")
    return axes


def _param_names(spec: dict[str, Any], node: dict[str, Any]) -> list[str]:
    """What a sweep may vary on ``node``: its type's parameters, or a group's (repeat and the
    exposed ones). A width several nodes share is swept through a group that exposes it."""
    if node.get("type") == S.GROUP_TYPE:
        try:
            face = S.group_interface(spec.get("groups"), node.get("group"))
        except S.SpecError as err:
            raise SweepError(f"node {node.get('id')!r}: {err}") from None
        return [p["name"] for p in face["params"]]
    node_type = S.NODE_TYPES.get(node.get("type"))
    return [p.name for p in node_type.params] if node_type else []


def combinations(axes: list[Axis]) -> list[dict[str, Any]]:
    """Every combination of the axes' values, the first axis varying slowest."""
    fields = [a.field for a in axes]
    grid = itertools.product(*(a.values for a in axes))
    return [dict(zip(fields, values, strict=True)) for values in grid]


def variant(spec: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The spec with the combination's values set, named after them."""
    out = copy.deepcopy(spec)
    nodes = {n.get("id"): n for n in out["nodes"] if isinstance(n, dict)}
    for name, value in values.items():
        node, param = name.split(".", 1)
        nodes[node].setdefault("params", {})[param] = value
    label = ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in values.items())
    out["name"] = f"{spec.get('name') or 'untitled'} [{label}]"[:100]
    return out


# ---- the queue --------------------------------------------------------------------------------
class SweepManager:
    """Keeps sweeps on disk and trains their combinations one at a time."""

    def __init__(self, datadir: DataDir, runs: RunManager, poll_s: float = 0.2):
        self.datadir, self.runs, self.poll_s = datadir, runs, poll_s
        self._tasks: dict[str, asyncio.Task] = {}
        self._live: dict[str, Sweep] = {}  # the sweeps being driven: the one copy that changes

    # -- queries ------------------------------------------------------------------------------
    def _load(self, sweep_id: str) -> Sweep:
        path = self.datadir.sweep_file(sweep_id)
        if not path.is_file():
            raise SweepNotFound(f"no sweep {sweep_id!r}; GET /api/sweeps lists them")
        return Sweep.from_json(json.loads(path.read_text()))

    def _all(self) -> list[Sweep]:
        out = []
        for path in sorted(self.datadir.sweeps.glob("*.json")):
            with contextlib.suppress(ValueError, TypeError, KeyError, OSError):
                out.append(Sweep.from_json(json.loads(path.read_text())))
        return out

    def list_sweeps(self) -> list[dict[str, Any]]:
        return [self.public(s) for s in self._all()]

    def get(self, sweep_id: str) -> dict[str, Any]:
        return self.public(self._load(sweep_id))

    def public(self, sweep: Sweep) -> dict[str, Any]:
        """The sweep with each combination's numbers, and ``best``: the run with the lowest
        validation loss so far (None before any validation)."""
        out = asdict(sweep)
        best, best_loss = None, float("inf")
        for item in out["items"]:
            records = []
            if item["run"] is not None:
                run_dir = self.datadir.run_dir(item["run"])
                if run_dir.is_dir():
                    records = read_metrics(run_dir / "metrics.jsonl")
                elif item["state"] in DONE:
                    item["state"] = "deleted"
            item.update(summary(records))
            loss = item["best_val_loss"]
            if loss is not None and loss < best_loss and item["state"] != "deleted":
                best, best_loss = item["run"], loss
        out["best"] = best
        out["done"] = sum(item["state"] in DONE for item in out["items"])
        return out

    def _save(self, sweep: Sweep) -> None:
        with atomic_open(self.datadir.sweep_file(sweep.id)) as f:
            f.write(json.dumps(asdict(sweep), indent=1).encode())
        self.runs.broadcast({"type": "sweep", "sweep": self.public(sweep)})

    # -- control ------------------------------------------------------------------------------
    def _running(self) -> Sweep | None:
        return next((s for s in self._all() if s.state in ("running", "stopping")), None)

    def start(self, spec: dict[str, Any], axes: list[Axis], max_steps: list[int]) -> dict[str, Any]:
        """A new sweep over checked variants (``max_steps`` per combination), queued now."""
        other = self._running()
        if other is not None:
            raise SweepConflict(
                f"busy: sweep {other.id} ({other.name!r}) is {other.state}; the studio runs one "
                "sweep at a time: stop it first"
            )
        combos = combinations(axes)
        items = [Item(values, steps) for values, steps in zip(combos, max_steps, strict=True)]
        name = f"{spec.get('name') or 'untitled'} sweep of " + " x ".join(a.field for a in axes)
        sweep = Sweep(new_id(), name, spec, axes, items)
        self._save(sweep)
        self._drive_later(sweep)
        return self.public(sweep)

    async def stop(self, sweep_id: str) -> dict[str, Any]:
        """Stop the current run and cancel the ones not started."""
        sweep = self._live.get(sweep_id) or self._load(sweep_id)
        if sweep.state not in ("running", "stopping"):
            raise SweepConflict(f"sweep {sweep_id} is {sweep.state}; nothing to stop")
        if sweep.id not in self._live:  # no driver (it ended): settle the file now
            sweep.state = "stopping"
            self._finish(sweep)
            return self.public(sweep)
        sweep.state, sweep.message = "stopping", "stopping: the current run ends at a checkpoint"
        self._save(sweep)
        active = self.runs.active
        if active is not None and active.id in {i.run for i in sweep.items}:
            with contextlib.suppress(RunNotFound, NotResumable):  # it may have just ended
                await self.runs.stop(active.id)
        return self.public(sweep)

    def recover(self) -> None:
        """After a restart: carry on the sweeps that were running, settle the stopping ones."""
        for sweep in self._all():
            if sweep.state == "running":
                self._drive_later(sweep)
            elif sweep.state == "stopping":
                self._finish(sweep)

    async def close(self) -> None:
        """Server shutdown: the drivers end; their files still say "running" (recover)."""
        for task in list(self._tasks.values()):
            task.cancel()
        for task in list(self._tasks.values()):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- the driver ---------------------------------------------------------------------------
    def _drive_later(self, sweep: Sweep) -> None:
        self._live[sweep.id] = sweep
        task = asyncio.get_running_loop().create_task(self._drive(sweep))
        self._tasks[sweep.id] = task

        def forget(_: asyncio.Task) -> None:
            self._tasks.pop(sweep.id, None)
            self._live.pop(sweep.id, None)

        task.add_done_callback(forget)

    @staticmethod
    def _stopping(sweep: Sweep) -> bool:
        return sweep.state != "running"  # stop() sets "stopping" on this very object

    async def _drive(self, sweep: Sweep) -> None:
        try:
            for item in sweep.items:
                if self._stopping(sweep):
                    break
                if item.state in DONE:
                    continue
                if not await self._launch(sweep, item):
                    break
                item.state = await self._wait(item.run)
                self._save(sweep)
            self._finish(sweep)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the sweep must end in a final state
            sweep.state, sweep.message = "failed", f"the sweep stopped on an error: {exc!r}"
            self._save(sweep)

    async def _launch(self, sweep: Sweep, item: Item) -> bool:
        """Start the combination's run (or resume the one a restart stopped), waiting while
        another run is active; False if the sweep was stopped meanwhile."""
        while True:
            if self._stopping(sweep):
                return False
            try:
                if item.run is None:
                    run = await self.runs.start(variant(sweep.spec, item.values), item.max_steps)
                    item.run = run["id"]
                elif self.runs.get(item.run).state in ("stopped", "failed"):  # by a shutdown
                    try:
                        await self.runs.resume(item.run)
                    except NotResumable:  # killed before its first checkpoint: train anew
                        item.run = None
                        continue
                break
            except Busy:
                if sweep.message != (waiting := "waiting for the active run to end"):
                    sweep.message = waiting
                    self._save(sweep)
                await asyncio.sleep(self.poll_s)
        item.state, sweep.message = "running", ""
        self._save(sweep)
        if self._stopping(sweep):  # a stop arrived while the run was starting
            with contextlib.suppress(RunNotFound, NotResumable):
                await self.runs.stop(item.run)
        return True

    async def _wait(self, run_id: str | None) -> str:
        """The run's final state, once it has one."""
        try:
            while (state := self.runs.get(run_id).state) in ACTIVE:
                await asyncio.sleep(self.poll_s)
        except RunNotFound:
            return "deleted"
        return state

    def _finish(self, sweep: Sweep) -> None:
        if sweep.state == "stopping":
            for item in sweep.items:
                if item.state == "pending":
                    item.state = "cancelled"
            done = sum(i.state not in ("cancelled", "pending") for i in sweep.items)
            sweep.state = "stopped"
            sweep.message = f"stopped on request after {done} of {len(sweep.items)} runs"
        else:
            sweep.state, sweep.message = "finished", ""
        self._save(sweep)
