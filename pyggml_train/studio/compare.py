"""Comparing runs: each run's numbers (from its metrics file and checkpoint), its curves
against step, tokens or wall time, and the spec fields in which the runs differ.

A spec field is ``<node id>.<parameter>`` with the node type's default filled in where the
spec leaves it out, so a run that states the default and one that omits it do not differ.
"""

from __future__ import annotations

import contextlib
import json
import statistics
from typing import Any

from .. import spec as S
from ..checkpoint import parameter_count
from ..metrics import read_metrics
from .runs import RunManager
from .worker import CHECKPOINT_NAME

MAX_COMPARED = 20  # runs in one comparison


def summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """A run's final and best validation loss, last train loss and mean tokens/s."""
    val = [(r["step"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    rates = [r["tokens_per_s"] for r in records if r.get("tokens_per_s") is not None]
    train = [r["train_loss"] for r in records if r.get("train_loss") is not None]
    best = min(val, key=lambda sv: sv[1]) if val else (None, None)
    return {
        "steps": records[-1]["step"] if records else 0,
        "final_train_loss": train[-1] if train else None,
        "final_val_loss": val[-1][1] if val else None,
        "best_val_loss": best[1],
        "best_val_step": best[0],
        "tokens_per_s": statistics.fmean(rates) if rates else None,
    }


def spec_fields(spec: dict[str, Any]) -> dict[str, Any]:
    """``{"<node>.<param>": value}`` with defaults filled in, ``"<node>"``: its type, and
    ``"links"``: the wiring, for every node of a spec as saved (JSON)."""
    fields: dict[str, Any] = {}
    for node in spec.get("nodes", []):
        node_type = S.NODE_TYPES.get(node.get("type"))
        defaults = {p.name: p.default for p in node_type.params} if node_type else {}
        fields[str(node.get("id"))] = node.get("type")
        for name, value in {**defaults, **(node.get("params") or {})}.items():
            fields[f"{node.get('id')}.{name}"] = value
    links = sorted(json.dumps(link, sort_keys=True) for link in spec.get("links", []))
    fields["links"] = "; ".join(links)
    return fields


def differences(specs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fields whose values are not the same in every spec: [{field, values}], one value
    per spec (None where a spec lacks the field)."""
    flat = [spec_fields(s) for s in specs]
    names = list(dict.fromkeys(name for f in flat for name in f))
    out = []
    for name in names:
        values = [f.get(name) for f in flat]
        if any(v != values[0] for v in values[1:]):
            out.append({"field": name, "values": values})
    return out


def tokens_per_step(spec: dict[str, Any]) -> int | None:
    """Tokens of one optimizer step: the data node's batch_size x block_size."""
    fields = spec_fields(spec)
    for node in spec.get("nodes", []):
        node_type = S.NODE_TYPES.get(node.get("type"))
        if node_type is not None and node_type.category == "data":
            batch = fields.get(f"{node['id']}.batch_size")
            block = fields.get(f"{node['id']}.block_size")
            if isinstance(batch, int) and isinstance(block, int):
                return batch * block
    return None


def curves(records: list[dict[str, Any]], per_step: int | None) -> dict[str, list]:
    """The run's points, one per step, with each x axis the page offers."""
    return {
        "step": [r["step"] for r in records],
        "tokens": [r["step"] * per_step if per_step else None for r in records],
        "elapsed_s": [r.get("elapsed_s") for r in records],
        "train_loss": [r.get("train_loss") for r in records],
        "val_loss": [r.get("val_loss") for r in records],
    }


def compare(runs: RunManager, run_ids: list[str]) -> dict[str, Any]:
    """The comparison of runs (RunNotFound names an unknown id)."""
    if not run_ids:
        raise ValueError("no runs to compare: give run ids, e.g. ?runs=ID1,ID2")
    if len(run_ids) > MAX_COMPARED:
        raise ValueError(f"compare at most {MAX_COMPARED} runs at once, got {len(run_ids)}")
    rows, specs = [], []
    for run_id in dict.fromkeys(run_ids):
        info = runs.get(run_id)
        run_dir = runs.run_dir(run_id)
        spec = json.loads((run_dir / "spec.json").read_text())
        records = read_metrics(run_dir / "metrics.jsonl")
        params = None
        with contextlib.suppress(ValueError):  # no checkpoint yet, or an unreadable one
            params = parameter_count(run_dir / CHECKPOINT_NAME)
        per_step = tokens_per_step(spec)
        rows.append(
            {
                "id": info.id,
                "name": info.name,
                "state": info.state,
                "parameters": params,
                "tokens_per_step": per_step,
                **summary(records),
                "curves": curves(records, per_step),
            }
        )
        specs.append(spec)
    return {"runs": rows, "differences": differences(specs)}
